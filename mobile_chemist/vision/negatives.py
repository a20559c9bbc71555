"""Frames without vials for the detector: everything a camera sees that is not a vial.

The synthetic scenes always hold vials in front of a lab backdrop, so a detector trained
on them alone has never been told that a busy, colourful frame can show none, and it finds
"vials" in real photographs (bench/vision.py counts them in photographs without vials).
These frames are a dead-leaves image (Lee, Mumford and Huang 2001: occluding shapes whose
sizes follow a power law, which gives natural images' scale statistics) of flat, graded,
striped and noisy shapes and strokes, some of them tall bars and round-topped columns,
through the same camera effects as the scenes. Labels: none.

A second kind (`render_printed_matter`) is what such frames did not cure: a detector
trained on renderings takes lines of print and rows of coins for rows of small vials
(models/HISTORY.md, stage 8). Pages of text in several fonts, tilted and in perspective,
clustered coins and grids of labelled keys, on a plain or a dead-leaves ground.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Iterable
from pathlib import Path

import cv2
import numpy as np

from mobile_chemist.vision.synthetic import _colour, camera_effects, write_yolo_frame

#: Seeds of these frames are their own streams (a second key), apart from the scenes'.
STREAM = 7
PRINTED_STREAM = 8

_FONTS = [cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_PLAIN, cv2.FONT_HERSHEY_DUPLEX,
          cv2.FONT_HERSHEY_COMPLEX, cv2.FONT_HERSHEY_TRIPLEX, cv2.FONT_HERSHEY_COMPLEX_SMALL,
          cv2.FONT_HERSHEY_SCRIPT_SIMPLEX, cv2.FONT_ITALIC | cv2.FONT_HERSHEY_SIMPLEX]
_CHARS = list(string.ascii_letters + string.digits + "     .,;:-()%/")


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


def _random_text(rng: np.random.Generator, n: int) -> str:
    return "".join(rng.choice(_CHARS, n))


def _text_sheet(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """An h x w uint8 sheet: paper (or, one in four, a dark screen) with columns of text."""
    paper = _colour(rng, sat=(0.0, 0.25), val=(0.6, 1.0))
    ink = _colour(rng, sat=(0.0, 0.8), val=(0.0, 0.45))
    if rng.random() < 0.25:
        paper, ink = ink, paper
    sheet = np.empty((h, w, 3), np.uint8)
    sheet[:] = paper.astype(np.uint8)
    font = int(rng.choice(_FONTS))
    scale = rng.uniform(0.3, 1.6) ** 1.5 * 1.6      # letters from a few pixels to ~40
    thick = int(rng.integers(1, 3))
    (_, th), _ = cv2.getTextSize("Ag", font, scale, thick)
    lead = th * rng.uniform(1.3, 2.2)
    cols = int(rng.integers(1, 4))
    margin = int(rng.uniform(0.02, 0.1) * w)
    col_w = (w - 2 * margin) // cols
    for c in range(cols):
        y = margin + th
        while y < h - margin:
            if rng.random() < 0.08:   # a paragraph break
                y += lead
                continue
            cv2.putText(sheet, _random_text(rng, int(rng.integers(5, 80))),
                        (margin + c * col_w, int(y)), font, scale, ink.tolist(), thick,
                        cv2.LINE_AA)
            y += lead
        if c + 1 < cols:   # the gutter: paper over the lines that ran on
            x = margin + (c + 1) * col_w - int(0.03 * col_w)
            sheet[:, x:margin + (c + 1) * col_w] = paper.astype(np.uint8)
    return sheet


def _paste_sheet(rng: np.random.Generator, img: np.ndarray, sheet: np.ndarray) -> None:
    """`sheet` onto `img`, tilted and in perspective around a random centre."""
    height, width = img.shape[:2]
    sh, sw = sheet.shape[:2]
    src = np.float32([[0, 0], [sw, 0], [sw, sh], [0, sh]])
    cx, cy = rng.uniform(0.1, 0.9) * width, rng.uniform(0.1, 0.9) * height
    ang = rng.normal(0, 0.15)
    rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    dst = (src - [sw / 2, sh / 2]) @ rot.T + [cx, cy]
    dst = (dst + rng.normal(0, 0.04 * min(sw, sh), dst.shape)).astype(np.float32)
    m = cv2.getPerspectiveTransform(src, dst)
    warped = cv2.warpPerspective(sheet, m, (width, height))
    mask = cv2.warpPerspective(np.full((sh, sw), 255, np.uint8), m, (width, height))
    img[mask > 0] = warped[mask > 0]


def _coins(rng: np.random.Generator, img: np.ndarray) -> None:
    """Coins: discs lit from one side, with a rim and a relief, mostly in one cluster."""
    h, w = img.shape[:2]
    n = int(rng.integers(3, 30))
    r0 = rng.uniform(12, 70)
    cx0, cy0 = rng.uniform(0, w), rng.uniform(0, h)
    spread = rng.uniform(0.5, 3.0)
    for _ in range(n):
        r = r0 * rng.uniform(0.7, 1.3)
        cx = cx0 + rng.normal(0, spread * r * 2) if rng.random() < 0.6 else rng.uniform(0, w)
        cy = cy0 + rng.normal(0, spread * r * 2) if rng.random() < 0.6 else rng.uniform(0, h)
        metal = _colour(rng, sat=(0.0, 0.6), val=(0.3, 0.95))
        x0, y0 = int(max(cx - r - 2, 0)), int(max(cy - r - 2, 0))
        x1, y1 = int(min(cx + r + 2, w)), int(min(cy + r + 2, h))
        if x1 - x0 < 3 or y1 - y0 < 3:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        d = np.hypot(xx - cx, (yy - cy) / rng.uniform(0.7, 1.0))   # seen at a slant
        disc = d <= r
        light = rng.uniform(0, 2 * np.pi)
        shade = 0.75 + 0.35 * (((xx - cx) * np.cos(light) + (yy - cy) * np.sin(light)) / r)
        relief = cv2.GaussianBlur(rng.normal(0, 1, d.shape).astype(np.float32), (0, 0),
                                  rng.uniform(1, 3))
        val = metal[None, None] * (shade + 0.25 * relief)[..., None]
        rim = disc & (d > r * rng.uniform(0.82, 0.92))
        val[rim] *= rng.uniform(0.6, 1.3)
        img[y0:y1, x0:x1][disc] = val[disc]


def _keys(rng: np.random.Generator, img: np.ndarray) -> None:
    """A grid of labelled keys or buttons (keyboards, keypads, instrument panels)."""
    h, w = img.shape[:2]
    rows, cols = int(rng.integers(2, 7)), int(rng.integers(3, 16))
    kw, kh = rng.uniform(15, 60), rng.uniform(15, 60)
    gap = rng.uniform(2, 12)
    x0, y0 = rng.uniform(-0.2, 0.8) * w, rng.uniform(-0.2, 0.8) * h
    key = _colour(rng, sat=(0.0, 0.5), val=(0.1, 0.95))
    ink = np.clip(255 - key + rng.normal(0, 30, 3), 0, 255)
    font = int(rng.choice(_FONTS))
    for i in range(rows):
        for j in range(cols):
            a = int(x0 + j * (kw + gap) + i * rng.uniform(0, 0.3) * kw)   # staggered rows
            b = int(y0 + i * (kh + gap))
            c, d = int(a + kw), int(b + kh)
            if c <= 0 or d <= 0 or a >= w or b >= h:
                continue
            col = key * rng.uniform(0.9, 1.1)
            cv2.rectangle(img, (a, b), (c, d), col.tolist(), -1, cv2.LINE_AA)
            cv2.rectangle(img, (a, b), (c, d), (col * 0.6).tolist(), 1, cv2.LINE_AA)
            cv2.putText(img, _random_text(rng, int(rng.integers(1, 3))).strip() or "x",
                        (a + 3, int(b + kh * 0.7)), font, kh / 50, ink.tolist(), 1, cv2.LINE_AA)


def render_printed_matter(seed: int, width: int = 640, height: int = 480) -> np.ndarray:
    """A width x height BGR uint8 frame of print, coins and keys with no vial (a pure
    function of `seed`)."""
    rng = np.random.default_rng([PRINTED_STREAM, int(seed)])
    if rng.random() < 0.4:   # on a cluttered ground, as in a photograph
        img = cv2.resize(render_vial_free(int(rng.integers(10**9))), (width, height))
    else:
        img = np.clip(_texture(rng, height, width, _colour(rng)), 0, 255).astype(np.uint8)
    img = np.ascontiguousarray(img)
    for _ in range(int(rng.integers(1, 4))):
        kind = rng.choice(3, p=[0.55, 0.25, 0.2])
        if kind == 0:
            sw = int(rng.uniform(0.3, 1.2) * width)
            sh = int(rng.uniform(0.3, 1.2) * height)
            _paste_sheet(rng, img, _text_sheet(rng, sh, sw))
        elif kind == 1:
            _coins(rng, img)
        else:
            _keys(rng, img)
    return camera_effects(img.astype(np.float32), rng)


def _write_frames(root: Path, seeds: Iterable[int], render: Callable[[int], np.ndarray],
                  prefix: str) -> None:
    for seed in seeds:
        write_yolo_frame(root, "train", f"{prefix}{int(seed):09d}", render(seed), [])


def write_vial_free_images(root: Path, seeds: Iterable[int]) -> None:
    """Frames of `seeds` as YOLO training images with empty label files under `root`."""
    _write_frames(root, seeds, render_vial_free, "n")


def write_printed_images(root: Path, seeds: Iterable[int]) -> None:
    """`render_printed_matter` frames of `seeds` as YOLO training images, empty labels."""
    _write_frames(root, seeds, render_printed_matter, "p")
