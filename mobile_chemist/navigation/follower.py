"""Path follower for the holonomic base: (vx, vy, wz) in base_footprint within speed and
acceleration limits; stops for obstacles that are not on the map and gives up after a
timeout if they stay."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np

from mobile_chemist.config import settings_from_section
from mobile_chemist.navigation.geometry import (
    as_array,
    footprint_outline,
    transform_points,
    wrap_angle,
)
from mobile_chemist.navigation.occupancy import OccupancyMap


class FollowStatus(enum.Enum):
    """State of the follower after a control cycle."""

    FOLLOWING = "following"
    BLOCKED = "blocked"
    ARRIVED = "arrived"
    FAILED = "failed"


@dataclass
class FollowerConfig:
    """Tunables of the path follower (config/navigation.yaml, follower)."""

    max_linear_speed: float = 0.5          # m/s  (lab.yaml robot.max_linear_speed)
    max_angular_speed: float = 0.5         # rad/s (lab.yaml robot.max_angular_speed)
    max_linear_acceleration: float = 0.5   # m/s^2
    max_angular_acceleration: float = 1.0  # rad/s^2
    lookahead: float = 0.4                 # m along the path
    position_gain: float = 1.5             # 1/s, near the goal
    yaw_gain: float = 1.5                  # 1/s
    goal_tolerance_xy: float = 0.03        # m; docking does the fine alignment
    goal_tolerance_yaw: float = 0.03       # rad
    turn_clearance: float = 0.03           # m the corners keep from obstacles while turning
    safety_lookahead: float = 1.2          # m of path ahead that must be clear
    safety_margin: float = 0.15            # m beyond the half width of the base
    unmapped_distance: float = 0.15        # m from the map: a scan point is an unmapped obstacle
    min_obstacle_points: int = 3
    blocked_timeout: float = 20.0          # s stopped before giving up

    @classmethod
    def from_dict(cls, data: dict | None, where: str = "follower", **limits) -> "FollowerConfig":
        """From the YAML section plus the speed limits of lab.yaml (which it may not set)."""
        return settings_from_section(cls, data, where, **limits)


@dataclass
class FollowOutput:
    """One control cycle: the command and why."""

    cmd: tuple[float, float, float]       # vx, vy (m/s), wz (rad/s) in base_footprint
    status: FollowStatus
    distance_remaining: float
    message: str = ""


class PathFollower:
    """Follows one path to a goal pose; call `step` once per control cycle."""

    def __init__(self, path: np.ndarray, goal, occupancy: OccupancyMap,
                 footprint: tuple[float, float], config: FollowerConfig | None = None):
        self.path = np.asarray(path, dtype=float)
        self.goal = as_array(goal)
        self.map = occupancy
        self.config = config or FollowerConfig()
        self.half_width = min(footprint) / 2
        self.circumscribed = math.hypot(*footprint) / 2
        self.outline = footprint_outline(footprint, 0.05)
        self._index = 0
        self._velocity = np.zeros(3)        # last command, world frame (vx, vy, wz)
        self._t: float | None = None
        self._blocked_since: float | None = None
        seg = np.linalg.norm(np.diff(self.path, axis=0), axis=1) if len(self.path) > 1 else []
        self._remaining_after = np.concatenate([np.cumsum(np.asarray(seg)[::-1])[::-1], [0.0]]) \
            if len(self.path) > 1 else np.zeros(1)

    def distance_remaining(self, pose) -> float:
        """Path length from the pose to the goal (m)."""
        pose = as_array(pose)
        i = self._index
        return float(np.hypot(*(self.path[i] - pose[:2])) + self._remaining_after[i])

    def stop(self) -> tuple[float, float, float]:
        """Forget the last command (the base stops) and return zero velocity."""
        self._velocity = np.zeros(3)
        return (0.0, 0.0, 0.0)

    def step(self, pose, t: float, scan_points_map: np.ndarray | None = None) -> FollowOutput:
        """One control cycle at time t (s) from the estimated pose and the scan points in
        the map frame (for the obstacle check)."""
        c = self.config
        pose = as_array(pose)
        dt = 0.0 if self._t is None else float(np.clip(t - self._t, 0.0, 0.25))
        self._t = t
        self._advance(pose)
        remaining = self.distance_remaining(pose)
        to_goal = self.goal[:2] - pose[:2]
        yaw_error = float(wrap_angle(self.goal[2] - pose[2]))
        if np.hypot(*to_goal) < c.goal_tolerance_xy and abs(yaw_error) < c.goal_tolerance_yaw:
            return FollowOutput(self.stop(), FollowStatus.ARRIVED, 0.0)

        if scan_points_map is not None and self._blocked(pose, scan_points_map):
            if self._blocked_since is None:
                self._blocked_since = t
            waited = t - self._blocked_since
            if waited > c.blocked_timeout:
                return FollowOutput(self.stop(), FollowStatus.FAILED, remaining,
                                    f"an obstacle that is not on the map blocked the path "
                                    f"for {waited:.0f} s")
            return FollowOutput(self.stop(), FollowStatus.BLOCKED, remaining,
                                "stopped for an obstacle that is not on the map")
        self._blocked_since = None

        # Translation: towards the lookahead point, slowing down for the goal.
        target = self._lookahead_point(pose)
        direction = target - pose[:2]
        norm = np.hypot(*direction)
        speed = min(c.max_linear_speed,
                    math.sqrt(2 * c.max_linear_acceleration * 0.8 * remaining),
                    c.position_gain * remaining)
        desired = np.zeros(3)
        if norm > 1e-6:
            desired[:2] = direction / norm * speed
        # Rotation: only where the corners of the base can swing without touching.
        if self._can_turn(pose, yaw_error):
            desired[2] = np.clip(c.yaw_gain * yaw_error, -c.max_angular_speed, c.max_angular_speed)
            if remaining < 0.3 and abs(yaw_error) > 0.1:
                desired[:2] *= 0.0  # turn before arriving rather than arrive crooked
        return FollowOutput(self._limit(desired, dt, pose), FollowStatus.FOLLOWING, remaining)

    # -- internals --------------------------------------------------------------------
    def _can_turn(self, pose: np.ndarray, yaw_error: float) -> bool:
        """Whether the footprint stays clear over the next stretch of the turn (<= 0.3 rad)."""
        if abs(yaw_error) < 1e-3:
            return True
        sweep = np.sign(yaw_error) * np.linspace(0.0, min(abs(yaw_error), 0.3), 7)
        poses = np.column_stack([np.full(7, pose[0]), np.full(7, pose[1]), pose[2] + sweep])
        points = transform_points(poses, self.outline)
        clearance = self.map.signed_distance_and_gradient(points)[0].min()
        return bool(clearance >= self.config.turn_clearance)

    def _advance(self, pose: np.ndarray) -> None:
        """Progress index: the closest path point in a window ahead (never backwards)."""
        window = self.path[self._index:self._index + 40]
        d = np.hypot(window[:, 0] - pose[0], window[:, 1] - pose[1])
        self._index += int(np.argmin(d))

    def _lookahead_point(self, pose: np.ndarray) -> np.ndarray:
        ahead = self.path[self._index:]
        d = np.hypot(ahead[:, 0] - pose[0], ahead[:, 1] - pose[1])
        beyond = np.nonzero(d >= self.config.lookahead)[0]
        return ahead[beyond[0]] if len(beyond) else self.goal[:2]

    def _blocked(self, pose: np.ndarray, points: np.ndarray) -> bool:
        """Unmapped scan points within the swept corridor of the next stretch of path."""
        c = self.config
        points = np.asarray(points, dtype=float).reshape(-1, 2)
        if len(points) == 0:
            return False
        unmapped = points[self.map.distance_at(points) > c.unmapped_distance]
        if len(unmapped) < c.min_obstacle_points:
            return False
        # The corridor: robot position, then path points up to safety_lookahead ahead.
        ahead = self.path[self._index:]
        steps = np.concatenate([[np.hypot(*(ahead[0] - pose[:2]))],
                                np.linalg.norm(np.diff(ahead, axis=0), axis=1)])
        keep = np.cumsum(steps) <= c.safety_lookahead
        corridor = np.vstack([pose[:2], ahead[keep]])
        if len(corridor) < 2:
            corridor = np.vstack([pose[:2], self.goal[:2]])
        radius = self.circumscribed + c.safety_margin
        a, b = corridor[:-1], corridor[1:]
        d = b - a
        length2 = np.maximum((d ** 2).sum(-1), 1e-12)
        rel = unmapped[:, None, :] - a[None]
        tt = np.clip((rel * d).sum(-1) / length2, 0, 1)
        dist = np.linalg.norm(rel - tt[..., None] * d, axis=-1).min(axis=1)
        # Only what lies ahead of the base: behind it the path does not go.
        heading = corridor[1] - corridor[0]
        ahead_mask = (unmapped - pose[:2]) @ heading >= 0
        return int(((dist < radius) & ahead_mask).sum()) >= c.min_obstacle_points

    def _limit(self, desired: np.ndarray, dt: float,
               pose: np.ndarray) -> tuple[float, float, float]:
        c = self.config
        if dt > 0:
            dv = desired[:2] - self._velocity[:2]
            max_dv = c.max_linear_acceleration * dt
            n = np.hypot(*dv)
            if n > max_dv:
                dv *= max_dv / n
            dw = np.clip(desired[2] - self._velocity[2], -c.max_angular_acceleration * dt,
                         c.max_angular_acceleration * dt)
            self._velocity = np.array([*(self._velocity[:2] + dv), self._velocity[2] + dw])
        else:
            self._velocity = self._velocity.copy()
        cs, sn = math.cos(pose[2]), math.sin(pose[2])
        vwx, vwy, wz = self._velocity
        return (cs * vwx + sn * vwy, -sn * vwx + cs * vwy, float(wz))
