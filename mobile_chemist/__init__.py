"""mobile_chemist: a ROS 2 stack for a mobile robotic chemist.

The library holds every algorithm (configuration, optimisation, simulation, database,
workflow execution) and imports without ROS; `mobile_chemist.ros` and `nodes/` adapt it to a
ROS 2 graph.
"""

from pkgutil import extend_path

# The rosidl-generated modules (mobile_chemist.msg/.srv/.action) are installed by CMake
# into another site-packages directory when the library is installed with pip; extending
# the package path joins the two halves (on a colcon install they share one directory).
__path__ = extend_path(__path__, __name__)

__version__ = "0.1.0"
