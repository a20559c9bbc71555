"""Phase segmenter alone on validation scenes (ground-truth boxes), as models/HISTORY.md quotes.

    python bench/segmenter_validation.py [WEIGHTS ...] [--scenes 60] [--details] [--held-out]
                                         [--skip N] [--kind random|rack]

Prints phase (content class) accuracy, fill-level error p95 and vial-type accuracy per
generator, with and without mirror-image averaging. Validation seeds (5 000 000 up) are
used for model choices; the held-out set stays for bench/vision.py. `--held-out` reads
bench/vision.py's held-out scenes on ground-truth boxes instead, to tell the segmenter's
misses from the detector's (a diagnosis, never a model choice). `--kind rack` reads
rack-camera views (`synthetic.random_rack_view`, one rack filling the frame) instead of the
random scenes.
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
from mobile_chemist.vision.metrics import fill_parts  # noqa: E402
from mobile_chemist.vision.scenes import add_scene_arguments, scene_sets  # noqa: E402


def _details(name: str, ok: np.ndarray, fill: np.ndarray, pairs: list, heights: np.ndarray,
             parts: np.ndarray) -> str:
    lines = [f"  {name}: fill p95 {np.percentile(fill, 95):.3f}; with the true glass extent "
             f"{np.percentile(parts[:, 0], 95):.3f}, with the true liquid top "
             f"{np.percentile(parts[:, 1], 95):.3f}",
             f"  {name}: commonest confusions (truth -> read: vials, median fill error)"]
    wrong = Counter(p for p, good in zip(pairs, ok) if not good)
    for (truth, read), n in wrong.most_common(5):
        errs = [f for p, f in zip(pairs, fill) if p == (truth, read)]
        lines.append(f"    {truth} -> {read}: {n}, {np.median(errs):.3f}")
    for lo, hi in ((0, 40), (40, 60), (60, 100), (100, 1e9)):
        sel = (heights >= lo) & (heights < hi)
        if sel.any():
            label = f"{lo}-{hi:.0f} px" if hi < 1e9 else f">= {lo} px"
            lines.append(f"    vials {label} tall: {sel.sum()}, phase {ok[sel].mean():.3f}, "
                         f"fill p95 {np.percentile(fill[sel], 95):.3f}")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("weights", nargs="*",
                   help="segmenter weights to compare, each a path or paths joined by + "
                        "(averaged); default: the config's")
    p.add_argument("--head-weight", type=float, default=30.0)
    p.add_argument("--details", action="store_true",
                   help="also the fill error split into glass extent and liquid top, the "
                        "commonest confusions (with their fill error) and the figures by "
                        "vial height, with flip averaging")
    add_scene_arguments(p, scenes=60)
    args = p.parse_args()
    sets = scene_sets(args)
    from mobile_chemist.vision.pipeline import load_config, segmenter_paths
    from mobile_chemist.vision.segmenter import Segmenter  # torch after MuJoCo's workers

    details: list[str] = []
    ensembles = ([w.split("+") for w in args.weights]
                 or [segmenter_paths(load_config()["backends"]["synthetic"])])
    for weights in ensembles:
        label = "+".join(Path(w).name for w in weights)
        for flip in (False, True):
            seg = Segmenter(weights, head_weight=args.head_weight, flip_average=flip)
            parts = []
            for name, scenes in sets.items():
                ok, fill, typ, pairs, heights, split = [], [], [], [], [], []
                for sc in scenes:
                    for v, r in zip(sc.vials, seg.read(sc.image, [v.box for v in sc.vials])):
                        ok.append(int(r.content) == v.content)
                        fill.append(abs(r.fill_level - v.fill_level))
                        typ.append(int(r.vial_type) == v.vial_type)
                        pairs.append((Phase(v.content).label, Phase(int(r.content)).label))
                        heights.append(v.box[3] - v.box[1])
                        split.append(fill_parts(r, v))
                parts.append(f"{name}: phase {np.mean(ok):.3f} fill p95 "
                             f"{np.percentile(fill, 95):.3f} type {np.mean(typ):.3f}")
                if args.details and flip:
                    details.append(_details(name, np.array(ok), np.array(fill), pairs,
                                            np.array(heights), np.array(split)))
            print(f"{label} {'flip' if flip else 'plain'}  " + " | ".join(parts))
            for text in details:
                print(text)
            details.clear()
    return 0


if __name__ == "__main__":
    sys.exit(main())
