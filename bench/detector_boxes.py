"""Where a vial detector's boxes sit against the truth, and what that costs the segmenter.

    python bench/detector_boxes.py [DETECTOR ...] [--config C] [--segmenter PATH ...]
                                   [--scenes 100] [--held-out] [--skip N] [--kind random|rack]

For each detector's weights (default: the config's) on validation scenes of both
generators, with the config's settings (`--config`, default config/vision.yaml): the signed
error of each box edge against its matched truth (IoU >= 0.5, at the config's threshold), as
a fraction of the true width (left, right) or height (top, bottom), positive = right of /
below the truth, and how far each box centre sits off its vial's (median, p95); then the
segmenter (the config's unless `--segmenter`) reads the same matched vials on the detector's
boxes and on the true boxes and on the detector's boxes with the true left and right edges
(so the horizontal error alone is removed); the fill-level error p95 of each is printed,
overall and by how far the box centre sits off the vial's, so that a fill tail can be traced
to box placement or not, and off-centre boxes split by the side they lean to. Last, every
vial whose fill error on the detector's box exceeds `--tail` (the target, 0.05) is put down
to one cause (`metrics.tail_cause`: the box, contents missed or invented, the glass extent,
the top of the contents), with the content classes (truth -> read on the true box) of each
cause.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mobile_chemist.vision.classes import Phase  # noqa: E402
from mobile_chemist.vision.scenes import add_scene_arguments, scene_sets  # noqa: E402

EDGES = ("left", "right", "top", "bottom")


def edge_errors(box, truth) -> np.ndarray:
    """Signed (left, right, top, bottom) errors of `box`, in true widths and heights."""
    w, h = truth[2] - truth[0], truth[3] - truth[1]
    return np.array([(box[0] - truth[0]) / w, (box[2] - truth[2]) / w,
                     (box[1] - truth[1]) / h, (box[3] - truth[3]) / h])


def _p(x: np.ndarray, q: float) -> float:
    return float(np.percentile(x, q)) if len(x) else float("nan")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("detectors", nargs="*", help="detector weights (default: the config's)")
    p.add_argument("--config", help="vision config (default config/vision.yaml)")
    p.add_argument("--segmenter", nargs="+", metavar="PATH",
                   help="segmenter weights, several averaged (default: the config's)")
    p.add_argument("--tail", type=float, default=0.05,
                   help="fill error above which a vial's cause is reported (the target)")
    add_scene_arguments(p)
    args = p.parse_args()
    sets = scene_sets(args)   # before torch loads
    from mobile_chemist.vision.metrics import TAIL_CAUSES, match, tail_cause
    from mobile_chemist.vision.pipeline import SyntheticBackend, load_config

    cfg = load_config(args.config)
    for weights in args.detectors or [cfg["backends"]["synthetic"]["detector"]]:
        syn = dict(cfg["backends"]["synthetic"], detector=weights)
        if args.segmenter:
            syn["segmenter"] = args.segmenter
        backend = SyntheticBackend(syn)
        print(f"== {weights}")
        for name, scenes in sets.items():
            errs, fill_det, fill_true, fill_x, missed, n = [], [], [], [], 0, 0
            causes: dict[str, Counter] = {c: Counter() for c in TAIL_CAUSES}
            for sc in scenes:
                dets = backend.detect(sc.image)
                pairs = match(dets, sc.vials)
                n += len(sc.vials)
                missed += len(sc.vials) - len(pairs)
                if not pairs:
                    continue
                boxes = [dets[i].box for i, _ in pairs]
                truths = [sc.vials[j] for _, j in pairs]
                on_det = backend.segmenter.read(sc.image, boxes, refine=bool(syn.get("refine")))
                on_true = backend.segmenter.read(sc.image, [v.box for v in truths],
                                                 refine=bool(syn.get("refine")))
                true_x = [(v.box[0], b[1], v.box[2], b[3]) for b, v in zip(boxes, truths)]
                on_x = backend.segmenter.read(sc.image, true_x, refine=bool(syn.get("refine")))
                for b, v, rd, rt, rx in zip(boxes, truths, on_det, on_true, on_x):
                    errs.append(edge_errors(b, v.box))
                    fill_det.append(abs(rd.fill_level - v.fill_level))
                    fill_true.append(abs(rt.fill_level - v.fill_level))
                    fill_x.append(abs(rx.fill_level - v.fill_level))
                    if fill_det[-1] > args.tail:
                        causes[tail_cause(rt, v, args.tail)][
                            f"{Phase(v.content).label} -> {Phase(int(rt.content)).label}"] += 1
            e = np.asarray(errs).reshape(-1, 4)
            fd, ft, fx = np.asarray(fill_det), np.asarray(fill_true), np.asarray(fill_x)
            print(f"  {name}: {n} vials, {missed} not matched")
            for k, edge in enumerate(EDGES):
                print(f"    {edge:6s} mean {e[:, k].mean():+.3f}  p5 {_p(e[:, k], 5):+.3f}  "
                      f"p95 {_p(e[:, k], 95):+.3f}")
            print(f"    fill p95 on detector boxes {_p(fd, 95):.3f}, with the true left and "
                  f"right edges {_p(fx, 95):.3f}, on true boxes {_p(ft, 95):.3f}")
            shift = (e[:, 0] + e[:, 1]) / 2   # box centre off the vial's, in widths, + = right
            dx = np.abs(shift)
            print(f"    box centre off the vial's (widths): median {_p(dx, 50):.3f}, "
                  f"p95 {_p(dx, 95):.3f}")
            for lo, hi in ((0, 0.05), (0.05, 0.1), (0.1, 1e9)):
                sel = (dx >= lo) & (dx < hi)
                if sel.any():
                    span = f"{lo:.2f}-{hi:.2f}" if hi < 1e9 else f">= {lo:.2f}"
                    print(f"    centre off by {span} widths: {sel.sum()} vials, "
                          f"fill p95 {_p(fd[sel], 95):.3f} (true boxes {_p(ft[sel], 95):.3f})")
                    if lo > 0:  # which way it leans, for off-centre boxes only
                        for side, s in (("left", sel & (shift < 0)), ("right", sel & (shift > 0))):
                            print(f"      to the {side}: {s.sum()} vials, "
                                  f"fill p95 {_p(fd[s], 95):.3f}")
            print(f"    fill error over {args.tail} on detector boxes: {(fd > args.tail).sum()} "
                  f"vials; by cause (content truth -> read on the true box):")
            for cause, pairs in causes.items():
                if pairs:
                    top = ", ".join(f"{k} {m}" for k, m in pairs.most_common(4))
                    print(f"      {cause}: {sum(pairs.values())} ({top})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
