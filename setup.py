"""pip installation of the mobile_chemist Python library (colcon uses CMakeLists.txt)."""

from setuptools import find_packages, setup

setup(
    name="mobile_chemist",
    version="0.1.0",
    description="A ROS 2 stack for a mobile robotic chemist",
    license="AGPL-3.0-or-later",
    packages=find_packages(include=["mobile_chemist", "mobile_chemist.*"]),
    python_requires=">=3.10",
    entry_points={"console_scripts": ["mobile-chemist = mobile_chemist.cli:main"]},
)
