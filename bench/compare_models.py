#!/usr/bin/env python3
"""Two vision configs (each naming its weights) on the same validation scenes, paired.

    python bench/compare_models.py CANDIDATE.yaml [--base config/vision.yaml]
                                   [--scenes 200] [--mujoco-scenes 100] [--held-out]
                                   [--skip N] [--photos DIR|none] [--json out.json]

For each generator: any-vial AP50, phase (content class) accuracy and fill-level p95 of
both, and each difference (candidate - base) with a 95 % interval from resampling the
scenes together, so that a scene that is hard for both does not pass for a difference.
Then the vials each finds in real photographs without vials (`--photos`).
A candidate is a copy of config/vision.yaml with other weights or settings.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mobile_chemist.vision.cli import (add_photos_argument, add_skip_argument,  # noqa: E402
                                       photos_from_args)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("candidate")
    p.add_argument("--base", help="the config to compare against (default config/vision.yaml)")
    p.add_argument("--scenes", type=int, default=200, help="2-D scenes")
    p.add_argument("--mujoco-scenes", type=int, default=100)
    p.add_argument("--held-out", action="store_true",
                   help="held-out seeds instead of validation (to report, never to choose)")
    add_skip_argument(p)
    add_photos_argument(p)
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()
    from mobile_chemist.vision.evaluation import compare, report_comparison, save

    res = compare(args.base, args.candidate, scenes=args.scenes,
                  mujoco_scenes=args.mujoco_scenes, validation=not args.held_out,
                  photos=photos_from_args(args), skip=args.skip)
    print(report_comparison(res))
    if args.json:
        save(res, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
