"""Frames without vials for the detector: everything a camera sees that is not a vial.

The synthetic scenes always hold vials in front of a lab backdrop, so a detector trained
on them alone has never been told that a busy, colourful frame can show none, and it finds
"vials" in real photographs (bench/vision.py counts them in photographs without vials).
These frames are a dead-leaves image (Lee, Mumford and Huang 2001: occluding shapes whose
sizes follow a power law, which gives natural images' scale statistics) of flat, graded,
striped and noisy shapes and strokes, some of them tall bars and round-topped columns,
through the same camera effects as the scenes. Labels: none.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from mobile_chemist.vision.synthetic import _colour, camera_effects

#: Seeds of these frames are their own stream (a second key), apart from the scenes'.
STREAM = 7


def _texture(rng: np.random.Generator, h: int, w: int, colour: np.ndarray) -> np.ndarray:
    """An h x w x 3 float32 fill: flat, a gradient, stripes or noise around `colour`."""
    kind = rng.integers(4)
    other = np.clip(colour + rng.normal(0, 60, 3), 0, 255).astype(np.float32)
    if kind == 0:
        return np.broadcast_to(colour, (h, w, 3)).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    u = xx * np.cos(angle) + yy * np.sin(angle)
    if kind == 1:
        t = (u - u.min()) / max(float(np.ptp(u)), 1.0)
    elif kind == 2:
        t = (np.sin(u * 2 * np.pi / rng.uniform(2, 30)) > 0).astype(np.float32)
    else:
        small = rng.random((max(h // 4, 1), max(w // 4, 1))).astype(np.float32)
        t = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    return colour * (1 - t[..., None]) + other * t[..., None]


def render_vial_free(seed: int, width: int = 640, height: int = 480) -> np.ndarray:
    """A width x height BGR uint8 frame that shows no vial (a pure function of `seed`)."""
    rng = np.random.default_rng([STREAM, int(seed)])
    img = _texture(rng, height, width, _colour(rng))
    r_min, r_max = 3.0, 0.6 * max(width, height)
    for _ in range(int(rng.integers(40, 400))):
        r = r_min * (r_max / r_min) ** rng.random() ** 1.5   # many small, few large
        cx, cy = rng.uniform(-0.1, 1.1) * width, rng.uniform(-0.1, 1.1) * height
        kind = rng.integers(5)
        if kind == 4:   # a vial-sized column: tall bar, rounded top or not
            hw, hh = r * rng.uniform(0.15, 0.4), r
        else:
            hw, hh = r * rng.uniform(0.3, 1.0), r * rng.uniform(0.3, 1.0)
        x0, y0 = int(max(cx - hw, 0)), int(max(cy - hh, 0))
        x1, y1 = int(min(cx + hw, width)), int(min(cy + hh, height))
        if x1 - x0 < 2 or y1 - y0 < 2:
            continue
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        centre = (int(cx - x0), int(cy - y0))
        if kind == 0:
            cv2.ellipse(mask, centre, (int(hw), int(hh)), rng.uniform(0, 180), 0, 360, 255, -1)
        elif kind in (1, 4):
            mask[:] = 255
            if kind == 4 and rng.random() < 0.5:
                mask[: int(hw)] = 0
                cv2.ellipse(mask, (centre[0], int(hw)), (int(hw), int(hw)), 0, 180, 360, 255, -1)
        elif kind == 2:
            pts = rng.uniform([-hw, -hh], [hw, hh], (int(rng.integers(3, 7)), 2)) + centre
            cv2.fillPoly(mask, [pts.astype(np.int32)], 255)
        else:   # strokes: edges, wires, lettering
            for _ in range(int(rng.integers(1, 6))):
                p, q = rng.uniform(0, [x1 - x0, y1 - y0], (2, 2)).astype(int)
                cv2.line(mask, tuple(map(int, p)), tuple(map(int, q)), 255,
                         int(rng.integers(1, 5)))
        fill = _texture(rng, y1 - y0, x1 - x0, _colour(rng))
        if rng.random() < 0.3:   # shaded like a lit solid
            shade = np.linspace(rng.uniform(0.5, 1.0), rng.uniform(0.8, 1.2), x1 - x0)
            fill = fill * shade[None, :, None].astype(np.float32)
        a = (mask > 0)[..., None]
        img[y0:y1, x0:x1] = np.where(a, fill, img[y0:y1, x0:x1])
    return camera_effects(img.astype(np.float32), rng)


def write_vial_free_images(root: Path, seeds: Iterable[int]) -> None:
    """Frames of `seeds` as YOLO training images with empty label files under `root`."""
    root = Path(root)
    (root / "images" / "train").mkdir(parents=True, exist_ok=True)
    (root / "labels" / "train").mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        name = f"n{int(seed):09d}"
        cv2.imwrite(str(root / "images" / "train" / f"{name}.png"), render_vial_free(seed))
        (root / "labels" / "train" / f"{name}.txt").write_text("")
