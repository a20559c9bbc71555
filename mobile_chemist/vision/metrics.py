"""Scores of a pipeline against synthetic ground truth (used by bench/vision.py and eval)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from mobile_chemist.vision.classes import Phase, VialType
from mobile_chemist.vision.pipeline import Detection
from mobile_chemist.vision.synthetic import Scene, VialTruth


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match(dets: Sequence[Detection], truths: Sequence[VialTruth], thr: float = 0.5,
          same_class: bool = False) -> list[tuple[int, int]]:
    """Greedy (by confidence) one-to-one matches (det index, truth index) at IoU >= thr."""
    order = np.argsort([-d.confidence for d in dets])
    used: set[int] = set()
    pairs = []
    for i in order:
        best, best_j = thr, -1
        for j, t in enumerate(truths):
            if j in used or (same_class and int(dets[i].vial_type) != t.vial_type):
                continue
            o = iou(dets[i].box, t.box)
            if o >= best:
                best, best_j = o, j
        if best_j >= 0:
            used.add(best_j)
            pairs.append((int(i), best_j))
    return pairs


def _matches_at(dets: Sequence[Detection], truths: Sequence[VialTruth],
                conf: float) -> tuple[list[tuple[int, int]], int]:
    """One frame's (detection, truth) pairs once detections under `conf` are dropped (any
    type, IoU >= 0.5), and how many detections were kept."""
    kept = [x for x in dets if x.confidence >= conf]
    return match(kept, truths), len(kept)


def counts_at_threshold(dets: Sequence[Sequence[Detection]], truths: Sequence[Sequence[VialTruth]],
                        conf: float) -> tuple[int, int, int]:
    """(matched, false, missed) vials over scenes when detections under `conf` are dropped
    (any type, IoU >= 0.5): what a detector threshold trades."""
    matched = false = missed = 0
    for d, t in zip(dets, truths):
        pairs, kept = _matches_at(d, t, conf)
        m = len(pairs)
        matched, false, missed = matched + m, false + kept - m, missed + len(t) - m
    return matched, false, missed


def frames_complete(dets: Sequence[Sequence[Detection]], truths: Sequence[Sequence[VialTruth]],
                    conf: float) -> int:
    """Frames in which every vial is found at `conf` (`counts_at_threshold`'s matching): the
    "all vials found" half of the latency target, on 16-vial frames."""
    return sum(len(_matches_at(d, t, conf)[0]) == len(t) for d, t in zip(dets, truths))


def missed_by_height(dets: Sequence[Sequence[Detection]], truths: Sequence[Sequence[VialTruth]],
                     conf: float, edges: Sequence[float] = (40, 60)) -> list[tuple[int, int]]:
    """(missed, vials) in each band of box height that `edges` (px) bound, lowest first,
    with `counts_at_threshold`'s matching: where the misses lie."""
    missed, total = [0] * (len(edges) + 1), [0] * (len(edges) + 1)
    for d, t in zip(dets, truths):
        found = {j for _, j in _matches_at(d, t, conf)[0]}
        for j, v in enumerate(t):
            band = int(np.searchsorted(edges, v.box[3] - v.box[1], side="right"))
            total[band] += 1
            missed[band] += j not in found
    return list(zip(missed, total))


def f1(matched: int, false: int, missed: int) -> float:
    """F1 of vial finding from the counts `counts_at_threshold` gives (0 when all are 0)."""
    return 2 * matched / max(2 * matched + false + missed, 1)


def average_precision(scores: list[float], hits: list[bool], n_truth: int) -> float:
    """All-point interpolated AP (VOC 2010+ / COCO style at one IoU)."""
    if n_truth == 0:
        return float("nan")
    if not scores:
        return 0.0
    order = np.argsort(-np.asarray(scores))
    tp = np.asarray(hits, dtype=float)[order]
    ctp, cfp = np.cumsum(tp), np.cumsum(1 - tp)
    recall = ctp / n_truth
    precision = ctp / np.maximum(ctp + cfp, 1e-9)
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[1.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    idx = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]))


@dataclass
class Tally:
    """Everything collected over a set of scenes."""

    det_scores: dict[int, list[float]] = field(default_factory=dict)
    det_hits: dict[int, list[bool]] = field(default_factory=dict)
    n_truth: dict[int, int] = field(default_factory=dict)
    tp: dict[int, int] = field(default_factory=dict)      # at the deployed threshold
    fp: dict[int, int] = field(default_factory=dict)
    type_ok: list[bool] = field(default_factory=list)
    cap_ok: list[bool] = field(default_factory=list)
    content: list[tuple[int, int]] = field(default_factory=list)  # (truth, predicted)
    fill_err: list[float] = field(default_factory=list)
    # Scene index of each content / fill_err entry: vials of one scene share its lighting,
    # rack and camera, so the uncertainty of a figure is resampled by scene, not by vial.
    scene_of: list[int] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)
    # Class-agnostic ("a vial, whatever its type"), next to the per-type figures.
    any_scores: list[float] = field(default_factory=list)
    any_hits: list[bool] = field(default_factory=list)
    any_truth: int = 0
    any_tp: int = 0
    any_fp: int = 0


def evaluate(run: Callable[[np.ndarray], list[Detection]], scenes: Iterable[Scene],
             conf_threshold: float, class_agnostic: bool = False, judge_type: bool = True,
             judge_cap: bool = True) -> dict:
    """Run `run` on `scenes` and score it against their labels (see Tally)."""
    return summarise(tally(run, scenes, conf_threshold, class_agnostic, judge_type, judge_cap),
                     class_agnostic)


def tally(run: Callable[[np.ndarray], list[Detection]], scenes: Iterable[Scene],
          conf_threshold: float, class_agnostic: bool = False, judge_type: bool = True,
          judge_cap: bool = True) -> Tally:
    """What `evaluate` scores: every detection and matched vial of `run` on `scenes`."""
    t = Tally()
    for k_scene, scene in enumerate(scenes):
        t0 = time.perf_counter()
        dets = run(scene.image)
        t.latency_ms.append((time.perf_counter() - t0) * 1000)
        truths = scene.vials
        key = (lambda v: 0) if class_agnostic else (lambda v: int(v))
        for v in truths:
            t.n_truth[key(v.vial_type)] = t.n_truth.get(key(v.vial_type), 0) + 1
        # AP: a detection is a hit if it matches a same-class truth (class-agnostic: any).
        hits = {i for i, _ in match(dets, truths, same_class=not class_agnostic)}
        for i, d in enumerate(dets):
            k = key(d.vial_type)
            # Per type, a detection's score is P(vial) * P(type) (class-agnostic: P(vial)).
            score = d.confidence * (d.type_confidence if not class_agnostic
                                    and d.type_confidence > 0 else 1.0)
            t.det_scores.setdefault(k, []).append(score)
            t.det_hits.setdefault(k, []).append(i in hits)
            if d.confidence >= conf_threshold:
                if i in hits:
                    t.tp[k] = t.tp.get(k, 0) + 1
                else:
                    t.fp[k] = t.fp.get(k, 0) + 1
        any_hits = {i for i, _ in match(dets, truths)}
        t.any_truth += len(truths)
        for i, d in enumerate(dets):
            t.any_scores.append(d.confidence)
            t.any_hits.append(i in any_hits)
            if d.confidence >= conf_threshold:
                t.any_tp += i in any_hits
                t.any_fp += i not in any_hits
        kept = [d for d in dets if d.confidence >= conf_threshold]
        for i, j in match(kept, truths):
            d, v = kept[i], truths[j]
            if judge_type:
                t.type_ok.append(int(d.vial_type) == v.vial_type)
            if judge_cap:
                t.cap_ok.append(d.cap_present == v.cap)
            t.content.append((v.content, int(d.content)))
            t.scene_of.append(k_scene)
            if np.isfinite(d.fill_level):
                t.fill_err.append(abs(d.fill_level - v.fill_level))
            else:
                t.fill_err.append(1.0)
    return t


def fill_parts(reading, truth) -> tuple[float, float]:
    """Fill-level error with the glass extent taken from the truth (the read liquid top
    kept), and with the liquid top taken from the truth (the read glass kept): which of
    the two a fill error comes from."""
    err = abs(reading.fill_level - truth.fill_level)
    if not np.isfinite(reading.glass_top):   # no glass read: nothing to split
        return err, err
    height = truth.glass_bottom - truth.glass_top
    read_top = reading.glass_bottom - reading.fill_level * (reading.glass_bottom - reading.glass_top)
    true_top = truth.glass_bottom - truth.fill_level * height
    with_glass = (truth.glass_bottom - read_top) / height
    with_top = ((reading.glass_bottom - true_top) / (reading.glass_bottom - reading.glass_top)
                if truth.fill_level > 0 else 0.0)
    return abs(with_glass - truth.fill_level), abs(with_top - truth.fill_level)


#: Why a vial's fill level is off, in the order `tail_cause` tests them.
TAIL_CAUSES = ("the box", "contents missed", "contents invented", "glass extent",
               "top of the contents")


def tail_cause(on_true_box, truth, threshold: float) -> str:
    """Why the fill level read on a detector's box is off by more than `threshold`, given
    the reading of the same vial on its true box: the box (the true box reads within the
    threshold), contents missed or invented (a fill of 0 read or true, the other not), the
    glass extent (the true glass top and bottom would bring it within the threshold), or
    else where the top of the contents was read."""
    read, true = on_true_box.fill_level, truth.fill_level
    if abs(read - true) <= threshold:
        return "the box"
    if read == 0 and true > 0:
        return "contents missed"
    if true == 0 and read > 0:
        return "contents invented"
    if fill_parts(on_true_box, truth)[0] <= threshold:
        return "glass extent"
    return "top of the contents"


def p95(values: Sequence[float]) -> float:
    """The 95th percentile (the benchmark's fill-level error figure)."""
    return float(np.percentile(values, 95))


def _by_scene(values: Sequence[float], scene_of: Sequence[int], scenes) -> list[np.ndarray]:
    values, scene_of = np.asarray(values, dtype=float), np.asarray(scene_of)
    return [values[scene_of == k] for k in scenes]


def _interval(draw: Callable[[np.ndarray], float | None], n: int, reps: int,
              seed: int) -> list[float]:
    """2.5th and 97.5th percentiles of draw(scene indices) over `reps` resamples of `n`
    scenes with replacement; a draw that returns None is left out."""
    rng = np.random.default_rng(seed)
    stats = [s for s in (draw(rng.integers(0, n, n)) for _ in range(reps)) if s is not None]
    if not stats:
        return [float("nan"), float("nan")]
    return [float(np.percentile(stats, 2.5)), float(np.percentile(stats, 97.5))]


def scene_bootstrap(values: Sequence[float], scene_of: Sequence[int],
                    statistic: Callable[[np.ndarray], float], reps: int = 1000,
                    seed: int = 0) -> list[float]:
    """95 % interval of `statistic(values)` with whole scenes resampled with replacement.

    Vials in one scene are not independent (one lighting, rack and camera), so a figure over
    100 scenes is only as steady as 100 draws; the interval says how far another set of as
    many scenes could move it.
    """
    groups = _by_scene(values, scene_of, np.unique(np.asarray(scene_of)))
    if not groups:
        return [float("nan"), float("nan")]
    return _interval(lambda idx: statistic(np.concatenate([groups[i] for i in idx])),
                     len(groups), reps, seed)


def paired_scene_bootstrap(a: Sequence[float], a_scene: Sequence[int], b: Sequence[float],
                           b_scene: Sequence[int], n_scenes: int,
                           statistic: Callable[[np.ndarray], float], reps: int = 1000,
                           seed: int = 0) -> list[float]:
    """95 % interval of statistic(b) - statistic(a), both taken over the same resampled scenes.

    Two models read on the same scenes share each scene's difficulty; resampling the scenes
    together cancels it, so the interval of the difference is narrower than the two
    intervals of scene_bootstrap side by side.
    """
    ga, gb = (_by_scene(v, k, range(n_scenes)) for v, k in ((a, a_scene), (b, b_scene)))

    def draw(idx):
        xa, xb = (np.concatenate([g[i] for i in idx]) for g in (ga, gb))
        return statistic(xb) - statistic(xa) if len(xa) and len(xb) else None

    return _interval(draw, n_scenes, reps, seed)


def summarise(t: Tally, class_agnostic: bool) -> dict:
    names = {0: "vial"} if class_agnostic else {int(v): VialType(v).label for v in t.n_truth}
    per_class = {}
    for k, name in sorted(names.items()):
        n = t.n_truth.get(k, 0)
        tp, fp = t.tp.get(k, 0), t.fp.get(k, 0)
        per_class[name] = {
            "truth": n, "ap50": average_precision(t.det_scores.get(k, []),
                                                  t.det_hits.get(k, []), n),
            "precision": tp / (tp + fp) if tp + fp else float("nan"),
            "recall": tp / n if n else float("nan")}
    aps = [c["ap50"] for c in per_class.values() if np.isfinite(c["ap50"])]
    truth = np.array([a for a, _ in t.content], dtype=int)
    pred = np.array([b for _, b in t.content], dtype=int)
    phase = {}
    for p in Phase:
        sel = truth == int(p)
        phase[p.label] = {"n": int(sel.sum()),
                          "recall": float((pred[sel] == int(p)).mean()) if sel.any() else float("nan"),
                          "precision": float((truth[pred == int(p)] == int(p)).mean())
                          if (pred == int(p)).any() else float("nan")}
    confusion = np.zeros((len(Phase), len(Phase)), dtype=int)
    for a, b in t.content:
        confusion[a, b] += 1
    fe = np.asarray(t.fill_err, dtype=float)
    lat = np.asarray(t.latency_ms, dtype=float)
    return {
        "detection": {
            "per_class": per_class, "map50": float(np.mean(aps)) if aps else float("nan"),
            "any_vial": {"truth": t.any_truth,
                         "ap50": average_precision(t.any_scores, t.any_hits, t.any_truth),
                         "precision": t.any_tp / max(t.any_tp + t.any_fp, 1),
                         "recall": t.any_tp / max(t.any_truth, 1)}},
        "vial_type_accuracy": float(np.mean(t.type_ok)) if t.type_ok else float("nan"),
        "cap_accuracy": float(np.mean(t.cap_ok)) if t.cap_ok else float("nan"),
        "phase_accuracy": float((truth == pred).mean()) if len(truth) else float("nan"),
        "phase_accuracy_ci95": scene_bootstrap(truth == pred, t.scene_of, np.mean),
        "phase_per_class": phase,
        "phase_confusion": confusion.tolist(),
        "fill_error": {"n": len(fe),
                       "mean": float(fe.mean()) if len(fe) else float("nan"),
                       "p95": p95(fe) if len(fe) else float("nan"),
                       "p95_ci95": scene_bootstrap(fe, t.scene_of, p95)},
        "matched_vials": len(t.content),
        "latency_ms": {"mean": float(lat.mean()) if len(lat) else float("nan"),
                       "p95": float(np.percentile(lat, 95)) if len(lat) else float("nan")},
    }
