"""The builtin navigation stack: localise, plan, follow, dock — one object per robot.

`Navigator` is fed odometry and laser points (whatever the transport: the ROS node, the
bench, a test's simulator) and hands out velocity commands through a `Leg`, one
navigate-to-station task, stepped once per control cycle.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mobile_chemist.config import (
    LabConfig,
    default_config_path,
    load_yaml,
    settings_from_section,
)
from mobile_chemist.errors import ConfigError
from mobile_chemist.navigation.docking import (
    DockingConfig,
    DockingFix,
    StationRegistration,
)
from mobile_chemist.navigation.follower import (
    FollowerConfig,
    FollowStatus,
    PathFollower,
)
from mobile_chemist.navigation.geometry import (
    as_array,
    between,
    compose,
    transform_points,
    wrap_angle,
)
from mobile_chemist.navigation.localisation import (
    LocaliserConfig,
    ParticleFilterLocaliser,
)
from mobile_chemist.navigation.occupancy import OccupancyMap
from mobile_chemist.navigation.planner import (
    GridPlanner,
    PlannerConfig,
    PlanningError,
    path_length,
)


class NavError:
    """Mirrors the ERROR_* constants of NavigateToStation.action (kept ROS-free here)."""

    NONE = 0
    UNKNOWN_STATION = 1
    UNREACHABLE = 2
    DOCKING_FAILED = 3
    NAVIGATION_FAILED = 4
    CANCELED = 5
    BUSY = 6
    UNKNOWN_REQUEST = 7


class NavigationRefused(Exception):
    """A goal rejected before the base moves (unknown station, unreachable)."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class NavigationConfig:
    """config/navigation.yaml, with the speed limits taken from lab.yaml's robot section."""

    localisation: LocaliserConfig = field(default_factory=LocaliserConfig)
    planner: PlannerConfig = field(default_factory=PlannerConfig)
    follower: FollowerConfig = field(default_factory=FollowerConfig)
    docking: DockingConfig = field(default_factory=DockingConfig)
    initial_pose_sigma_xy: float = 0.1      # m, around the home station's approach pose
    initial_pose_sigma_yaw: float = 0.05    # rad
    leg_timeout_factor: float = 4.0         # x the time the path takes at full speed ...
    leg_timeout_margin_s: float = 90.0      # ... plus this (docking, waiting for obstacles)

    @classmethod
    def from_dict(cls, data: dict, lab: LabConfig,
                  where: str = "navigation.yaml") -> "NavigationConfig":
        """From the parsed YAML, with the speed limits from lab.yaml."""
        data = dict(data or {})
        sections = {"localisation", "planner", "follower", "docking", "navigator"}
        unknown = set(data) - sections
        if unknown:
            raise ConfigError(f"{where}: unknown sections {sorted(unknown)}; "
                              f"known: {sorted(sections)}")
        parts = dict(
            localisation=LocaliserConfig.from_dict(data.get("localisation"),
                                                   f"{where}: localisation"),
            planner=PlannerConfig.from_dict(data.get("planner"), f"{where}: planner"),
            follower=FollowerConfig.from_dict(
                data.get("follower"), f"{where}: follower",
                max_linear_speed=lab.robot.max_linear_speed,
                max_angular_speed=lab.robot.max_angular_speed),
            docking=DockingConfig.from_dict(data.get("docking"), f"{where}: docking"))
        return settings_from_section(cls, data.get("navigator"), f"{where}: navigator", **parts)

    @classmethod
    def load(cls, lab: LabConfig, path: str | Path | None = None) -> "NavigationConfig":
        """Load config/navigation.yaml (or another file)."""
        path = Path(path) if path else default_config_path("navigation.yaml")
        return cls.from_dict(load_yaml(path), lab, str(path))


class Phase(enum.Enum):
    """Where a leg is."""

    FOLLOWING = "following"
    BLOCKED = "blocked"
    DOCKING = "docking"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


@dataclass
class StepOutput:
    """What one control cycle of a leg asks of the base."""

    cmd: tuple[float, float, float]
    phase: Phase
    distance_remaining: float = 0.0
    message: str = ""


@dataclass
class LegResult:
    """The outcome of a leg, as NavigateToStation.Result reports it."""

    success: bool
    error_code: int
    message: str
    pose: np.ndarray
    docking_correction: np.ndarray = field(default_factory=lambda: np.zeros(3))
    docking_residual: float = 0.0
    distance_travelled: float = 0.0
    docking_attempts: int = 0


class Navigator:
    """Map, localiser and planner of one robot; starts `Leg`s to stations."""

    def __init__(self, lab: LabConfig, config: NavigationConfig | None = None,
                 occupancy: OccupancyMap | None = None, seed: int | None = 0):
        self.lab = lab
        self.config = config or NavigationConfig()
        self.map = occupancy or OccupancyMap.from_lab(lab)
        self.localiser = ParticleFilterLocaliser(self.map, self.config.localisation, seed=seed)
        self.planner = GridPlanner(self.map, lab.robot.footprint, self.config.planner)
        self.docked_at: str | None = None
        self._registrations: dict[str, StationRegistration] = {}

    @property
    def pose(self) -> np.ndarray:
        return self.localiser.pose

    def set_initial_pose(self, pose, sigma_xy: float | None = None,
                         sigma_yaw: float | None = None) -> None:
        """Start the localiser from a guess (spread from navigation.yaml unless given)."""
        c = self.config
        self.localiser.initialise(
            pose, c.initial_pose_sigma_xy if sigma_xy is None else sigma_xy,
            c.initial_pose_sigma_yaw if sigma_yaw is None else sigma_yaw)

    def localise(self, odom_pose, points_base: np.ndarray, force: bool = False) -> np.ndarray:
        """Feed one set of scan points (base_footprint) with the odometry at their time."""
        self.localiser.update(odom_pose, points_base, force=force)
        return self.localiser.pose

    def registration(self, station: str) -> StationRegistration:
        """The (cached) scan-to-model registration of a station."""
        if station not in self._registrations:
            self._registrations[station] = StationRegistration(self.lab, station,
                                                               self.config.docking)
        return self._registrations[station]

    def check_goal(self, station: str) -> None:
        """Raise NavigationRefused for an unknown station or an unusable approach pose."""
        if station not in self.lab.stations:
            raise NavigationRefused(NavError.UNKNOWN_STATION,
                                    f"unknown station {station!r}; known: "
                                    f"{', '.join(sorted(self.lab.stations))}")

    def plan(self, station: str) -> np.ndarray:
        """The path from the current estimate to the station's approach pose."""
        self.check_goal(station)
        goal = as_array(self.lab.stations[station].approach)
        try:
            return self.planner.plan(self.pose, goal)
        except PlanningError as exc:
            raise NavigationRefused(NavError.UNREACHABLE,
                                    f"cannot reach station {station!r}: {exc}") from None

    def start_leg(self, station: str, t: float, odom_pose) -> "Leg":
        """Plan and return the task that drives to `station` and docks there."""
        if not self.localiser.initialised:
            raise NavigationRefused(NavError.NAVIGATION_FAILED, "no initial pose yet")
        path = self.plan(station)
        self.docked_at = None
        return Leg(self, station, path, t, as_array(odom_pose))

    def start_docking(self, station: str, t: float, odom_pose) -> "Leg":
        """Only the docking part of a leg: the base is at the approach pose already (the
        Nav2 backend drove it there)."""
        self.check_goal(station)
        goal = as_array(self.lab.stations[station].approach)
        self.docked_at = None
        leg = Leg(self, station, np.array([self.pose[:2], goal[:2]]), t, as_array(odom_pose))
        leg.phase = Phase.DOCKING
        leg._settle_until = t + self.config.docking.settle_s
        return leg


class Leg:
    """One navigate-to-station task: follow the path, then dock without contact."""

    def __init__(self, navigator: Navigator, station: str, path: np.ndarray, t: float,
                 odom_pose: np.ndarray):
        self.nav = navigator
        self.station = station
        self.path = path
        self.goal = as_array(navigator.lab.stations[station].approach)
        c = navigator.config
        self.follower = PathFollower(path, self.goal, navigator.map,
                                     navigator.lab.robot.footprint, c.follower)
        self.deadline = t + (c.leg_timeout_factor * path_length(path) / c.follower.max_linear_speed
                             + c.leg_timeout_margin_s)
        self.phase = Phase.FOLLOWING
        self.result: LegResult | None = None
        self._last_odom = odom_pose
        self._last_t = t
        self._still = True                  # odometry shows the base standing still
        self._distance = 0.0
        # Docking state.
        self._dock_state = "settle"
        self._settle_until = 0.0
        self._points: list[np.ndarray] = []
        self._attempts = 0
        self._fix: DockingFix | None = None
        self._fix_odom: np.ndarray | None = None
        self._first_fix_from: np.ndarray | None = None   # the estimate docking started from
        self._first_fix_odom: np.ndarray | None = None
        self._target_odom: np.ndarray | None = None
        self._move_deadline = 0.0

    @property
    def done(self) -> bool:
        return self.result is not None

    def cancel(self) -> StepOutput:
        """Stop the base and finish as canceled."""
        if not self.done:
            self._finish(False, NavError.CANCELED, "canceled; the base stopped",
                         self.nav.pose, Phase.CANCELED)
        return StepOutput((0.0, 0.0, 0.0), self.phase, 0.0, self.result.message)

    def step(self, t: float, odom_pose, points_base: np.ndarray) -> StepOutput:
        """One control cycle: call after `Navigator.localise` with the same inputs."""
        if self.done:
            return StepOutput((0.0, 0.0, 0.0), self.phase, 0.0, self.result.message)
        odom_pose = as_array(odom_pose)
        moved = between(self._last_odom, odom_pose)
        self._distance += float(np.hypot(*moved[:2]))
        # Standing still by odometry, not by the last command: the base may go on moving
        # after a stop (command latency, its own deceleration).
        limit = self.nav.config.docking.at_rest_speed * max(t - self._last_t, 0.0)
        self._still = bool(np.hypot(*moved[:2]) <= limit and abs(moved[2]) <= limit)
        self._last_odom, self._last_t = odom_pose, t
        if t > self.deadline:
            self._finish(False, NavError.NAVIGATION_FAILED,
                         f"timed out on the way to {self.station}", self.nav.pose, Phase.FAILED)
            return StepOutput((0.0, 0.0, 0.0), self.phase, 0.0, self.result.message)
        if self.phase in (Phase.FOLLOWING, Phase.BLOCKED):
            pose = self.nav.pose
            world = transform_points(pose, np.asarray(points_base).reshape(-1, 2))
            out = self.follower.step(pose, t, world)
            if out.status is FollowStatus.FAILED:
                self._finish(False, NavError.NAVIGATION_FAILED, out.message, pose, Phase.FAILED)
                return StepOutput((0.0, 0.0, 0.0), self.phase, out.distance_remaining, out.message)
            if out.status is FollowStatus.ARRIVED:
                self.phase = Phase.DOCKING
                self._settle_until = t + self.nav.config.docking.settle_s
                return StepOutput((0.0, 0.0, 0.0), self.phase, 0.0, "docking")
            self.phase = Phase.BLOCKED if out.status is FollowStatus.BLOCKED else Phase.FOLLOWING
            return StepOutput(out.cmd, self.phase, out.distance_remaining, out.message)
        return self._dock(t, odom_pose, np.asarray(points_base).reshape(-1, 2))

    # -- docking --------------------------------------------------------------------
    def _dock(self, t: float, odom: np.ndarray, points: np.ndarray) -> StepOutput:
        c = self.nav.config.docking
        stop = (0.0, 0.0, 0.0)
        if self._dock_state == "collect" and not self._still:
            # Scans stacked while moving smear the bench: settle again.
            self._dock_state = "settle"
        if self._dock_state == "settle":
            if not self._still:
                self._settle_until = t + c.settle_s
            elif t >= self._settle_until:
                self._dock_state, self._points = "collect", []
            return StepOutput(stop, self.phase, 0.0, "docking: settling")
        if self._dock_state == "collect":
            self._points.append(points)
            if len(self._points) < c.scans_per_registration:
                return StepOutput(stop, self.phase, 0.0, "docking: scanning")
            return self._register(t, odom)
        # "move": drive the correction on odometry, which is exact enough over millimetres.
        rel = between(odom, self._target_odom)
        if (np.hypot(rel[0], rel[1]) < c.tolerance_xy / 4 and abs(rel[2]) < c.tolerance_yaw / 4) \
                or t > self._move_deadline:
            self._dock_state, self._settle_until = "settle", t + c.settle_s
            return StepOutput(stop, self.phase, 0.0, "docking: settling")
        v = c.gain * rel[:2]
        n = np.hypot(*v)
        if n > c.speed:
            v *= c.speed / n
        w = float(np.clip(c.gain * rel[2], -c.speed, c.speed))
        return StepOutput((float(v[0]), float(v[1]), w), self.phase,
                          float(np.hypot(rel[0], rel[1])), "docking: correcting")

    def _register(self, t: float, odom: np.ndarray) -> StepOutput:
        c = self.nav.config.docking
        if self._fix is None:
            guess = self.nav.pose
            self._first_fix_from, self._first_fix_odom = guess, odom
        else:
            guess = compose(self._fix.pose, between(self._fix_odom, odom))
        fix = self.nav.registration(self.station).register(np.vstack(self._points), guess)
        # The correction is what registration changed in the estimate: the estimate docking
        # started from, carried along by odometry. Docking's own moves are no correction.
        correction = fix.pose - compose(self._first_fix_from,
                                        between(self._first_fix_odom, odom))
        correction[2] = float(wrap_angle(correction[2]))
        self._attempts += 1
        stop = (0.0, 0.0, 0.0)
        problem = None
        if fix.station_points < c.min_station_points:
            problem = (f"only {fix.station_points} laser points on the bench of {self.station}"
                       f" (need {c.min_station_points})")
        elif fix.residual > c.max_residual:
            problem = (f"residual {fix.residual * 1000:.1f} mm exceeds "
                       f"{c.max_residual * 1000:.1f} mm")
        elif np.hypot(*correction[:2]) > c.max_correction:
            problem = (f"correction {np.hypot(*correction[:2]):.2f} m"
                       f" exceeds {c.max_correction:.2f} m")
        if problem is not None:
            self._finish(False, NavError.DOCKING_FAILED,
                         f"docking at {self.station} failed: {problem}", guess, Phase.FAILED)
            return StepOutput(stop, self.phase, 0.0, self.result.message)
        self._fix, self._fix_odom = fix, odom
        err = fix.error
        if np.hypot(err[0], err[1]) < c.tolerance_xy and abs(err[2]) < c.tolerance_yaw:
            # The registration is the best estimate there is: restart the filter from it.
            self.nav.localiser.initialise(fix.pose, 0.01, 0.005)
            self.nav.docked_at = self.station
            self._finish(True, NavError.NONE, "", fix.pose, Phase.SUCCEEDED,
                         correction=correction, residual=fix.residual)
            return StepOutput(stop, self.phase, 0.0, "docked")
        if self._attempts >= c.max_attempts:
            self._finish(False, NavError.DOCKING_FAILED,
                         f"docking at {self.station} did not converge in {self._attempts} "
                         f"attempts: {np.hypot(err[0], err[1]) * 1000:.1f} mm, "
                         f"{math.degrees(abs(err[2])):.2f} deg off", fix.pose, Phase.FAILED)
            return StepOutput(stop, self.phase, 0.0, self.result.message)
        self._target_odom = compose(odom, err)
        self._dock_state = "move"
        self._move_deadline = t + 5.0 + 2 * np.hypot(err[0], err[1]) / c.speed
        return StepOutput(stop, self.phase, 0.0, "docking: correcting")

    def _finish(self, success: bool, code: int, message: str, pose, phase: Phase,
                correction=None, residual: float = 0.0) -> None:
        self.phase = phase
        self.result = LegResult(success=success, error_code=code, message=message,
                                pose=as_array(pose),
                                docking_correction=np.zeros(3) if correction is None
                                else np.asarray(correction, dtype=float),
                                docking_residual=float(residual),
                                distance_travelled=self._distance,
                                docking_attempts=self._attempts)
