"""The occupancy map navigation works on, with its distance field for likelihoods and costs."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from mobile_chemist.config import LabConfig
from mobile_chemist.navigation.geometry import lab_rects


@dataclass
class OccupancyMap:
    """A boolean occupancy grid: occupied[row, col], row 0 at origin y (ROS convention).

    `origin` is the map-frame position (x, y) of the corner of cell (0, 0).
    """

    occupied: np.ndarray
    resolution: float
    origin: tuple[float, float]
    distance: np.ndarray = field(init=False, repr=False)   # m to the nearest obstacle, >= 0
    signed: np.ndarray = field(init=False, repr=False)     # negative inside obstacles

    def __post_init__(self):
        self.occupied = np.asarray(self.occupied, dtype=bool)
        # Signed distance to the obstacle surfaces, which lie on cell boundaries: half a
        # cell is taken off so that a laser point on a wall reads 0 (not res/2), and the
        # inside is negative so the field is smooth across surfaces for scan matching.
        res = self.resolution
        outside = ndimage.distance_transform_edt(~self.occupied) * res
        inside = ndimage.distance_transform_edt(self.occupied) * res
        self.signed = np.where(self.occupied, -(inside - res / 2), outside - res / 2)
        self.distance = np.maximum(self.signed, 0.0)
        gy, gx = np.gradient(self.signed, res)
        self._grad = (gx, gy)

    @property
    def shape(self) -> tuple[int, int]:
        return self.occupied.shape

    @classmethod
    def from_grid(cls, grid, resolution: float, origin) -> "OccupancyMap":
        """From lab_map's grid: bool, 0/1, or ROS values (0 free, 100 occupied, -1 unknown)."""
        grid = np.asarray(grid)
        if grid.dtype == bool:
            occupied = grid
        elif grid.max(initial=0) <= 1:
            occupied = grid > 0.5
        else:
            occupied = grid >= 50
        return cls(occupied, float(resolution), (float(origin[0]), float(origin[1])))

    @classmethod
    def from_lab(cls, lab: LabConfig) -> "OccupancyMap":
        """The lab's map: lab_map.occupancy_grid when available, else rasterised here.

        Both rasterise the same rectangles of lab.yaml; the fallback keeps navigation
        usable (and testable) on its own.
        """
        try:
            from mobile_chemist.lab_map import occupancy_grid
        except ImportError:
            return cls.rasterise(lab)
        grid, resolution, origin = occupancy_grid(lab)
        if not isinstance(origin, (tuple, list, np.ndarray)):  # a Pose-like object
            origin = (origin.x, origin.y)
        return cls.from_grid(grid, resolution, origin)

    @classmethod
    def rasterise(cls, lab: LabConfig) -> "OccupancyMap":
        """Mark the cells whose centres lie in a wall, obstacle or bench rectangle."""
        res = lab.map_resolution
        margin = max(lab.wall_thickness, res) + 2 * res
        origin = (-margin, -margin)
        cols = int(np.ceil((lab.size[0] + 2 * margin) / res))
        rows = int(np.ceil((lab.size[1] + 2 * margin) / res))
        xs = origin[0] + (np.arange(cols) + 0.5) * res
        ys = origin[1] + (np.arange(rows) + 0.5) * res
        gx, gy = np.meshgrid(xs, ys)
        occupied = np.zeros((rows, cols), dtype=bool)
        # Outside the room counts as occupied (walls and beyond).
        occupied |= (gx < 0) | (gx > lab.size[0]) | (gy < 0) | (gy > lab.size[1])
        for rect in lab_rects(lab):
            c, s = np.cos(rect.yaw), np.sin(rect.yaw)
            lx = (gx - rect.center[0]) * c + (gy - rect.center[1]) * s
            ly = -(gx - rect.center[0]) * s + (gy - rect.center[1]) * c
            occupied |= (np.abs(lx) <= rect.size[0] / 2) & (np.abs(ly) <= rect.size[1] / 2)

        return cls(occupied, res, origin)

    # -- lookups ----------------------------------------------------------------------
    def world_to_cell(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, col) integer indices of map-frame points (..., 2); may be out of bounds."""
        col = np.floor((xy[..., 0] - self.origin[0]) / self.resolution).astype(int)
        row = np.floor((xy[..., 1] - self.origin[1]) / self.resolution).astype(int)
        return row, col

    def cell_to_world(self, row, col) -> np.ndarray:
        """Map-frame centres of cells."""
        return np.stack([self.origin[0] + (np.asarray(col) + 0.5) * self.resolution,
                         self.origin[1] + (np.asarray(row) + 0.5) * self.resolution], axis=-1)

    def in_bounds(self, row, col) -> np.ndarray:
        return (row >= 0) & (row < self.shape[0]) & (col >= 0) & (col < self.shape[1])

    def distance_at(self, xy: np.ndarray) -> np.ndarray:
        """Distance (m) to the nearest obstacle, bilinear; 0 outside the map."""
        value, _ = self._bilinear(xy, with_gradient=False, field_=self.distance)
        return value

    def signed_distance_and_gradient(self, xy: np.ndarray):
        """Signed distance (...,) and its gradient (..., 2) at map-frame points."""
        return self._bilinear(xy, with_gradient=True, field_=self.signed)

    def _bilinear(self, xy: np.ndarray, with_gradient: bool, field_: np.ndarray):
        fx = (xy[..., 0] - self.origin[0]) / self.resolution - 0.5
        fy = (xy[..., 1] - self.origin[1]) / self.resolution - 0.5
        rows, cols = self.shape
        inside = (fx >= 0) & (fx < cols - 1) & (fy >= 0) & (fy < rows - 1)
        fx = np.clip(fx, 0, cols - 1.001)
        fy = np.clip(fy, 0, rows - 1.001)
        c0, r0 = fx.astype(int), fy.astype(int)
        tx, ty = fx - c0, fy - r0

        def interp(f):
            return (f[r0, c0] * (1 - tx) * (1 - ty) + f[r0, c0 + 1] * tx * (1 - ty)
                    + f[r0 + 1, c0] * (1 - tx) * ty + f[r0 + 1, c0 + 1] * tx * ty)

        value = np.where(inside, interp(field_), 0.0)
        if not with_gradient:
            return value, None
        grad = np.stack([np.where(inside, interp(self._grad[0]), 0.0),
                         np.where(inside, interp(self._grad[1]), 0.0)], axis=-1)
        return value, grad
