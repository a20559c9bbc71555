"""Reproduce the committed models from the synthetic generator (CPU, offline)."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

from mobile_chemist.vision.synthetic import (
    GENERATOR_VERSION,
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

    det_train_images: int = 1000     # 2-D scenes (synthetic.render_scene)
    det_val_images: int = 100
    # MuJoCo scenes (mujoco_scene.render_mujoco_scene) added for the stages on "mix".
    det_mujoco_train_images: int = 600
    det_mujoco_val_images: int = 50
    # MuJoCo rack-camera views (scenes.SCENE_KINDS "rack") added to the mixed set's training
    # images: one rack filling the frame on a clear bench, as the campaign's camera sees it.
    det_mujoco_rack_images: int = 0
    # Whether the detector's scenes carry generator v4's variants (synthetic.VARIANTS: low
    # fills, settled solid beds); without them its 2-D scenes are generator v3's.
    det_variants: bool = True
    det_epochs: int = 8
    det_imgsz: int = 384
    det_batch: int = 8
    det_model: str = "mobile_chemist/vision/vial_detector.yaml"  # relative to the repo
    # torch threads while the detector trains; 0 leaves ultralytics' choice, cpu_count - 1,
    # which trained the committed detector on one core of two.
    det_threads: int = 1
    # Stages 2, 3, ...: [epochs, AdamW lr0, data ("2d" or "mix")] from the previous
    # stage's best weights (ultralytics' automatic optimiser picks a cautious rate for
    # short runs; each stage restarts the schedule).
    # "mixN": the mixed set with N MuJoCo images instead of det_mujoco_train_images (stage 6:
    # more of the robot's view tightened the boxes on it; models/HISTORY.md); "+negM",
    # "+printM" and "+labelN" add frames without vials, of printed matter and of labelled
    # vials to a set's training images (`data_counts`; stage 8's labelled vials because real
    # vials carry printed labels, and without them labelled vials were missed far more often;
    # stage 9's "+variedN", wider labels, so that labels of kinds it never saw hide fewer;
    # stage 10's "+cameraN", such labels under the camera effects, as a camera shows them;
    # stage 11's "+tallN", such labels covering most of the glass, as on a 2 mL vial).
    det_finetune: list = field(default_factory=lambda: [[10, 0.002, "2d"], [10, 0.001, "2d"],
                                                        [10, 0.001, "mix"], [8, 0.0005, "mix"],
                                                        [6, 0.0005, "mix1800"],
                                                        [6, 0.0005, "mix1800+neg1000"],
                                                        [6, 0.0005,
                                                         "mix1800+neg1000+print1000"
                                                         "+label500"],
                                                        [4, 0.0005,
                                                         "mix1800+neg1000+print1000"
                                                         "+label500+varied500"],
                                                        [4, 0.0005,
                                                         "mix1800+neg1000+print1000"
                                                         "+label500+varied500+camera500"],
                                                        [4, 0.0005,
                                                         "mix1800+neg1000+print1000"
                                                         "+label500+varied500+camera500"
                                                         "+tall500"]])
    seg_scenes: int = 2500           # 2-D scenes for segmenter crops
    # MuJoCo scenes for crops (9000, then 12000 x 24 epochs before: models/HISTORY.md; 15000 x
    # 20 epochs takes the same training time on a 2-core CPU).
    seg_mujoco_scenes: int = 15000
    seg_mujoco_rack_scenes: int = 0  # MuJoCo rack-camera views for segmenter crops
    # Further segmenters, each this plan's on N MuJoCo scenes, saved as phase_segmenter_N.pt;
    # config/vision.yaml averages their readings with the first's (18000 alone did not beat
    # 15000, the two averaged did: models/HISTORY.md).
    seg_ensemble_mujoco_scenes: list = field(default_factory=lambda: [18000])
    seg_epochs: int = 20
    # Then [epochs, max lr] stages from the previous stage's weights, on the same crops
    # (a 6-epoch stage at 1e-3 was tried: validation phase accuracy fell on MuJoCo scenes).
    seg_finetune: list = field(default_factory=list)
    # Then, for each segmenter, [epochs, max lr, 2-D scenes, MuJoCo scenes]: a last stage on
    # fresh scenes (the seeds after every segmenter's crops), each frame cropped as rendered
    # and once more after a camera change past the generators' range (corruptions.degrade:
    # blur, noise, JPEG, gain), so that a defocused, noisy or compressed frame reads closer to
    # a clean one (bench/camera_shift.py; models/HISTORY.md). Empty: no such stage.
    seg_degraded_stage: list = field(default_factory=list)
    seg_jitter: float = 0.06         # box noise (fraction of width/height, 1 sigma) of crops
    seg_width: int = 1               # channel multiplier of the segmenter network
    seg_batch: int = 64              # crops per step (the max lr stays 3e-3)
    seg_flip: bool = True            # mirror half the training crops (left to right)
    seg_device: str = "cpu"          # torch device the segmenter trained on
    # torch CPU threads while the segmenter trains. Set, not inherited: after the detector
    # trains in the same process, ultralytics has left torch at cpu_count - 1.
    seg_threads: int = 2
    # Seeds: the detector's is ultralytics' (weight init, batch order, augmentation); the
    # segmenter's draws its weights, batches and crop box noise. Apart so that one model
    # can be trained again with another seed while the other's record stays true.
    det_seed: int = 1                # the committed detector's (models/HISTORY.md)
    seg_seed: int = 0
    workers: int = 2                 # scene rendering processes


class DetectorSet(NamedTuple):
    """What a detector data spec asks for (`data_counts`)."""

    mujoco: int          # MuJoCo scenes beside the plan's 2-D ones
    negatives: int = 0   # frames without vials (negatives.render_vial_free)
    printed: int = 0     # frames of print, coins and keys (negatives.render_printed_matter)
    labelled: int = 0    # training seeds of each renderer again, vials with paper labels
    varied: int = 0      # the same again with labels of the wider "varied" style
    camera: int = 0      # the same again with "varied" labels painted under the camera effects
    tall: int = 0        # the same again with "tall" labels (most of the glass) under the camera


#: "+PARTn" of a detector data spec: the DetectorSet field it sets.
_EXTRAS = {"neg": "negatives", "print": "printed", "label": "labelled", "varied": "varied",
           "camera": "camera", "tall": "tall"}


def data_counts(plan: TrainPlan, data: str) -> DetectorSet:
    """A detector data spec: "2d" (no MuJoCo scenes), "mix" (the plan's
    det_mujoco_train_images), "mixN" (N MuJoCo scenes), then optionally, each once, "+negM"
    (M frames without vials), "+printM" (M frames of printed matter), "+labelN"
    (training scenes 0..N-1 of both renderers again with paper labels,
    paper_labels.write_labelled_images), "+variedN" (the same with "varied" labels) and
    "+cameraN" (the same with "camera" labels: "varied" ones painted before the camera
    effects) and "+tallN" (the same with "tall" labels: "camera" ones covering most of the
    glass) added to the training images. Anything else is a ValueError."""
    base, *extras = data.split("+")
    bad = ValueError(f"detector data must be '2d', 'mix' or 'mixN' (N MuJoCo images), "
                     f"optionally with '+negM', '+printM', '+labelN', '+variedN', '+cameraN', "
                     f"'+tallN' (each once), not {data!r}")
    if base == "2d":
        n_mujoco = 0
    elif base == "mix":
        n_mujoco = plan.det_mujoco_train_images
    elif base.startswith("mix") and base[3:].isdigit() and int(base[3:]) > 0:
        n_mujoco = int(base[3:])
    else:
        raise bad
    counts = {}
    for extra in extras:
        name = extra.rstrip("0123456789")
        n = extra[len(name):]
        if name not in _EXTRAS or _EXTRAS[name] in counts or not n or int(n) == 0:
            raise bad
        counts[_EXTRAS[name]] = int(n)
    return DetectorSet(n_mujoco, **counts)


def _extra_frames(work: Path, name: str, write, log) -> str:
    """A directory of extra training frames under `work`, written once by `write(dir)`."""
    root = work / name
    if not (root / "complete").is_file():
        log(f"[detector] rendering {name} into {root}")
        write(root)
        (root / "complete").touch()
    return str((root / "images" / "train").resolve())


def detector_data(plan: TrainPlan, data: str, work: Path = WORK, log=print) -> Path:
    """The detector's data set (`data_counts`), rendered into `work` once."""
    counts = data_counts(plan, data)
    root = work / f"det_data_{plan.det_train_images}"
    if counts.mujoco:
        root = root.with_name(root.name + f"_mj{counts.mujoco}")
        if plan.det_mujoco_rack_images:
            root = root.with_name(root.name + f"_rk{plan.det_mujoco_rack_images}")
    if not plan.det_variants:
        root = root.with_name(root.name + "_novar")
    root = root.with_name(root.name + f"_v{GENERATOR_VERSION}")
    # data.yaml appears after the first part; this marker only once every part is written,
    # so an interrupted render is redone rather than trained on.
    done = root / "complete"
    if not done.is_file():
        _render_detector_data(plan, root, counts.mujoco, log)
        done.touch()
    if not any(counts[1:]):
        return root / "data.yaml"
    from mobile_chemist.vision import negatives, paper_labels

    # The extra frames have directories of their own, so that sets with them share their
    # scenes with the same set without them instead of rendering them again.
    seeds = range(TRAIN_SEED_BASE, TRAIN_SEED_BASE + max(counts[1:]))
    extra, tag = [], ""
    if counts.negatives:
        extra.append(_extra_frames(work, f"det_vial_free_{counts.negatives}", lambda d:
                                   negatives.write_vial_free_images(d, seeds[:counts.negatives]),
                                   log))
        tag += f"_neg{counts.negatives}"
    if counts.printed:
        extra.append(_extra_frames(work, f"det_printed_{counts.printed}", lambda d:
                                   negatives.write_printed_images(d, seeds[:counts.printed]),
                                   log))
        tag += f"_print{counts.printed}"
    for style, n, name, directory in (("train", counts.labelled, "label", "det_labelled"),
                                      ("varied", counts.varied, "varied", "det_varied_labels"),
                                      ("camera", counts.camera, "camera", "det_camera_labels"),
                                      ("tall", counts.tall, "tall", "det_tall_labels")):
        if not n:
            continue

        def write_labelled(d, style=style, n=n):
            for renderer in ("2d", "mujoco"):
                paper_labels.write_labelled_images(d, seeds[:n], renderer,
                                                   workers=plan.workers, style=style)

        extra.append(_extra_frames(work, f"{directory}_{n}_v{GENERATOR_VERSION}",
                                   write_labelled, log))
        tag += f"_{name}{n}"
    both = root.with_name(root.name + tag)
    both.mkdir(parents=True, exist_ok=True)
    spec = json.loads((root / "data.yaml").read_text())
    spec.update(path=str(root.resolve()), train=[str((root / "images" / "train").resolve()),
                                                 *extra])
    (both / "data.yaml").write_text(json.dumps(spec, indent=1))
    return both / "data.yaml"


def _render_detector_data(plan: TrainPlan, root: Path, n_mujoco: int, log) -> None:
    """The scenes of a detector data set (2-D, then MuJoCo ones if any) into `root`."""
    log(f"[detector] rendering {plan.det_train_images} + {plan.det_val_images} 2-D scenes "
        f"into {root}")
    write_yolo_dataset(root, range(TRAIN_SEED_BASE, TRAIN_SEED_BASE + plan.det_train_images),
                       range(VAL_SEED_BASE, VAL_SEED_BASE + plan.det_val_images),
                       variants=plan.det_variants)
    if n_mujoco:
        log(f"[detector] rendering {n_mujoco} + "
            f"{plan.det_mujoco_val_images} MuJoCo scenes into {root}")
        write_yolo_dataset(
            root, range(TRAIN_SEED_BASE, TRAIN_SEED_BASE + n_mujoco),
            range(VAL_SEED_BASE, VAL_SEED_BASE + plan.det_mujoco_val_images),
            renderer="mujoco", workers=plan.workers, variants=plan.det_variants)
        if plan.det_mujoco_rack_images:
            log(f"[detector] rendering {plan.det_mujoco_rack_images} MuJoCo rack views "
                f"into {root}")
            write_yolo_dataset(
                root, range(TRAIN_SEED_BASE, TRAIN_SEED_BASE + plan.det_mujoco_rack_images),
                (), renderer="mujoco", workers=plan.workers, kind="rack",
                variants=plan.det_variants)


def train_detector(plan: TrainPlan, work: Path = WORK, log=print) -> Path:
    """Train the vial detector from scratch, then fine-tune it; returns its best weights."""
    offline_ultralytics()
    from ultralytics import YOLO

    data = detector_data(plan, "2d", work, log)
    model = YOLO(str(REPO / plan.det_model) if (REPO / plan.det_model).is_file() else plan.det_model)
    t0 = time.time()
    _train_yolo(model, plan, data, work, "detector", warmup_epochs=1, pretrained=False)
    best = work / "train" / "detector" / "weights" / "best.pt"
    log(f"[detector] stage 1 trained in {time.time() - t0:.0f} s")
    for k, (epochs, lr, which) in enumerate(plan.det_finetune, start=2):
        best = train_detector_stage(plan, best, k, int(epochs), float(lr), which, work, log)
    return best


def _train_yolo(model, plan: TrainPlan, data: Path, work: Path, name: str, **over) -> None:
    """One ultralytics training run with the plan's fixed settings (CPU, offline, seeded)."""
    if plan.det_threads:
        import torch

        # The trainer's select_device() has just set its own count; the plan's wins.
        model.add_callback("on_pretrain_routine_start",
                           lambda trainer: torch.set_num_threads(plan.det_threads))
    args = dict(data=str(data), epochs=plan.det_epochs, imgsz=plan.det_imgsz,
                batch=plan.det_batch, workers=2, amp=False, plots=False, device="cpu",
                seed=plan.det_seed, deterministic=True, close_mosaic=1,
                # Absolute: ultralytics puts a relative project under its own runs/detect/.
                project=str((work / "train").resolve()), name=name, exist_ok=True,
                verbose=False)
    model.train(**{**args, **over})


def train_detector_stage(plan: TrainPlan, start: Path, stage: int, epochs: int, lr: float,
                         data: str = "2d", work: Path = WORK, log=print) -> Path:
    """Continue from `start` (the previous stage's best weights) with a fresh AdamW schedule."""
    offline_ultralytics()
    from ultralytics import YOLO

    data_yaml = detector_data(plan, data, work, log)
    t0 = time.time()
    model = YOLO(str(start))
    name = f"detector_stage{stage}"
    _train_yolo(model, plan, data_yaml, work, name, epochs=epochs, warmup_epochs=0,
                optimizer="AdamW", lr0=lr)
    log(f"[detector] stage {stage} ({data}) trained in {time.time() - t0:.0f} s")
    return work / "train" / name / "weights" / "best.pt"


def _cached_crops(plan: TrainPlan, renderer: str, n: int, work: Path, log=print,
                  kind: str = "random", first: int = 0, degraded_copies: int = 0):
    """Crops of scenes SEG_SEED_BASE + [first, n): cached scene ranges from `first`, then
    the rest rendered (and cached), so a larger plan renders only the scenes it adds."""
    from mobile_chemist.vision.segmenter import CropSet, make_crops

    tag = (("" if renderer == "2d" else "_mujoco") + ("" if kind == "random" else f"_{kind}")
           + (f"_degraded{degraded_copies}" if degraded_copies else ""))
    suffix = f"_j{plan.seg_jitter:g}_s{plan.seg_seed}_v{GENERATOR_VERSION}.npz"
    parts, start = [], first
    while start < n:
        prefix = f"seg_crops{tag}_{start}-"
        ends = [p.name[len(prefix):-len(suffix)] for p in work.glob(f"{prefix}*{suffix}")]
        end = max((int(e) for e in ends if e.isdigit() and start < int(e) <= n), default=None)
        if end is not None:
            parts.append(CropSet.load(work / f"{prefix}{end}{suffix}"))
        else:
            end = n
            what = ((renderer if kind == "random" else f"{renderer} {kind}")
                    + (" (and degraded)" if degraded_copies else ""))
            log(f"[segmenter] rendering {what} scenes {start}..{end - 1} for crops")
            crops = make_crops(range(SEG_SEED_BASE + start, SEG_SEED_BASE + end),
                               jitter=plan.seg_jitter, seed=plan.seg_seed, renderer=renderer,
                               workers=plan.workers, kind=kind,
                               degraded_copies=degraded_copies)
            work.mkdir(parents=True, exist_ok=True)
            crops.save(work / f"{prefix}{end}{suffix}")
            parts.append(crops)
        start = end
    return parts


def segmenter_data(plan: TrainPlan, work: Path = WORK, log=print):
    """Crops from 2-D and MuJoCo scenes (cached in `work` by scene range)."""
    parts = []
    for renderer, kind, n in (("2d", "random", plan.seg_scenes),
                              ("mujoco", "random", plan.seg_mujoco_scenes),
                              ("mujoco", "rack", plan.seg_mujoco_rack_scenes)):
        parts += _cached_crops(plan, renderer, n, work, log, kind)
    return _joined(parts)


def train_phase_segmenter(plan: TrainPlan, work: Path = WORK, log=print,
                          name: str = "phase_segmenter") -> Path:
    from mobile_chemist.vision.segmenter import train_segmenter

    data = segmenter_data(plan, work, log)
    log(f"[segmenter] {len(data)} crops")
    if plan.seg_threads:
        import torch

        torch.set_num_threads(plan.seg_threads)
    common = dict(seed=plan.seg_seed, width=plan.seg_width, batch=plan.seg_batch,
                  device=plan.seg_device, flip=plan.seg_flip, log=log)
    out = train_segmenter(data, work / "train" / f"{name}.pt", epochs=plan.seg_epochs, **common)
    for k, (epochs, lr) in enumerate(plan.seg_finetune, start=2):
        out = train_segmenter(data, work / "train" / f"{name}_stage{k}.pt",
                              epochs=int(epochs), lr=float(lr), start=out, **common)
    if plan.seg_degraded_stage:
        epochs, lr, n_2d, n_mujoco = plan.seg_degraded_stage
        data = degraded_crops(plan, int(n_2d), int(n_mujoco), work, log)
        log(f"[segmenter] degraded stage: {len(data)} crops")
        out = train_segmenter(data, work / "train" / f"{name}_degraded.pt", epochs=int(epochs),
                              lr=float(lr), start=out, **common)
    return out


def degraded_crops(plan: TrainPlan, n_2d: int, n_mujoco: int, work: Path = WORK, log=print):
    """Crops for `seg_degraded_stage`: `n_2d` 2-D and `n_mujoco` MuJoCo scenes after the
    seeds of every segmenter's crops, each frame as rendered and once degraded."""
    parts = []
    for renderer, before, n in (
            ("2d", plan.seg_scenes, n_2d),
            ("mujoco", max([plan.seg_mujoco_scenes, *plan.seg_ensemble_mujoco_scenes]), n_mujoco)):
        if n:
            parts += _cached_crops(plan, renderer, before + n, work, log, first=before,
                                   degraded_copies=1)
    return _joined(parts)


def _joined(parts: list):
    """One CropSet of several, in order."""
    data = parts[0]
    for more in parts[1:]:
        data = data + more
    return data


def train_phase_segmenters(plan: TrainPlan, work: Path = WORK, log=print) -> dict[str, Path]:
    """The plan's segmenter and its ensemble members (`seg_ensemble_mujoco_scenes`), by
    the file name each is installed under."""
    out = {"phase_segmenter.pt": train_phase_segmenter(plan, work, log)}
    for n in map(int, plan.seg_ensemble_mujoco_scenes):
        member = replace(plan, seg_mujoco_scenes=n, seg_ensemble_mujoco_scenes=[])
        log(f"[segmenter] ensemble member on {n} MuJoCo scenes")
        out[f"phase_segmenter_{n}.pt"] = train_phase_segmenter(member, work, log,
                                                               name=f"phase_segmenter_{n}")
    return out


def install(detector: Path | None, segmenters: dict[str, Path] | None, plan: TrainPlan,
            models: Path = MODELS) -> None:
    """Copy trained weights into models/ and record the plan that made them."""
    models.mkdir(parents=True, exist_ok=True)
    if detector is not None:
        shutil.copy(detector, models / "vial_detector.pt")
    for name, path in (segmenters or {}).items():
        shutil.copy(path, models / name)
    (models / "train_plan.json").write_text(json.dumps(asdict(plan), indent=1) + "\n")
