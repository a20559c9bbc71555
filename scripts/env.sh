# Source this to use the pip-installed ROS 2 core and this package's interfaces, the way
# /opt/ros/<distro>/setup.bash is sourced on a robot. Idempotent.
_mc_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_mc_site="$_mc_root/.venv/lib/python3.11/site-packages"
_mc_libs="$(ls -d "$_mc_site"/ros_*.libs 2>/dev/null | tr '\n' ':')"
export LD_LIBRARY_PATH="${_mc_libs}$_mc_root/.venv/lib:$_mc_root/install/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export AMENT_PREFIX_PATH="$_mc_root/install:$_mc_root/.venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
# DDS discovery stays on this machine.
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
export PATH="$_mc_root/.venv/bin:$PATH"
unset _mc_root _mc_site _mc_libs
