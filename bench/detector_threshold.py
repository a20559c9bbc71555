"""What a vial detector's confidence threshold trades: F1, vials missed and false boxes.

    python bench/detector_threshold.py [DETECTOR ...] [--thresholds 0.15 0.2 0.25 0.3]
                                       [--scenes 200] [--held-out] [--skip N]
                                       [--kind random|rack|edge] [--vials N]
                                       [--config config/vision.yaml]

For each detector's weights (default: the one the config names), with the config's input
size and detection settings, on validation scenes of both generators (the scene choice the other diagnostics
share, `scenes.add_scene_arguments`; held-out only to diagnose, never to choose): a vial is found when a box at or above the threshold matches it at IoU >= 0.5,
whatever its type (`metrics.counts_at_threshold`); with the frames in which every vial is
found (`--vials 16`: the latency benchmark's frames at validation seeds). The figures behind
`conf` in the config.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mobile_chemist.vision.scenes import add_scene_arguments, scene_sets  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("detectors", nargs="*")
    p.add_argument("--thresholds", type=float, nargs="+", default=[0.15, 0.2, 0.25, 0.3])
    p.add_argument("--config", help="vision config (default config/vision.yaml)")
    add_scene_arguments(p, scenes=200)
    args = p.parse_args()
    sets = scene_sets(args)   # before torch loads
    from mobile_chemist.vision.metrics import counts_at_threshold, f1, frames_complete
    from mobile_chemist.vision.pipeline import SyntheticBackend, load_config

    cfg = load_config(args.config)["backends"]["synthetic"]
    lowest = min(args.thresholds)
    for weights in args.detectors or [cfg["detector"]]:
        backend = SyntheticBackend(dict(cfg, detector=weights, conf=lowest))
        print(f"== {weights} (input {cfg.get('imgsz')})")
        for name, scenes in sets.items():
            dets = [backend.detect(sc.image) for sc in scenes]
            truths = [sc.vials for sc in scenes]
            n = sum(len(t) for t in truths)
            print(f"  {name}: {len(scenes)} scenes, {n} vials")
            for c in sorted(args.thresholds):
                m, fp, fn = counts_at_threshold(dets, truths, c)
                print(f"    conf {c:.2f}: F1 {f1(m, fp, fn):.3f}, missed {fn}, false {fp}, "
                      f"every vial found in {frames_complete(dets, truths, c)} of {len(scenes)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
