"""The vision benchmark: both backends on held-out synthetic scenes, and CPU latency."""

from __future__ import annotations

import copy
import json
import math
import platform
import time
from pathlib import Path

import numpy as np

from mobile_chemist.vision.classes import HEINSIGHT_BLIND, Phase
from mobile_chemist.vision.metrics import evaluate
from mobile_chemist.vision.pipeline import VisionPipeline, load_config
from mobile_chemist.vision.synthetic import EVAL_SEED_BASE, render_scene

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
    scenes = [render_scene(LATENCY_SEED_BASE + i, n_vials=16) for i in range(frames + warmup)]
    times, found = [], []
    for i, s in enumerate(scenes):
        t0 = time.perf_counter()
        dets = pipe(s.image)
        dt = (time.perf_counter() - t0) * 1000
        if i >= warmup:
            times.append(dt)
            found.append(len(dets))
    t = np.asarray(times)
    return {"frames": len(t), "vials_per_frame": 16, "found_mean": float(np.mean(found)),
            "mean_ms": float(t.mean()), "median_ms": float(np.median(t)),
            "p95_ms": float(np.percentile(t, 95)), "max_ms": float(t.max())}


def run_benchmark(scenes: int = 200, heinsight_scenes: int = 20, latency_frames: int = 10,
                  config: str | Path | None = None, log=print) -> dict:
    cfg = load_config(config)
    import torch

    out: dict = {"machine": {"cpu_threads": torch.get_num_threads(),
                             "processor": platform.processor() or platform.machine()},
                 "held_out_seeds": [EVAL_SEED_BASE, EVAL_SEED_BASE + scenes]}
    seeds = range(EVAL_SEED_BASE, EVAL_SEED_BASE + scenes)

    # Accuracy: detections down to conf 0.01 for AP; the rest at the deployed threshold.
    syn_cfg = cfg["backends"]["synthetic"]
    pipe = VisionPipeline(_with(cfg, "synthetic", conf=0.01))
    t0 = time.time()
    out["synthetic"] = evaluate(pipe, seeds, conf_threshold=float(syn_cfg.get("conf", 0.3)))
    log(f"[bench] synthetic backend on {scenes} scenes: {time.time() - t0:.0f} s")
    deployed = VisionPipeline(_with(cfg, "synthetic"))
    out["synthetic"]["latency_16_vials"] = latency(deployed, latency_frames)

    if heinsight_scenes:
        hs_cfg = cfg["backends"]["heinsight"]
        try:
            # At its deployed threshold: every vessel costs a YOLOv8m pass on its crop, so
            # the AP50 here stops at that threshold's recall (a lower bound).
            hpipe = VisionPipeline(_with(cfg, "heinsight"))
        except Exception as exc:  # noqa: BLE001 - report, do not fail the benchmark
            out["heinsight"] = {"error": str(exc)}
        else:
            hseeds = range(EVAL_SEED_BASE, EVAL_SEED_BASE + heinsight_scenes)
            t0 = time.time()
            res = evaluate(hpipe, hseeds, conf_threshold=float(hs_cfg.get("conf", 0.25)),
                           class_agnostic=True, judge_type=False, judge_cap=False)
            covered = [p for p in Phase if p not in HEINSIGHT_BLIND]
            conf = np.asarray(res["phase_confusion"])
            idx = [int(p) for p in covered]
            sub = conf[np.ix_(idx, range(len(Phase)))]
            res["phase_accuracy_covered_classes"] = float(
                sum(conf[i, i] for i in idx) / max(sub.sum(), 1))
            res["covered_classes"] = [p.label for p in covered]
            log(f"[bench] heinsight backend on {heinsight_scenes} scenes: {time.time() - t0:.0f} s")
            res["latency_16_vials"] = latency(hpipe, max(2, latency_frames // 5), warmup=1)
            out["heinsight"] = res
            # Same scenes for the synthetic backend, for a like-for-like comparison.
            like = evaluate(pipe, hseeds, conf_threshold=float(syn_cfg.get("conf", 0.3)),
                            class_agnostic=True)
            out["synthetic_on_heinsight_scenes"] = {
                k: like[k] for k in ("detection", "phase_accuracy", "fill_error", "matched_vials")}
    return out


def _f(x: float, pct: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{100 * x:.1f}%" if pct else f"{x:.3f}"


def report(res: dict) -> str:
    """Human-readable tables of a run_benchmark() result."""
    lines = []
    for name in ("synthetic", "heinsight"):
        r = res.get(name)
        if not r:
            continue
        if "error" in r:
            lines.append(f"== {name}: not run ({r['error']})")
            continue
        lines.append(f"== backend {name} ({r['matched_vials']} matched vials)")
        lines.append(f"{'class':<16}{'truth':>6}{'AP50':>8}{'P':>8}{'R':>8}")
        for c, v in r["detection"]["per_class"].items():
            lines.append(f"{c:<16}{v['truth']:>6}{_f(v['ap50']):>8}{_f(v['precision']):>8}"
                         f"{_f(v['recall']):>8}")
        a = r["detection"]["any_vial"]
        lines.append(f"{'any vial':<16}{a['truth']:>6}{_f(a['ap50']):>8}{_f(a['precision']):>8}"
                     f"{_f(a['recall']):>8}   (class-agnostic)")
        lines.append(f"mAP50 over types {_f(r['detection']['map50'])}   vial type acc "
                     f"{_f(r['vial_type_accuracy'])}   cap acc {_f(r['cap_accuracy'])}")
        lines.append(f"phase (content) accuracy {_f(r['phase_accuracy'])}"
                     + (f"   on the classes HeinSight covers "
                        f"{_f(r['phase_accuracy_covered_classes'])}"
                        if "phase_accuracy_covered_classes" in r else ""))
        lines.append(f"{'phase':<16}{'n':>6}{'P':>8}{'R':>8}")
        for c, v in r["phase_per_class"].items():
            lines.append(f"{c:<16}{v['n']:>6}{_f(v['precision']):>8}{_f(v['recall']):>8}")
        fe = r["fill_error"]
        lines.append(f"fill-level error (fraction of glass height): mean {_f(fe['mean'])} "
                     f"p95 {_f(fe['p95'])} over {fe['n']} vials")
        lat = r.get("latency_16_vials")
        if lat:
            lines.append(f"latency, 640x480 frame with 16 vials: mean {lat['mean_ms']:.0f} ms, "
                         f"median {lat['median_ms']:.0f} ms, p95 {lat['p95_ms']:.0f} ms "
                         f"({lat['frames']} frames, {lat['found_mean']:.1f} vials found)")
    like = res.get("synthetic_on_heinsight_scenes")
    if like:
        lines.append(f"== synthetic backend on HeinSight's scenes (class-agnostic): mAP50 "
                     f"{_f(like['detection']['map50'])}, phase acc {_f(like['phase_accuracy'])}, "
                     f"fill p95 {_f(like['fill_error']['p95'])}")
    return "\n".join(lines)


def save(res: dict, path: str | Path) -> None:
    Path(path).write_text(json.dumps(res, indent=1, default=float) + "\n")
