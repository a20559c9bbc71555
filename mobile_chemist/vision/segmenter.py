"""The phase segmenter: one label per image row of a vial crop, batched over all vials.

Instead of a detector per crop, a small CNN reads each CROP_H x CROP_W crop, collapses the
width and labels every row (cap, headspace, residue, foam, liquid, turbid, solid, upper
or lower of two liquids, outside) with a stack of dilated 1-D convolutions, so a row sees
the whole vial (a single liquid and the upper of two look alike locally). Layers, the cap
and the fill level follow from the row labels.

A vial-level head on the same features (pooled over all rows, plus the box's height/width,
which the fixed-size crop loses) gives the vial type and the content class. The content
is decoded jointly: every content class allows some row labels (`ALLOWED_ROWS`), and the
class whose head probability and best allowed row labelling score highest wins, so the
layers reported always agree with the content class.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mobile_chemist.vision.classes import (
    BULK_ROWS,
    DETECTOR_CLASSES,
    GLASS_ROWS,
    ROW_TO_PHASE,
    Phase,
    Row,
    VialType,
    content_of,
)
from mobile_chemist.vision.crops import CROP_H, CROP_W, crop_vial, row_centres, row_labels

N_ROWS = len(Row)
N_TYPES = len(DETECTOR_CLASSES)
N_CONTENT = len(Phase)

_ALWAYS = {Row.OUTSIDE, Row.CAP, Row.HEADSPACE}
#: Row labels a vial of each content class may show (content_of() of them is the class).
ALLOWED_ROWS: dict[Phase, frozenset[Row]] = {
    Phase.EMPTY: frozenset(_ALWAYS),
    Phase.RESIDUE: frozenset(_ALWAYS | {Row.RESIDUE}),
    Phase.SOLID: frozenset(_ALWAYS | {Row.RESIDUE, Row.SOLID}),
    Phase.HOMOGENEOUS: frozenset(_ALWAYS | {Row.RESIDUE, Row.SOLID, Row.LIQUID}),
    Phase.HETEROGENEOUS: frozenset(_ALWAYS | {Row.RESIDUE, Row.SOLID, Row.LIQUID, Row.TURBID}),
    Phase.FOAM: frozenset(_ALWAYS | {Row.RESIDUE, Row.SOLID, Row.LIQUID, Row.TURBID, Row.FOAM}),
    Phase.TWO_LIQUID: frozenset(Row),
}


def build_model(width: int = 1):
    """The segmenter network; `width` multiplies every layer's channels."""
    from torch import nn

    w = int(width)
    if w < 1:
        raise ValueError(f"segmenter width must be a positive integer, not {width!r}")

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
            self.enc = nn.Sequential(c2(3, 16 * w, (1, 2)), c2(16 * w, 24 * w),
                                     nn.MaxPool2d((1, 2)), c2(24 * w, 32 * w),
                                     nn.MaxPool2d((1, 2)), c2(32 * w, 48 * w))
            f = 48 * w
            self.seq = nn.Sequential(c1(2 * f, f, 1), c1(f, f, 2), c1(f, f, 4), c1(f, f, 8),
                                     c1(f, f, 16), c1(f, f, 32), c1(f, f, 1))
            self.head = nn.Conv1d(f, N_ROWS, 1)
            # Vial level: mean and max over rows, and log(box height / width).
            self.vial = nn.Sequential(nn.Linear(2 * f + 1, 64 * w), nn.ReLU(inplace=True),
                                      nn.Linear(64 * w, N_TYPES + N_CONTENT))

        def forward(self, x, aspect):
            """x: N x 3 x H x W in [0, 1]; aspect: N box height/width.

            Returns row logits (N x N_ROWS x H) and vial logits (N x (N_TYPES + N_CONTENT)).
            """
            f = self.enc(x - 0.5)
            f = torch.cat([f.mean(dim=3), f.amax(dim=3)], dim=1)  # N x 96 x H
            s = self.seq(f)
            g = torch.cat([s.mean(dim=2), s.amax(dim=2), torch.log(aspect)[:, None]], dim=1)
            return self.head(s), self.vial(g)

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
    vial_type: VialType = VialType.UNKNOWN  # from the vial head
    type_confidence: float = 0.0


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


def joint_rows(probs: np.ndarray, content_probs: np.ndarray | None,
               head_weight: float) -> np.ndarray:
    """Cleaned row labels of the most likely content class (see the module docstring).

    Score of a class: head_weight * log P_head(class) + sum over rows of log P(label),
    with labels the best ones the class allows; a class whose cleaned labelling does not
    show it (content_of() differs) is not a candidate. head_weight 0: rows alone decide.
    """
    free = clean_rows(probs.argmax(axis=0))
    if content_probs is None or head_weight <= 0:
        return free
    logp = np.log(np.clip(probs, 1e-9, 1.0))
    rows = np.arange(probs.shape[1])
    best, best_score = free, -np.inf
    for phase, allowed in ALLOWED_ROWS.items():
        mask = np.full(N_ROWS, -np.inf)
        mask[[int(r) for r in allowed]] = 0.0
        labels = clean_rows((logp + mask[:, None]).argmax(axis=0))
        if content_of({Row(v) for v in np.unique(labels)}) != phase:
            continue
        score = head_weight * float(np.log(max(content_probs[int(phase)], 1e-9))) \
            + float(logp[labels, rows].sum())
        if score > best_score:
            best, best_score = labels, score
    return best


def decode(probs: np.ndarray, box: Sequence[float], vial_probs: np.ndarray | None = None,
           head_weight: float = 0.0) -> VialReading:
    """Turn N_ROWS x CROP_H row probabilities of one crop into a VialReading.

    `vial_probs` (N_TYPES + N_CONTENT, softmaxed per group) come from the vial head.
    """
    content_probs = vial_probs[N_TYPES:] if vial_probs is not None else None
    labels = joint_rows(probs, content_probs, head_weight)
    vtype, tconf = VialType.UNKNOWN, 0.0
    if vial_probs is not None:
        k = int(np.argmax(vial_probs[:N_TYPES]))
        vtype, tconf = DETECTOR_CLASSES[k], float(vial_probs[k])
    ys = row_centres(box)
    step = ys[1] - ys[0]
    glass = np.flatnonzero(np.isin(labels, [int(r) for r in GLASS_ROWS]))
    if len(glass) == 0:
        return VialReading(False, 0.0, Phase.EMPTY, 0.0, float("nan"), rows=labels,
                           vial_type=vtype, type_confidence=tconf)
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
    if content_probs is not None and head_weight > 0:
        conf = float(content_probs[int(content)])
    return VialReading(cap_present, cap_conf, content, conf, fill, layers,
                       float(g_top), float(g_bot), labels, vtype, tconf)


class Segmenter:
    """Batched inference with a trained PhaseSegmenter (CPU).

    `head_weight` weighs the vial head's content probability against the rows in the
    joint decoding (0: the rows alone decide the content class). With `flip_average` every
    crop is read twice, as seen and mirrored left to right, and the probabilities averaged
    (a vial's contents do not change in a mirror; the two readings' errors partly do).
    With `shift_average` s > 0 every crop is read also on its box moved sideways by s of
    its width each way and the three readings' probabilities averaged: the segmenter
    tolerates a small shift, and a detector box that sits off the vial then gets one
    reading closer to its centre. `weights` may name several trained segmenters: each
    reads every crop and their probabilities are averaged (an ensemble).
    """

    def __init__(self, weights: str | Path | Sequence[str | Path], threads: int | None = None,
                 head_weight: float = 0.0, flip_average: bool = False,
                 shift_average: float = 0.0):
        import torch

        paths = [Path(weights)] if isinstance(weights, (str, Path)) else [Path(w) for w in weights]
        if not paths:
            raise ValueError("no phase segmenter weights given")
        for path in paths:
            if not path.is_file():
                raise FileNotFoundError(f"phase segmenter weights not found: {path}")
        self.torch = torch
        if threads:
            torch.set_num_threads(threads)
        self.head_weight = float(head_weight)
        self.flip_average = bool(flip_average)
        if not 0.0 <= shift_average < 0.5:
            raise ValueError(f"shift_average must be in [0, 0.5), not {shift_average}")
        self.shifts = (0.0, -shift_average, shift_average) if shift_average else (0.0,)
        self.models = []
        for path in paths:
            state = torch.load(path, map_location="cpu", weights_only=True)
            model = build_model(state.get("width", 1))
            model.load_state_dict(state["model"])
            self.models.append(model.eval())

    def probabilities(self, crops: np.ndarray, aspects: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
        """Crops (N x CROP_H x CROP_W x 3 uint8 BGR) and box height/width (N) ->
        row probabilities (N x N_ROWS x CROP_H) and vial probabilities (N x (N_TYPES +
        N_CONTENT), softmaxed over the types and over the content classes)."""
        torch = self.torch
        if len(crops) == 0:
            return (np.zeros((0, N_ROWS, CROP_H), np.float32),
                    np.zeros((0, N_TYPES + N_CONTENT), np.float32))
        x = torch.from_numpy(np.ascontiguousarray(crops[..., ::-1])).permute(0, 3, 1, 2).float() / 255
        a = torch.as_tensor(np.asarray(aspects, dtype=np.float32)).clamp(0.2, 20)
        n = len(x)
        if self.flip_average:  # one batch: the crops, then their mirror images
            x, a = torch.cat([x, x.flip(3)]), torch.cat([a, a])
        with torch.inference_mode():
            rows = vial = 0.0
            for model in self.models:   # probabilities, not logits, are averaged
                r, v = model(x, a)
                rows = rows + torch.softmax(r, dim=1) / len(self.models)
                vial = vial + torch.cat([torch.softmax(v[:, :N_TYPES], 1),
                                         torch.softmax(v[:, N_TYPES:], 1)], 1) / len(self.models)
            if self.flip_average:
                rows, vial = (rows[:n] + rows[n:]) / 2, (vial[:n] + vial[n:]) / 2
            return rows.numpy(), vial.numpy()

    def read(self, image: np.ndarray, boxes: Sequence[Sequence[float]],
             refine: bool = False) -> list[VialReading]:
        """Read each vial; with `refine`, read again on the vial's extent as first read.

        The segmenter was trained on boxes within a few % of the truth; a detector box that
        is further off is replaced by the cap-to-bottom extent the first pass found.
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
        if not len(boxes):
            return []
        aspects = np.array([box_aspect(b) for b in boxes])
        crops = [crop_vial(image, (b[0] + s * (b[2] - b[0]), b[1], b[2] + s * (b[2] - b[0]), b[3]))
                 for s in self.shifts for b in boxes]
        rows, vial = self.probabilities(np.stack(crops), np.tile(aspects, len(self.shifts)))
        n = len(boxes)  # one batch, shift by shift: average each vial's readings
        rows = rows.reshape(len(self.shifts), n, *rows.shape[1:]).mean(0)
        vial = vial.reshape(len(self.shifts), n, *vial.shape[1:]).mean(0)
        return [decode(p, b, v, self.head_weight) for p, v, b in zip(rows, vial, boxes)]


def box_aspect(box: Sequence[float]) -> float:
    """Height / width of a box (the vial head's extra input)."""
    return float((box[3] - box[1]) / max(box[2] - box[0], 1e-3))


@dataclass
class CropSet:
    """Training data of the segmenter: crops and their exact labels."""

    crops: np.ndarray       # N x CROP_H x CROP_W x 3 uint8 (BGR)
    rows: np.ndarray        # N x CROP_H int64 (Row)
    vial_type: np.ndarray   # N int64, index into DETECTOR_CLASSES
    content: np.ndarray     # N int64 (Phase)
    aspect: np.ndarray      # N float32, jittered box height / width

    def __len__(self) -> int:
        return len(self.crops)

    def __add__(self, other: "CropSet") -> "CropSet":
        return CropSet(*(np.concatenate([a, b]) for a, b in
                         zip(self._arrays(), other._arrays())))

    def _arrays(self) -> tuple[np.ndarray, ...]:
        return self.crops, self.rows, self.vial_type, self.content, self.aspect

    def save(self, path: str | Path) -> None:
        np.savez_compressed(path, crops=self.crops, rows=self.rows, vial_type=self.vial_type,
                            content=self.content, aspect=self.aspect)

    @classmethod
    def load(cls, path: str | Path) -> "CropSet":
        d = np.load(path)
        return cls(d["crops"], d["rows"], d["vial_type"], d["content"], d["aspect"])


def make_crops(seeds: Sequence[int], jitter: float = 0.03, seed: int = 0,
               renderer: str = "2d", workers: int = 1, kind: str = "random",
               degraded_copies: int = 0) -> CropSet:
    """Training crops and labels from synthetic scenes (`scenes.iter_scenes`: renderer and
    kind), boxes jittered like a detector's. With `degraded_copies` each scene's frame is
    also cropped that many more times after a camera change past the generators' range
    (`corruptions.degrade`: blur, noise, JPEG, gain), the labels unchanged."""
    from mobile_chemist.vision.corruptions import degrade
    from mobile_chemist.vision.scenes import iter_scenes

    xs, rows, types, contents, aspects = [], [], [], [], []
    for scene in iter_scenes(seeds, renderer, workers=workers, kind=kind):
        # Box noise seeded per scene: a set is the union of its scenes' crops, however split.
        rng = np.random.default_rng([seed, scene.seed])
        changes = np.random.default_rng([seed, scene.seed, 1])
        images = [scene.image] + [degrade(scene.image, changes) for _ in range(degraded_copies)]
        for image, v in ((im, v) for im in images for v in scene.vials):
            x1, y1, x2, y2 = v.box
            w, h = x2 - x1, y2 - y1
            j = rng.normal(0, jitter, 4) * np.array([w, h, w, h]) if jitter else np.zeros(4)
            box = (x1 + j[0], y1 + j[1], x2 + j[2], y2 + j[3])
            xs.append(crop_vial(image, box))
            rows.append(row_labels(v.segments, box))
            types.append(DETECTOR_CLASSES.index(VialType(v.vial_type)))
            contents.append(v.content)
            aspects.append(box_aspect(box))
    return CropSet(np.stack(xs), np.stack(rows), np.asarray(types, np.int64),
                   np.asarray(contents, np.int64), np.asarray(aspects, np.float32))


def train_segmenter(data: CropSet, out: str | Path, epochs: int = 8, batch: int = 64,
                    lr: float = 3e-3, seed: int = 0, start: str | Path | None = None,
                    width: int = 1, device: str = "cpu", flip: bool = False,
                    log=print) -> Path:
    """Train on `data` from scratch (or from the weights `start`); saves {'model':
    state_dict, 'width': width, ...} to `out`.

    Loss: cross-entropy of the row labels + of the vial type + of the content class.
    `device` is a torch device ("cpu", "cuda"); the saved weights are for the CPU either way.
    With `flip`, half the crops of every batch (at random) are mirrored left to right.
    """
    import torch
    from torch.nn.functional import cross_entropy

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = build_model(width)
    if start is not None:
        model.load_state_dict(torch.load(start, map_location="cpu", weights_only=True)["model"])
    model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * int(np.ceil(len(data) / batch))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1))
    # The whole set lives on the device (uint8; ~1 GB for 100 000 crops).
    x_all = torch.from_numpy(np.ascontiguousarray(data.crops[..., ::-1])).permute(0, 3, 1, 2)
    x_all, y_all, t_all, c_all, a_all = (
        torch.as_tensor(a).to(device) for a in
        (x_all, data.rows, data.vial_type, data.content, data.aspect))
    model.train()
    t0 = time.time()
    for ep in range(epochs):
        order = rng.permutation(len(data))
        # Running sums stay on the device: reading them every step would stall a GPU.
        total, correct, type_ok, content_ok = (torch.zeros((), device=device) for _ in range(4))
        n = 0
        for i in range(0, len(order), batch):
            idx = torch.from_numpy(order[i:i + batch]).to(device)
            x = x_all[idx].float() / 255
            if x.shape[0] < 2:
                continue
            # Photometric augmentation: gain and offset per crop and channel.
            gain = torch.rand(x.shape[0], 3, 1, 1, device=device)
            offset = torch.rand(x.shape[0], 3, 1, 1, device=device)
            x = (x * (0.8 + 0.4 * gain) + 0.08 * (offset - 0.5)).clamp(0, 1)
            if flip:
                mirror = torch.rand(x.shape[0], device=device) < 0.5
                x = torch.where(mirror[:, None, None, None], x.flip(3), x)
            y = y_all[idx]
            rows, vial = model(x, a_all[idx])
            loss = (cross_entropy(rows, y) + cross_entropy(vial[:, :N_TYPES], t_all[idx])
                    + cross_entropy(vial[:, N_TYPES:], c_all[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.detach() * len(idx)
            correct += (rows.argmax(1) == y).sum()
            type_ok += (vial[:, :N_TYPES].argmax(1) == t_all[idx]).sum()
            content_ok += (vial[:, N_TYPES:].argmax(1) == c_all[idx]).sum()
            n += len(idx)
        log(f"[segmenter] epoch {ep + 1}/{epochs} loss {total / max(n, 1):.4f} "
            f"row acc {correct / max(n * CROP_H, 1):.4f} type acc {type_ok / max(n, 1):.4f} "
            f"content acc {content_ok / max(n, 1):.4f} ({time.time() - t0:.0f} s)")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.cpu() for k, v in model.state_dict().items()}
    torch.save({"model": state, "width": int(width), "rows": [r.name for r in Row],
                "types": [t.label for t in DETECTOR_CLASSES],
                "content": [p.label for p in Phase], "crop": [CROP_H, CROP_W]}, out)
    return out
