"""The phase segmenter: one label per image row of a vial crop, batched over all vials.

Instead of a detector per crop, a small CNN reads each CROP_H x CROP_W crop, collapses the
width and labels every row (cap, headspace, residue, foam, liquid, turbid, solid, upper
or lower of two liquids, outside) with a stack of dilated 1-D convolutions, so a row sees
the whole vial (a single liquid and the upper of two look alike locally). Layers, the
vial's content class, the cap and the fill level all follow from the row labels.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mobile_chemist.vision.classes import (
    BULK_ROWS,
    GLASS_ROWS,
    ROW_TO_PHASE,
    Phase,
    Row,
    content_of,
)
from mobile_chemist.vision.crops import CROP_H, CROP_W, crop_vial, row_centres, row_labels

N_ROWS = len(Row)


def build_model():
    from torch import nn

    def c2(i, o, stride=(1, 1)):
        return nn.Sequential(nn.Conv2d(i, o, 3, stride=stride, padding=1, bias=False),
                             nn.BatchNorm2d(o), nn.ReLU(inplace=True))

    def c1(i, o, d):
        return nn.Sequential(nn.Conv1d(i, o, 3, padding=d, dilation=d, bias=False),
                             nn.BatchNorm1d(o), nn.ReLU(inplace=True))

    class PhaseSegmenter(nn.Module):
        def __init__(self):
            super().__init__()
            # Pool the width only: every row keeps its own feature vector.
            self.enc = nn.Sequential(c2(3, 16, (1, 2)), c2(16, 24), nn.MaxPool2d((1, 2)),
                                     c2(24, 32), nn.MaxPool2d((1, 2)), c2(32, 48))
            self.seq = nn.Sequential(c1(96, 48, 1), c1(48, 48, 2), c1(48, 48, 4),
                                     c1(48, 48, 8), c1(48, 48, 16), c1(48, 48, 32),
                                     c1(48, 48, 1))
            self.head = nn.Conv1d(48, N_ROWS, 1)

        def forward(self, x):  # x: N x 3 x H x W, float in [0, 1]
            f = self.enc(x - 0.5)
            f = torch.cat([f.mean(dim=3), f.amax(dim=3)], dim=1)  # N x 96 x H
            return self.head(self.seq(f))  # N x N_ROWS x H

    import torch

    return PhaseSegmenter()


@dataclass
class VialReading:
    """What the segmenter reads from one vial crop."""

    cap_present: bool
    cap_confidence: float
    content: Phase
    content_confidence: float
    fill_level: float                       # fraction of the glass height
    layers: list[tuple[float, float, Phase, float]] = field(default_factory=list)  # top, bottom, class, conf
    glass_top: float = float("nan")
    glass_bottom: float = float("nan")
    rows: np.ndarray | None = None          # the cleaned per-row labels


def _runs(labels: np.ndarray) -> list[tuple[int, int, int]]:
    """(start, end_exclusive, label) runs."""
    edges = np.flatnonzero(np.diff(labels)) + 1
    starts = np.concatenate([[0], edges])
    ends = np.concatenate([edges, [len(labels)]])
    return [(int(s), int(e), int(labels[s])) for s, e in zip(starts, ends)]


def clean_rows(labels: np.ndarray, min_run: int = 3) -> np.ndarray:
    """Absorb runs shorter than `min_run` rows into a neighbour (single-row flicker)."""
    labels = labels.copy()
    for _ in range(4):
        runs = _runs(labels)
        short = [(s, e, l) for s, e, l in runs if e - s < min_run]
        if not short or len(runs) == 1:
            break
        for i, (s, e, l) in enumerate(runs):
            if e - s >= min_run:
                continue
            left = runs[i - 1] if i > 0 else None
            right = runs[i + 1] if i + 1 < len(runs) else None
            pick = max((r for r in (left, right) if r), key=lambda r: r[1] - r[0])
            labels[s:e] = pick[2]
        # Runs change after each pass; loop again over the new runs.
    return labels


def decode(probs: np.ndarray, box: Sequence[float]) -> VialReading:
    """Turn N_ROWS x CROP_H row probabilities of one crop into a VialReading."""
    labels = clean_rows(probs.argmax(axis=0))
    ys = row_centres(box)
    step = ys[1] - ys[0]
    glass = np.flatnonzero(np.isin(labels, [int(r) for r in GLASS_ROWS]))
    if len(glass) == 0:
        return VialReading(False, 0.0, Phase.EMPTY, 0.0, float("nan"), rows=labels)
    g_top, g_bot = ys[glass[0]] - step / 2, ys[glass[-1]] + step / 2
    cap_rows = labels == int(Row.CAP)
    cap_present = bool(cap_rows.sum() >= 2)
    # Confidence in the decision: mean P(cap) over the rows just above the glass.
    above = probs[int(Row.CAP), max(0, glass[0] - 6):glass[0]]
    p_cap = float(above.mean()) if len(above) else 0.0
    cap_conf = p_cap if cap_present else 1.0 - p_cap
    bulk = np.flatnonzero(np.isin(labels, [int(r) for r in BULK_ROWS]))
    fill = float((g_bot - (ys[bulk[0]] - step / 2)) / (g_bot - g_top)) if len(bulk) else 0.0
    layers: list[tuple[float, float, Phase, float]] = []
    present: set[Row] = set()
    prev_row = None
    for s, e, lab in _runs(labels):
        row = Row(lab)
        present.add(row)
        phase = ROW_TO_PHASE[row]
        if phase is None:
            prev_row = row
            continue
        conf = float(probs[lab, s:e].mean())
        top, bottom = float(ys[s] - step / 2), float(ys[e - 1] + step / 2)
        if layers and layers[-1][2] == phase and prev_row == row:
            t, _, p, c = layers[-1]
            layers[-1] = (t, bottom, p, (c + conf) / 2)
        else:
            layers.append((top, bottom, phase, conf))
        prev_row = row
    content = content_of(present)
    # Content confidence: mean probability of the rows that decide it.
    deciding = {Phase.TWO_LIQUID: (Row.LIQUID_UPPER, Row.LIQUID_LOWER), Phase.FOAM: (Row.FOAM,),
                Phase.HETEROGENEOUS: (Row.TURBID,), Phase.HOMOGENEOUS: (Row.LIQUID,),
                Phase.SOLID: (Row.SOLID,), Phase.RESIDUE: (Row.RESIDUE,),
                Phase.EMPTY: (Row.HEADSPACE,)}[content]
    sel = np.isin(labels, [int(r) for r in deciding])
    conf = float(probs[labels[sel], np.flatnonzero(sel)].mean()) if sel.any() else 0.0
    return VialReading(cap_present, cap_conf, content, conf, fill, layers,
                       float(g_top), float(g_bot), labels)


class Segmenter:
    """Batched inference with a trained PhaseSegmenter (CPU)."""

    def __init__(self, weights: str | Path, threads: int | None = None):
        import torch

        weights = Path(weights)
        if not weights.is_file():
            raise FileNotFoundError(f"phase segmenter weights not found: {weights}")
        self.torch = torch
        if threads:
            torch.set_num_threads(threads)
        self.model = build_model()
        state = torch.load(weights, map_location="cpu", weights_only=True)
        self.model.load_state_dict(state["model"] if "model" in state else state)
        self.model.eval()

    def probabilities(self, crops: np.ndarray) -> np.ndarray:
        """N x CROP_H x CROP_W x 3 uint8 (BGR) -> N x N_ROWS x CROP_H probabilities."""
        torch = self.torch
        if len(crops) == 0:
            return np.zeros((0, N_ROWS, CROP_H), np.float32)
        x = torch.from_numpy(np.ascontiguousarray(crops[..., ::-1])).permute(0, 3, 1, 2).float() / 255
        with torch.inference_mode():
            return torch.softmax(self.model(x), dim=1).numpy()

    def read(self, image: np.ndarray, boxes: Sequence[Sequence[float]],
             refine: bool = False) -> list[VialReading]:
        """Read each vial; with `refine`, read again on the vial's extent as first read.

        The segmenter was trained on boxes within ~3 % of the truth; a detector box that is
        further off is replaced by the cap-to-bottom extent the first pass found.
        """
        readings = self._read(image, boxes)
        if not refine:
            return readings
        redo, new_boxes = [], []
        for i, (r, b) in enumerate(zip(readings, boxes)):
            if r.rows is None or not np.isfinite(r.glass_top):
                continue
            ys = row_centres(b)
            step = ys[1] - ys[0]
            inside = np.flatnonzero(r.rows != int(Row.OUTSIDE))
            top, bottom = ys[inside[0]] - step / 2, ys[inside[-1]] + step / 2
            h = b[3] - b[1]
            if abs(top - b[1]) > 0.02 * h or abs(bottom - b[3]) > 0.02 * h:
                redo.append(i)
                new_boxes.append((b[0], top, b[2], bottom))
        for i, r in zip(redo, self._read(image, new_boxes)):
            readings[i] = r
        return readings

    def _read(self, image: np.ndarray, boxes: Sequence[Sequence[float]]) -> list[VialReading]:
        crops = np.stack([crop_vial(image, b) for b in boxes]) if len(boxes) else \
            np.zeros((0, CROP_H, CROP_W, 3), np.uint8)
        probs = self.probabilities(crops)
        return [decode(p, b) for p, b in zip(probs, boxes)]


def make_crops(seeds: Sequence[int], jitter: float = 0.03, seed: int = 0
               ) -> tuple[np.ndarray, np.ndarray]:
    """Training crops and row labels from synthetic scenes, boxes jittered like a detector's."""
    from mobile_chemist.vision.synthetic import render_scene

    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for s in seeds:
        scene = render_scene(int(s))
        for v in scene.vials:
            x1, y1, x2, y2 = v.box
            w, h = x2 - x1, y2 - y1
            j = rng.normal(0, jitter, 4) * np.array([w, h, w, h]) if jitter else np.zeros(4)
            box = (x1 + j[0], y1 + j[1], x2 + j[2], y2 + j[3])
            xs.append(crop_vial(scene.image, box))
            ys.append(row_labels(v.segments, box))
    return np.stack(xs), np.stack(ys)


def train_segmenter(crops: np.ndarray, labels: np.ndarray, out: str | Path, epochs: int = 8,
                    batch: int = 64, lr: float = 3e-3, seed: int = 0, log=print) -> Path:
    """Train from scratch on (crops, labels); saves {'model': state_dict, ...} to `out`."""
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = build_model()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * int(np.ceil(len(crops) / batch))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1))
    x_all = torch.from_numpy(np.ascontiguousarray(crops[..., ::-1])).permute(0, 3, 1, 2)
    y_all = torch.from_numpy(labels)
    model.train()
    t0 = time.time()
    for ep in range(epochs):
        order = rng.permutation(len(crops))
        total, correct, n = 0.0, 0, 0
        for i in range(0, len(order), batch):
            idx = torch.from_numpy(order[i:i + batch])
            x = x_all[idx].float() / 255
            if x.shape[0] < 2:
                continue
            # Photometric augmentation: gain and offset per crop and channel.
            x = (x * (0.8 + 0.4 * torch.rand(x.shape[0], 3, 1, 1))
                 + 0.08 * (torch.rand(x.shape[0], 3, 1, 1) - 0.5)).clamp(0, 1)
            y = y_all[idx]
            logits = model(x)
            loss = torch.nn.functional.cross_entropy(logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == y).sum())
            n += len(idx)
        log(f"[segmenter] epoch {ep + 1}/{epochs} loss {total / max(n, 1):.4f} "
            f"row acc {correct / max(n * CROP_H, 1):.4f} ({time.time() - t0:.0f} s)")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "rows": [r.name for r in Row],
                "crop": [CROP_H, CROP_W]}, out)
    return out
