"""Phase segmenter alone on validation scenes (ground-truth boxes), as models/README.md quotes.

    python bench/segmenter_validation.py [WEIGHTS ...] [--scenes 60]

Prints phase (content class) accuracy, fill-level error p95 and vial-type accuracy per
generator, with and without mirror-image averaging. Validation seeds (5 000 000 up) are
used for model choices; the held-out set stays for bench/vision.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mobile_chemist.vision.scenes import iter_scenes  # noqa: E402
from mobile_chemist.vision.synthetic import VAL_SEED_BASE  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("weights", nargs="*", default=[str(REPO / "models" / "phase_segmenter.pt")])
    p.add_argument("--scenes", type=int, default=60)
    p.add_argument("--head-weight", type=float, default=30.0)
    args = p.parse_args()
    seeds = range(VAL_SEED_BASE, VAL_SEED_BASE + args.scenes)
    sets = {r: list(iter_scenes(seeds, r, workers=2)) for r in ("2d", "mujoco")}
    from mobile_chemist.vision.segmenter import Segmenter  # torch after MuJoCo's workers

    for weights in args.weights:
        for flip in (False, True):
            seg = Segmenter(weights, head_weight=args.head_weight, flip_average=flip)
            parts = []
            for name, scenes in sets.items():
                ok, fill, typ = [], [], []
                for sc in scenes:
                    for v, r in zip(sc.vials, seg.read(sc.image, [v.box for v in sc.vials])):
                        ok.append(int(r.content) == v.content)
                        fill.append(abs(r.fill_level - v.fill_level))
                        typ.append(int(r.vial_type) == v.vial_type)
                parts.append(f"{name}: phase {np.mean(ok):.3f} fill p95 "
                             f"{np.percentile(fill, 95):.3f} type {np.mean(typ):.3f}")
            print(f"{Path(weights).name} {'flip' if flip else 'plain'}  " + " | ".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
