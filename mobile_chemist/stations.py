"""Station operations: goal validation, the driver interface, and the simulated instruments.

A station server (nodes/station_server) validates each ExecuteOperation goal against the
station's declaration in config/lab.yaml and hands it to the station's `StationDriver`.
The `sim` driver simulates every instrument of Burger et al. 2020; a real instrument gets a
driver class of its own, named in lab.yaml (`driver: {type: my_pkg.my_module:MyDriver}`),
without touching the node.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Callable, Mapping, Sequence

import numpy as np

from mobile_chemist.config import OperationSpec, ParameterSpec, StationConfig


class StationError(IntEnum):
    """Mirrors the ERROR_* constants of action/ExecuteOperation.action."""

    NONE = 0
    UNKNOWN_STATION = 1
    UNKNOWN_OPERATION = 2
    INVALID_PARAMETER = 3
    CAPACITY = 4
    BUSY = 5
    DEVICE = 6
    CANCELED = 7
    UNKNOWN_REQUEST = 8


@dataclass
class OperationGoal:
    """An ExecuteOperation goal in library terms."""

    station: str
    operation: str
    rack_id: str
    vial_ids: list[str]
    parameters: dict[str, float] = field(default_factory=dict)
    vial_parameters: list[dict[str, float]] = field(default_factory=list)  # per vial or empty


@dataclass
class VialResult:
    vial_id: str
    success: bool = True
    error_code: int = 0
    message: str = ""
    measurements: dict[str, float] = field(default_factory=dict)


@dataclass
class OperationResult:
    success: bool
    error_code: int = 0
    message: str = ""
    vials: list[VialResult] = field(default_factory=list)


class GoalRejected(Exception):
    """A goal that cannot be executed; carries the error code for the result."""

    def __init__(self, code: StationError, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def _check_values(values: Mapping[str, float], specs: Mapping[str, ParameterSpec], where: str,
                  kind: str, prefix: str) -> None:
    """Reject a value whose name the operation does not declare or that is out of range."""
    for name, value in values.items():
        pspec = specs.get(name)
        if pspec is None:
            raise GoalRejected(StationError.INVALID_PARAMETER,
                               f"{prefix}{where} has no {kind} {name!r}; it takes {sorted(specs)}")
        problem = pspec.check(value)
        if problem:
            raise GoalRejected(StationError.INVALID_PARAMETER, prefix + problem)


def validate_goal(stations: Mapping[str, StationConfig], goal: OperationGoal) -> dict[str, float]:
    """Check a goal against the lab layout; return its parameters with defaults filled in.

    Raises GoalRejected with the matching error code and a message that says what to fix.
    """
    station = stations.get(goal.station)
    if station is None:
        raise GoalRejected(StationError.UNKNOWN_STATION,
                           f"this server does not serve station {goal.station!r}; "
                           f"it serves {sorted(stations)}")
    spec = station.operations.get(goal.operation)
    if spec is None:
        raise GoalRejected(StationError.UNKNOWN_OPERATION,
                           f"station {goal.station!r} has no operation {goal.operation!r}; "
                           f"it offers {sorted(station.operations)}")
    if not goal.vial_ids:
        raise GoalRejected(StationError.INVALID_PARAMETER, "the goal names no vials")
    if len(set(goal.vial_ids)) != len(goal.vial_ids):
        raise GoalRejected(StationError.INVALID_PARAMETER, "the goal names a vial twice")
    if station.capacity_vials and len(goal.vial_ids) > station.capacity_vials:
        raise GoalRejected(StationError.CAPACITY,
                           f"{len(goal.vial_ids)} vials exceed the capacity of {goal.station!r} "
                           f"({station.capacity_vials})")
    params = dict(goal.parameters)
    _check_values(params, spec.parameters, f"{goal.station}/{goal.operation}", "parameter", "")
    for name, pspec in spec.parameters.items():
        if name not in params:
            if pspec.default is None:
                raise GoalRejected(StationError.INVALID_PARAMETER,
                                   f"missing required parameter {name!r} ({pspec.unit})")
            params[name] = pspec.default
    if spec.vial_parameters and len(goal.vial_parameters) != len(goal.vial_ids):
        raise GoalRejected(StationError.INVALID_PARAMETER,
                           f"{goal.station}/{goal.operation} needs per-vial parameters for each "
                           f"of the {len(goal.vial_ids)} vials, got {len(goal.vial_parameters)}")
    if not spec.vial_parameters and goal.vial_parameters:
        raise GoalRejected(StationError.INVALID_PARAMETER,
                           f"{goal.station}/{goal.operation} takes no per-vial parameters")
    for vial_id, vparams in zip(goal.vial_ids, goal.vial_parameters):
        _check_values(vparams, spec.vial_parameters, f"{goal.station}/{goal.operation}",
                      "per-vial parameter", f"vial {vial_id}: ")
        if spec.max_vial_total is not None:
            total = sum(vparams.values())
            if total > spec.max_vial_total + 1e-9:
                raise GoalRejected(StationError.CAPACITY,
                                   f"vial {vial_id}: {total:g} in total exceeds the vial's "
                                   f"{spec.max_vial_total:g}")
    return params


#: progress(stage, fraction 0..1, current vial id)
ProgressFn = Callable[[str, float, str], None]
#: sleep(seconds) on the graph's clock; returns False if the goal was canceled meanwhile
SleepFn = Callable[[float], bool]


class StationDriver(ABC):
    """What a station server needs from an instrument. One instance per station."""

    def __init__(self, station: StationConfig):
        self.station = station

    @abstractmethod
    def execute(self, spec: OperationSpec, goal: OperationGoal, parameters: Mapping[str, float],
                progress: ProgressFn, sleep: SleepFn) -> OperationResult:
        """Run one validated operation; report progress; never raise for device faults."""


@dataclass
class VialState:
    contents: dict[str, float] = field(default_factory=dict)
    capped: bool = False
    irradiated_s: float = 0.0
    # What a camera can see: the solid and liquid put in (by the dispensers' types) and
    # whether sonication dispersed the solid in the liquid.
    solid_mg: float = 0.0
    liquid_ml: float = 0.0
    dispersed: bool = False


class SimulatedLab:
    """The physical state the simulated instruments share: what is in each vial.

    Stations served by one station_server process share one SimulatedLab, so what the
    dispensers put into a vial is what the simulated GC measures.
    """

    def __init__(self):
        self._vials: dict[str, VialState] = {}
        self._racks: dict[str, list[str]] = {}   # rack id -> vial ids, slot order
        self.lock = threading.Lock()

    def note_rack(self, rack_id: str, vial_ids: Sequence[str]) -> None:
        """Remember which vials a rack holds, in slot order of first mention. Goals name
        only the vials still in the experiment; the others stay in their slots."""
        if not rack_id:
            return
        with self.lock:
            known = self._racks.setdefault(rack_id, [])
            known.extend(v for v in vial_ids if v not in known)

    def rack(self, rack_id: str) -> list[tuple[str, VialState]]:
        """The vials of a rack in slot order, with a copy of their state."""
        with self.lock:
            ids = list(self._racks.get(rack_id, []))
            return [(v, dataclasses.replace(self._vials.setdefault(v, VialState()),
                                            contents=dict(self._vials[v].contents)))
                    for v in ids]

    def vial(self, vial_id: str) -> VialState:
        with self.lock:
            return self._vials.setdefault(vial_id, VialState())

    def known(self, vial_id: str) -> bool:
        with self.lock:
            return vial_id in self._vials


def load_callable(path: str) -> Callable:
    """Import `package.module.attr` or `package.module:attr`."""
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise ValueError(f"{path!r} is not a dotted path to a callable")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot import {path!r}: {exc}") from None
    if not callable(obj):
        raise ValueError(f"{path!r} is not callable")
    return obj


class SimStationDriver(StationDriver):
    """A simulated instrument, behaving by what its operations declare in lab.yaml.

    - per-vial parameters are amounts added to the vial (dispensers), checked against the
      operation's `max_vial_total` with what the vial already holds;
    - a `capper` caps, a `photolysis` station records the vial's irradiation time;
    - measurements come from the response callable named in the driver config, with
      Gaussian noise (relative and absolute). A vial that was never irradiated evolves no
      hydrogen, so it measures only noise.
    - failures: each vial fails with `failure_probability.per_vial`, the whole operation
      with `per_operation` (a device fault: nothing was done). With `silent_per_vial` the
      operation reports success but did not act on the vial: a capper left it uncapped, a
      sonicator left the solid undispersed. Only an inspection (vision) can tell; an
      uncapped vial loses its hydrogen, so the GC measures only noise on it.
    """

    def __init__(self, station: StationConfig, world: SimulatedLab, seed: int = 0):
        super().__init__(station)
        self.world = world
        # Seeded per station so that a simulated campaign is reproducible.
        self.rng = np.random.default_rng([seed, sum(map(ord, station.name))])
        # Silent faults draw from their own stream, so the other draws (and every campaign
        # recorded before they existed) stay the same.
        self.silent_rng = np.random.default_rng([seed, sum(map(ord, station.name)), 1])
        cfg = station.driver
        self.response = load_callable(cfg["response"]) if "response" in cfg else None
        noise = cfg.get("noise", {}) or {}
        self.noise_relative = float(noise.get("relative", 0.0))
        self.noise_absolute = float(noise.get("absolute", 0.0))

    def execute(self, spec, goal, parameters, progress, sleep):
        n = len(goal.vial_ids)
        if spec.measurements and self.response is None:
            return OperationResult(False, StationError.DEVICE,
                                   f"{self.station.name}: no response configured to measure with")
        if self.rng.random() < spec.failure_per_operation:
            if not sleep(spec.duration.fixed_s):
                return _canceled(goal)
            return OperationResult(False, StationError.DEVICE,
                                   f"{self.station.name}: simulated device fault during "
                                   f"{spec.name}; nothing was done")
        self.world.note_rack(goal.rack_id, goal.vial_ids)
        progress("starting", 0.0, "")
        if not sleep(spec.duration.fixed_s + (float(parameters[spec.duration.parameter])
                                              if spec.duration.parameter else 0.0)):
            return _canceled(goal)
        results = []
        for i, vial_id in enumerate(goal.vial_ids):
            progress(spec.name, i / n, vial_id)
            if not sleep(spec.duration.per_vial_s):
                return _canceled(goal, results)
            results.append(self._vial(spec, goal, parameters, i, vial_id))
        progress("done", 1.0, "")
        return OperationResult(True, vials=results)

    def _vial(self, spec, goal, parameters, i, vial_id) -> VialResult:
        if self.rng.random() < spec.failure_per_vial:
            return VialResult(vial_id, False, StationError.DEVICE,
                              f"simulated {spec.name} fault on this vial")
        if spec.measurements and not self.world.known(vial_id):
            return VialResult(vial_id, False, StationError.DEVICE,
                              f"no sample in vial {vial_id}: nothing was dispensed into it")
        vial = self.world.vial(vial_id)
        silent = (spec.failure_silent_per_vial > 0
                  and self.silent_rng.random() < spec.failure_silent_per_vial)
        with self.world.lock:
            if goal.vial_parameters:
                amounts = goal.vial_parameters[i]
                if spec.max_vial_total is not None:
                    already = sum(vial.contents.get(k, 0.0) for k in spec.vial_parameters)
                    if already + sum(amounts.values()) > spec.max_vial_total + 1e-9:
                        return VialResult(vial_id, False, StationError.CAPACITY,
                                          f"vial {vial_id} would overflow")
                for name, amount in amounts.items():
                    vial.contents[name] = vial.contents.get(name, 0.0) + float(amount)
                added = sum(float(a) for a in amounts.values())
                if self.station.type == "solid_dispenser":
                    vial.solid_mg += added
                elif self.station.type == "liquid_dispenser":
                    vial.liquid_ml += added
            if self.station.type == "capper" and not silent:
                vial.capped = True
            if self.station.type == "sonicator" and not silent and vial.liquid_ml > 0:
                vial.dispersed = True
            if self.station.type == "photolysis":
                vial.irradiated_s += float(parameters.get("duration_s", 0.0))
            contents = dict(vial.contents)
            evolves = vial.irradiated_s > 0 and vial.capped
        measurements = {}
        for name in spec.measurements:
            true_value = float(self.response(contents)) if evolves else 0.0
            sigma = math.hypot(self.noise_relative * true_value, self.noise_absolute)
            measurements[name] = max(0.0, true_value + float(self.rng.normal(0.0, sigma)))
        return VialResult(vial_id, measurements=measurements)


def _canceled(goal: OperationGoal, done: Sequence[VialResult] = ()) -> OperationResult:
    return OperationResult(False, StationError.CANCELED, "canceled", list(done))


def make_driver(station: StationConfig, world: SimulatedLab, seed: int = 0) -> StationDriver:
    """Build the driver lab.yaml names: `sim`, or a dotted path to a StationDriver class."""
    kind = station.driver["type"]
    if kind == "sim":
        return SimStationDriver(station, world, seed)
    cls = load_callable(kind)
    if not (isinstance(cls, type) and issubclass(cls, StationDriver)):
        raise ValueError(f"station {station.name}: driver {kind!r} is not a StationDriver")
    return cls(station)
