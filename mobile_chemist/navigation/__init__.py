"""Builtin navigation of the mobile base, importable without ROS.

Localisation against the lab map from both laser scanners (particle filter + scan
matching), A* planning on the inflated grid, a holonomic path follower that stops for
unmapped obstacles, and contact-free docking by registering scans against the station's
bench rectangle. `Navigator` ties them together; `nav2_backend` drives with Nav2 instead.
"""

from mobile_chemist.navigation.docking import DockingConfig, DockingFix, StationRegistration
from mobile_chemist.navigation.follower import FollowerConfig, FollowStatus, PathFollower
from mobile_chemist.navigation.localisation import (LaserMount, LocaliserConfig,
                                                    ParticleFilterLocaliser,
                                                    laser_mounts_from_description, scan_to_points)
from mobile_chemist.navigation.navigator import (Leg, LegResult, NavError, NavigationConfig,
                                                 NavigationRefused, Navigator, Phase, StepOutput)
from mobile_chemist.navigation.occupancy import OccupancyMap
from mobile_chemist.navigation.planner import GridPlanner, PlannerConfig, PlanningError, path_length

__all__ = [
    "DockingConfig", "DockingFix", "StationRegistration", "FollowerConfig", "FollowStatus",
    "PathFollower", "LaserMount", "LocaliserConfig", "ParticleFilterLocaliser",
    "laser_mounts_from_description", "scan_to_points", "Leg", "LegResult", "NavError",
    "NavigationConfig", "NavigationRefused", "Navigator", "Phase", "StepOutput",
    "OccupancyMap", "GridPlanner", "PlannerConfig", "PlanningError", "path_length",
]
