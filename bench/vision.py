#!/usr/bin/env python3
"""Benchmark the vision pipeline on held-out synthetic scenes (seeds training never used),
from both generators: the 2-D compositor and MuJoCo.

Per scene set and backend (the project's synthetic-trained models, and HeinSight on the classes it
covers): per-class precision / recall and AP50 of vial detection (HeinSight: one class),
vial-type and cap accuracy, phase (content class) accuracy with per-class precision and
recall, and the fill-level error as a fraction of the glass height (mean, p95); then the
full pipeline's latency on 640x480 frames showing a rack of 16 vials, on this CPU.

    .venv/bin/python bench/vision.py [--scenes 200] [--mujoco-scenes 100]
                                     [--heinsight-scenes 10] [--json out.json]
    .venv/bin/python bench/vision.py --quick      # smoke run
    .venv/bin/python bench/vision.py --validation # validation seeds: where settings are chosen
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mobile_chemist.vision.cli import main

if __name__ == "__main__":
    argv = sys.argv[1:]
    if "--quick" in argv:
        argv = [a for a in argv if a != "--quick"] + ["--scenes", "20", "--heinsight-scenes",
                                                       "2", "--latency-frames", "3",
                                                       "--mujoco-scenes", "5"]
    sys.exit(main(["eval", *argv]))
