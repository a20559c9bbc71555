"""How far a camera frame lies outside what the vision models were trained on.

The models saw only rendered frames with the generators' camera effects (blur sigma up to
1.1 px, noise sigma up to 6, gain 0.65-1.3). A real frame may be blurrier, noisier, darker
or brighter, and the segmenter then reads phases and fill levels much worse
(bench/camera_shift.py). `measure` gives four content-robust figures of a frame and
`FrameLimits.problems` names each one past its limit (config/vision.yaml `frame_limits`),
so that the node can say a reading is less trustworthy instead of returning it silently.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import cv2
import numpy as np


@dataclass(frozen=True)
class FrameQuality:
    blur: float        # 0 (sharp) .. 1 (no detail left): Crete et al. 2007's re-blur measure
    noise: float       # estimated sensor noise sigma, grey levels (Immerkaer 1996)
    mean_level: float  # mean grey level, 0..255
    clipped: float     # fraction of pixels at 250 or above


@dataclass(frozen=True)
class FrameLimits:
    """Each figure's limit; a frame past one is reported, never refused."""

    max_blur: float = 1.0
    max_noise: float = float("inf")
    min_mean_level: float = 0.0
    max_mean_level: float = 255.0
    max_clipped: float = 1.0

    @classmethod
    def from_config(cls, cfg: dict | None) -> "FrameLimits":
        cfg = dict(cfg or {})
        known = {f.name for f in fields(cls)}
        unknown = set(cfg) - known
        if unknown:
            raise ValueError(f"unknown frame_limits keys {sorted(unknown)}; known: {sorted(known)}")
        return cls(**{k: float(v) for k, v in cfg.items()})

    def problems(self, q: FrameQuality) -> list[str]:
        """What is wrong with a frame of quality `q`, one phrase per figure past its limit."""
        out = []
        if q.blur > self.max_blur:
            out.append(f"blurred (blur {q.blur:.2f} > {self.max_blur:g})")
        if q.noise > self.max_noise:
            out.append(f"noisy (noise sigma {q.noise:.1f} > {self.max_noise:g})")
        if q.mean_level < self.min_mean_level:
            out.append(f"dark (mean level {q.mean_level:.0f} < {self.min_mean_level:g})")
        if q.mean_level > self.max_mean_level:
            out.append(f"bright (mean level {q.mean_level:.0f} > {self.max_mean_level:g})")
        if q.clipped > self.max_clipped:
            out.append(f"overexposed ({100 * q.clipped:.1f} % clipped > "
                       f"{100 * self.max_clipped:g} %)")
        return out


def measure(image: np.ndarray) -> FrameQuality:
    """The four figures of an H x W x 3 uint8 BGR frame."""
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)
    return FrameQuality(blur=_blur(grey), noise=_noise_sigma(grey),
                        mean_level=float(grey.mean()), clipped=float((grey >= 250).mean()))


def _blur(grey: np.ndarray) -> float:
    """Crete et al.'s no-reference blur: how much of the frame's neighbour-to-neighbour
    variation survives a further 9-tap box blur (a sharp frame loses most of it)."""
    worst = 0.0
    for axis in (0, 1):
        ksize = (1, 9) if axis == 1 else (9, 1)
        again = cv2.blur(grey, ksize)
        d_frame = np.abs(np.diff(grey, axis=axis))
        d_again = np.abs(np.diff(again, axis=axis))
        total = d_frame.sum()
        if total <= 0:
            return 1.0
        lost = np.maximum(0.0, d_frame - d_again).sum()
        worst = max(worst, float((total - lost) / total))
    return worst


def _noise_sigma(grey: np.ndarray) -> float:
    """Immerkaer's fast noise estimate: the mean absolute response of a Laplacian-difference
    mask that cancels locally linear image content, scaled to a Gaussian sigma; taken over
    the 90 % of pixels with the weakest edges (edges are content, not noise)."""
    mask = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
    r = np.abs(cv2.filter2D(grey, -1, mask)[1:-1, 1:-1])
    edges = np.hypot(cv2.Sobel(grey, -1, 1, 0), cv2.Sobel(grey, -1, 0, 1))[1:-1, 1:-1]
    flat = edges <= np.percentile(edges, 90)
    return float(np.sqrt(np.pi / 2) * r[flat].mean() / 6)
