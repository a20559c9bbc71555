"""Contact-free docking: register laser points against the station's bench rectangle.

At the approach pose the points that hit the station's footprint (known geometry from
lab.yaml) are fitted to its visible edges by point-to-line ICP (Gauss-Newton). A bench seen
face-on constrains only the distance and the heading; the direction along its face comes
from the other rectangles of the lab (walls, furniture, neighbouring benches), weighted far
less so that the bench decides whatever it can.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mobile_chemist.config import LabConfig, settings_from_section
from mobile_chemist.navigation.geometry import (
    as_array,
    between,
    lab_rects,
    rect_segments,
    segments_of,
    transform_points,
    wrap_angle,
)


@dataclass
class DockingConfig:
    """Tunables of the docking (config/navigation.yaml, section docking)."""

    association_distance: float = 0.15   # m, first ICP iteration; shrinks to the final
    final_association_distance: float = 0.04
    station_weight: float = 10.0         # relative to other mapped geometry
    use_environment: bool = True
    max_iterations: int = 30
    tolerance_xy: float = 0.002          # m: converged when the remaining error is smaller
    tolerance_yaw: float = 0.003         # rad
    max_attempts: int = 6                # register-and-correct rounds
    max_correction: float = 0.3          # m; a larger one means we are not where we think
    max_residual: float = 0.02           # m RMS on the bench's edges
    min_station_points: int = 15
    settle_s: float = 0.3                # s standing still before scanning
    at_rest_speed: float = 0.005         # m/s and rad/s of odometry: slower is standing still
    scans_per_registration: int = 3      # scan sets stacked (standing still) per fit
    speed: float = 0.05                  # m/s and rad/s while correcting
    gain: float = 1.0                    # 1/s

    @classmethod
    def from_dict(cls, data: dict | None, where: str = "docking") -> "DockingConfig":
        """From the YAML section; unknown keys are a ConfigError."""
        return settings_from_section(cls, data, where)


@dataclass
class DockingFix:
    """One registration: the fitted pose, what is left to drive, its quality."""

    pose: np.ndarray           # registered map pose of base_footprint
    error: np.ndarray          # approach pose in the registered base frame (what to drive)
    residual: float            # m, RMS distance of the bench's points to its edges
    station_points: int
    environment_points: int
    observable: bool           # all three directions constrained


class StationRegistration:
    """Point-to-line ICP of scan points against one station and the rest of the lab."""

    def __init__(self, lab: LabConfig, station: str, config: DockingConfig | None = None):
        self.config = config or DockingConfig()
        st = lab.station(station)
        self.approach = as_array(st.approach)
        self.station_segments = rect_segments(st.footprint)
        others = [r for r in lab_rects(lab) if r is not st.footprint]
        self.environment_segments = segments_of(others) if self.config.use_environment \
            else np.zeros((0, 2, 2))

    def register(self, points_base: np.ndarray, guess) -> DockingFix:
        """Fit the pose of base_footprint from points (M, 2) seen from it, starting at guess."""
        c = self.config
        points_base = np.asarray(points_base, dtype=float).reshape(-1, 2)
        segments = np.concatenate([self.station_segments, self.environment_segments])
        n_station = len(self.station_segments)
        pose = as_array(guess).copy()
        gates = np.geomspace(c.association_distance, c.final_association_distance,
                             num=min(6, c.max_iterations))
        for it in range(c.max_iterations):
            gate = gates[min(it, len(gates) - 1)]
            e, j, is_station, _ = self._residuals(pose, points_base, segments, n_station, gate)
            if is_station.sum() < c.min_station_points:
                break
            w = np.where(is_station, c.station_weight, 1.0)
            w = w / np.maximum(1.0, np.abs(e) / 0.02)          # Huber
            h = (j * w[:, None]).T @ j + np.eye(3) * 1e-9
            step = -np.linalg.solve(h, (j * w[:, None]).T @ e)
            pose = pose + step
            pose[2] = float(wrap_angle(pose[2]))
            if it >= len(gates) and np.abs(step[:2]).max() < 1e-5 and abs(step[2]) < 1e-5:
                break
        e, j, is_station, _ = self._residuals(pose, points_base, segments, n_station,
                                              c.final_association_distance)
        residual = float(np.sqrt((e[is_station] ** 2).mean())) if is_station.any() else np.inf
        h = j.T @ j
        observable = bool(len(e) >= 3 and np.linalg.eigvalsh(h).min() > 1e-3 * len(e))
        return DockingFix(pose=pose, error=between(pose, self.approach), residual=residual,
                          station_points=int(is_station.sum()),
                          environment_points=int((~is_station).sum()), observable=observable)

    def _residuals(self, pose, points_base, segments, n_station, gate):
        world = transform_points(pose, points_base)
        a = segments[None, :, 0, :]
        d = segments[None, :, 1, :] - a
        length2 = np.maximum((d ** 2).sum(-1), 1e-12)
        t_raw = ((world[:, None, :] - a) * d).sum(-1) / length2
        t = np.clip(t_raw, 0.0, 1.0)
        closest = a + t[..., None] * d
        dist = np.linalg.norm(world[:, None, :] - closest, axis=-1)
        k = np.argmin(dist, axis=1)
        rows = np.arange(len(world))
        keep = dist[rows, k] < gate
        rows, k = rows[keep], k[keep]
        seg_d = d[0, k]
        normal = np.stack([-seg_d[:, 1], seg_d[:, 0]], axis=-1)
        normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
        interior = (t_raw[rows, k] > 0) & (t_raw[rows, k] < 1)
        r = world[rows] - closest[rows, k]
        # Past a corner the residual is to the corner point itself.
        rn = np.linalg.norm(r, axis=-1, keepdims=True)
        normal = np.where(interior[:, None], normal, r / np.maximum(rn, 1e-9))
        e = (normal * r).sum(-1)
        px, py = points_base[rows, 0], points_base[rows, 1]
        cs, sn = np.cos(pose[2]), np.sin(pose[2])
        j = np.column_stack([normal[:, 0], normal[:, 1],
                             normal[:, 0] * (-sn * px - cs * py)
                             + normal[:, 1] * (cs * px - sn * py)])
        return e, j, k < n_station, rows
