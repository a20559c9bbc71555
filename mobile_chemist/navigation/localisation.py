"""Localisation against the map from both laser scanners: a particle filter over a
likelihood field, with odometry as the motion model and a scan-matching refinement.

It never reads ground truth: the inputs are odometry poses (which drift) and laser ranges.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from mobile_chemist.config import settings_from_section
from mobile_chemist.navigation.geometry import (
    as_array,
    between,
    compose,
    inverse,
    transform_points,
    wrap_angle,
)
from mobile_chemist.navigation.occupancy import OccupancyMap


@dataclass(frozen=True)
class LaserMount:
    """A scanner's frame and its pose on the base (in base_footprint), from the robot
    description (the simulator's /tf_static or model), never restated in our config."""

    frame_id: str
    pose: tuple[float, float, float]


def scan_to_points(ranges: Sequence[float], angle_min: float, angle_increment: float,
                   range_min: float, range_max: float, mount: LaserMount,
                   stride: int = 1) -> np.ndarray:
    """The valid returns of one LaserScan as points (M, 2) in base_footprint.

    Returns at or beyond range_max (no echo), below range_min, or not finite are dropped;
    `stride` keeps every stride-th beam.
    """
    r = np.asarray(ranges, dtype=float)
    angles = angle_min + angle_increment * np.arange(r.size)
    keep = np.isfinite(r) & (r >= range_min) & (r < range_max)
    if stride > 1:
        keep &= (np.arange(r.size) % stride) == 0
    r, angles = r[keep], angles[keep]
    local = np.stack([r * np.cos(angles), r * np.sin(angles)], axis=-1)
    return transform_points(np.asarray(mount.pose, dtype=float), local)


@dataclass
class LocaliserConfig:
    """Tunables of the particle filter (config/navigation.yaml, localisation)."""

    particles: int = 300
    beams: int = 90                  # beams used per update, both scanners together
    sigma_hit: float = 0.05          # m, likelihood-field spread
    z_random: float = 0.1            # weight of the uniform part (unmapped objects)
    beam_weight: float = 0.3         # < 1: neighbouring beams are not independent
    update_min_d: float = 0.05       # m of motion between filter updates
    update_min_a: float = 0.05       # rad
    alpha: tuple[float, float, float, float] = (0.05, 0.05, 0.1, 0.05)
    # ^ odometry noise: rot<-rot, rot<-trans, trans<-trans, trans<-rot (as AMCL's alphas)
    initial_sigma_xy: float = 0.3    # m, spread around the initial guess
    initial_sigma_yaw: float = 0.2   # rad
    resample_threshold: float = 0.5  # resample when N_eff < this * N
    jitter_xy: float = 0.005         # m added on resampling so copies do not collapse
    jitter_yaw: float = 0.003        # rad
    refine: bool = True              # scan-matching refinement of the filter's mean
    refine_max_distance: float = 0.2  # m, points further from the map are not matched
    refine_iterations: int = 6

    @classmethod
    def from_dict(cls, data: dict | None, where: str = "localisation") -> "LocaliserConfig":
        """From the YAML section; unknown keys are a ConfigError."""
        data = dict(data or {})
        if "alpha" in data:  # YAML gives a list; the motion model wants a tuple
            data["alpha"] = tuple(float(a) for a in data["alpha"])
        return settings_from_section(cls, data, where)


@dataclass
class LocaliserState:
    """The current estimate and how well the last scan matched the map."""

    pose: np.ndarray                  # map-frame estimate [x, y, yaw]
    covariance: np.ndarray            # 3x3 from the particles
    updates: int = 0                  # filter updates so far
    inlier_fraction: float = 0.0      # of the last refinement
    rms: float = 0.0                  # m, of the last refinement


class ParticleFilterLocaliser:
    """Monte Carlo localisation on a likelihood field with scan-matching refinement."""

    def __init__(self, occupancy: OccupancyMap, config: LocaliserConfig | None = None,
                 seed: int | None = 0):
        self.map = occupancy
        self.config = config or LocaliserConfig()
        self.rng = np.random.default_rng(seed)
        self.particles = np.zeros((self.config.particles, 3))
        self.weights = np.full(self.config.particles, 1.0 / self.config.particles)
        self.state = LocaliserState(np.zeros(3), np.eye(3))
        self._odom: np.ndarray | None = None          # odometry at the last call
        self._pending = np.zeros(3)                   # motion not yet given to particles
        self._initialised = False
        self._force = True                            # weigh on the first scan

    @property
    def initialised(self) -> bool:
        return self._initialised

    @property
    def pose(self) -> np.ndarray:
        return self.state.pose.copy()

    def initialise(self, pose, sigma_xy: float | None = None,
                   sigma_yaw: float | None = None) -> None:
        """Spread the particles around a guess of the map-frame pose."""
        c = self.config
        sxy = c.initial_sigma_xy if sigma_xy is None else sigma_xy
        syaw = c.initial_sigma_yaw if sigma_yaw is None else sigma_yaw
        pose = as_array(pose)
        n = c.particles
        self.particles = np.column_stack([
            pose[0] + self.rng.normal(0, sxy, n), pose[1] + self.rng.normal(0, sxy, n),
            wrap_angle(pose[2] + self.rng.normal(0, syaw, n))])
        self.particles[0] = pose     # keep the guess itself among the hypotheses
        self.weights = np.full(n, 1.0 / n)
        self.state = LocaliserState(pose.copy(), np.diag([sxy ** 2, sxy ** 2, syaw ** 2]))
        self._pending = np.zeros(3)
        self._initialised = True
        self._force = True

    def map_to_odom(self, odom_pose) -> np.ndarray:
        """The map->odom transform that places odometry's pose at the estimate."""
        return compose(self.state.pose, inverse(as_array(odom_pose)))

    def predict(self, odom_pose) -> None:
        """Move the estimate by the odometry increment since the last call."""
        odom_pose = as_array(odom_pose)
        if self._odom is not None:
            delta = between(self._odom, odom_pose)
            self.state.pose = compose(self.state.pose, delta)
            self._pending = compose(self._pending, delta)
        self._odom = odom_pose

    def update(self, odom_pose, points_base: np.ndarray, force: bool = False) -> LocaliserState:
        """Predict with odometry, then (when moved enough, or forced) weigh the particles
        against the scan points (M, 2, base_footprint) and refine the estimate."""
        if not self._initialised:
            raise RuntimeError("the localiser needs an initial pose guess first")
        self.predict(odom_pose)
        c = self.config
        moved = (np.hypot(self._pending[0], self._pending[1]) >= c.update_min_d
                 or abs(self._pending[2]) >= c.update_min_a)
        points = self._subsample(points_base)
        if len(points) < 10:
            return self.state
        if moved or force or self._force:
            self._move_particles(self._pending)
            self._pending = np.zeros(3)
            self._weigh(points)
            self._force = False
            self.state.updates += 1
            mean = self._mean()
            if c.refine:
                refined = self._refine(mean, points)
                # Trust the refinement only near the filter's mean (no jump to a twin).
                if refined is not None and np.hypot(*(refined[:2] - mean[:2])) < 0.25:
                    self.particles[:, :2] += refined[:2] - mean[:2]
                    self.particles[:, 2] = wrap_angle(self.particles[:, 2] + refined[2] - mean[2])
                    mean = refined
            self.state.pose = mean
            self.state.covariance = self._covariance(mean)
            self._maybe_resample()
        elif c.refine:
            # Standing still or creeping: keep the estimate locked to the map anyway.
            refined = self._refine(self.state.pose, points)
            if refined is not None and np.hypot(*(refined[:2] - self.state.pose[:2])) < 0.05:
                self.state.pose = refined
        return self.state

    # -- internals ------------------------------------------------------------------
    def _subsample(self, points: np.ndarray) -> np.ndarray:
        points = np.asarray(points, dtype=float).reshape(-1, 2)
        n = self.config.beams
        if len(points) > n:
            points = points[np.linspace(0, len(points) - 1, n).astype(int)]
        return points

    def _move_particles(self, delta: np.ndarray) -> None:
        a1, a2, a3, a4 = self.config.alpha
        n = len(self.particles)
        trans, rot = float(np.hypot(delta[0], delta[1])), float(abs(delta[2]))
        s_xy = a3 * trans + a4 * rot + 1e-4
        s_yaw = a1 * rot + a2 * trans + 1e-4
        dx = delta[0] + self.rng.normal(0, s_xy, n)
        dy = delta[1] + self.rng.normal(0, s_xy, n)
        dyaw = delta[2] + self.rng.normal(0, s_yaw, n)
        p = self.particles
        c, s = np.cos(p[:, 2]), np.sin(p[:, 2])
        self.particles = np.column_stack([p[:, 0] + c * dx - s * dy, p[:, 1] + s * dx + c * dy,
                                          wrap_angle(p[:, 2] + dyaw)])

    def _weigh(self, points: np.ndarray) -> None:
        c = self.config
        world = transform_points(self.particles, points)            # (N, M, 2)
        d = self.map.distance_at(world)
        beam = (1 - c.z_random) * np.exp(-0.5 * (d / c.sigma_hit) ** 2) + c.z_random
        log_w = np.log(self.weights + 1e-300) + c.beam_weight * np.log(beam).sum(axis=1)
        log_w -= log_w.max()
        w = np.exp(log_w)
        self.weights = w / w.sum()

    def _mean(self) -> np.ndarray:
        w, p = self.weights, self.particles
        yaw = np.arctan2((w * np.sin(p[:, 2])).sum(), (w * np.cos(p[:, 2])).sum())
        return np.array([(w * p[:, 0]).sum(), (w * p[:, 1]).sum(), yaw])

    def _covariance(self, mean: np.ndarray) -> np.ndarray:
        d = self.particles - mean
        d[:, 2] = wrap_angle(d[:, 2])
        return (self.weights[:, None] * d).T @ d

    def _maybe_resample(self) -> None:
        c = self.config
        n = len(self.particles)
        if 1.0 / (self.weights ** 2).sum() >= c.resample_threshold * n:
            return
        # Low-variance (systematic) resampling.
        positions = (self.rng.random() + np.arange(n)) / n
        idx = np.minimum(np.searchsorted(np.cumsum(self.weights), positions), n - 1)
        p = self.particles[idx]
        p[:, :2] += self.rng.normal(0, c.jitter_xy, (n, 2))
        p[:, 2] = wrap_angle(p[:, 2] + self.rng.normal(0, c.jitter_yaw, n))
        self.particles = p
        self.weights = np.full(n, 1.0 / n)

    def _refine(self, pose: np.ndarray, points: np.ndarray) -> np.ndarray | None:
        """Gauss-Newton on the signed distance of the scan points to the map."""
        c = self.config
        pose = pose.copy()
        for _ in range(c.refine_iterations):
            world = transform_points(pose, points)
            d, g = self.map.signed_distance_and_gradient(world)
            inlier = np.abs(d) < c.refine_max_distance
            if inlier.sum() < max(10, len(points) // 4):
                return None
            cs, sn = np.cos(pose[2]), np.sin(pose[2])
            px, py = points[:, 0], points[:, 1]
            j = np.column_stack([g[:, 0], g[:, 1],
                                 g[:, 0] * (-sn * px - cs * py) + g[:, 1] * (cs * px - sn * py)])
            # Huber-like weights: far points count less.
            w = np.where(inlier, 1.0 / np.maximum(1.0, np.abs(d) / 0.05), 0.0)
            h = (j * w[:, None]).T @ j + np.diag([1e-6, 1e-6, 1e-6])
            step = -np.linalg.solve(h, (j * w[:, None]).T @ d)
            step[:2] = np.clip(step[:2], -0.05, 0.05)
            step[2] = np.clip(step[2], -0.05, 0.05)
            pose = pose + step
            pose[2] = float(wrap_angle(pose[2]))
            if np.abs(step[:2]).max() < 1e-4 and abs(step[2]) < 1e-4:
                break
        world = transform_points(pose, points)
        d = self.map.signed_distance_and_gradient(world)[0]
        inlier = np.abs(d) < c.refine_max_distance
        self.state.inlier_fraction = float(inlier.mean())
        self.state.rms = float(np.sqrt((d[inlier] ** 2).mean())) if inlier.any() else 0.0
        return pose


def laser_mounts_from_description(footprint: tuple[float, float]) -> dict[str, LaserMount]:
    """The scanners' poses in base_footprint from the robot description (URDF source).

    The URDF mounts them on base_link, which lies straight above base_footprint, so the
    planar pose is the same in both frames.
    """
    from mobile_chemist.robot_description import laser_mounts

    return {m.name: LaserMount(m.name, (float(m.xyz[0]), float(m.xyz[1]), float(m.yaw)))
            for m in laser_mounts(footprint)}
