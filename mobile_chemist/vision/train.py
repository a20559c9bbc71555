"""Reproduce the committed models from the synthetic generator (CPU, offline)."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from mobile_chemist.vision.synthetic import (
    SEG_SEED_BASE,
    TRAIN_SEED_BASE,
    VAL_SEED_BASE,
    write_yolo_dataset,
)
from mobile_chemist.vision.ultra import offline_ultralytics

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "models"
WORK = REPO / "runs" / "vision"


@dataclass
class TrainPlan:
    """Everything that decides the committed models (recorded next to them)."""

    det_train_images: int = 1000
    det_val_images: int = 100
    det_epochs: int = 8
    det_imgsz: int = 384
    det_batch: int = 8
    det_model: str = "mobile_chemist/vision/vial_detector.yaml"  # relative to the repo
    # Stage 2: more epochs from stage 1's best weights (ultralytics' automatic optimiser
    # picks a cautious AdamW rate for short runs; stage 2 restarts the schedule).
    det_stage2_epochs: int = 10
    det_stage2_lr: float = 0.002
    seg_scenes: int = 1500
    seg_epochs: int = 6
    seg_jitter: float = 0.06         # box noise (fraction of width/height, 1 sigma) of crops
    seed: int = 0


def train_detector(plan: TrainPlan, work: Path = WORK, log=print) -> Path:
    """Train the vial detector from scratch; returns its best weights."""
    offline_ultralytics()
    from ultralytics import YOLO

    data_root = work / f"det_data_{plan.det_train_images}"
    data = data_root / "data.yaml"
    if not data.is_file():
        log(f"[detector] rendering {plan.det_train_images} + {plan.det_val_images} scenes "
            f"into {data_root}")
        write_yolo_dataset(data_root,
                           range(TRAIN_SEED_BASE, TRAIN_SEED_BASE + plan.det_train_images),
                           range(VAL_SEED_BASE, VAL_SEED_BASE + plan.det_val_images))
    model = YOLO(str(REPO / plan.det_model) if (REPO / plan.det_model).is_file() else plan.det_model)
    t0 = time.time()
    model.train(data=str(data), epochs=plan.det_epochs, imgsz=plan.det_imgsz,
                batch=plan.det_batch, workers=2, amp=False, plots=False, device="cpu",
                seed=plan.seed, deterministic=True, close_mosaic=1, warmup_epochs=1,
                project=str(work / "train"), name="detector", exist_ok=True, verbose=False,
                pretrained=False)
    best = work / "train" / "detector" / "weights" / "best.pt"
    log(f"[detector] stage 1 trained in {time.time() - t0:.0f} s")
    if plan.det_stage2_epochs:
        best = train_detector_stage2(plan, best, work, log)
    return best


def train_detector_stage2(plan: TrainPlan, stage1: Path, work: Path = WORK, log=print) -> Path:
    """Continue from stage 1's best weights with a fresh AdamW schedule."""
    offline_ultralytics()
    from ultralytics import YOLO

    data = work / f"det_data_{plan.det_train_images}" / "data.yaml"
    t0 = time.time()
    model = YOLO(str(stage1))
    model.train(data=str(data), epochs=plan.det_stage2_epochs, imgsz=plan.det_imgsz,
                batch=plan.det_batch, workers=2, amp=False, plots=False, device="cpu",
                seed=plan.seed, deterministic=True, close_mosaic=1, warmup_epochs=0,
                optimizer="AdamW", lr0=plan.det_stage2_lr, project=str(work / "train"),
                name="detector_stage2", exist_ok=True, verbose=False)
    log(f"[detector] stage 2 trained in {time.time() - t0:.0f} s")
    return work / "train" / "detector_stage2" / "weights" / "best.pt"


def train_phase_segmenter(plan: TrainPlan, work: Path = WORK, log=print) -> Path:
    import numpy as np

    from mobile_chemist.vision.segmenter import make_crops, train_segmenter

    cache = work / f"seg_crops_{plan.seg_scenes}_j{plan.seg_jitter:g}.npz"
    if cache.is_file():
        d = np.load(cache)
        crops, labels = d["crops"], d["labels"]
    else:
        log(f"[segmenter] rendering {plan.seg_scenes} scenes for crops")
        crops, labels = make_crops(range(SEG_SEED_BASE, SEG_SEED_BASE + plan.seg_scenes),
                                   jitter=plan.seg_jitter, seed=plan.seed)
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(cache, crops=crops, labels=labels)
    log(f"[segmenter] {len(crops)} crops")
    return train_segmenter(crops, labels, work / "train" / "phase_segmenter.pt",
                           epochs=plan.seg_epochs, seed=plan.seed, log=log)


def install(detector: Path | None, segmenter: Path | None, plan: TrainPlan,
            models: Path = MODELS) -> None:
    """Copy trained weights into models/ and record the plan that made them."""
    models.mkdir(parents=True, exist_ok=True)
    if detector is not None:
        shutil.copy(detector, models / "vial_detector.pt")
    if segmenter is not None:
        shutil.copy(segmenter, models / "phase_segmenter.pt")
    (models / "train_plan.json").write_text(json.dumps(asdict(plan), indent=1) + "\n")
