"""What a vial detector's confidence threshold trades: F1, vials missed and false boxes.

    python bench/detector_threshold.py [DETECTOR ...] [--thresholds 0.15 0.2 0.25 0.3]
                                       [--scenes 200] [--mujoco-scenes 100] [--held-out]

For each detector's weights (default: the committed one), at config/vision.yaml's input
size, on validation scenes of both generators (held-out only to diagnose, never to
choose): a vial is found when a box at or above the threshold matches it at IoU >= 0.5,
whatever its type (`metrics.counts_at_threshold`). The figures behind `conf` in the config.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mobile_chemist.vision.scenes import iter_scenes  # noqa: E402
from mobile_chemist.vision.synthetic import scoring_seed_base  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("detectors", nargs="*", default=[str(REPO / "models" / "vial_detector.pt")])
    p.add_argument("--thresholds", type=float, nargs="+", default=[0.15, 0.2, 0.25, 0.3])
    p.add_argument("--scenes", type=int, default=200, help="2-D scenes")
    p.add_argument("--mujoco-scenes", type=int, default=100)
    p.add_argument("--held-out", action="store_true")
    args = p.parse_args()
    base = scoring_seed_base(validation=not args.held_out)
    # MuJoCo's rendering workers finish before torch loads (scenes.py).
    sets = {r: list(iter_scenes(range(base, base + n), r, workers=2))
            for r, n in (("2d", args.scenes), ("mujoco", args.mujoco_scenes)) if n}
    from mobile_chemist.vision.metrics import counts_at_threshold, f1
    from mobile_chemist.vision.pipeline import SyntheticBackend, load_config

    cfg = load_config()["backends"]["synthetic"]
    lowest = min(args.thresholds)
    for weights in args.detectors:
        backend = SyntheticBackend(dict(cfg, detector=weights, conf=lowest))
        print(f"== {weights} (input {cfg.get('imgsz')})")
        for name, scenes in sets.items():
            dets = [backend.detect(sc.image) for sc in scenes]
            truths = [sc.vials for sc in scenes]
            n = sum(len(t) for t in truths)
            print(f"  {name}: {len(scenes)} scenes, {n} vials")
            for c in sorted(args.thresholds):
                m, fp, fn = counts_at_threshold(dets, truths, c)
                print(f"    conf {c:.2f}: F1 {f1(m, fp, fn):.3f}, missed {fn}, false {fp}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
