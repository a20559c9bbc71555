"""Planar geometry for navigation: poses as (x, y, yaw) arrays, rectangles as segments.

Poses are numpy arrays [x, y, yaw] (m, m, rad) so that many particles or points can be
transformed at once; `Pose2D` from mobile_chemist.config converts with `as_array`.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

from mobile_chemist.config import LabConfig, Pose2D, Rect


def wrap_angle(angle):
    """Wrap an angle (or an array of them) into [-pi, pi)."""
    return (np.asarray(angle) + np.pi) % (2 * np.pi) - np.pi


def as_array(pose: Pose2D | Sequence[float]) -> np.ndarray:
    """A Pose2D or a sequence (x, y, yaw) as a float array [x, y, yaw]."""
    if isinstance(pose, Pose2D):
        return np.array([pose.x, pose.y, pose.yaw], dtype=float)
    return np.asarray(pose, dtype=float).reshape(3)


def compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a ⊕ b: the pose b (given in frame a) expressed in a's parent frame.

    `a` may be a single pose (3,) or a stack (N, 3); `b` a single pose.
    """
    a = np.asarray(a, dtype=float)
    c, s = np.cos(a[..., 2]), np.sin(a[..., 2])
    x = a[..., 0] + c * b[0] - s * b[1]
    y = a[..., 1] + s * b[0] + c * b[1]
    return np.stack([x, y, wrap_angle(a[..., 2] + b[2])], axis=-1)


def inverse(a: np.ndarray) -> np.ndarray:
    """The inverse transform of pose `a`."""
    c, s = math.cos(a[2]), math.sin(a[2])
    return np.array([-c * a[0] - s * a[1], s * a[0] - c * a[1], -a[2]])


def between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The pose of b in frame a: a⁻¹ ⊕ b."""
    return compose(inverse(a), b)


def transform_points(pose: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Points (M, 2) in frame `pose` -> parent frame; with poses (N, 3) -> (N, M, 2)."""
    pose = np.asarray(pose, dtype=float)
    c, s = np.cos(pose[..., 2])[..., None], np.sin(pose[..., 2])[..., None]
    x = pose[..., 0, None] + c * points[:, 0] - s * points[:, 1]
    y = pose[..., 1, None] + s * points[:, 0] + c * points[:, 1]
    return np.stack([x, y], axis=-1)


def rect_corners(rect: Rect) -> np.ndarray:
    """The four corners (4, 2) of a rectangle, counter-clockwise."""
    hx, hy = rect.size[0] / 2, rect.size[1] / 2
    local = np.array([[-hx, -hy], [hx, -hy], [hx, hy], [-hx, hy]])
    return transform_points(np.array([rect.center[0], rect.center[1], rect.yaw]), local)


def rect_segments(rect: Rect) -> np.ndarray:
    """The four edges of a rectangle as segments (4, 2, 2): [[start, end], ...]."""
    c = rect_corners(rect)
    return np.stack([c, np.roll(c, -1, axis=0)], axis=1)


def room_rects(lab: LabConfig) -> list[Rect]:
    """The room's walls as rectangles just outside the inner extent [0, W] x [0, H]."""
    w, h = lab.size
    t = max(lab.wall_thickness, lab.map_resolution)
    return [
        Rect("wall_south", (w / 2, -t / 2), (w + 2 * t, t)),
        Rect("wall_north", (w / 2, h + t / 2), (w + 2 * t, t)),
        Rect("wall_west", (-t / 2, h / 2), (t, h + 2 * t)),
        Rect("wall_east", (w + t / 2, h / 2), (t, h + 2 * t)),
    ]


def lab_rects(lab: LabConfig) -> list[Rect]:
    """Everything a laser sees in the lab: walls, furniture and station benches."""
    return room_rects(lab) + list(lab.obstacles) + [s.footprint for s in lab.stations.values()]


def segments_of(rects: Iterable[Rect]) -> np.ndarray:
    """All edges of the rectangles as one (K, 2, 2) array."""
    rects = list(rects)
    if not rects:
        return np.zeros((0, 2, 2))
    return np.concatenate([rect_segments(r) for r in rects])


def point_segment_distance(points: np.ndarray, segments: np.ndarray):
    """Distance of each point (M, 2) to each segment (K, 2, 2); also the closest points.

    Returns (distance (M, K), closest (M, K, 2)).
    """
    a = segments[None, :, 0, :]
    d = segments[None, :, 1, :] - a
    length2 = np.maximum((d ** 2).sum(-1), 1e-12)
    t = np.clip(((points[:, None, :] - a) * d).sum(-1) / length2, 0.0, 1.0)
    closest = a + t[..., None] * d
    return np.linalg.norm(points[:, None, :] - closest, axis=-1), closest


def raycast_segments(origin: np.ndarray, angles: np.ndarray, segments: np.ndarray,
                     max_range: float) -> np.ndarray:
    """Exact ranges from `origin` (2,) along world-frame `angles` (M,) to segments (K, 2, 2).

    Rays that hit nothing within `max_range` return inf. Used by tests and tools as a
    noise-free laser model of the lab's rectangles.
    """
    dx, dy = np.cos(angles)[:, None], np.sin(angles)[:, None]
    p = segments[None, :, 0, :] - origin
    e = segments[None, :, 1, :] - segments[None, :, 0, :]
    denom = dx * e[..., 1] - dy * e[..., 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (p[..., 0] * e[..., 1] - p[..., 1] * e[..., 0]) / denom
        u = (p[..., 0] * dy - p[..., 1] * dx) / denom
    hit = (np.abs(denom) > 1e-12) & (t > 0) & (u >= 0) & (u <= 1)
    ranges = np.where(hit, t, np.inf).min(axis=1)
    return np.where(ranges <= max_range, ranges, np.inf)


def footprint_outline(footprint: tuple[float, float], spacing: float = 0.025) -> np.ndarray:
    """Points (K, 2) along the edge of the base's rectangle, in base_footprint."""
    hx, hy = footprint[0] / 2, footprint[1] / 2
    corners = np.array([[hx, hy], [-hx, hy], [-hx, -hy], [hx, -hy], [hx, hy]])
    points = []
    for a, b in zip(corners[:-1], corners[1:]):
        n = max(1, int(np.ceil(np.hypot(*(b - a)) / spacing)))
        points.append(a + (b - a) * (np.arange(n) / n)[:, None])
    return np.vstack(points)
