"""Paper labels with print on rendered vials: what real lab vials carry and renderings lack.

A detector taught that print is not a vial (negatives.render_printed_matter) must still
find a vial that wears a printed label. Neither renderer draws labels, so they are drawn
onto a rendered scene from its exact labels: an opaque paper rectangle across the front of
the glass, somewhere between a sixth and half-way down it, shaded like the cylinder it
wraps, with lines of small print, lightly blurred and noised like the rest of the frame.
The vial boxes do not change (a label is on the vial); the contents behind it are hidden,
so these frames serve the detector, never the phase segmenter.

Four styles on separate random streams. For training images: "train" (white, yellowed or
coloured paper, several fonts, coloured bands, barcodes) and "varied" (wider ranges, so
that a detector learns "a label on a vial" rather than the labels it was shown: mid-tone
to white and tinted papers, translucent film, labels off-centre and anywhere from the
shoulder to the foot, printed or handwritten text, barcodes, square codes, frames; the
print is always darker than the paper). "camera" draws "varied" labels on a stream of its own
and is painted before the camera effects (the renderers' `labels` argument), so that its
labels take the frame's gain, colour cast, vignetting, blur, noise and JPEG as the glass
does; the others are painted onto the finished frame, crisper and, in a dark frame, brighter
than a camera would show them. "tall" is "camera" with labels 40-85 % of the glass high
instead of 12-50 % (a 2 mL vial's writing patch covers most of its body), on a stream of its
own. For bench/labelled_vials.py: "check" (white paper,
one font) and "unseen" (dark paper with light print in a font no other label style uses,
though printed-matter frames do, taller and higher on the glass than any training label
but "tall"). "check" is inside what training drew, so it tells whether the detector learnt
labelled vials of this kind; "unseen" whether that carries to labels it never saw (for a
detector trained on "tall" labels only its dark paper, light print and font are new, not its
height). Neither tells whether it would find a real label.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Sequence
from pathlib import Path

import cv2
import numpy as np

from mobile_chemist.vision.synthetic import VialTruth, write_yolo_frame

STYLES = ("train", "varied", "camera", "tall", "check", "unseen")
#: The styles training data draws; the others are tests (bench/labelled_vials.py).
TRAINING_STYLES = ("train", "varied", "camera", "tall")
#: The training styles the renderers paint before their camera effects.
UNDER_CAMERA = ("camera", "tall")
_STREAM = {"train": 10, "check": 9, "unseen": 11, "varied": 12, "camera": 13, "tall": 14}
#: A "varied" label's height, as a fraction of the glass: (lowest, highest) by style.
_VARIED_HEIGHTS = {"varied": (0.12, 0.5), "camera": (0.12, 0.5), "tall": (0.4, 0.85)}
_FONTS = [cv2.FONT_HERSHEY_PLAIN, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX,
          cv2.FONT_HERSHEY_SCRIPT_SIMPLEX, cv2.FONT_HERSHEY_COMPLEX_SMALL]
_CHARS = list(string.ascii_letters + string.digits + "  .-/")


def add_paper_labels(image: np.ndarray, vials: Sequence[VialTruth], seed: int,
                     fraction: float = 1.0, style: str = "check") -> np.ndarray:
    """A copy of `image` (BGR uint8) with a label on each of `vials` with probability
    `fraction`; a pure function of its arguments. `image` may also be the float32 frame a
    renderer passes before its camera effects (the result keeps its dtype)."""
    if style not in STYLES:
        raise ValueError(f"label style must be one of {STYLES}, not {style!r}")
    train, unseen = style == "train", style == "unseen"
    rng = np.random.default_rng([_STREAM[style], int(seed)])
    img = image.copy()
    for v in vials:
        if rng.random() >= fraction:
            continue
        if style in _VARIED_HEIGHTS:
            _draw_varied_label(img, v, rng, _VARIED_HEIGHTS[style])
            continue
        x1, _, x2, _ = v.box
        gh = v.glass_bottom - v.glass_top
        cx, half = (x1 + x2) / 2, (x2 - x1) / 2
        wrap = rng.uniform(0.6, 1.0)           # the part of the front the label covers
        # The same draws in every style (so "train" data stays as it was), other ranges.
        top = v.glass_top + gh * (rng.uniform(0.05, 0.2) if unseen else rng.uniform(0.15, 0.45))
        bottom = min(top + gh * (rng.uniform(0.55, 0.8) if unseen else rng.uniform(0.25, 0.5)),
                     v.glass_bottom - 0.05 * gh)
        rect = _label_rect(img, cx - half * wrap, cx + half * wrap, top, bottom)
        if rect is None:
            continue
        a, b, t, u = rect
        paper = np.array([rng.uniform(200, 255)] * 3) * (1 + rng.normal(0, 0.04, 3))
        if train and rng.random() < 0.4:   # yellowed or coloured paper
            paper = np.clip(paper * rng.uniform(0.6, 1.0, 3), 0, 255)
        if unseen:                          # dark paper
            paper = paper * 0.25
        patch, shade = _paper(paper, a, b, u - t, cx, half)
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
            _barcode(patch, slice(-max((u - t) // 3, 2), None), ink, rng)
        _print_lines(patch, font, scale, ink, rng, y)
        img[t:u, a:b] = np.clip(_blur_and_noise(patch, rng), 0, 255).astype(np.uint8)
    return img


def _label_rect(img: np.ndarray, left: float, right: float, top: float,
                bottom: float) -> tuple[int, int, int, int] | None:
    """A label's pixel columns a..b-1 and rows t..u-1 inside `img`, or None when under 3 px."""
    h_img, w_img = img.shape[:2]
    a, b = max(int(round(left)), 0), min(int(round(right)), w_img)
    t, u = max(int(round(top)), 0), min(int(round(bottom)), h_img)
    return None if b - a < 3 or u - t < 3 else (a, b, t, u)


def _paper(paper: np.ndarray, a: int, b: int, rows: int, cx: float,
           half: float) -> tuple[np.ndarray, np.ndarray]:
    """A label's paper over columns a..b-1 and `rows` rows, shaded like the cylinder of
    centre `cx` and half-width `half` it wraps; and the shade of each column."""
    rel = np.clip((np.arange(a, b) + 0.5 - cx) / max(half, 1), -1, 1)
    shade = 0.75 + 0.25 * np.sqrt(1 - rel ** 2)
    patch = np.clip(paper[None, None] * shade[None, :, None], 0, 255)
    return np.broadcast_to(patch, (rows, b - a, 3)).astype(np.uint8).copy(), shade


def _barcode(patch: np.ndarray, rows: slice, ink: list, rng: np.random.Generator) -> None:
    """Bars of 1-2 px across the patch's width, over `rows`."""
    x = 2
    while x < patch.shape[1] - 2:
        bar = int(rng.integers(1, 3))
        if rng.random() < 0.5:
            patch[rows, x:x + bar] = ink
        x += bar + int(rng.integers(1, 3))


def _print_lines(patch: np.ndarray, font: int, scale: float, ink: list,
                 rng: np.random.Generator, y: int = 2) -> None:
    """Lines of random print from row `y` down, as many as the patch holds."""
    while True:
        (_, th), _ = cv2.getTextSize("Ag", font, scale, 1)
        y += th + 2
        if y >= patch.shape[0] - 1:
            break
        text = "".join(rng.choice(_CHARS, int(rng.integers(3, 14))))
        cv2.putText(patch, text, (2, y), font, scale, ink, 1, cv2.LINE_AA)


def _blur_and_noise(patch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The patch (float32) lightly blurred and noised like the rest of the frame."""
    out = cv2.GaussianBlur(patch, (0, 0), 0.6).astype(np.float32)
    out += rng.normal(0, 3, out.shape)   # in place: float32, as the training data were made
    return out


def _draw_varied_label(img: np.ndarray, v: VialTruth, rng: np.random.Generator,
                       heights: tuple[float, float]) -> None:
    """One "varied" label on vial `v` of `img`, in place, `heights` (fractions of the glass)
    high; never outside the vial's box."""
    x1, _, x2, _ = v.box
    gh = v.glass_bottom - v.glass_top
    cx, half = (x1 + x2) / 2, (x2 - x1) / 2
    mid = cx + half * rng.uniform(-0.25, 0.25)   # a turned vial shows its label off centre
    wrap = rng.uniform(0.4, 1.0)
    height = rng.uniform(*heights)
    top = v.glass_top + gh * rng.uniform(0.1, 0.95 - height)
    bottom = min(top + gh * height, v.glass_bottom - 0.05 * gh)
    rect = _label_rect(img, max(mid - half * wrap, x1), min(mid + half * wrap, x2), top, bottom)
    if rect is None:
        return
    a, b, t, u = rect
    # Mid-tone to white, sometimes tinted; never the dark paper "unseen" keeps back.
    paper = np.full(3, rng.uniform(120, 255))
    if rng.random() < 0.5:
        paper = paper * rng.uniform(0.65, 1.0, 3)
    patch, _ = _paper(paper, a, b, u - t, cx, half)
    ink = (paper * rng.uniform(0.0, 0.45, 3)).tolist()   # always darker than the paper
    ph, pw = patch.shape[:2]
    if rng.random() < 0.2:   # a printed frame inside the label's edge
        cv2.rectangle(patch, (1, 1), (pw - 2, ph - 2), ink, 1)
    content = rng.choice(["print", "handwriting", "barcode", "code", "blank"],
                         p=[0.4, 0.25, 0.15, 0.1, 0.1])
    if content == "print":
        font = int(rng.choice(_FONTS))
        _print_lines(patch, font, max(ph / rng.uniform(50, 160), 0.15), ink, rng)
    elif content == "handwriting":   # pen strokes: a wobbling line per written line
        lines = int(rng.integers(1, 4))
        for k in range(lines):
            y0 = ph * (k + 0.5) / lines
            xs = np.arange(2, max(pw - 2, 3), max(pw / rng.uniform(6, 20), 1.0))
            ys = y0 + rng.normal(0, ph / (3 * lines) * 0.5, len(xs))
            pts = np.stack([xs, ys], 1).round().astype(np.int32)
            cv2.polylines(patch, [pts], False, ink, int(rng.integers(1, 3)), cv2.LINE_AA)
    elif content == "barcode":
        _barcode(patch, slice(int(ph * rng.uniform(0.1, 0.5)), ph - 2), ink, rng)
    elif content == "code":          # a square code: a grid of dark cells
        side = int(min(ph, pw) * rng.uniform(0.5, 0.9))
        n = int(rng.integers(5, 12))
        if side >= n:
            cells = rng.random((n, n)) < 0.5
            grid = cv2.resize(cells.astype(np.uint8), (side, side),
                              interpolation=cv2.INTER_NEAREST).astype(bool)
            oy, ox = (ph - side) // 2, int(rng.integers(0, pw - side + 1))
            patch[oy:oy + side, ox:ox + side][grid] = ink
    patch = _blur_and_noise(patch, rng)
    if rng.random() < 0.3:           # printed on clear film: the glass shows through
        alpha = rng.uniform(0.35, 0.8)
        patch = alpha * patch + (1 - alpha) * img[t:u, a:b].astype(np.float32)
    img[t:u, a:b] = np.clip(patch, 0, 255).astype(np.uint8)


def label_seed(scene_seed: int, renderer: str) -> int:
    """The labels' seed for a scene: the renderers share scene seeds, their labels do not."""
    return scene_seed * 2 + (renderer == "mujoco")


def write_labelled_images(root: Path, seeds: Iterable[int], renderer: str, workers: int = 1,
                          fraction: float = 0.7, style: str = "train") -> None:
    """The scenes of `seeds` with labels of a training `style` on `fraction` of their
    vials, as YOLO training images under `root` ("l" for "train", "v" for "varied", "c" for
    "camera", "t" for "tall", then the data set prefix of the renderer's scenes)."""
    from mobile_chemist.vision.scenes import iter_scenes

    if style not in TRAINING_STYLES:
        raise ValueError(f"training labels must be one of {TRAINING_STYLES}, not {style!r}")
    prefix = ({"train": "l", "varied": "v", "camera": "c", "tall": "t"}[style]
              + {"2d": "s", "mujoco": "m"}[renderer])
    under_camera = style in UNDER_CAMERA   # painted by the renderer, before its camera effects
    for scene in iter_scenes(seeds, renderer, workers=workers,
                             labels=(style, fraction) if under_camera else None):
        image = scene.image if under_camera else add_paper_labels(
            scene.image, scene.vials, label_seed(scene.seed, renderer), fraction, style)
        write_yolo_frame(root, "train", f"{prefix}{scene.seed:09d}", image, scene.vials)
