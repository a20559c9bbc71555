"""Paper labels with print on rendered vials: what real lab vials carry and renderings lack.

A detector taught that print is not a vial (negatives.render_printed_matter) must still
find a vial that wears a printed label. Neither renderer draws labels, so they are drawn
onto a rendered scene from its exact labels: an opaque paper rectangle across the front of
the glass, somewhere between a sixth and half-way down it, shaded like the cylinder it
wraps, with lines of small print, lightly blurred and noised like the rest of the frame.
The vial boxes do not change (a label is on the vial); the contents behind it are hidden,
so these frames serve the detector, never the phase segmenter.

Three styles on separate random streams: "train" (white, yellowed or coloured paper,
several fonts, coloured bands, barcodes) for training images, "check" (white paper, one
font) for bench/labelled_vials.py, and "unseen" (dark paper with light print in a font no
other style uses, though printed-matter frames do, taller and higher on the glass than any training label) for the same
bench. "check" is inside what training drew, so it tells whether the detector learnt
labelled vials of this kind; "unseen" whether that carries to labels it never saw. Neither
tells whether it would find a real label.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Sequence
from pathlib import Path

import cv2
import numpy as np

from mobile_chemist.vision.synthetic import VialTruth, write_yolo_frame

STYLES = ("train", "check", "unseen")
_STREAM = {"train": 10, "check": 9, "unseen": 11}
_FONTS = [cv2.FONT_HERSHEY_PLAIN, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX,
          cv2.FONT_HERSHEY_SCRIPT_SIMPLEX, cv2.FONT_HERSHEY_COMPLEX_SMALL]
_CHARS = list(string.ascii_letters + string.digits + "  .-/")


def add_paper_labels(image: np.ndarray, vials: Sequence[VialTruth], seed: int,
                     fraction: float = 1.0, style: str = "check") -> np.ndarray:
    """A copy of `image` (BGR uint8) with a label on each of `vials` with probability
    `fraction`; a pure function of its arguments."""
    if style not in STYLES:
        raise ValueError(f"label style must be one of {STYLES}, not {style!r}")
    train, unseen = style == "train", style == "unseen"
    rng = np.random.default_rng([_STREAM[style], int(seed)])
    img = image.copy()
    h_img, w_img = img.shape[:2]
    for v in vials:
        if rng.random() >= fraction:
            continue
        x1, _, x2, _ = v.box
        gh = v.glass_bottom - v.glass_top
        cx, half = (x1 + x2) / 2, (x2 - x1) / 2
        wrap = rng.uniform(0.6, 1.0)           # the part of the front the label covers
        # The same draws in every style (so "train" data stays as it was), other ranges.
        top = v.glass_top + gh * (rng.uniform(0.05, 0.2) if unseen else rng.uniform(0.15, 0.45))
        bottom = min(top + gh * (rng.uniform(0.55, 0.8) if unseen else rng.uniform(0.25, 0.5)),
                     v.glass_bottom - 0.05 * gh)
        a, b = int(round(cx - half * wrap)), int(round(cx + half * wrap))
        t, u = int(round(top)), int(round(bottom))
        a, b, t, u = max(a, 0), min(b, w_img), max(t, 0), min(u, h_img)
        if b - a < 3 or u - t < 3:
            continue
        paper = np.array([rng.uniform(200, 255)] * 3) * (1 + rng.normal(0, 0.04, 3))
        if train and rng.random() < 0.4:   # yellowed or coloured paper
            paper = np.clip(paper * rng.uniform(0.6, 1.0, 3), 0, 255)
        if unseen:                          # dark paper
            paper = paper * 0.25
        rel = np.clip((np.arange(a, b) + 0.5 - cx) / max(half, 1), -1, 1)
        shade = 0.75 + 0.25 * np.sqrt(1 - rel ** 2)
        patch = np.broadcast_to(paper[None, None] * shade[None, :, None], (u - t, b - a, 3))
        patch = np.clip(patch, 0, 255).astype(np.uint8).copy()
        ink = rng.uniform(0, 80, 3)
        ink = (255 - ink if unseen else ink).tolist()   # light print on the dark paper
        font = (int(rng.choice(_FONTS)) if train else
                cv2.FONT_HERSHEY_TRIPLEX if unseen else cv2.FONT_HERSHEY_SIMPLEX)
        scale = max((u - t) / rng.uniform(60, 140), 0.15)
        y = 2
        if train and rng.random() < 0.3:   # a coloured band across the top
            band = int((u - t) * rng.uniform(0.1, 0.3))
            patch[:band] = (rng.uniform(0, 255, 3) * shade[:, None]).astype(np.uint8)
            y += band
        if train and rng.random() < 0.25:  # a barcode along the bottom
            x = 2
            while x < b - a - 2:
                bar = int(rng.integers(1, 3))
                if rng.random() < 0.5:
                    patch[-max((u - t) // 3, 2):, x:x + bar] = ink
                x += bar + int(rng.integers(1, 3))
        while True:
            (_, th), _ = cv2.getTextSize("Ag", font, scale, 1)
            y += th + 2
            if y >= u - t - 1:
                break
            text = "".join(rng.choice(_CHARS, int(rng.integers(3, 14))))
            cv2.putText(patch, text, (2, y), font, scale, ink, 1, cv2.LINE_AA)
        patch = cv2.GaussianBlur(patch, (0, 0), 0.6).astype(np.float32)
        patch += rng.normal(0, 3, patch.shape)
        img[t:u, a:b] = np.clip(patch, 0, 255).astype(np.uint8)
    return img


def write_labelled_images(root: Path, seeds: Iterable[int], renderer: str, workers: int = 1,
                          fraction: float = 0.7) -> None:
    """The scenes of `seeds` with "train" labels on `fraction` of their vials, as YOLO
    training images under `root` ("l" + the data set prefix of the renderer's scenes)."""
    from mobile_chemist.vision.scenes import iter_scenes

    prefix = {"2d": "ls", "mujoco": "lm"}[renderer]
    for scene in iter_scenes(seeds, renderer, workers=workers):
        # The renderers share seeds: their labels take different streams.
        image = add_paper_labels(scene.image, scene.vials,
                                 scene.seed * 2 + (renderer == "mujoco"), fraction, "train")
        write_yolo_frame(root, "train", f"{prefix}{scene.seed:09d}", image, scene.vials)
