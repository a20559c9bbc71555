"""Vial crops for the phase segmenter: the same geometry at training and at inference."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from mobile_chemist.vision.classes import Row

#: Segmenter input: rows x columns of a vial crop (a vial is 2.4-3.3 times taller than wide).
CROP_H = 128
CROP_W = 32
#: The crop reaches this fraction of the box beyond each end, so that a detector box that
#: is a little short still shows the glass bottom and the cap.
PAD_Y = 0.08
PAD_X = 0.10


def crop_window(box: Sequence[float]) -> tuple[float, float, float, float]:
    """Image window (x0, y0, x1, y1) that a vial box's crop covers."""
    x1, y1, x2, y2 = (float(v) for v in box)
    w, h = x2 - x1, y2 - y1
    return x1 - PAD_X * w, y1 - PAD_Y * h, x2 + PAD_X * w, y2 + PAD_Y * h


def crop_vial(image: np.ndarray, box: Sequence[float]) -> np.ndarray:
    """CROP_H x CROP_W x 3 uint8 crop of `box`, padded; parts outside the image are black."""
    x0, y0, x1, y1 = crop_window(box)
    # An affine warp samples the window directly (sub-pixel, border filled) in one call.
    sx, sy = CROP_W / max(x1 - x0, 1e-3), CROP_H / max(y1 - y0, 1e-3)
    m = np.array([[sx, 0.0, -x0 * sx], [0.0, sy, -y0 * sy]], dtype=np.float64)
    interp = cv2.INTER_AREA if sx < 1 and sy < 1 else cv2.INTER_LINEAR
    return cv2.warpAffine(image, m, (CROP_W, CROP_H), flags=interp,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


def row_centres(box: Sequence[float]) -> np.ndarray:
    """Image y of the centre of each crop row."""
    _, y0, _, y1 = crop_window(box)
    return y0 + (np.arange(CROP_H) + 0.5) * (y1 - y0) / CROP_H


def row_labels(segments: Sequence[tuple[float, float, int]], box: Sequence[float]) -> np.ndarray:
    """Per-row labels of a crop from a vial's (top, bottom, Row) segments in image rows."""
    ys = row_centres(box)
    labels = np.full(CROP_H, int(Row.OUTSIDE), dtype=np.int64)
    for top, bottom, row in segments:
        labels[(ys >= top) & (ys < bottom)] = int(row)
    return labels
