"""A discrete-event model of the mobile manipulator: where it is and where every rack is.

It serves the navigate and transfer actions in the fast simulation mode: a leg takes the
straight-line distance between approach poses at the robot's maximum speed, plus the turn
and the re-localisation (docking) time from config/lab.yaml; a transfer takes a pick and a
place. It checks what a real robot would refuse: a transfer at a station the robot is not
docked at, an empty source, an occupied target. The physics simulation (MuJoCo) with the
builtin navigation replaces the motion model, not this bookkeeping.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

from mobile_chemist.config import LabConfig, Pose2D


class RobotError:
    """Mirrors the ERROR_* constants of NavigateToStation and TransferLabware."""

    NAV_UNKNOWN_STATION = 1
    NAV_BUSY = 6
    TRANSFER_UNKNOWN_LOCATION = 1
    TRANSFER_NOT_AT_STATION = 2
    TRANSFER_SOURCE_EMPTY = 3
    TRANSFER_TARGET_OCCUPIED = 4
    TRANSFER_GRASP_FAILED = 5
    TRANSFER_INVALID_REQUEST = 8


@dataclass
class Plan:
    """What an accepted motion will take; apply() it once the time has passed."""

    duration_s: float
    distance_m: float = 0.0
    target: Pose2D | None = None


class MotionRefused(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def _angle_diff(a: float, b: float) -> float:
    return (a - b + math.pi) % (2 * math.pi) - math.pi


class DiscreteEventRobot:
    """Robot pose, docking and rack bookkeeping with timing from the lab layout."""

    def __init__(self, lab: LabConfig):
        self.lab = lab
        home = lab.stations[lab.robot.home_station]
        self.pose = home.approach
        self.docked_at: str | None = home.name
        self.racks: dict[str, str] = {}      # rack id -> location
        self._lock = threading.Lock()

    # -- navigation -------------------------------------------------------------------
    def plan_navigation(self, station: str) -> Plan:
        if station not in self.lab.stations:
            raise MotionRefused(RobotError.NAV_UNKNOWN_STATION,
                                f"unknown station {station!r}; known: {sorted(self.lab.stations)}")
        goal = self.lab.stations[station].approach
        robot = self.lab.robot
        with self._lock:
            start = self.pose
            if self.docked_at == station:
                return Plan(0.0, 0.0, goal)
        distance = math.hypot(goal.x - start.x, goal.y - start.y)
        heading = math.atan2(goal.y - start.y, goal.x - start.x) if distance > 1e-6 else start.yaw
        turning = abs(_angle_diff(heading, start.yaw)) + abs(_angle_diff(goal.yaw, heading))
        duration = (distance / robot.max_linear_speed + turning / robot.max_angular_speed
                    + robot.docking_s)
        return Plan(duration, distance, goal)

    def complete_navigation(self, station: str, plan: Plan) -> None:
        with self._lock:
            self.pose = plan.target
            self.docked_at = station

    def undock(self) -> None:
        with self._lock:
            self.docked_at = None

    def set_docked_at(self, station: str | None, pose: Pose2D | None = None) -> None:
        """Physics mode: the navigation node reports where the base docked ("" = nowhere)."""
        with self._lock:
            self.docked_at = station or None
            if pose is not None:
                self.pose = pose

    # -- transfers --------------------------------------------------------------------
    def plan_transfer(self, object_type: str, object_id: str, source: str, target: str) -> Plan:
        if object_type != "rack":
            raise MotionRefused(RobotError.TRANSFER_INVALID_REQUEST,
                                "the discrete-event robot moves racks; vial transfers need the arm "
                                "simulation")
        if not object_id:
            raise MotionRefused(RobotError.TRANSFER_INVALID_REQUEST, "object_id is empty")
        for loc in (source, target):
            if not self.lab.location_exists(loc):
                raise MotionRefused(RobotError.TRANSFER_UNKNOWN_LOCATION,
                                    f"unknown location {loc!r}")
        with self._lock:
            for loc in (source, target):
                owner = loc.split("/", 1)[0]
                if owner != "robot" and owner != self.docked_at:
                    raise MotionRefused(RobotError.TRANSFER_NOT_AT_STATION,
                                        f"the robot is docked at {self.docked_at or 'no station'}, "
                                        f"not at {owner!r}")
            where = self.racks.get(object_id)
            if where is None and self._is_storage(source):
                where = source  # a fresh rack supplied to storage by the lab staff
            if where != source:
                raise MotionRefused(RobotError.TRANSFER_SOURCE_EMPTY,
                                    f"rack {object_id} is not at {source} "
                                    f"(it is at {where or 'an unknown place'})")
            if not self._is_storage(target) and any(
                    loc == target for rid, loc in self.racks.items() if rid != object_id):
                raise MotionRefused(RobotError.TRANSFER_TARGET_OCCUPIED, f"{target} is occupied")
        return Plan(self.lab.robot.pick_s + self.lab.robot.place_s)

    def complete_transfer(self, object_id: str, target: str) -> None:
        with self._lock:
            self.racks[object_id] = target

    def _is_storage(self, location: str) -> bool:
        owner = location.split("/", 1)[0]
        return owner in self.lab.stations and self.lab.stations[owner].type == "storage"
