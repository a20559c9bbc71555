"""Run ultralytics offline: a project-local settings dir with its font, no downloads."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

#: Where ultralytics keeps settings and fonts (ignored by git, under runs/).
DEFAULT_CONFIG_DIR = Path(__file__).resolve().parents[2] / "runs" / "vision" / "ultralytics"
_FONTS = ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",)


def offline_ultralytics(config_dir: str | Path | None = None) -> Path:
    """Set the environment so that importing ultralytics never reaches the network.

    Must run before `import ultralytics`. Places a font as Arial.ttf (and Arial.Unicode.ttf)
    in the config dir, which is what ultralytics would otherwise download for its plots.
    """
    cfg = Path(os.environ.get("YOLO_CONFIG_DIR") or config_dir or DEFAULT_CONFIG_DIR)
    cfg.mkdir(parents=True, exist_ok=True)
    os.environ["YOLO_CONFIG_DIR"] = str(cfg)
    os.environ["YOLO_OFFLINE"] = "True"
    os.environ.setdefault("YOLO_VERBOSE", "False")
    font = next((f for f in _FONTS if Path(f).is_file()), None)
    if font is None:
        import cv2  # opencv-python ships no TTF; fall back to any font matplotlib has

        try:
            import matplotlib

            font = str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf")
        except ImportError:
            font = None
        del cv2
    if font:
        for name in ("Arial.ttf", "Arial.Unicode.ttf"):
            if not (cfg / name).exists():
                shutil.copy(font, cfg / name)
    return cfg


def load_yolo(weights: str | Path):
    """An ultralytics YOLO model from a local file; FileNotFoundError if it is missing."""
    weights = Path(weights)
    if not weights.is_file():
        raise FileNotFoundError(f"model file not found: {weights}")
    offline_ultralytics()
    from ultralytics import YOLO

    return YOLO(str(weights))
