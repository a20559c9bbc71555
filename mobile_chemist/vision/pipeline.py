"""The vision pipeline: find vials, read their cap, layers, content and fill level.

One detector pass over the whole frame gives the vial boxes and types; the phase
segmenter then reads all vial crops in one batch. Which backend decides what (the
project's synthetic-trained models or HeinSight's real-image models) comes from
config/vision.yaml. Importable without ROS.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mobile_chemist.vision.classes import (
    DETECTOR_CLASSES,
    HEINSIGHT_CONTENT,
    Phase,
    VialType,
)
from mobile_chemist.vision.frame_quality import FrameLimits
from mobile_chemist.vision.frame_quality import measure as measure_frame

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = REPO / "config" / "vision.yaml"

#: Smallest and largest frames the pipeline accepts (pixels per side).
MIN_SIDE, MAX_SIDE = 32, 8192


class ImageError(ValueError):
    """The image cannot be processed (empty, truncated, odd encoding or size)."""


class ModelError(RuntimeError):
    """A model file is missing or does not load."""


@dataclass
class Layer:
    top: float
    bottom: float
    phase: Phase
    confidence: float


@dataclass
class Detection:
    box: tuple[float, float, float, float]
    confidence: float
    vial_type: VialType = VialType.UNKNOWN
    type_confidence: float = 0.0
    cap_present: bool = False
    cap_confidence: float = 0.0               # 0: not judged
    content: Phase = Phase.EMPTY
    content_confidence: float = 0.0
    layers: list[Layer] = field(default_factory=list)
    fill_level: float = float("nan")
    backend: str = ""
    mask: np.ndarray | None = None            # H x W uint8 (0/255) or None


def validate_image(image: Any) -> np.ndarray:
    """Check an H x W x 3 uint8 BGR image (or H x W mono, made BGR); raise ImageError."""
    if image is None:
        raise ImageError("no image")
    img = np.asarray(image)
    if img.size == 0:
        raise ImageError("empty image")
    if img.dtype != np.uint8:
        raise ImageError(f"expected 8-bit pixels, got {img.dtype}")
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise ImageError(f"expected H x W x 3 pixels, got shape {img.shape}")
    if img.shape[2] == 4:
        img = img[..., :3]
    h, w = img.shape[:2]
    if min(h, w) < MIN_SIDE or max(h, w) > MAX_SIDE:
        raise ImageError(f"image size {w}x{h} outside {MIN_SIDE}..{MAX_SIDE} pixels per side")
    return np.ascontiguousarray(img)


def resolve_path(path: str, base: Path = REPO) -> Path:
    """'heinsight:<rel>' is inside the installed heinsight package; relative = repo."""
    if path.startswith("heinsight:"):
        import importlib.util

        spec = importlib.util.find_spec("heinsight")
        if spec is None or not spec.submodule_search_locations:
            raise ModelError("the heinsight package is not installed")
        return Path(next(iter(spec.submodule_search_locations))) / path.split(":", 1)[1]
    p = Path(path).expanduser()
    return p if p.is_absolute() else base / p


def load_config(path: str | Path | None = None) -> dict:
    path = Path(path) if path else DEFAULT_CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"vision config not found: {path}")
    cfg = yaml.safe_load(path.read_text()) or {}
    for key in ("backends", "decide"):
        if key not in cfg:
            raise ValueError(f"{path}: missing section {key!r}")
    for what, backend in cfg["decide"].items():
        if backend not in cfg["backends"]:
            raise ValueError(f"{path}: decide.{what} names unknown backend {backend!r}")
    return cfg


def _load(loader, path: Path):
    """Load a model file; any failure (missing, truncated, wrong format) is a ModelError."""
    try:
        return loader(path)
    except FileNotFoundError as exc:
        raise ModelError(str(exc)) from exc
    except Exception as exc:  # noqa: BLE001 - torch/ultralytics raise many kinds
        what = ", ".join(map(str, path)) if isinstance(path, list) else path
        raise ModelError(f"cannot load model {what}: {exc}") from exc


def segmenter_paths(cfg: dict, base: Path = REPO) -> list[Path]:
    """The weights `segmenter` names: one file, or a list of files read as an ensemble."""
    named = cfg["segmenter"]
    named = [named] if isinstance(named, str) else list(named)
    if not named or not all(isinstance(n, str) for n in named):
        raise ValueError(f"segmenter must be a path or a list of paths, not {cfg['segmenter']!r}")
    return [resolve_path(n, base) for n in named]


def load_segmenter(cfg: dict, base: Path = REPO):
    """The phase segmenter as the synthetic backend's config sets it up (its weights,
    `head_weight`, `flip_average`, `shift_average`); a missing or unreadable file is a
    ModelError."""
    from mobile_chemist.vision.segmenter import Segmenter

    return _load(lambda p: Segmenter(p, head_weight=float(cfg.get("head_weight", 0.0)),
                                     flip_average=bool(cfg.get("flip_average", False)),
                                     shift_average=float(cfg.get("shift_average", 0.0))),
                 segmenter_paths(cfg, base))


#: Where the synthetic backend takes a vial's type from: the detector's class, or the
#: segmenter's vial head (which sees the crop at 4x the detector's resolution).
TYPE_SOURCES = ("detector", "segmenter")


class SyntheticBackend:
    """The project's models: a YOLO vial detector and the row-wise phase segmenter."""

    name = "synthetic"

    def __init__(self, cfg: dict, base: Path = REPO):
        from mobile_chemist.vision.ultra import load_yolo

        self.cfg = cfg
        self.detector_path = resolve_path(cfg["detector"], base)
        self.type_from = cfg.get("type_from", "segmenter")
        if self.type_from not in TYPE_SOURCES:
            raise ValueError(f"type_from must be one of {TYPE_SOURCES}, not {self.type_from!r}")
        self.detector = _load(load_yolo, self.detector_path)
        self.segmenter = load_segmenter(cfg, base)

    def detect(self, image: np.ndarray) -> list[Detection]:
        # Class-agnostic NMS: two types predicted for one vial must not make two vials.
        res = self.detector.predict(image, imgsz=int(self.cfg.get("imgsz", 384)),
                                    conf=float(self.cfg.get("conf", 0.3)),
                                    iou=float(self.cfg.get("iou", 0.5)), device="cpu",
                                    agnostic_nms=bool(self.cfg.get("agnostic_nms", True)),
                                    max_det=int(self.cfg.get("max_det", 64)), verbose=False)[0]
        boxes = res.boxes
        out = []
        for xyxy, conf, cls in zip(boxes.xyxy.numpy(), boxes.conf.numpy(), boxes.cls.numpy()):
            out.append(Detection(box=tuple(float(v) for v in xyxy), confidence=float(conf),
                                 vial_type=DETECTOR_CLASSES[int(cls)],
                                 type_confidence=float(conf), backend=self.name))
        return out

    def read(self, image: np.ndarray, dets: list[Detection], cap: bool, phases: bool) -> None:
        readings = self.segmenter.read(image, [d.box for d in dets],
                                       refine=bool(self.cfg.get("refine", False)))
        for d, r in zip(dets, readings):
            if self.type_from == "segmenter":
                d.vial_type, d.type_confidence = r.vial_type, r.type_confidence
            if cap:
                d.cap_present, d.cap_confidence = r.cap_present, r.cap_confidence
            if phases:
                d.content, d.content_confidence = r.content, r.content_confidence
                d.layers = [Layer(t, b, p, c) for t, b, p, c in r.layers]
                d.fill_level = r.fill_level
            if cap or phases:
                _credit(d, self.name)


class HeinSightBackend:
    """HeinSight's real-image YOLOv8 models (vessel detector, content detector).

    Trained on photographs of single vessels; it has no cap class, no two-liquid class, no
    foam class and no vial types (see models/README.md).
    """

    name = "heinsight"

    def __init__(self, cfg: dict, base: Path = REPO):
        from mobile_chemist.vision.ultra import load_yolo

        self.cfg = cfg
        self.vessel = _load(load_yolo, resolve_path(cfg["vessel"], base))
        self.content = _load(load_yolo, resolve_path(cfg["content"], base))

    def detect(self, image: np.ndarray) -> list[Detection]:
        res = self.vessel.predict(image, imgsz=int(self.cfg.get("imgsz_vessel", 640)),
                                  conf=float(self.cfg.get("conf", 0.25)), device="cpu",
                                  max_det=int(self.cfg.get("max_det", 64)), verbose=False)[0]
        return [Detection(box=tuple(float(v) for v in xyxy), confidence=float(c),
                          backend=self.name)
                for xyxy, c in zip(res.boxes.xyxy.numpy(), res.boxes.conf.numpy())]

    def read(self, image: np.ndarray, dets: list[Detection], cap: bool, phases: bool) -> None:
        if not phases or not dets:
            return
        h, w = image.shape[:2]
        crops, origins = [], []
        for d in dets:
            x1, y1, x2, y2 = (int(round(v)) for v in d.box)
            x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
            crops.append(image[y1:max(y2, y1 + 1), x1:max(x2, x1 + 1)])
            origins.append((x1, y1, y2))
        results = self.content.predict(crops, imgsz=int(self.cfg.get("imgsz_content", 320)),
                                       conf=float(self.cfg.get("content_conf", 0.25)),
                                       iou=0.25, max_det=4, device="cpu", verbose=False)
        names = self.content.names
        for d, res, (x1, y1, y2) in zip(dets, results, origins):
            layers = []
            for xyxy, c, k in zip(res.boxes.xyxy.numpy(), res.boxes.conf.numpy(),
                                  res.boxes.cls.numpy()):
                phase = HEINSIGHT_CONTENT.get(names[int(k)])
                if phase is not None:
                    layers.append(Layer(float(xyxy[1] + y1), float(xyxy[3] + y1), phase, float(c)))
            layers.sort(key=lambda l: l.top)
            d.layers = layers
            present = {l.phase for l in layers}
            # The same precedence as content_of() for our rows.
            for p in (Phase.HETEROGENEOUS, Phase.HOMOGENEOUS, Phase.SOLID, Phase.RESIDUE):
                if p in present:
                    d.content = p
                    d.content_confidence = max(l.confidence for l in layers if l.phase == p)
                    break
            else:
                d.content, d.content_confidence = Phase.EMPTY, 0.5
            bulk = [l.top for l in layers if l.phase in (Phase.HOMOGENEOUS, Phase.HETEROGENEOUS,
                                                         Phase.SOLID)]
            height = max(y2 - y1, 1)
            d.fill_level = float(np.clip((y2 - min(bulk)) / height, 0, 1)) if bulk else 0.0
            _credit(d, self.name)


def _credit(d: Detection, backend: str) -> None:
    """Name every backend that decided something about `d` ("heinsight+synthetic")."""
    names = d.backend.split("+") if d.backend else []
    if backend not in names:
        d.backend = "+".join(names + [backend])


BACKENDS = {"synthetic": SyntheticBackend, "heinsight": HeinSightBackend}


class VisionPipeline:
    """Detect vials and read them, with the backends config/vision.yaml chooses.

    Thread-safe: calls are serialised (the models are not re-entrant).
    """

    def __init__(self, config: dict | str | Path | None = None, base: Path = REPO):
        self.config = config if isinstance(config, dict) else load_config(config)
        self.threads = int(self.config.get("threads", 0))
        self._pin_threads()
        decide = self.config["decide"]
        self.backends = {}
        for name in sorted(set(decide.values())):
            kind = self.config["backends"][name].get("kind", name)
            if kind not in BACKENDS:
                raise ValueError(f"unknown backend kind {kind!r}")
            self.backends[name] = BACKENDS[kind](self.config["backends"][name], base)
        self.decide = decide
        self.frame_limits = FrameLimits.from_config(self.config.get("frame_limits"))
        self._lock = threading.Lock()

    def frame_problems(self, image: Any) -> list[str]:
        """What puts `image` past the config's `frame_limits` (outside the rendered frames
        the models learned on), one phrase each; empty when nothing does."""
        return self.frame_limits.problems(measure_frame(validate_image(image)))

    def __call__(self, image: Any) -> list[Detection]:
        img = validate_image(image)
        with self._lock:
            dets = self.backends[self.decide["vials"]].detect(img)
            self._pin_threads()
            # Reading order: racks top to bottom, vials left to right.
            if dets:
                h_med = float(np.median([d.box[3] - d.box[1] for d in dets])) or 1.0
                dets.sort(key=lambda d: (round(d.box[3] / h_med), d.box[0]))
            cap_by, phase_by = self.decide.get("cap"), self.decide.get("phases")
            for name, backend in self.backends.items():
                if name in (cap_by, phase_by):
                    backend.read(img, dets, cap=name == cap_by, phases=name == phase_by)
                    self._pin_threads()
        return dets

    def _pin_threads(self) -> None:
        """Hold torch at the configured thread count.

        ultralytics' select_device() sets torch to cpu_count - 1 threads (one on a two-core
        robot PC) whenever a model sets up its predictor, that is on its first predict;
        without this the whole pipeline ran on one core after the first frame.
        """
        if not self.threads:
            return
        import torch

        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)

    def timed(self, image: Any) -> tuple[list[Detection], float]:
        t0 = time.perf_counter()
        dets = self(image)
        return dets, (time.perf_counter() - t0) * 1000


PHASE_COLOURS = {Phase.EMPTY: (200, 200, 200), Phase.HOMOGENEOUS: (255, 128, 0),
                 Phase.HETEROGENEOUS: (0, 200, 255), Phase.SOLID: (0, 128, 255),
                 Phase.TWO_LIQUID: (255, 0, 255), Phase.RESIDUE: (0, 0, 200),
                 Phase.FOAM: (255, 255, 255)}


def annotate(image: np.ndarray, dets: Sequence[Detection]) -> np.ndarray:
    """A copy of the image with boxes, layers and labels drawn (for RViz)."""
    import cv2

    out = image.copy()
    for d in dets:
        x1, y1, x2, y2 = (int(round(v)) for v in d.box)
        cv2.rectangle(out, (x1, y1), (x2, y2), (0, 255, 0), 1)
        for layer in d.layers:
            col = PHASE_COLOURS[layer.phase]
            cv2.rectangle(out, (x2 + 1, int(layer.top)), (x2 + 4, int(layer.bottom)), col, -1)
        bulk = [l.top for l in d.layers
                if l.phase in (Phase.HOMOGENEOUS, Phase.HETEROGENEOUS, Phase.SOLID)]
        if bulk:  # the fill line: top of the bulk contents
            yf = int(round(min(bulk)))
            cv2.line(out, (x1, yf), (x2, yf), (0, 0, 255), 1)
        text = f"{d.vial_type.label if d.vial_type else 'vial'}{'+cap' if d.cap_present else ''}"
        cv2.putText(out, text, (x1, max(8, y1 - 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.3,
                    (0, 255, 0), 1, cv2.LINE_AA)
        cv2.putText(out, f"{d.content.label} {d.fill_level:.2f}", (x1, max(16, y1 - 2)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.3, (0, 255, 255), 1, cv2.LINE_AA)
    return out
