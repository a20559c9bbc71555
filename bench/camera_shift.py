#!/usr/bin/env python3
"""What camera changes past the generators' range cost the vision pipeline.

    python bench/camera_shift.py [--changes blur motion ...] [--config config/vision.yaml]
                                 [--scenes 100] [--held-out] [--skip N] [--kind random|rack]

The deployed pipeline (the config's backends, weights and threshold) reads validation
scenes of both generators as rendered and then with each change of
`mobile_chemist.vision.corruptions.CORRUPTIONS` at its two severities, all past the
generators' camera effects: blur, smear, sensor noise, hard JPEG, low or high gain, a
lower-resolution sensor, a warm white balance. (A plan's `seg_degraded_stage` trains the
segmenter on the first kinds, `corruptions.TRAINED`; smear, the sensor and the white
balance stay out of every training set.) For each: the frames the config's `frame_limits` flag
as unlike the training frames (`VisionPipeline.frame_problems`), vials found and false boxes at the deployed threshold,
any-vial AP50, phase (content class) accuracy and fill-level p95 with the change against
the frames as rendered and its 95 % interval from resampling the scenes together. A
diagnosis of how far the synthetic models carry toward a real camera, not a model choice.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mobile_chemist.vision.corruptions import CORRUPTIONS, corrupt  # noqa: E402
from mobile_chemist.vision.scenes import add_scene_arguments, scene_sets  # noqa: E402


def changed(scenes: list, name: str, severity: float) -> list:
    """The scenes with `name` at `severity` applied to each image (seeded by the scene)."""
    return [dataclasses.replace(sc, image=corrupt(sc.image, name, severity, sc.seed))
            for sc in scenes]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--changes", nargs="+", choices=list(CORRUPTIONS), default=list(CORRUPTIONS))
    p.add_argument("--config", help="vision config (default config/vision.yaml)")
    add_scene_arguments(p, scenes=100)
    args = p.parse_args()
    sets = scene_sets(args)   # before torch loads
    from mobile_chemist.vision.evaluation import _with
    from mobile_chemist.vision.metrics import p95, paired_scene_bootstrap, summarise, tally
    from mobile_chemist.vision.pipeline import VisionPipeline, load_config

    cfg = load_config(args.config)
    conf = float(cfg["backends"]["synthetic"].get("conf", 0.3))
    # Every box down to 0.01 for AP; counts, phase and fill at the deployed threshold.
    pipe = VisionPipeline(_with(cfg, "synthetic", conf=0.01))
    for renderer, scenes in sets.items():
        n = len(scenes)
        print(f"== {renderer}: {n} scenes, {sum(len(s.vials) for s in scenes)} vials "
              f"(seeds {scenes[0].seed}..{scenes[-1].seed}), threshold {conf}")
        print(f"  {'change':<14} {'flagged':>7} {'found':>6} {'false':>6} {'AP50':>6}  {'phase':>6} "
              f"{'(vs rendered, 95 % interval)':<30} {'fill p95':>8} (vs rendered)")
        clean = tally(pipe, scenes, conf)
        rows = [("as rendered", None, 0.0)] + [(f"{name} {sev:g}", name, sev)
                                               for name in args.changes for sev in CORRUPTIONS[name]]
        for label, name, sev in rows:
            frames = scenes if name is None else changed(scenes, name, sev)
            t = clean if name is None else tally(pipe, frames, conf)
            flagged = sum(bool(pipe.frame_problems(sc.image)) for sc in frames)
            ok = [a == b for a, b in t.content]
            ok0 = [a == b for a, b in clean.content]
            ap = summarise(t, False)["detection"]["any_vial"]["ap50"]
            line = (f"  {label:<14} {flagged:>7} {t.any_tp:>6} {t.any_fp:>6} {ap:>6.3f}  "
                    f"{np.mean(ok):>6.3f} ")
            if name is None:
                line += f"{'':<30} {p95(t.fill_err):>8.3f}"
            else:
                lo, hi = paired_scene_bootstrap(ok0, clean.scene_of, ok, t.scene_of, n, np.mean)
                flo, fhi = paired_scene_bootstrap(clean.fill_err, clean.scene_of, t.fill_err,
                                                  t.scene_of, n, p95)
                d = np.mean(ok) - np.mean(ok0)
                fd = p95(t.fill_err) - p95(clean.fill_err)
                line += (f"{f'{d:+.3f} ({lo:+.3f} to {hi:+.3f})':<30} {p95(t.fill_err):>8.3f} "
                         f"{fd:+.3f} ({flo:+.3f} to {fhi:+.3f})")
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
