"""Image changes past the camera effects the models were trained on.

Both generators degrade every frame the same way (`synthetic.camera_effects`): gain
0.65-1.3 with an offset of up to 25 levels, a colour cast of about 6 %, blur sigma up to
1.1 px, sensor noise sigma up to 6, JPEG quality 45-95. A real camera can go further: a
moving arm or base smears the frame, a dim lab at night means low gain or high noise, a
compressed image topic drops quality, a lamp tints the white balance. `corrupt` applies
one such change at a given severity to a rendered frame (already degraded by the
generator), so that `bench/camera_shift.py` can measure what each costs the pipeline.
`degrade` draws from some of them (`TRAINED`) for the segmenter's degraded crops
(`segmenter.make_crops`); the others stay out of every training set, so that the bench
also measures kinds of change no model has seen.

None of them moves the image content, so a scene's labels stay exact.
"""

from __future__ import annotations

import cv2
import numpy as np

#: Each change and its two severities (mild, strong), both outside the generators' range.
CORRUPTIONS: dict[str, tuple[float, float]] = {
    "blur": (1.8, 2.8),        # Gaussian sigma, px (training: up to 1.1)
    "motion": (7.0, 13.0),     # straight smear length, px, at a random angle (training: none)
    "noise": (10.0, 18.0),     # Gaussian sensor noise sigma, levels (training: up to 6)
    "jpeg": (30.0, 15.0),      # JPEG quality (training: 45-95 or none)
    "dark": (0.45, 0.3),       # gain (training: 0.65 up)
    "bright": (1.5, 1.9),      # gain, highlights clipped (training: up to 1.3)
    "lowres": (0.6, 0.4),      # scale the camera's sensor had, brought back up (training: none)
    "cast": (0.15, 0.3),       # warm white balance: red up, blue down by this fraction (training: ~6 %)
}


def corrupt(image: np.ndarray, name: str, severity: float, seed: int = 0) -> np.ndarray:
    """`image` (H x W x 3 uint8 BGR) with the change `name` at `severity` (see CORRUPTIONS).

    Deterministic for a given `seed` (noise and the smear's angle draw from it).
    """
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown image change {name!r}; known: {', '.join(CORRUPTIONS)}")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 uint8 image, got {image.dtype} {image.shape}")
    rng = np.random.default_rng(seed)
    img = image.astype(np.float32)
    if name == "blur":
        img = cv2.GaussianBlur(img, (0, 0), severity)
    elif name == "motion":
        img = cv2.filter2D(img, -1, _smear_kernel(int(round(severity)), rng.uniform(0, np.pi)),
                           borderType=cv2.BORDER_REFLECT)
    elif name == "noise":
        img += rng.normal(0, severity, img.shape).astype(np.float32)
    elif name == "jpeg":
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(severity)])
        return cv2.imdecode(buf, cv2.IMREAD_COLOR)
    elif name in ("dark", "bright"):
        img *= severity
    elif name == "lowres":
        h, w = image.shape[:2]
        small = cv2.resize(image, (max(1, round(w * severity)), max(1, round(h * severity))),
                           interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    elif name == "cast":
        img *= np.array([1 - severity, 1.0, 1 + severity], dtype=np.float32)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


#: The changes `degrade` draws from, each with its severity range (from about the
#: generators' edge to past the bench's strong severity). Smear, a lower-resolution sensor
#: and a white-balance cast stay out: the bench reads them as kinds never trained on.
TRAINED: dict[str, tuple[float, float]] = {
    "blur": (0.8, 3.0),
    "noise": (4.0, 20.0),
    "jpeg": (12.0, 45.0),
    "dark": (0.25, 0.65),
    "bright": (1.3, 2.0),
}


def degrade(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`image` with one change of `TRAINED`, chosen and sized at random from `rng`."""
    name = list(TRAINED)[int(rng.integers(len(TRAINED)))]
    lo, hi = TRAINED[name]
    return corrupt(image, name, float(rng.uniform(lo, hi)), seed=int(rng.integers(2**31)))


def _smear_kernel(length: int, angle: float) -> np.ndarray:
    """A normalised line `length` px long through the centre at `angle` (radians)."""
    k = np.zeros((length, length), np.float32)
    c = (length - 1) / 2
    dx, dy = c * np.cos(angle), c * np.sin(angle)
    # Drawn at 16x sub-pixel precision so short lines at any angle keep their length.
    s = 16
    cv2.line(k, (round((c - dx) * s), round((c - dy) * s)), (round((c + dx) * s),
             round((c + dy) * s)), 1.0, 1, cv2.LINE_AA, shift=4)
    return k / k.sum()
