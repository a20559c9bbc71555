"""Global planner: A* on the occupancy grid inflated by the robot's footprint, then a
line-of-sight smoothing of the cell path.

The base is holonomic and rectangular. A cell is lethal when the robot's inscribed circle
(plus a margin) would touch an obstacle there; a cost rises towards obstacles inside the
circumscribed circle so paths keep to the middle of the aisles where the base can turn.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import numpy as np

from mobile_chemist.config import settings_from_section
from mobile_chemist.navigation.geometry import footprint_outline, transform_points
from mobile_chemist.navigation.occupancy import OccupancyMap


class PlanningError(Exception):
    """No path: the goal (or start) is in collision, outside the map, or enclosed."""


@dataclass
class PlannerConfig:
    """Tunables of the planner (config/navigation.yaml, planner)."""

    safety_margin: float = 0.05      # m added to the inscribed radius for lethal cells
    cost_weight: float = 4.0         # extra cost per cell at the obstacle, falling to 0
    cost_falloff: float = 0.15       # m beyond the circumscribed radius where cost is 0
    waypoint_spacing: float = 0.1    # m between points of the smoothed path

    @classmethod
    def from_dict(cls, data: dict | None, where: str = "planner") -> "PlannerConfig":
        """From the YAML section; unknown keys are a ConfigError."""
        return settings_from_section(cls, data, where)


_DIAGONAL = math.sqrt(2)
_MOVES = [(-1, 0, 1.0), (1, 0, 1.0), (0, -1, 1.0), (0, 1, 1.0),
          (-1, -1, _DIAGONAL), (-1, 1, _DIAGONAL), (1, -1, _DIAGONAL), (1, 1, _DIAGONAL)]


class GridPlanner:
    """A* over the inflated grid; `plan(start, goal)` returns a smoothed (K, 2) path."""

    def __init__(self, occupancy: OccupancyMap, footprint: tuple[float, float],
                 config: PlannerConfig | None = None):
        self.map = occupancy
        self.config = config or PlannerConfig()
        self.inscribed = min(footprint) / 2
        self.circumscribed = math.hypot(footprint[0], footprint[1]) / 2
        d = occupancy.distance
        self.lethal_radius = self.inscribed + self.config.safety_margin
        self.lethal = d < self.lethal_radius
        outer = self.circumscribed + self.config.cost_falloff
        self.cost = np.clip((outer - d) / (outer - self.lethal_radius), 0.0, 1.0) \
            * self.config.cost_weight
        self.cost[self.lethal] = np.inf
        self.outline = footprint_outline(footprint)

    def footprint_clearance(self, pose) -> float:
        """Smallest signed distance (m) of the base's outline at `pose` to the map:
        negative when the rectangle overlaps an obstacle."""
        points = transform_points(np.asarray(pose, dtype=float), self.outline)
        return float(self.map.signed_distance_and_gradient(points)[0].min())

    def is_free(self, xy) -> bool:
        """Whether the base centre may be at map point xy."""
        row, col = self.map.world_to_cell(np.asarray(xy, dtype=float))
        return bool(self.map.in_bounds(row, col) and not self.lethal[row, col])

    def plan(self, start, goal) -> np.ndarray:
        """A path of map-frame points from start (x, y, ...) to goal (x, y, ...).

        The start may be slightly inside the inflated zone (after docking close to a bench):
        the search leaves it by the cheapest way. Raises PlanningError with the reason.
        """
        start_xy = np.asarray(start, dtype=float)[:2]
        goal_xy = np.asarray(goal, dtype=float)[:2]
        rows, cols = self.map.shape
        gr, gc = (int(v) for v in self.map.world_to_cell(goal_xy))
        sr, sc = (int(v) for v in self.map.world_to_cell(start_xy))
        if not self.map.in_bounds(gr, gc):
            raise PlanningError(f"goal ({goal_xy[0]:.2f}, {goal_xy[1]:.2f}) is outside the map")
        if not self.map.in_bounds(sr, sc):
            raise PlanningError(f"start ({start_xy[0]:.2f}, {start_xy[1]:.2f}) is outside the map")
        if self.lethal[gr, gc]:
            raise PlanningError(
                f"goal ({goal_xy[0]:.2f}, {goal_xy[1]:.2f}) is within "
                f"{self.lethal_radius:.2f} m of an obstacle: the base does not fit there")
        goal_pose = np.asarray(goal, dtype=float)
        if goal_pose.size >= 3:
            clearance = self.footprint_clearance(goal_pose[:3])
            if clearance < 0.0:
                raise PlanningError(
                    f"at the goal pose ({goal_xy[0]:.2f}, {goal_xy[1]:.2f}, "
                    f"{goal_pose[2]:.2f} rad) the base's footprint overlaps an obstacle "
                    f"by {-clearance * 100:.0f} cm: the pose is in collision")
        cells = self._astar((sr, sc), (gr, gc))
        if cells is None:
            raise PlanningError(f"no path from ({start_xy[0]:.2f}, {start_xy[1]:.2f}) to "
                                f"({goal_xy[0]:.2f}, {goal_xy[1]:.2f}): the goal is enclosed")
        points = self.map.cell_to_world(cells[:, 0], cells[:, 1])
        points[0], points[-1] = start_xy, goal_xy
        return self._densify(self._shortcut(points))

    def _astar(self, start: tuple[int, int], goal: tuple[int, int]) -> np.ndarray | None:
        rows, cols = self.map.shape
        cost = self.cost
        g = np.full((rows, cols), np.inf)
        parent = np.full((rows, cols), -1, dtype=np.int64)
        closed = np.zeros((rows, cols), dtype=bool)
        g[start] = 0.0
        gr, gc = goal
        heap = [(0.0, start[0], start[1])]
        start_lethal = bool(self.lethal[start])
        while heap:
            _, r, c = heapq.heappop(heap)
            if closed[r, c]:
                continue
            closed[r, c] = True
            if (r, c) == goal:
                break
            here = g[r, c]
            escaping = start_lethal and self.lethal[r, c]
            for dr, dc, step in _MOVES:
                nr, nc = r + dr, c + dc
                if not (0 <= nr < rows and 0 <= nc < cols) or closed[nr, nc]:
                    continue
                extra = cost[nr, nc]
                if extra == np.inf:
                    # Cells in collision are passable only to leave a start that is in one,
                    # and only if not inside an actual obstacle.
                    if not escaping or self.map.occupied[nr, nc]:
                        continue
                    extra = 50.0
                new = here + step * (1.0 + extra)
                if new < g[nr, nc]:
                    g[nr, nc] = new
                    parent[nr, nc] = r * cols + c
                    h = math.hypot(nr - gr, nc - gc)
                    heapq.heappush(heap, (new + h, nr, nc))
        if not closed[goal]:
            return None
        path = [goal]
        idx = parent[goal]
        while idx >= 0:
            path.append((idx // cols, idx % cols))
            idx = parent[path[-1]]
        return np.array(path[::-1])

    def segment_clear(self, a: np.ndarray, b: np.ndarray, max_cost: float) -> bool:
        """Whether the straight segment a-b stays on cells with cost <= max_cost."""
        n = max(2, int(np.ceil(np.hypot(*(b - a)) / (self.map.resolution / 2))) + 1)
        pts = a + np.linspace(0, 1, n)[:, None] * (b - a)
        row, col = self.map.world_to_cell(pts)
        if not np.all(self.map.in_bounds(row, col)):
            return False
        return bool(np.all(self.cost[row, col] <= max_cost))

    def _shortcut(self, points: np.ndarray) -> np.ndarray:
        """Greedy string pulling: skip waypoints while the segment stays as cheap as the
        cells it replaces (so smoothing never cuts closer to obstacles)."""
        row, col = self.map.world_to_cell(points)
        cell_cost = self.cost[row, col]
        cell_cost = np.where(np.isfinite(cell_cost), cell_cost, 0.0)
        out = [points[0]]
        i = 0
        while i < len(points) - 1:
            j = len(points) - 1
            while j > i + 1:
                limit = max(cell_cost[i:j + 1].max(), 0.0) + 1e-9
                if self.segment_clear(points[i], points[j], limit):
                    break
                j -= 1
            out.append(points[j])
            i = j
        return np.array(out)

    def _densify(self, points: np.ndarray) -> np.ndarray:
        spacing = self.config.waypoint_spacing
        out = [points[0]]
        for a, b in zip(points[:-1], points[1:]):
            n = max(1, int(np.ceil(np.hypot(*(b - a)) / spacing)))
            out.extend(a + (b - a) * (k / n) for k in range(1, n + 1))
        return np.array(out)


def path_length(path: np.ndarray) -> float:
    """Length of a polyline (K, 2)."""
    if len(path) < 2:
        return 0.0
    return float(np.linalg.norm(np.diff(path, axis=0), axis=1).sum())
