#!/usr/bin/env python3
"""Vials found with and without paper labels on them (paper_labels, "check" style).

    python bench/labelled_vials.py [DETECTOR ...] [--scenes 200] [--fraction 1.0]
                                   [--style check|unseen] [--under-camera] [--by-height]
                                   [--held-out] [--skip N]
                                   [--kind random|rack] [--config C] [--save PREFIX]

Real vials often carry a printed label, and a detector taught that print is not a vial
(negatives.render_printed_matter) could lose them. On validation scenes of both
generators (held-out only to diagnose), each vial gets a label with probability
`--fraction`, drawn onto the rendered frame; for each detector's weights (default: the
config's), with the config's input size and threshold, the vials found (a box at IoU >=
0.5, any type, `metrics.counts_at_threshold`), missed and false boxes, plain and labelled.
The labels are drawn, not rendered, by default in a style the "train" labels of `+labelN`
training data include: this tells whether a detector learnt such labelled vials.
(`+variedN` training labels are wider still, but never dark paper, light print or that font.)
`--style unseen` draws dark labels with light print, taller than any training label but
`+tallN`'s, in a font no training label uses (the printed-matter frames do): whether that
carries to labels it never saw. Neither tells how it fares on a real label. `--under-camera` paints the
labels before the camera effects (gain, colour cast, blur, noise, JPEG), as `+cameraN`
training labels are, instead of onto the finished frame (other label draws: the seeds
differ). `--by-height` also splits the labelled vials missed by the height of their box
(under 40 px, 40-60 px, 60 px and taller): where a label hides a vial.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mobile_chemist.vision.paper_labels import (STYLES, TRAINING_STYLES,  # noqa: E402
                                                add_paper_labels)
from mobile_chemist.vision.scenes import add_scene_arguments, scene_sets  # noqa: E402


#: Box heights (px) that bound the bands of `--by-height`.
HEIGHT_EDGES = (40, 60)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("detectors", nargs="*")
    p.add_argument("--fraction", type=float, default=1.0, help="share of vials labelled")
    p.add_argument("--style", choices=[s for s in STYLES if s not in TRAINING_STYLES],
                   default="check", help="label style (those of training data are left out)")
    p.add_argument("--under-camera", action="store_true",
                   help="paint the labels before the camera effects, not onto the frame")
    p.add_argument("--by-height", action="store_true",
                   help="split the labelled vials missed by box height")
    p.add_argument("--config", help="vision config (default config/vision.yaml)")
    p.add_argument("--save", help="write each generator's first scene, plain beside labelled, "
                                  "to PREFIX_2d.png and PREFIX_mujoco.png")
    add_scene_arguments(p, scenes=200)
    args = p.parse_args()
    if not 0.0 <= args.fraction <= 1.0:
        p.error(f"--fraction must lie in [0, 1], not {args.fraction}")
    sets = scene_sets(args)   # before torch loads
    if args.under_camera:
        labelled = {name: [sc.image for sc in scenes] for name, scenes in
                    scene_sets(args, labels=(args.style, args.fraction)).items()}
    else:
        labelled = {name: [add_paper_labels(sc.image, sc.vials, sc.seed, args.fraction,
                                            args.style) for sc in scenes]
                    for name, scenes in sets.items()}
    import cv2
    import numpy as np

    from mobile_chemist.vision.metrics import counts_at_threshold, f1, missed_by_height
    from mobile_chemist.vision.pipeline import SyntheticBackend, load_config

    cfg = load_config(args.config)["backends"]["synthetic"]
    if args.save:
        for name, scenes in sets.items():
            cv2.imwrite(f"{args.save}_{name}.png", np.hstack([scenes[0].image,
                                                              labelled[name][0]]))
    for weights in args.detectors or [cfg["detector"]]:
        backend = SyntheticBackend(dict(cfg, detector=weights))
        print(f"== {weights} (input {cfg.get('imgsz')}, threshold {cfg['conf']})")
        for name, scenes in sets.items():
            truths = [sc.vials for sc in scenes]
            print(f"  {name}: {len(scenes)} scenes, {sum(len(t) for t in truths)} vials")
            for tag, images in (("plain", [sc.image for sc in scenes]),
                                ("labelled", labelled[name])):
                dets = [backend.detect(im) for im in images]
                m, fp, fn = counts_at_threshold(dets, truths, cfg["conf"])
                print(f"    {tag:8s} missed {fn}, false {fp}, F1 {f1(m, fp, fn):.3f}",
                      flush=True)
                if args.by_height and tag == "labelled":
                    bands = missed_by_height(dets, truths, cfg["conf"], HEIGHT_EDGES)
                    names = [f"under {HEIGHT_EDGES[0]} px"] + [
                        f"{lo}-{hi} px" for lo, hi in zip(HEIGHT_EDGES, HEIGHT_EDGES[1:])] + [
                        f"{HEIGHT_EDGES[-1]} px and taller"]
                    print("      missed by box height: " + ", ".join(
                        f"{n} {miss} of {tot}" for n, (miss, tot) in zip(names, bands)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
