"""Loading and validation of the lab layout (config/lab.yaml) and campaign (config/campaign.yaml).

Every error names the file and the dotted key that is wrong, so a user editing the YAML by
hand finds the mistake without reading code. The formulation space itself is validated by
`mobile_chemist.space.FormulationSpace`; the workflow by `mobile_chemist.workflow`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

import yaml

from mobile_chemist.errors import ConfigError

#: The package's own config directory, used when no path is given.
DEFAULT_CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"


def default_config_path(name: str) -> Path:
    """Return the path of a shipped config file (lab.yaml, campaign.yaml, workflow.yaml).

    Looks in the source checkout first, then in an installed package's share directory.
    """
    candidate = DEFAULT_CONFIG_DIR / name
    if candidate.exists():
        return candidate
    try:  # an ament (colcon) install keeps config/ under share/mobile_chemist
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("mobile_chemist")) / "config" / name
    except Exception:  # noqa: BLE001 - fall through to a clear error below
        raise ConfigError(f"cannot find config file {name!r} in {DEFAULT_CONFIG_DIR}") from None


def load_yaml(path: str | Path) -> dict:
    """Read a YAML mapping, raising ConfigError for a missing file or a syntax error."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def settings_from_section(cls, data: Any, where: str, **fixed):
    """Build a settings dataclass from a YAML section; unknown keys are a ConfigError.

    `fixed` are values the section may not set (for example limits from lab.yaml).
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    known = {f.name for f in fields(cls)} - set(fixed)
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}; known: {sorted(known)}")
    try:
        return cls(**dict(data), **fixed)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


class Reader:
    """Typed access to a nested mapping that reports errors with file and key path."""

    def __init__(self, data: Any, where: str):
        self.data = data
        self.where = where

    def error(self, message: str) -> ConfigError:
        return ConfigError(f"{self.where}: {message}")

    def child(self, key: str, *, required: bool = True, default: Any = None) -> "Reader":
        if not isinstance(self.data, Mapping):
            raise self.error("expected a mapping")
        if key not in self.data:
            if required:
                raise self.error(f"missing key {key!r}")
            return Reader(default, f"{self.where}.{key}")
        return Reader(self.data[key], f"{self.where}.{key}")

    def mapping(self) -> dict:
        if self.data is None:
            return {}
        if not isinstance(self.data, Mapping):
            raise self.error(f"expected a mapping, got {type(self.data).__name__}")
        return dict(self.data)

    def items(self):
        for key, value in self.mapping().items():
            yield str(key), Reader(value, f"{self.where}.{key}")

    def list(self) -> list:
        if self.data is None:
            return []
        if not isinstance(self.data, list):
            raise self.error(f"expected a list, got {type(self.data).__name__}")
        return list(self.data)

    def string(self) -> str:
        if not isinstance(self.data, str) or not self.data:
            raise self.error(f"expected a non-empty string, got {self.data!r}")
        return self.data

    def number(self, *, low: float | None = None, high: float | None = None) -> float:
        value = self.data
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(f"expected a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise self.error(f"expected a finite number, got {value!r}")
        if low is not None and value < low:
            raise self.error(f"must be >= {low}, got {value}")
        if high is not None and value > high:
            raise self.error(f"must be <= {high}, got {value}")
        return value

    def integer(self, *, low: int | None = None) -> int:
        value = self.data
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(f"expected an integer, got {value!r}")
        if low is not None and value < low:
            raise self.error(f"must be >= {low}, got {value}")
        return value

    def pair(self) -> tuple[float, float]:
        values = self.list()
        if len(values) != 2:
            raise self.error(f"expected [x, y], got {self.data!r}")
        return tuple(Reader(v, f"{self.where}[{i}]").number() for i, v in enumerate(values))


@dataclass(frozen=True)
class Pose2D:
    """A planar pose in the map frame (m, m, rad)."""

    x: float
    y: float
    yaw: float


@dataclass(frozen=True)
class Rect:
    """An oriented rectangle in the map frame: an obstacle or an instrument's footprint."""

    name: str
    center: tuple[float, float]
    size: tuple[float, float]
    yaw: float = 0.0


@dataclass(frozen=True)
class ParameterSpec:
    """A numeric parameter an operation accepts; `default` None means required."""

    name: str
    unit: str
    low: float
    high: float
    default: float | None = None

    def check(self, value: float) -> str | None:
        """Return why `value` is not acceptable, or None if it is."""
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return f"parameter {self.name!r} must be a number, got {value!r}"
        if not math.isfinite(value):
            return f"parameter {self.name!r} must be finite, got {value}"
        if value < self.low or value > self.high:
            return (f"parameter {self.name!r} = {value} {self.unit} is outside "
                    f"[{self.low}, {self.high}] {self.unit}")
        return None


@dataclass(frozen=True)
class DurationSpec:
    """Simulated duration: fixed + per vial + the value of a duration parameter (s)."""

    fixed_s: float = 0.0
    per_vial_s: float = 0.0
    parameter: str | None = None

    def seconds(self, n_vials: int, parameters: Mapping[str, float]) -> float:
        extra = float(parameters[self.parameter]) if self.parameter else 0.0
        return self.fixed_s + self.per_vial_s * n_vials + extra


@dataclass(frozen=True)
class OperationSpec:
    """One operation a station offers, as declared in lab.yaml."""

    name: str
    description: str
    parameters: dict[str, ParameterSpec]
    vial_parameters: dict[str, ParameterSpec]
    measurements: dict[str, str]          # name -> unit
    duration: DurationSpec
    failure_per_vial: float = 0.0
    failure_per_operation: float = 0.0
    failure_silent_per_vial: float = 0.0   # reports success, did nothing to the vial
    max_vial_total: float | None = None   # cap on the sum of the vial parameters


@dataclass(frozen=True)
class StationConfig:
    name: str
    type: str
    approach: Pose2D
    footprint: Rect
    slots: tuple[str, ...]
    capacity_vials: int
    driver: dict
    operations: dict[str, OperationSpec]


@dataclass(frozen=True)
class RobotConfig:
    name: str
    footprint: tuple[float, float]
    max_linear_speed: float
    max_angular_speed: float
    docking_s: float
    pick_s: float
    place_s: float
    home_station: str
    slots: tuple[str, ...]


@dataclass(frozen=True)
class LabConfig:
    """The lab layout: room, furniture, robot and stations."""

    name: str
    frame_id: str
    size: tuple[float, float]
    wall_thickness: float
    map_resolution: float
    obstacles: tuple[Rect, ...]
    robot: RobotConfig
    stations: dict[str, StationConfig]
    source: str = ""

    def station(self, name: str) -> StationConfig:
        try:
            return self.stations[name]
        except KeyError:
            raise KeyError(f"unknown station {name!r}; known: {', '.join(self.stations)}") from None

    def location_exists(self, location: str) -> bool:
        """Whether `<station>/<slot>` or `robot/<slot>` names a place in this lab."""
        owner, _, slot = location.partition("/")
        if owner == "robot":
            return slot in self.robot.slots
        return owner in self.stations and slot in self.stations[owner].slots


def _rect(reader: Reader, name: str) -> Rect:
    center = reader.child("center").pair()
    size = reader.child("size").pair()
    if size[0] <= 0 or size[1] <= 0:
        raise reader.child("size").error("sizes must be positive")
    yaw = reader.child("yaw", required=False, default=0.0).number()
    return Rect(name=name, center=center, size=size, yaw=yaw)


def _parameters(reader: Reader) -> dict[str, ParameterSpec]:
    specs = {}
    for name, spec in reader.items():
        low = spec.child("low").number()
        high = spec.child("high").number()
        if low > high:
            raise spec.error(f"low ({low}) > high ({high})")
        default = spec.child("default", required=False).data
        if default is not None:
            default = spec.child("default").number(low=low, high=high)
        unit = spec.child("unit", required=False, default="").data or ""
        specs[name] = ParameterSpec(name=name, unit=str(unit), low=low, high=high, default=default)
    return specs


def _operation(name: str, reader: Reader) -> OperationSpec:
    parameters = _parameters(reader.child("parameters", required=False))
    vial_parameters = _parameters(reader.child("vial_parameters", required=False))
    clash = set(parameters) & set(vial_parameters)
    if clash:
        raise reader.error(f"{sorted(clash)} declared both as parameters and vial_parameters")
    measurements = {m: str(s.child("unit", required=False, default="").data or "")
                    for m, s in reader.child("measurements", required=False).items()}
    dur = reader.child("duration", required=False, default={})
    parameter = dur.child("parameter", required=False).data
    if parameter is not None and parameter not in parameters:
        raise dur.child("parameter").error(
            f"{parameter!r} is not one of this operation's parameters")
    duration = DurationSpec(
        fixed_s=dur.child("fixed_s", required=False, default=0.0).number(low=0.0),
        per_vial_s=dur.child("per_vial_s", required=False, default=0.0).number(low=0.0),
        parameter=parameter,
    )
    fail = reader.child("failure_probability", required=False, default={})
    unknown = set(fail.mapping()) - {"per_vial", "per_operation", "silent_per_vial"}
    if unknown:
        raise fail.error(f"unknown keys {sorted(unknown)}; use per_vial, per_operation "
                         "and/or silent_per_vial")
    max_total = reader.child("max_vial_total", required=False).data
    if max_total is not None:
        max_total = reader.child("max_vial_total").number(low=0.0)
    return OperationSpec(
        name=name,
        description=str(reader.child("description", required=False, default="").data or ""),
        parameters=parameters,
        vial_parameters=vial_parameters,
        measurements=measurements,
        duration=duration,
        failure_per_vial=fail.child("per_vial", required=False, default=0.0).number(low=0, high=1),
        failure_per_operation=fail.child("per_operation", required=False,
                                         default=0.0).number(low=0, high=1),
        failure_silent_per_vial=fail.child("silent_per_vial", required=False,
                                           default=0.0).number(low=0, high=1),
        max_vial_total=max_total,
    )


def _pose(reader: Reader) -> Pose2D:
    return Pose2D(x=reader.child("x").number(), y=reader.child("y").number(),
                  yaw=reader.child("yaw").number(low=-2 * math.pi, high=2 * math.pi))


def parse_lab(data: Mapping, source: str = "lab.yaml") -> LabConfig:
    """Validate a parsed lab.yaml and return it as a LabConfig."""
    root = Reader(data, source)
    lab = root.child("lab")
    size = lab.child("size").pair()
    if size[0] <= 0 or size[1] <= 0:
        raise lab.child("size").error("room size must be positive")
    obstacles = []
    for i, item in enumerate(lab.child("obstacles", required=False).list()):
        r = Reader(item, f"{lab.where}.obstacles[{i}]")
        obstacles.append(_rect(r, r.child("name").string()))

    rob = root.child("robot")
    robot = RobotConfig(
        name=rob.child("name").string(),
        footprint=rob.child("footprint").pair(),
        max_linear_speed=rob.child("max_linear_speed").number(low=1e-3),
        max_angular_speed=rob.child("max_angular_speed").number(low=1e-3),
        docking_s=rob.child("docking_s").number(low=0.0),
        pick_s=rob.child("pick_s").number(low=0.0),
        place_s=rob.child("place_s").number(low=0.0),
        home_station=rob.child("home_station").string(),
        slots=tuple(str(s) for s in rob.child("slots").list()),
    )

    stations = {}
    for name, st in root.child("stations").items():
        if "/" in name or name == "robot":
            raise st.error("station names may not contain '/' or be 'robot'")
        operations = {op: _operation(op, r) for op, r in st.child("operations").items()}
        driver = st.child("driver").mapping()
        if "type" not in driver:
            raise st.child("driver").error("missing key 'type' (for example: sim)")
        stations[name] = StationConfig(
            name=name,
            type=st.child("type").string(),
            approach=_pose(st.child("approach")),
            footprint=_rect(st.child("footprint"), name),
            slots=tuple(str(s) for s in st.child("slots").list()),
            capacity_vials=st.child("capacity_vials", required=False, default=0).integer(low=0),
            driver=driver,
            operations=operations,
        )
    if robot.home_station not in stations:
        raise rob.child("home_station").error(f"unknown station {robot.home_station!r}")
    for st in stations.values():
        a = st.approach
        if not (0 <= a.x <= size[0] and 0 <= a.y <= size[1]):
            raise ConfigError(f"{source}: stations.{st.name}.approach ({a.x}, {a.y}) "
                              "is outside the room")
    return LabConfig(
        name=lab.child("name").string(),
        frame_id=str(lab.child("frame_id", required=False, default="map").data),
        size=size,
        wall_thickness=lab.child("wall_thickness", required=False, default=0.15).number(low=0.0),
        map_resolution=lab.child("map_resolution", required=False, default=0.05).number(low=1e-3),
        obstacles=tuple(obstacles),
        robot=robot,
        stations=stations,
        source=source,
    )


def load_lab(path: str | Path | None = None) -> LabConfig:
    """Load and validate config/lab.yaml (or another lab layout file)."""
    path = Path(path) if path else default_config_path("lab.yaml")
    return parse_lab(load_yaml(path), str(path))


@dataclass(frozen=True)
class CampaignConfig:
    """Campaign size, objective, controls, the raw space section and optimizer settings."""

    name: str
    batch_size: int
    n_batches: int
    objective: str
    maximize: bool
    controls_per_batch: int
    control_formulation: dict[str, float]
    campaign_section: dict = field(repr=False)   # for FormulationSpace.from_config
    optimizer_section: dict = field(repr=False)  # for BatchBayesianOptimizer.from_config
    source: str = ""

    @property
    def suggestions_per_batch(self) -> int:
        return self.batch_size - self.controls_per_batch


def parse_campaign(data: Mapping, source: str = "campaign.yaml") -> CampaignConfig:
    """Validate a parsed campaign.yaml (all but the space, which FormulationSpace checks)."""
    root = Reader(data, source)
    c = root.child("campaign")
    batch_size = c.child("batch_size").integer(low=1)
    objective = c.child("objective")
    goal = objective.child("goal", required=False, default="maximize").data
    if goal not in ("maximize", "minimize"):
        raise objective.child("goal").error(f"must be 'maximize' or 'minimize', got {goal!r}")
    controls = c.child("controls", required=False, default={})
    per_batch = controls.child("per_batch", required=False, default=0).integer(low=0)
    if per_batch >= batch_size:
        raise controls.child("per_batch").error(
            f"{per_batch} controls leave no room for experiments in a batch of {batch_size}")
    formulation = {k: r.number() for k, r in
                   controls.child("formulation", required=per_batch > 0, default={}).items()}
    return CampaignConfig(
        name=c.child("name").string(),
        batch_size=batch_size,
        n_batches=c.child("n_batches").integer(low=1),
        objective=objective.child("name").string(),
        maximize=goal == "maximize",
        controls_per_batch=per_batch,
        control_formulation=formulation,
        campaign_section=c.mapping(),
        optimizer_section=root.child("optimizer", required=False, default={}).mapping(),
        source=source,
    )


def load_campaign(path: str | Path | None = None) -> CampaignConfig:
    """Load and validate config/campaign.yaml (or another campaign file)."""
    path = Path(path) if path else default_config_path("campaign.yaml")
    return parse_campaign(load_yaml(path), str(path))
