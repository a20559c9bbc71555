"""The simulated camera of a rack: images of what the simulated lab holds, for vision checks.

In the headless simulation no camera exists, so the picture of a rack at a station is
rendered by the project's scene generators from the simulation's truth: each vial's
`stations.VialState` (solid and liquid put in, capped, solid dispersed) becomes a
`VialSpec`, the rack a `RackView`, and the generator named in config/vision.yaml
(`sim_camera.renderer`: MuJoCo or the 2-D compositor) renders it. A station always shows
the same room; a sample always looks the same; each capture (a "look") has its own camera
jitter and noise, from a seed, so a run is reproducible and a second look is a new image.

Importable and usable without ROS. MuJoCo renders in a spawned worker process (see
`scenes.py`: EGL and torch crash together in one process).
"""

from __future__ import annotations

import math
import multiprocessing
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from mobile_chemist.config import load_yaml, settings_from_section
from mobile_chemist.errors import ConfigError
from mobile_chemist.stations import VialState
from mobile_chemist.vision.classes import Row, VialType
from mobile_chemist.vision.scenes import RENDERERS
from mobile_chemist.vision.synthetic import RackView, Scene, VialSpec, render_rack


@dataclass(frozen=True)
class SimCameraSettings:
    """config/vision.yaml `sim_camera`: what the simulated rack camera renders, and how."""

    renderer: str = "mujoco"
    vial_type: str = "headspace_20ml"
    vial_volume_ml: float = 20.0          # liquid volume that fills the glass interior
    solid_min_fraction: float = 0.04      # a powder bed is seen at least this high ...
    solid_fraction_per_mg: float = 0.01   # ... and this much higher per mg
    width: int = 640
    height: int = 480
    pitch: float = 1.3                    # rack slot pitch / vial diameter
    fill: float = 0.85
    fovy_deg: float = 50.0
    elevation_deg: float = 8.0
    jitter_deg: float = 0.5
    jitter_px: float = 4.0
    frame_id: str = "camera_color_optical_frame"
    seed: int = 0

    def __post_init__(self):
        if self.renderer not in RENDERERS:
            raise ValueError(f"renderer must be one of {RENDERERS}, not {self.renderer!r}")
        if self.vial_type not in {t.label for t in VialType if t != VialType.UNKNOWN}:
            raise ValueError(f"unknown vial_type {self.vial_type!r}")
        if self.vial_volume_ml <= 0:
            raise ValueError("vial_volume_ml must be positive")

    @property
    def vial_type_enum(self) -> VialType:
        return VialType[self.vial_type.upper()]

    def intrinsics(self) -> tuple[float, float, float]:
        """(focal length px, cx, cy) of the pinhole camera (MuJoCo: fovy is vertical)."""
        f = (self.height / 2) / math.tan(math.radians(self.fovy_deg) / 2)
        return f, self.width / 2, self.height / 2


def load_sim_camera_settings(path: str | Path | None = None) -> SimCameraSettings:
    """The `sim_camera` section of config/vision.yaml (or another vision config)."""
    from mobile_chemist.vision.pipeline import DEFAULT_CONFIG

    path = Path(path) if path else DEFAULT_CONFIG
    data = load_yaml(path)
    if "sim_camera" not in data:
        raise ConfigError(f"{path}: missing section 'sim_camera'")
    return settings_from_section(SimCameraSettings, data["sim_camera"], f"{path}: sim_camera")


def _seed_of(text: str) -> int:
    return zlib.crc32(text.encode())


def vial_spec(vial_id: str, state: VialState, cfg: SimCameraSettings) -> VialSpec:
    """What a vial looks like, from what the simulated stations did to it.

    Solid alone is a powder bed; liquid over solid that sonication has not dispersed is a
    clear liquid over the bed; dispersed, the whole is a turbid suspension; liquid alone
    is a clear liquid. Heights are fractions of the glass interior.
    """
    solid = 0.0
    if state.solid_mg > 0:
        solid = min(0.5, cfg.solid_min_fraction + cfg.solid_fraction_per_mg * state.solid_mg)
    liquid = min(0.95, state.liquid_ml / cfg.vial_volume_ml)
    if liquid <= 0:
        layers = [(0.0, solid, Row.SOLID)] if solid else []
    elif solid and state.dispersed:
        layers = [(0.0, max(liquid, solid), Row.TURBID)]
    elif solid:
        layers = [(0.0, solid, Row.SOLID), (solid, max(liquid + solid, solid + 0.02), Row.LIQUID)]
    else:
        layers = [(0.0, liquid, Row.LIQUID)]
    return VialSpec(cap=state.capped, layers=tuple((lo, min(hi, 0.95), int(r)) for lo, hi, r in layers),
                    appearance_seed=_seed_of(vial_id))


def rack_view(vials: Sequence[tuple[str, VialState] | None], station: str,
              cfg: SimCameraSettings) -> RackView:
    """The rack at `station` holding `vials` in slot order (None: an empty slot)."""
    return RackView(
        vial_type=cfg.vial_type_enum,
        slots=tuple(None if v is None else vial_spec(v[0], v[1], cfg) for v in vials),
        room_seed=_seed_of(f"{cfg.seed}/{station}"), pitch=cfg.pitch, fill=cfg.fill,
        fovy_deg=cfg.fovy_deg, elevation_deg=cfg.elevation_deg, jitter_deg=cfg.jitter_deg,
        jitter_px=cfg.jitter_px)


def _ignore_sigint() -> None:
    # The worker shares the node's process group: Ctrl-C is the parent's to handle.
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _render_mujoco(view: RackView, seed: int, width: int, height: int) -> Scene:
    from mobile_chemist.vision.mujoco_scene import render_mujoco_rack

    return render_mujoco_rack(view, seed, width, height)


class RackCamera:
    """Captures images of a rack with the configured renderer; one seed per capture."""

    def __init__(self, cfg: SimCameraSettings):
        self.cfg = cfg
        self.captures = 0
        self._pool = None

    def render(self, view: RackView, seed: int) -> Scene:
        """One image of `view` (a pure function of view and seed)."""
        if self.cfg.renderer == "2d":
            return render_rack(view, seed, self.cfg.width, self.cfg.height)
        if self._pool is None:
            self._pool = multiprocessing.get_context("spawn").Pool(1, initializer=_ignore_sigint)
        return self._pool.apply(_render_mujoco, (view, seed, self.cfg.width, self.cfg.height))

    def capture(self, vials: Sequence[tuple[str, VialState] | None], station: str) -> Scene:
        """The next look at the rack at `station`."""
        self.captures += 1
        return self.render(rack_view(vials, station, self.cfg),
                           _seed_of(f"{self.cfg.seed}/look/{self.captures}"))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool.join()
            self._pool = None
