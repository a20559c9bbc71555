"""The lab's occupancy map, rasterised from config/lab.yaml (walls, obstacles, stations).

    python -m mobile_chemist.lab_map [--lab config/lab.yaml] [--output-dir maps]

writes `lab.pgm` and `lab.yaml` in the Nav2 map_server format (trinary: occupied 0, free
254). Navigation uses the same grid in memory through `occupancy_grid()`.

Grid convention (as nav_msgs/OccupancyGrid): `grid[row, col]`, row 0 is the *lowest* y;
cell (row, col) covers x in [origin_x + col*res, origin_x + (col+1)*res) and likewise y.
The PGM image is stored top row first (highest y), as map_server expects.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Iterable

import numpy as np

from mobile_chemist.config import LabConfig, Rect, load_lab

DEFAULT_MAP_DIR = Path(__file__).resolve().parent.parent / "maps"
MAP_NAME = "lab"
FREE_PIXEL = 254
OCCUPIED_PIXEL = 0
OCCUPIED_THRESH = 0.65
FREE_THRESH = 0.25


def occupied_rects(lab: LabConfig) -> list[Rect]:
    """Everything solid inside the room: free-standing obstacles and station footprints."""
    return list(lab.obstacles) + [st.footprint for st in lab.stations.values()]


def wall_rects(lab: LabConfig) -> list[Rect]:
    """The four walls as rectangles just outside the inner room (corners included)."""
    w, h = lab.size
    t = lab.wall_thickness
    return [
        Rect("wall_south", (w / 2, -t / 2), (w + 2 * t, t)),
        Rect("wall_north", (w / 2, h + t / 2), (w + 2 * t, t)),
        Rect("wall_west", (-t / 2, h / 2), (t, h)),
        Rect("wall_east", (w + t / 2, h / 2), (t, h)),
    ]


def grid_geometry(lab: LabConfig) -> tuple[float, tuple[float, float], tuple[int, int]]:
    """Resolution, origin (x, y) of cell (0, 0)'s corner, and shape (rows, cols).

    The grid covers the room and its walls; the origin is on the resolution lattice so
    the room's inner corner (0, 0) falls on a cell boundary.
    """
    res = lab.map_resolution
    margin = math.ceil(lab.wall_thickness / res - 1e-9) * res
    cols = int(round((lab.size[0] + 2 * margin) / res))
    rows = int(round((lab.size[1] + 2 * margin) / res))
    return res, (-margin, -margin), (rows, cols)


def _fill_rect(grid: np.ndarray, rect: Rect, res: float, origin: tuple[float, float]) -> None:
    """Mark the cells whose centres lie inside the (possibly rotated) rectangle."""
    rows, cols = grid.shape
    xs = origin[0] + (np.arange(cols) + 0.5) * res
    ys = origin[1] + (np.arange(rows) + 0.5) * res
    dx = xs[None, :] - rect.center[0]
    dy = ys[:, None] - rect.center[1]
    c, s = math.cos(rect.yaw), math.sin(rect.yaw)
    u = c * dx + s * dy          # the cell centre in the rectangle's own axes
    v = -s * dx + c * dy
    eps = 1e-9                   # a centre exactly on an edge counts as inside
    grid |= (np.abs(u) <= rect.size[0] / 2 + eps) & (np.abs(v) <= rect.size[1] / 2 + eps)


def occupancy_grid(lab: LabConfig) -> tuple[np.ndarray, float, tuple[float, float]]:
    """Rasterise the lab: (grid[row, col] bool, True = occupied; resolution; origin xy).

    Cells outside the inner room (the walls) are occupied, so a planner never leaves it.
    """
    res, origin, shape = grid_geometry(lab)
    grid = np.zeros(shape, dtype=bool)
    rects: Iterable[Rect] = wall_rects(lab) + occupied_rects(lab)
    for rect in rects:
        _fill_rect(grid, rect, res, origin)
    # Anything beyond the walls' outer edge (rounding margin) is not free either.
    rows, cols = shape
    xs = origin[0] + (np.arange(cols) + 0.5) * res
    ys = origin[1] + (np.arange(rows) + 0.5) * res
    outside_x = (xs < 0) | (xs > lab.size[0])
    outside_y = (ys < 0) | (ys > lab.size[1])
    grid |= outside_x[None, :] | outside_y[:, None]
    return grid, res, origin


def world_to_cell(x: float, y: float, resolution: float,
                  origin: tuple[float, float]) -> tuple[int, int]:
    """(row, col) of the cell containing the map point (x, y); may lie outside the grid."""
    return (int(math.floor((y - origin[1]) / resolution)),
            int(math.floor((x - origin[0]) / resolution)))


def cell_to_world(row: int, col: int, resolution: float,
                  origin: tuple[float, float]) -> tuple[float, float]:
    """The map point (x, y) at the centre of cell (row, col)."""
    return (origin[0] + (col + 0.5) * resolution, origin[1] + (row + 0.5) * resolution)


def pgm_bytes(grid: np.ndarray) -> bytes:
    """A binary (P5) PGM of the grid, highest y first, occupied black, free near white."""
    image = np.where(grid[::-1], OCCUPIED_PIXEL, FREE_PIXEL).astype(np.uint8)
    rows, cols = image.shape
    return f"P5\n{cols} {rows}\n255\n".encode("ascii") + image.tobytes()


def map_yaml_text(image: str, resolution: float, origin: tuple[float, float]) -> str:
    """The map_server metadata (fixed key order and number format for byte-exact output)."""
    def num(v: float) -> str:
        return repr(round(float(v), 9))

    return (f"image: {image}\n"
            f"mode: trinary\n"
            f"resolution: {num(resolution)}\n"
            f"origin: [{num(origin[0])}, {num(origin[1])}, 0.0]\n"
            f"negate: 0\n"
            f"occupied_thresh: {OCCUPIED_THRESH}\n"
            f"free_thresh: {FREE_THRESH}\n")


def write_map(lab: LabConfig, output_dir: str | Path = DEFAULT_MAP_DIR,
              name: str = MAP_NAME) -> tuple[Path, Path]:
    """Write `<name>.pgm` and `<name>.yaml` into output_dir; returns their paths."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    grid, res, origin = occupancy_grid(lab)
    pgm = out / f"{name}.pgm"
    meta = out / f"{name}.yaml"
    pgm.write_bytes(pgm_bytes(grid))
    meta.write_text(map_yaml_text(pgm.name, res, origin))
    return pgm, meta


def read_pgm(path: str | Path) -> np.ndarray:
    """Read a binary PGM written by pgm_bytes() back into a uint8 image (top row first)."""
    data = Path(path).read_bytes()
    fields = data.split(maxsplit=4)
    if fields[0] != b"P5":
        raise ValueError(f"{path}: not a binary PGM")
    cols, rows, maxval = int(fields[1]), int(fields[2]), int(fields[3])
    if maxval != 255:
        raise ValueError(f"{path}: only 8-bit PGMs are supported")
    return np.frombuffer(fields[4][: rows * cols], dtype=np.uint8).reshape(rows, cols)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate maps/lab.pgm and maps/lab.yaml.")
    parser.add_argument("--lab", default=None, help="lab layout file (default config/lab.yaml)")
    parser.add_argument("--output-dir", default=str(DEFAULT_MAP_DIR))
    args = parser.parse_args(argv)
    for path in write_map(load_lab(args.lab), args.output_dir):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
