"""How far a camera frame lies outside what the vision models were trained on.

The models saw only rendered frames with the generators' camera effects (blur sigma up to
1.1 px, noise sigma up to 6, gain 0.65-1.3). A real frame may be blurrier, noisier, darker
or brighter, and the segmenter then reads phases and fill levels much worse
(bench/camera_shift.py). `measure` gives four figures of a frame and
`FrameLimits.problems` names each one past its limit (config/vision.yaml `frame_limits`),
so that the node can say a reading is less trustworthy instead of returning it silently.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import cv2
import numpy as np


@dataclass(frozen=True)
class FrameQuality:
    edge_width: float  # px: median width of the frame's strongest vertical edges (blur)
    noise: float       # estimated sensor noise sigma, grey levels (Immerkaer 1996)
    mean_level: float  # mean grey level, 0..255
    clipped: float     # fraction of pixels at 250 or above


@dataclass(frozen=True)
class FrameLimits:
    """Each figure's limit; a frame past one is reported, never refused."""

    max_edge_width: float = float("inf")
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
        if q.edge_width > self.max_edge_width:
            out.append(f"blurred (edge width {q.edge_width:g} px > {self.max_edge_width:g})")
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
    return FrameQuality(edge_width=_edge_width(grey), noise=_noise_sigma(grey),
                        mean_level=float(grey.mean()), clipped=float((grey >= 250).mean()))


def _edge_width(grey: np.ndarray, samples: int = 1500) -> float:
    """Marziliano et al. 2002's blur figure: at the strongest vertical edges (top 2 % of the
    horizontal gradient, thinned along the row), the distance between the grey-level extrema
    on either side, in pixels; the median over up to `samples` of them (a fixed subsample:
    the figure is deterministic). A blurred edge rises over more pixels, whatever the frame
    shows: most rendered 2-D frames read 2-4 px, blurred by sigma 1.8 px 7-9 (HISTORY.md)."""
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)
    mag = np.abs(gx)
    peak = ((mag >= np.percentile(mag, 98)) & (mag > 0) & (mag >= np.roll(mag, 1, 1))
            & (mag >= np.roll(mag, -1, 1)))
    peak[:, :2] = peak[:, -2:] = False
    ys, xs = np.nonzero(peak)
    if not len(ys):
        return 0.0
    pick = np.random.default_rng(0).choice(len(ys), min(samples, len(ys)), replace=False)
    ys, xs = ys[pick], xs[pick]
    # From an edge pixel the grey level keeps moving the edge's way over a run of same-signed
    # steps along the row, left and right: runs labelled once, rows kept apart by a zero step.
    step = np.sign(np.diff(grey, axis=1))
    h, m = step.shape
    flat = np.concatenate([step, np.zeros((h, 1), step.dtype)], axis=1).ravel()
    new_run = np.r_[True, flat[1:] != flat[:-1]]
    run = np.cumsum(new_run) - 1
    starts = np.flatnonzero(new_run)
    ends = np.r_[starts[1:], flat.size]
    way = np.where(gx[ys, xs] > 0, 1.0, -1.0)
    row0 = ys * (m + 1)
    at = row0 + xs                       # the step from the edge pixel to its right
    right = np.where(flat[at] == way, ends[run[at]] - row0, xs)
    left = np.where(flat[at - 1] == way, starts[run[at - 1]] - row0, xs)
    return float(np.median(right - left))


def _noise_sigma(grey: np.ndarray) -> float:
    """Immerkaer's fast noise estimate: the mean absolute response of a Laplacian-difference
    mask that cancels locally linear image content, scaled to a Gaussian sigma; taken over
    the 90 % of pixels with the weakest edges (edges are content, not noise)."""
    mask = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
    r = np.abs(cv2.filter2D(grey, -1, mask)[1:-1, 1:-1])
    edges = np.hypot(cv2.Sobel(grey, -1, 1, 0), cv2.Sobel(grey, -1, 0, 1))[1:-1, 1:-1]
    flat = edges <= np.percentile(edges, 90)
    return float(np.sqrt(np.pi / 2) * r[flat].mean() / 6)
