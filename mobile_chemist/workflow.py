"""The batch workflow (config/workflow.yaml): an ordered list of robot and station steps.

A workflow is checked against the lab layout and the campaign's components when it is
loaded, so a typo in a station, operation, slot or parameter fails before the robot moves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence, Union

from mobile_chemist.config import LabConfig, Reader, default_config_path, load_yaml
from mobile_chemist.errors import ConfigError
from mobile_chemist.inspection import Expectation
from mobile_chemist.vision.classes import Phase


@dataclass(frozen=True)
class NavigateStep:
    """Drive to a station and dock (re-localise) there."""

    station: str
    retries: int = 0
    kind: str = field(default="navigate", init=False)

    def describe(self) -> str:
        return f"navigate to {self.station}"


@dataclass(frozen=True)
class TransferStep:
    """Pick an object (the batch's rack) at `source` and place it at `target`."""

    object_type: str
    source: str
    target: str
    retries: int = 0
    kind: str = field(default="transfer", init=False)

    @property
    def station(self) -> str:
        """The station the robot works at: the one that is not the robot itself."""
        for loc in (self.source, self.target):
            owner = loc.split("/", 1)[0]
            if owner != "robot":
                return owner
        return "robot"

    def describe(self) -> str:
        return f"transfer {self.object_type} {self.source} -> {self.target}"


@dataclass(frozen=True)
class ExecuteStep:
    """Execute a station operation on the batch's vials."""

    station: str
    operation: str
    parameters: dict[str, float]
    vial_parameters: tuple[str, ...]   # campaign components passed per vial, same names
    retries: int = 0
    kind: str = field(default="execute", init=False)

    def describe(self) -> str:
        return f"execute {self.station}/{self.operation}"


@dataclass(frozen=True)
class InspectStep:
    """Look at the rack at a station with the vision node and check every vial
    (mobile_chemist.inspection: `looks`, `confirm`, `fail_unseen`)."""

    station: str
    expect: Expectation
    looks: int = 3
    confirm: int = 2
    fail_unseen: bool = False
    retries: int = 0
    kind: str = field(default="inspect", init=False)

    def describe(self) -> str:
        return f"inspect at {self.station}"


Step = Union[NavigateStep, TransferStep, ExecuteStep, InspectStep]


@dataclass(frozen=True)
class Workflow:
    name: str
    steps: tuple[Step, ...]
    source: str = ""


def _retries(reader: Reader) -> int:
    return reader.child("retries", required=False, default=0).integer(low=0)


def parse_workflow(data: Mapping, lab: LabConfig, components: Sequence[str],
                   source: str = "workflow.yaml") -> Workflow:
    """Validate a parsed workflow.yaml against the lab layout and the campaign components."""
    root = Reader(data, source).child("workflow")
    raw_steps = root.child("steps").list()
    if not raw_steps:
        raise root.child("steps").error("a workflow needs at least one step")
    steps: list[Step] = []
    for i, raw in enumerate(raw_steps):
        r = Reader(raw, f"{root.where}.steps[{i}]")
        kinds = [k for k in ("navigate", "transfer", "execute", "inspect")
                 if isinstance(raw, Mapping) and k in raw]
        if len(kinds) != 1:
            raise r.error("each step is exactly one of navigate, transfer, execute, inspect")
        kind = kinds[0]
        body = r.child(kind)
        if kind == "navigate":
            # `navigate: <station>` or `navigate: {station: <station>, retries: n}`
            if isinstance(body.data, Mapping):
                station, retries = body.child("station").string(), _retries(body)
            else:
                station, retries = body.string(), 0
            if station not in lab.stations:
                raise body.error(f"unknown station {station!r}")
            steps.append(NavigateStep(station=station, retries=retries))
        elif kind == "transfer":
            object_type = body.child("object").string()
            if object_type not in ("rack", "vial"):
                raise body.child("object").error("must be 'rack' or 'vial'")
            source_loc = body.child("from").string()
            target_loc = body.child("to").string()
            for key, loc in (("from", source_loc), ("to", target_loc)):
                if not lab.location_exists(loc):
                    raise body.child(key).error(
                        f"unknown location {loc!r}; use <station>/<slot> or robot/<slot> "
                        "with a slot declared in lab.yaml")
            steps.append(TransferStep(object_type=object_type, source=source_loc,
                                      target=target_loc, retries=_retries(body)))
        elif kind == "inspect":
            steps.append(_inspect_step(body, lab))
        else:
            station = body.child("station").string()
            if station not in lab.stations:
                raise body.child("station").error(f"unknown station {station!r}")
            operation = body.child("operation").string()
            ops = lab.stations[station].operations
            if operation not in ops:
                raise body.child("operation").error(
                    f"station {station!r} has no operation {operation!r}; it offers {sorted(ops)}")
            spec = ops[operation]
            params = {k: v.number() for k, v in body.child("parameters", required=False).items()}
            for name, value in params.items():
                if name not in spec.parameters:
                    raise body.child("parameters").error(
                        f"{station}/{operation} has no parameter {name!r}")
                problem = spec.parameters[name].check(value)
                if problem:
                    raise body.child("parameters").error(problem)
            missing = [p for p, s in spec.parameters.items() if s.default is None and p not in params]
            if missing:
                raise body.child("parameters").error(f"missing required parameters {missing}")
            vial_params = tuple(str(v) for v in body.child("vial_parameters", required=False).list())
            for name in vial_params:
                if name not in components:
                    raise body.child("vial_parameters").error(
                        f"{name!r} is not a component of the campaign")
                if name not in spec.vial_parameters:
                    raise body.child("vial_parameters").error(
                        f"{station}/{operation} takes no per-vial parameter {name!r}")
            steps.append(ExecuteStep(station=station, operation=operation, parameters=params,
                                     vial_parameters=vial_params, retries=_retries(body)))
    used = {c for s in steps if isinstance(s, ExecuteStep) for c in s.vial_parameters}
    unused = [c for c in components if c not in used]
    if unused:
        raise root.error(f"no step dispenses the components {unused}")
    return Workflow(name=root.child("name").string(), steps=tuple(steps), source=source)


def _inspect_step(body: Reader, lab: LabConfig) -> InspectStep:
    known = {"station", "expect", "looks", "confirm", "fail_unseen", "retries"}
    unknown = set(body.mapping()) - known
    if unknown:
        raise body.error(f"unknown keys {sorted(unknown)}; known: {sorted(known)}")
    station = body.child("station").string()
    if station not in lab.stations:
        raise body.child("station").error(f"unknown station {station!r}")
    if not lab.stations[station].slots:
        raise body.child("station").error(f"station {station!r} has no slot for a rack")
    expect = body.child("expect")
    unknown = set(expect.mapping()) - {"capped", "no_phase"}
    if unknown or not expect.mapping():
        raise expect.error("expect one or both of capped: true|false, no_phase: [phase, ...]")
    capped = expect.child("capped", required=False).data
    if capped is not None and not isinstance(capped, bool):
        raise expect.child("capped").error(f"expected true or false, got {capped!r}")
    phases = set()
    for name in expect.child("no_phase", required=False).list():
        if str(name).upper() not in Phase.__members__:
            raise expect.child("no_phase").error(
                f"unknown phase {name!r}; one of {[p.label for p in Phase]}")
        phases.add(Phase[str(name).upper()])
    looks = body.child("looks", required=False, default=3).integer(low=1)
    confirm = body.child("confirm", required=False, default=2).integer(low=1)
    if confirm > looks:
        raise body.error(f"confirm: {confirm} confirmations need at least as many looks "
                         f"(looks: {looks})")
    fail_unseen = body.child("fail_unseen", required=False, default=False).data
    if not isinstance(fail_unseen, bool):
        raise body.child("fail_unseen").error(f"expected true or false, got {fail_unseen!r}")
    return InspectStep(station=station, expect=Expectation(capped, frozenset(phases)),
                       looks=looks, confirm=confirm, fail_unseen=fail_unseen,
                       retries=_retries(body))


def load_workflow(lab: LabConfig, components: Sequence[str],
                  path: str | Path | None = None) -> Workflow:
    """Load and validate config/workflow.yaml (or another workflow file)."""
    path = Path(path) if path else default_config_path("workflow.yaml")
    return parse_workflow(load_yaml(path), lab, components, str(path))


def measurement_step_index(workflow: Workflow, lab: LabConfig, objective: str) -> int:
    """Index of the execute step that measures `objective`; ConfigError if none does."""
    for i, step in enumerate(workflow.steps):
        if isinstance(step, ExecuteStep):
            spec = lab.stations[step.station].operations[step.operation]
            if objective in spec.measurements:
                return i
    raise ConfigError(f"{workflow.source}: no step measures the objective {objective!r}")
