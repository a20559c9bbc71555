"""mobile-chemist vision: reproduce the committed models and their metrics.

    mobile-chemist vision train [--only detector|segmenter] [--no-install]
        Render the synthetic training sets (runs/vision/, git-ignored), train the vial
        detector (YOLOv8 layout from vial_detector.yaml, CPU, offline) and the phase
        segmenters (the plan's and its ensemble members) from scratch, and copy the weights
        into models/. Options named after the plan's fields (--seg-mujoco-scenes,
        --seg-epochs, --seg-width, --seg-device cuda, ...) train a variant; without them the
        run repeats models/train_plan.json.
    mobile-chemist vision eval [--scenes 200] [--heinsight-scenes 10] [--photos DIR]
                               [--json PATH]
        Score both backends on held-out synthetic scenes, count the vials each finds in
        real photographs without vials (by default those installed packages ship), and time
        the pipeline (the same as bench/vision.py).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields


def _count(text: str) -> int:
    """A non-negative whole number (0 skips that part of the benchmark)."""
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return n


def _stages(text: str) -> list:
    """'10:0.002:2d,10:0.001:mix,6:0.0005:mix1800' -> [[10, 0.002, '2d'], [10, 0.001, 'mix'],
    [6, 0.0005, 'mix1800']] ("mixN": the mixed set with N MuJoCo images; "+negM", "+printM",
    "+labelN", "+variedN" and "+cameraN" add frames without vials, of printed matter, of
    vials with labels of three styles: data_counts)."""
    from mobile_chemist.vision.train import TrainPlan, data_counts

    try:
        stages = [[int(e), float(lr), data] for e, lr, data in
                  (part.split(":") for part in text.split(",") if part.strip())]
        for _, _, data in stages:
            data_counts(TrainPlan(), data)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected EPOCHS:LR:DATA[,...] with DATA 2d, mix or mixN (and +negM, +printM, "
            f"+labelN, +variedN, +cameraN), got "
            f"{text!r}") from None
    return stages


def _degraded_stage(text: str) -> list:
    """'6:0.0003:500:3000' -> [6, 0.0003, 500, 3000]; '' -> [] (no such stage)."""
    if not text.strip():
        return []
    try:
        epochs, lr, n_2d, n_mujoco = text.split(":")
        stage = [int(epochs), float(lr), int(n_2d), int(n_mujoco)]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected EPOCHS:LR:SCENES:MUJOCO_SCENES, got {text!r}") from None
    if stage[0] < 1 or stage[1] <= 0 or min(stage[2:]) < 0 or not any(stage[2:]):
        raise argparse.ArgumentTypeError(
            f"a degraded stage needs epochs >= 1, a positive LR and some scenes, got {text!r}")
    return stage


def plan_from_args(args):
    """The committed models' TrainPlan with the options given on the command line."""
    from mobile_chemist.vision.train import TrainPlan

    plan = TrainPlan()
    for f in fields(TrainPlan):
        value = getattr(args, f.name, None)
        if value is not None:
            setattr(plan, f.name, value)
    return plan


def _train(args) -> int:
    from mobile_chemist.vision.train import install, train_detector, train_phase_segmenters

    plan = plan_from_args(args)
    det = seg = None
    if args.only in (None, "detector"):
        det = train_detector(plan)
    if args.only in (None, "segmenter"):
        seg = train_phase_segmenters(plan)
    if not args.no_install:
        install(det, seg, plan)
        print("[vision] installed into models/")
    return 0


def photos_from_args(args) -> list:
    """The photographs without vials that --photos names (none for 'none')."""
    from mobile_chemist.vision.evaluation import vial_free_photos

    if args.photos == "none":
        return []
    return vial_free_photos(args.photos)


def _eval(args) -> int:
    from mobile_chemist.vision.evaluation import report, run_benchmark, save

    res = run_benchmark(scenes=args.scenes, heinsight_scenes=args.heinsight_scenes,
                        latency_frames=args.latency_frames, mujoco_scenes=args.mujoco_scenes,
                        config=args.config, validation=args.validation,
                        photos=photos_from_args(args))
    print(report(res))
    if args.json:
        save(res, args.json)
        print(f"[vision] wrote {args.json}")
    return 0


def add_photos_argument(parser) -> None:
    parser.add_argument("--photos", metavar="DIR",
                        help="count false vials in the photographs of DIR, which must show no "
                             "vial (default: the real photographs installed packages ship; "
                             "'none' skips it)")


def add_skip_argument(parser) -> None:
    """--skip N: start N seeds into the scene range, so that a rule can be judged on scenes
    that earlier decisions (made on the first ones) never saw."""
    parser.add_argument("--skip", type=_count, default=0, metavar="N",
                        help="leave out the first N seeds of the range (default 0)")


def build_parser(prog: str = "mobile-chemist vision") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train the project's vision models from synthetic data")
    t.add_argument("--only", choices=("detector", "segmenter"))
    t.add_argument("--no-install", action="store_true", help="leave models/ as it is")
    # The plan's fields, overridable (the defaults made the committed models).
    t.add_argument("--det-train-images", type=int)
    t.add_argument("--det-epochs", type=int)
    t.add_argument("--det-imgsz", type=int)
    t.add_argument("--det-finetune", type=_stages, metavar="EPOCHS:LR:DATA[,...]",
                   help="detector fine-tuning stages after stage 1, DATA 2d, mix or mixN "
                        "(the mixed set with N MuJoCo images), +negM, +printM, +labelN "
                        "adding frames without vials, of printed matter, of labelled vials "
                        "(each once); '' for none")
    t.add_argument("--det-threads", type=int,
                   help="torch threads for the detector's training (0: ultralytics' choice)")
    t.add_argument("--det-mujoco-train-images", type=int)
    t.add_argument("--det-mujoco-rack-images", type=int,
                   help="MuJoCo rack-camera views added to the mixed detector set")
    t.add_argument("--det-seed", type=int, help="the detector's training seed")
    t.add_argument("--det-variants", action=argparse.BooleanOptionalAction, default=None,
                   help="the detector's scenes with (or without) generator v4's variants")
    t.add_argument("--seg-scenes", type=int)
    t.add_argument("--seg-mujoco-scenes", type=int)
    t.add_argument("--seg-mujoco-rack-scenes", type=int,
                   help="MuJoCo rack-camera views for the segmenter's crops")
    t.add_argument("--seg-ensemble-mujoco-scenes", type=int, nargs="*", metavar="N",
                   help="further segmenters, each on N MuJoCo scenes, averaged with the "
                        "first by the config (none: one segmenter)")
    t.add_argument("--seg-epochs", type=int)
    t.add_argument("--seg-degraded-stage", type=_degraded_stage,
                   metavar="EPOCHS:LR:SCENES:MUJOCO_SCENES",
                   help="a last segmenter stage on fresh 2-D and MuJoCo scenes, each frame "
                        "cropped as rendered and once after a camera change past the "
                        "generators' range ('' for none)")
    t.add_argument("--seg-width", type=int, help="channel multiplier of the segmenter")
    t.add_argument("--seg-batch", type=int)
    t.add_argument("--seg-flip", action=argparse.BooleanOptionalAction, default=None,
                   help="mirror half the segmenter's training crops")
    t.add_argument("--seg-device", help="torch device for the segmenter (cpu, cuda)")
    t.add_argument("--seg-threads", type=int, help="torch CPU threads for the segmenter")
    t.add_argument("--seg-seed", type=int,
                   help="the segmenter's training seed (weights, batches, crop box noise)")
    t.add_argument("--workers", type=int, help="scene rendering processes")
    t.set_defaults(func=_train)
    e = sub.add_parser("eval", help="benchmark both backends on held-out synthetic scenes")
    e.add_argument("--scenes", type=_count, default=200)
    e.add_argument("--mujoco-scenes", type=_count, default=100,
                   help="held-out MuJoCo-rendered scenes (0: 2-D scenes only)")
    e.add_argument("--heinsight-scenes", type=_count, default=10)
    e.add_argument("--latency-frames", type=_count, default=10)
    e.add_argument("--config", help="vision config (default config/vision.yaml)")
    e.add_argument("--validation", action="store_true",
                   help="score validation scenes (seeds 5 000 000 up), where settings are "
                        "chosen, instead of the held-out ones")
    add_photos_argument(e)
    e.add_argument("--json", help="also write the results here")
    e.set_defaults(func=_eval)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
