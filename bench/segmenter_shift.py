"""How far a box may sit off a vial before the phase segmenter reads it worse.

    python bench/segmenter_shift.py [--segmenter PATH] [--scenes 100] [--held-out] [--skip N]
                                    [--kind random|rack]

On validation scenes of both generators, the segmenter reads every vial on its true box
moved sideways by set fractions of the vial's width (negative = left), and on true boxes
made narrower or wider by the same fractions on each side; for each, the fill-level error
p95 and the content-class accuracy are printed. A detector's boxes sit off by a few
hundredths of a width (bench/detector_boxes.py); this says what that costs by itself.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mobile_chemist.vision.scenes import add_scene_arguments, scene_sets  # noqa: E402

STEPS = (-0.10, -0.06, -0.03, 0.0, 0.03, 0.06, 0.10)


def moved(box, shift: float = 0.0, grow: float = 0.0) -> tuple[float, float, float, float]:
    """`box` moved right by `shift` widths and widened by `grow` widths on each side."""
    w = box[2] - box[0]
    return (box[0] + (shift - grow) * w, box[1], box[2] + (shift + grow) * w, box[3])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--segmenter", nargs="+", metavar="PATH",
                   help="segmenter weights, several averaged (default: the config's)")
    add_scene_arguments(p)
    args = p.parse_args()
    sets = scene_sets(args)   # before torch loads
    from mobile_chemist.vision.pipeline import load_config, load_segmenter

    syn = dict(load_config()["backends"]["synthetic"])
    if args.segmenter:
        syn["segmenter"] = args.segmenter
    refine = bool(syn.get("refine"))
    segmenter = load_segmenter(syn)
    variants = [("shift", s) for s in STEPS] + [("grow", g) for g in STEPS if g]
    print(f"== {args.segmenter}")
    for name, scenes in sets.items():
        n = sum(len(sc.vials) for sc in scenes)
        print(f"  {name}: {n} vials on true boxes changed by a fraction of their width")
        print(f"    {'change':>14s}  {'fill p95':>8s}  {'fill mean':>9s}  {'content acc':>11s}")
        for kind, f in variants:
            fill, right = [], []
            for sc in scenes:
                boxes = [moved(v.box, shift=f) if kind == "shift" else moved(v.box, grow=f)
                         for v in sc.vials]
                for v, r in zip(sc.vials, segmenter.read(sc.image, boxes, refine=refine)):
                    fill.append(abs(r.fill_level - v.fill_level))
                    right.append(int(r.content) == v.content)
            label = f"{kind} {f:+.2f}"
            print(f"    {label:>14s}  {np.percentile(fill, 95):8.3f}  {np.mean(fill):9.3f}  "
                  f"{np.mean(right):11.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
