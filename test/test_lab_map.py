"""The occupancy map: committed files current, geometry where lab.yaml puts it."""

import math

import numpy as np
import pytest
import yaml

from mobile_chemist.lab_map import (DEFAULT_MAP_DIR, cell_to_world, occupancy_grid, read_pgm,
                                    world_to_cell, write_map)


def test_committed_map_equals_fresh_generation(lab, tmp_path):
    pgm, meta = write_map(lab, tmp_path)
    assert (DEFAULT_MAP_DIR / "lab.pgm").read_bytes() == pgm.read_bytes(), \
        "maps/lab.pgm is stale: run python -m mobile_chemist.lab_map"
    assert (DEFAULT_MAP_DIR / "lab.yaml").read_bytes() == meta.read_bytes()


def test_map_yaml_is_map_server_format(lab):
    meta = yaml.safe_load((DEFAULT_MAP_DIR / "lab.yaml").read_text())
    assert meta["image"] == "lab.pgm" and (DEFAULT_MAP_DIR / meta["image"]).exists()
    assert meta["mode"] == "trinary" and meta["negate"] == 0
    assert meta["resolution"] == pytest.approx(lab.map_resolution)
    assert len(meta["origin"]) == 3 and meta["origin"][2] == 0.0
    assert 0 < meta["free_thresh"] < meta["occupied_thresh"] < 1


def test_pgm_matches_grid_with_the_top_row_north(lab):
    grid, res, origin = occupancy_grid(lab)
    image = read_pgm(DEFAULT_MAP_DIR / "lab.pgm")
    assert image.shape == grid.shape
    assert set(np.unique(image)) == {0, 254}
    assert np.array_equal(image[::-1] == 0, grid)
    # The sonicator stands against the north wall: near the image's top, the grid's last rows.
    sx, sy = lab.station("sonicator").footprint.center
    row, col = world_to_cell(sx, sy, res, origin)
    assert grid[row, col] and image[grid.shape[0] - 1 - row, col] == 0
    assert row > grid.shape[0] / 2


def test_walls_obstacles_and_stations_occupied_aisles_free(lab):
    grid, res, origin = occupancy_grid(lab)
    w, h = lab.size
    # The grid spans the walls; its border is occupied all round.
    assert grid.shape == (round((h + 2 * -origin[1]) / res), round((w + 2 * -origin[0]) / res))
    assert grid[0].all() and grid[-1].all() and grid[:, 0].all() and grid[:, -1].all()
    # Inside the room, one cell from each wall is free unless furniture stands there.
    for x, y in ((6.0, 0.05 + 0.9), (11.95, 3.0), (0.05, 2.0), (10.0, 7.95)):
        assert not grid[world_to_cell(x, y, res, origin)], (x, y)
    # A wall cell.
    assert grid[world_to_cell(6.0, -0.05, res, origin)]
    rects = list(lab.obstacles) + [st.footprint for st in lab.stations.values()]
    for rect in rects:
        cx, cy = rect.center
        assert grid[world_to_cell(cx, cy, res, origin)], rect.name
        # Just outside each side of the rectangle (unless that is a wall or another bench).
        for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            x = cx + dx * (rect.size[0] / 2 + 1.5 * res)
            y = cy + dy * (rect.size[1] / 2 + 1.5 * res)
            if 0 < x < w and 0 < y < h and not any(
                    abs(x - o.center[0]) <= o.size[0] / 2 and abs(y - o.center[1]) <= o.size[1] / 2
                    for o in rects):
                assert not grid[world_to_cell(x, y, res, origin)], (rect.name, dx, dy)
        # The occupied area matches the rectangle's area (within one cell of perimeter).
    island = lab.obstacles[0]
    r0, c0 = world_to_cell(island.center[0] - island.size[0] / 2 + res / 2,
                           island.center[1] - island.size[1] / 2 + res / 2, res, origin)
    rows, cols = round(island.size[1] / res), round(island.size[0] / res)
    assert grid[r0:r0 + rows, c0:c0 + cols].all()
    assert not grid[r0 - 1, c0:c0 + cols].any() and not grid[r0 + rows, c0:c0 + cols].any()
    # Every station's approach point is free.
    for st in lab.stations.values():
        assert not grid[world_to_cell(st.approach.x, st.approach.y, res, origin)], st.name


def test_world_cell_round_trip(lab):
    _, res, origin = occupancy_grid(lab)
    assert world_to_cell(origin[0], origin[1], res, origin) == (0, 0)
    assert world_to_cell(origin[0] - 1e-6, origin[1], res, origin) == (0, -1)
    for row, col in ((0, 0), (17, 200), (100, 3)):
        x, y = cell_to_world(row, col, res, origin)
        assert world_to_cell(x, y, res, origin) == (row, col)
    x, y = cell_to_world(*world_to_cell(3.21, 4.56, res, origin), res, origin)
    assert math.hypot(x - 3.21, y - 4.56) <= res / math.sqrt(2) + 1e-12
