"""The vision benchmark: both backends on held-out synthetic scenes, false vials on real
photographs without vials, and CPU latency."""

from __future__ import annotations

import copy
import json
import math
import platform
import time
from pathlib import Path

import numpy as np

from mobile_chemist.vision.classes import HEINSIGHT_BLIND, Phase
from mobile_chemist.vision.metrics import (
    evaluate,
    match,
    p95,
    paired_scene_bootstrap,
    summarise,
    tally,
)
from mobile_chemist.vision.pipeline import ImageError, VisionPipeline, load_config, validate_image
from mobile_chemist.vision.scenes import iter_scenes
from mobile_chemist.vision.synthetic import EVAL_SEED_BASE, scoring_seed_base

#: Latency scenes: a 640 x 480 frame with one rack of 16 vials.
LATENCY_SEED_BASE = EVAL_SEED_BASE + 500_000


def _with(cfg: dict, backend: str, **over) -> dict:
    """The config with every decision on one backend, and its settings overridden."""
    cfg = copy.deepcopy(cfg)
    cfg["decide"] = {"vials": backend, "cap": backend, "phases": backend}
    cfg["backends"][backend].update(over)
    return cfg


def latency(pipe: VisionPipeline, frames: int = 10, warmup: int = 2) -> dict:
    """Full pipeline time per 640x480 frame showing a rack of 16 vials."""
    scenes = list(iter_scenes(range(LATENCY_SEED_BASE, LATENCY_SEED_BASE + frames + warmup),
                              n_vials=16))
    times, found, matched, complete = [], [], [], []
    for i, s in enumerate(scenes):
        t0 = time.perf_counter()
        dets = pipe(s.image)
        dt = (time.perf_counter() - t0) * 1000
        if i >= warmup:
            times.append(dt)
            found.append(len(dets))
            # Detections are not vials found: a frame can miss two and box a label twice.
            matched.append(len(match(dets, s.vials)))
            complete.append(matched[-1] == len(s.vials))
    t = np.asarray(times)
    return {"frames": len(t), "vials_per_frame": 16, "found_mean": float(np.mean(found)),
            "matched_mean": float(np.mean(matched)),
            "frames_all_found": int(sum(complete)),
            "mean_ms": float(t.mean()), "median_ms": float(np.median(t)),
            "p95_ms": float(np.percentile(t, 95)), "max_ms": float(t.max())}


#: Real photographs that installed packages ship (package, path inside it): none shows a
#: vial, so every vial found in them is a false one. The only real images this machine has;
#: a lab's own photographs of its benches without vials (`vision eval --photos DIR`) say more.
#: The first five decided detector stages 7 and 8 (models/HISTORY.md). Scikit-image's
#: photographic samples after them (its drawn ones left out) decided nothing, but what the
#: detector found in two of them (a page of text, coins) shaped stage 8's training frames.
CHOICE_PHOTOS = (("ultralytics", "assets/bus.jpg"), ("ultralytics", "assets/zidane.jpg"),
                 ("sklearn", "datasets/images/china.jpg"),
                 ("sklearn", "datasets/images/flower.jpg"),
                 ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"))
SHIPPED_PHOTOS = CHOICE_PHOTOS + tuple(
    ("skimage", f"data/{name}") for name in (
        "astronaut.png", "brick.png", "camera.png", "cell.png", "chelsea.png",
        "clock_motion.png", "coffee.png", "coins.png", "grass.png", "gravel.png",
        "hubble_deep_field.jpg", "ihc.png", "moon.png", "motorcycle_left.png", "page.png",
        "retina.jpg", "rocket.jpg"))
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def vial_free_photos(directory: str | Path | None = None) -> list[Path]:
    """The photographs of `directory` (sorted), or SHIPPED_PHOTOS of the installed packages."""
    if directory is not None:
        d = Path(directory)
        if not d.is_dir():
            raise FileNotFoundError(f"photo directory not found: {d}")
        photos = sorted(p for p in d.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
        if not photos:
            raise FileNotFoundError(f"no photographs ({', '.join(PHOTO_SUFFIXES)}) in {d}")
        return photos
    return _installed(SHIPPED_PHOTOS)


def _installed(photos) -> list[Path]:
    """The (package, path) photographs whose package is installed."""
    import importlib.util

    found = []
    for package, rel in photos:
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.submodule_search_locations:
            path = Path(next(iter(spec.submodule_search_locations))) / rel
            if path.is_file():
                found.append(path)
    return found


def false_vials(pipe: VisionPipeline, photos: list[Path]) -> dict:
    """Vials the pipeline's vial backend finds, at its deployed threshold, in photographs
    that show none: per photograph the confidences, the total, and the total in those of
    CHOICE_PHOTOS among them (a choice was made on those)."""
    import cv2

    chose = set(_installed(CHOICE_PHOTOS))
    per_photo, n_choice, false_in_choice = {}, 0, 0
    for path in photos:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"cannot read photograph {path}")
        try:
            image = validate_image(image)
        except ImageError as exc:
            raise ImageError(f"photograph {path}: {exc}") from None
        dets = pipe.backends[pipe.decide["vials"]].detect(image)
        per_photo[path.name] = sorted((round(d.confidence, 3) for d in dets), reverse=True)
        if path in chose:
            n_choice, false_in_choice = n_choice + 1, false_in_choice + len(dets)
    return {"photos": len(per_photo), "false_vials": sum(map(len, per_photo.values())),
            "choice_photos": n_choice, "false_vials_in_choice_photos": false_in_choice,
            "per_photo": per_photo}


def _heinsight_scores(hpipe: VisionPipeline, scenes: list, conf: float) -> dict:
    """HeinSight on what it covers: one vessel class, no types, no caps."""
    res = evaluate(hpipe, scenes, conf_threshold=conf, class_agnostic=True,
                   judge_type=False, judge_cap=False)
    covered = [p for p in Phase if p not in HEINSIGHT_BLIND]
    confusion = np.asarray(res["phase_confusion"])
    idx = [int(p) for p in covered]
    sub = confusion[np.ix_(idx, range(len(Phase)))]
    res["phase_accuracy_covered_classes"] = float(
        sum(confusion[i, i] for i in idx) / max(sub.sum(), 1))
    res["covered_classes"] = [p.label for p in covered]
    return res


def run_benchmark(scenes: int = 200, heinsight_scenes: int = 10, latency_frames: int = 10,
                  mujoco_scenes: int = 100, config: str | Path | None = None,
                  workers: int = 2, validation: bool = False, photos: list[Path] | None = None,
                  log=print) -> dict:
    """Both backends on held-out scenes of each generator ("2d", and "mujoco" unless
    `mujoco_scenes` is 0), the vials each finds in `photos` (photographs without vials,
    `vial_free_photos`), then the deployed pipeline's latency on 16-vial frames (unless
    `latency_frames` is 0).

    With `validation`, the scenes come from the validation seeds instead: settings (a
    threshold, an input size) are chosen there, and the held-out scenes only report.
    """
    cfg = load_config(config)
    base = scoring_seed_base(validation)
    split = "validation_seeds" if validation else "held_out_seeds"
    import torch

    out: dict = {"machine": {"cpu_threads": torch.get_num_threads(),
                             "processor": platform.processor() or platform.machine()},
                 split: {"2d": [base, base + scenes]} if scenes else {},
                 "sets": {}}
    syn_conf = float(cfg["backends"]["synthetic"].get("conf", 0.3))
    # Accuracy: detections down to conf 0.01 for AP; the rest at the deployed threshold.
    pipe = VisionPipeline(_with(cfg, "synthetic", conf=0.01))
    try:
        # At its deployed threshold: every vessel costs a YOLOv8m pass on its crop, so the
        # AP50 here stops at that threshold's recall (a lower bound).
        hpipe = VisionPipeline(_with(cfg, "heinsight")) if heinsight_scenes else None
        hs_error = None
    except Exception as exc:  # noqa: BLE001 - report, do not fail the benchmark
        hpipe, hs_error = None, str(exc)
    hs_conf = float(cfg["backends"]["heinsight"].get("conf", 0.25))
    sets = {"2d": scenes, "mujoco": mujoco_scenes}
    if mujoco_scenes:
        out[split]["mujoco"] = [base, base + mujoco_scenes]
    for renderer, n in sets.items():
        if not n:
            continue
        t0 = time.time()
        scene_set = list(iter_scenes(range(base, base + n), renderer, workers=workers))
        log(f"[bench] rendered {n} {renderer} scenes: {time.time() - t0:.0f} s")
        res: dict = {"synthetic": evaluate(pipe, scene_set, conf_threshold=syn_conf)}
        log(f"[bench] synthetic backend on {n} {renderer} scenes: {time.time() - t0:.0f} s")
        if hs_error:
            res["heinsight"] = {"error": hs_error}
        elif hpipe is not None:
            few = scene_set[:heinsight_scenes]
            t0 = time.time()
            res["heinsight"] = _heinsight_scores(hpipe, few, hs_conf)
            log(f"[bench] heinsight backend on {len(few)} {renderer} scenes: "
                f"{time.time() - t0:.0f} s")
            # The same scenes for the synthetic backend, like for like.
            like = evaluate(pipe, few, conf_threshold=syn_conf, class_agnostic=True)
            res["synthetic_on_heinsight_scenes"] = {
                k: like[k] for k in ("detection", "phase_accuracy", "fill_error", "matched_vials")}
        out["sets"][renderer] = res
    deployed = VisionPipeline(_with(cfg, "synthetic")) if photos or latency_frames else None
    if photos:
        out["photos_without_vials"] = {"synthetic": false_vials(deployed, photos)}
        if hpipe is not None:
            out["photos_without_vials"]["heinsight"] = false_vials(hpipe, photos)
    if not latency_frames:   # accuracy only (latency_frames=0): no timing to report
        return out
    out["latency_16_vials"] = {"synthetic": latency(deployed, latency_frames)}
    if hpipe is not None:
        out["latency_16_vials"]["heinsight"] = latency(hpipe, max(2, latency_frames // 5),
                                                       warmup=1)
    return out


def compare(base: str | Path | None, candidate: str | Path, scenes: int = 200,
            mujoco_scenes: int = 100, workers: int = 2, validation: bool = True,
            photos: list[Path] | None = None, skip: int = 0, log=print) -> dict:
    """Two vision configs (each naming its weights) on the same scenes, with the paired
    95 % interval of each difference (candidate - base) over resampled scenes; and the
    false vials each finds in `photos` (photographs without vials).

    Validation seeds by default: a comparison chooses between models, and choices are
    made there. `skip` starts that many seeds in (scenes no earlier choice has seen).
    """
    base_seed = scoring_seed_base(validation) + skip
    cfgs = {"base": load_config(base), "candidate": load_config(candidate)}
    pipes = {k: VisionPipeline(_with(c, "synthetic", conf=0.01)) for k, c in cfgs.items()}
    confs = {k: float(c["backends"]["synthetic"].get("conf", 0.3)) for k, c in cfgs.items()}
    out: dict = {"configs": {"base": str(base or "config/vision.yaml"),
                             "candidate": str(candidate)},
                 "validation_seeds" if validation else "held_out_seeds": base_seed, "sets": {}}
    for renderer, n in (("2d", scenes), ("mujoco", mujoco_scenes)):
        if not n:
            continue
        scene_set = list(iter_scenes(range(base_seed, base_seed + n), renderer, workers=workers))
        t = {k: tally(pipes[k], scene_set, confs[k]) for k in pipes}
        log(f"[compare] {n} {renderer} scenes read by both")
        ok = {k: [a == b for a, b in t[k].content] for k in t}
        res = {"scenes": n}
        for name, values, stat in (("phase_accuracy", ok, np.mean),
                                   ("fill_error_p95", {k: t[k].fill_err for k in t}, p95)):
            res[name] = {k: float(stat(values[k])) if len(values[k]) else float("nan")
                         for k in t}
            res[name]["difference"] = res[name]["candidate"] - res[name]["base"]
            res[name]["difference_ci95"] = paired_scene_bootstrap(
                values["base"], t["base"].scene_of, values["candidate"],
                t["candidate"].scene_of, n, stat)
        summary = {k: summarise(t[k], False) for k in t}
        res["any_vial_ap50"] = {k: summary[k]["detection"]["any_vial"]["ap50"] for k in t}
        res["map50_types"] = {k: summary[k]["detection"]["map50"] for k in t}
        out["sets"][renderer] = res
    if photos:
        out["photos_without_vials"] = {
            k: false_vials(VisionPipeline(_with(c, "synthetic")), photos) for k, c in cfgs.items()}
    return out


def report_comparison(res: dict) -> str:
    """A comparison as lines: each figure for base and candidate, and the difference."""
    lines = [f"base {res['configs']['base']}, candidate {res['configs']['candidate']}"]
    for renderer, r in res["sets"].items():
        lines.append(f"== {renderer}, {r['scenes']} scenes: any-vial AP50 "
                     f"{_f(r['any_vial_ap50']['base'])} -> {_f(r['any_vial_ap50']['candidate'])}"
                     f", mAP50 over types {_f(r['map50_types']['base'])} -> "
                     f"{_f(r['map50_types']['candidate'])}")
        for name in ("phase_accuracy", "fill_error_p95"):
            v = r[name]
            lo, hi = v["difference_ci95"]
            lines.append(f"{name}: {_f(v['base'])} -> {_f(v['candidate'])}, difference "
                         f"{v['difference']:+.3f} (95 % CI over scenes, paired {lo:+.3f} to "
                         f"{hi:+.3f})")
    fv = res.get("photos_without_vials")
    if fv:
        lines.append(f"false vials in {fv['base']['photos']} real photographs without vials: "
                     f"{fv['base']['false_vials']} -> {fv['candidate']['false_vials']}")
    return "\n".join(lines)


def _f(x: float, pct: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{100 * x:.1f}%" if pct else f"{x:.3f}"


def _ci(r: dict, key: str) -> str:
    """ " (95 % CI over scenes a-b)" where the result has that interval."""
    ci = r.get(key)
    return f" (95 % CI over scenes {_f(ci[0])}-{_f(ci[1])})" if ci else ""


def report(res: dict) -> str:
    """Human-readable tables of a run_benchmark() result."""
    lines = []
    for split in ("validation_seeds", "held_out_seeds"):
        for renderer, (lo, hi) in res.get(split, {}).items():
            lines.append(f"{renderer} scenes: {split.replace('_', ' ')} {lo}..{hi - 1}")
    for renderer, backends in res["sets"].items():
        for name in ("synthetic", "heinsight"):
            r = backends.get(name)
            if not r:
                continue
            if "error" in r:
                lines.append(f"== {renderer} scenes, {name}: not run ({r['error']})")
                continue
            lines.append(f"== {renderer} scenes, backend {name} ({r['matched_vials']} matched vials)")
            lines.append(f"{'class':<16}{'truth':>6}{'AP50':>8}{'P':>8}{'R':>8}")
            for c, v in r["detection"]["per_class"].items():
                lines.append(f"{c:<16}{v['truth']:>6}{_f(v['ap50']):>8}"
                             f"{_f(v['precision']):>8}{_f(v['recall']):>8}")
            a = r["detection"]["any_vial"]
            lines.append(f"{'any vial':<16}{a['truth']:>6}{_f(a['ap50']):>8}"
                         f"{_f(a['precision']):>8}{_f(a['recall']):>8}   (class-agnostic)")
            lines.append(f"mAP50 over types {_f(r['detection']['map50'])}   vial type acc "
                         f"{_f(r['vial_type_accuracy'])}   cap acc {_f(r['cap_accuracy'])}")
            lines.append(f"phase (content) accuracy {_f(r['phase_accuracy'])}"
                         + _ci(r, "phase_accuracy_ci95")
                         + (f"   on the classes HeinSight covers "
                            f"{_f(r['phase_accuracy_covered_classes'])}"
                            if "phase_accuracy_covered_classes" in r else ""))
            lines.append(f"{'phase':<16}{'n':>6}{'P':>8}{'R':>8}")
            for c, v in r["phase_per_class"].items():
                lines.append(f"{c:<16}{v['n']:>6}{_f(v['precision']):>8}{_f(v['recall']):>8}")
            fe = r["fill_error"]
            lines.append(f"fill-level error (fraction of glass height): mean {_f(fe['mean'])} "
                         f"p95 {_f(fe['p95'])}{_ci(fe, 'p95_ci95')} over {fe['n']} vials")
        like = backends.get("synthetic_on_heinsight_scenes")
        if like:
            lines.append(f"== {renderer} scenes, synthetic backend on HeinSight's scenes "
                         f"(class-agnostic): AP50 {_f(like['detection']['map50'])}, phase acc "
                         f"{_f(like['phase_accuracy'])}, fill p95 {_f(like['fill_error']['p95'])}")
    for name, fv in res.get("photos_without_vials", {}).items():
        worst = max(fv["per_photo"].items(), key=lambda kv: len(kv[1]))
        split = ""
        if 0 < fv["choice_photos"] < fv["photos"]:
            n_choice = fv["false_vials_in_choice_photos"]
            split = (f"; {n_choice} in the {fv['choice_photos']} that chose detector stages 7 "
                     f"and 8, {fv['false_vials'] - n_choice} in the other "
                     f"{fv['photos'] - fv['choice_photos']}")
        lines.append(f"real photographs without vials, backend {name}: {fv['false_vials']} false "
                     f"vials in {fv['photos']} photographs (most: {len(worst[1])} in {worst[0]}"
                     f"{', top confidence ' + format(worst[1][0], '.2f') if worst[1] else ''}"
                     f"{split})")
    for name, lat in res.get("latency_16_vials", {}).items():
        lines.append(f"latency {name}, 640x480 frame with 16 vials: mean {lat['mean_ms']:.0f} ms, "
                     f"median {lat['median_ms']:.0f} ms, p95 {lat['p95_ms']:.0f} ms "
                     f"({lat['frames']} frames; {lat['matched_mean']:.1f} of 16 vials found, "
                     f"{lat['found_mean']:.1f} detections; all found in "
                     f"{lat['frames_all_found']} frames)")
    return "\n".join(lines)


def save(res: dict, path: str | Path) -> None:
    Path(path).write_text(json.dumps(res, indent=1, default=float) + "\n")
