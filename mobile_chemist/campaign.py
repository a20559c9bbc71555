"""The closed loop: plan a batch, run its workflow step by step, record, learn, repeat.

`CampaignRunner` is the planner without ROS: it talks to the lab through a `Dispatcher`
(the planner node's implementation sends ROS actions; tests may use any other), records
everything in a `CampaignDatabase` before and after each step, and resumes from that
database after any interruption:

- batches recorded as planned keep their formulations (the optimizer is not asked again);
- steps recorded as succeeded are not dispatched again;
- a step that was in flight is re-sent with its request_id and `recover_only`, so the
  station returns the outcome of the execution it already ran; a station that has no
  record of it (it was restarted) leaves the sample state unknown, and that batch's
  experiments are recorded as failed with that reason;
- the optimizer is rebuilt by replaying every finished batch's measurements in order,
  which gives the same state as an uninterrupted run.

Inspect steps (vision checks, `mobile_chemist.inspection`) take looks at the rack through
the Dispatcher and fail the vials that do not look as expected; an inspection changes
nothing in the lab, so one interrupted mid-way is simply done again. A runner built with
`inspect=False` skips them (a campaign without vision), keeping the step numbering.
"""

from __future__ import annotations

import math
import statistics
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable, Mapping, Protocol, Sequence

from mobile_chemist.config import CampaignConfig, LabConfig
from mobile_chemist.database import CampaignDatabase, ExperimentRecord, StepRecord
from mobile_chemist.inspection import Inspection, Look
from mobile_chemist.stations import VialResult
from mobile_chemist.workflow import (ExecuteStep, InspectStep, NavigateStep, TransferStep,
                                     Workflow, measurement_step_index)


@dataclass
class StepOutcome:
    """What a dispatched step came back with."""

    success: bool
    error_code: int = 0
    message: str = ""
    vials: dict[str, VialResult] = field(default_factory=dict)  # vial id -> outcome
    unknown_request: bool = False   # recover_only and the server had no record
    server_started: float = math.nan  # the server's wall-clock start (time.time())


class Dispatcher(Protocol):
    """How the runner reaches the lab. Every call blocks until the step is over."""

    def now(self) -> float:
        """Seconds on the graph's clock."""

    def navigate(self, request_id: str, station: str, *, recover_only: bool) -> StepOutcome: ...

    def transfer(self, request_id: str, object_type: str, object_id: str, source: str,
                 target: str, *, recover_only: bool) -> StepOutcome: ...

    def execute(self, request_id: str, station: str, operation: str, rack_id: str,
                vial_ids: Sequence[str], parameters: Mapping[str, float],
                vial_parameters: Sequence[Mapping[str, float]], *,
                recover_only: bool) -> StepOutcome: ...

    def look(self, request_id: str, station: str) -> Look:
        """One fresh image of the rack at `station`, read by vision."""


class CampaignStopped(RuntimeError):
    """The campaign cannot continue without a person (for example a rack is stranded)."""


@dataclass
class CampaignSummary:
    campaign: str
    batches_finished: int
    batches_total: int
    experiments_done: int
    experiments_failed: int
    best_value: float
    best_formulation: dict[str, float]
    baseline_mean: float
    improvement: float           # best / baseline mean
    simulated_duration_s: float
    wall_time_s: float
    failure_reasons: dict[str, int]

    def format(self, objective: str) -> str:
        lines = [
            f"campaign {self.campaign}: {self.batches_finished}/{self.batches_total} batches, "
            f"{self.experiments_done} experiments done, {self.experiments_failed} failed",
            f"best {objective}: {self.best_value:.3f} "
            f"({self.improvement:.2f}x the baseline mean {self.baseline_mean:.3f})",
            "best formulation: " + ", ".join(
                f"{k}={v:g}" for k, v in self.best_formulation.items() if v),
            f"simulated duration: {self.simulated_duration_s / 3600:.1f} h "
            f"({self.simulated_duration_s / 86400:.2f} days, "
            f"{_per_day(self.experiments_done + self.experiments_failed, self.simulated_duration_s):.0f}"
            f" experiments/day); wall time {self.wall_time_s:.1f} s",
        ]
        if self.failure_reasons:
            lines.append("failures: " + "; ".join(f"{n}x {r}" for r, n in
                                                   sorted(self.failure_reasons.items())))
        return "\n".join(lines)


def _per_day(n: int, seconds: float) -> float:
    return n / (seconds / 86400) if seconds > 0 else 0.0


def wall_time_by_kind(steps: Sequence[StepRecord]) -> dict[str, tuple[int, float, float]]:
    """Wall-clock seconds per step kind as (steps, median, total), where the sim clock hides
    them: a step lasts from its dispatch to the next dispatch in its batch. The last step of
    a batch is not counted, and a campaign resumed mid-batch counts the pause in the step
    before it; steps recorded without a dispatch time are left out."""
    by_batch: dict[int, list[StepRecord]] = {}
    for step in steps:
        if step.dispatched_wall > 0:
            by_batch.setdefault(step.batch, []).append(step)
    durations: dict[str, list[float]] = {}
    for batch_steps in by_batch.values():
        batch_steps.sort(key=lambda s: s.dispatched_wall)
        for step, following in zip(batch_steps, batch_steps[1:]):
            durations.setdefault(step.kind, []).append(
                following.dispatched_wall - step.dispatched_wall)
    return {kind: (len(d), statistics.median(d), sum(d)) for kind, d in sorted(durations.items())}


def summarize(db: CampaignDatabase, campaign: CampaignConfig, total: int | None = None,
              wall_time_s: float = math.nan) -> CampaignSummary:
    """Summarise what `db` records of a campaign."""
    records = db.experiments()
    done = [r for r in records if r.status == "done"]
    failed = [r for r in records if r.status == "failed"]
    sign = 1.0 if campaign.maximize else -1.0
    best = max(done, key=lambda r: sign * r.objective, default=None)
    controls = [r.objective for r in done if r.is_control]
    baseline = sum(controls) / len(controls) if controls else math.nan
    started = float(db.get_meta("started_at") or 0.0)
    ends = [s.end_time for s in db.steps() if s.end_time is not None]
    reasons: dict[str, int] = {}
    for r in failed:
        reasons[r.failure_reason] = reasons.get(r.failure_reason, 0) + 1
    best_value = best.objective if best else math.nan
    return CampaignSummary(
        campaign=campaign.name,
        batches_finished=sum(b["status"] in ("done", "failed") for b in db.batches()),
        batches_total=total if total is not None else campaign.n_batches,
        experiments_done=len(done), experiments_failed=len(failed),
        best_value=best_value, best_formulation=dict(best.parameters) if best else {},
        baseline_mean=baseline,
        improvement=best_value / baseline if controls and baseline > 0 else math.nan,
        simulated_duration_s=(max(ends) - started) if ends else 0.0,
        wall_time_s=wall_time_s, failure_reasons=reasons)


class CampaignRunner:
    """Runs (or resumes) a campaign recorded in `db`."""

    def __init__(self, *, db: CampaignDatabase, campaign: CampaignConfig, lab: LabConfig,
                 workflow: Workflow, space, optimizer, dispatcher: Dispatcher,
                 on_status: Callable[[dict], None] = lambda status: None,
                 on_experiment: Callable[[ExperimentRecord], None] = lambda record: None,
                 log: Callable[[str], None] = print, inspect: bool = True):
        self.db = db
        self.campaign = campaign
        self.lab = lab
        self.workflow = workflow
        self.space = space
        self.optimizer = optimizer
        self.dispatcher = dispatcher
        self.on_status = on_status
        self.on_experiment = on_experiment
        self.log = log
        self.inspect = inspect
        self.measure_index = measurement_step_index(workflow, lab, campaign.objective)
        self._wall_start = time.monotonic()
        self._current_step = ""
        self._current_batch = 0
        run_id = db.get_meta("run_id")
        if run_id is None:
            run_id = uuid.uuid4().hex[:12]
            db.set_meta("run_id", run_id)
            db.set_meta("campaign", campaign.name)
        elif db.get_meta("campaign") != campaign.name:
            raise ValueError(f"{db.path} records campaign {db.get_meta('campaign')!r}, "
                             f"not {campaign.name!r}")
        self.run_id = run_id
        self._replay_finished_batches()

    # -- public -----------------------------------------------------------------------
    def run(self, n_batches: int | None = None) -> CampaignSummary:
        """Run until `n_batches` (default: the campaign's) batches are finished."""
        total = n_batches if n_batches is not None else self.campaign.n_batches
        if self.db.get_meta("started_at") is None:
            self.db.set_meta("started_at", repr(self.dispatcher.now()))
        while True:
            batches = self.db.batches()
            finished = sum(b["status"] in ("done", "failed") for b in batches)
            unfinished = [b for b in batches if b["status"] in ("planned", "running")]
            if unfinished:
                self._run_batch(unfinished[0]["batch"], resume=unfinished[0]["status"] == "running")
            elif finished < total:
                self._plan_batch(len(batches))
            else:
                break
        self._publish("finished")
        return self.summary(total)

    def summary(self, total: int | None = None) -> CampaignSummary:
        return summarize(self.db, self.campaign, total,
                         wall_time_s=time.monotonic() - self._wall_start)

    # -- planning ---------------------------------------------------------------------
    def _replay_finished_batches(self) -> None:
        """Rebuild the optimizer from what was measured, in batch order."""
        finished = {b["batch"] for b in self.db.batches() if b["status"] in ("done", "failed")}
        by_batch: dict[int, list[ExperimentRecord]] = {}
        for r in self.db.experiments():
            if r.batch in finished and r.status == "done":
                by_batch.setdefault(r.batch, []).append(r)
        for batch in sorted(by_batch):
            self._observe(by_batch[batch])

    def _observe(self, records: Sequence[ExperimentRecord]) -> None:
        if records:
            # The optimizer maximises; a campaign that minimises tells it the negation.
            sign = 1.0 if self.campaign.maximize else -1.0
            self.optimizer.observe([r.parameters for r in records],
                                   [sign * r.objective for r in records])

    def _plan_batch(self, batch: int) -> None:
        self._current_batch = batch
        self._current_step = "planning"
        self._publish("planning")
        c = self.campaign
        t0 = time.monotonic()
        suggestions = self.optimizer.suggest(c.suggestions_per_batch)
        control = {name: float(c.control_formulation.get(name, 0.0)) for name in self.space.names}
        # Controls spread through the rack so position effects (lamp, stirring) show up.
        positions = {round(i * c.batch_size / c.controls_per_batch)
                     for i in range(c.controls_per_batch)} if c.controls_per_batch else set()
        vials, it = [], iter(suggestions)
        for pos in range(c.batch_size):
            vial_id = f"b{batch:03d}_v{pos:02d}"
            if pos in positions:
                vials.append((vial_id, True, control))
            else:
                vials.append((vial_id, False, dict(next(it))))
        self.db.add_batch(batch, f"rack_{self.run_id[:6]}_{batch:03d}", vials)
        self.log(f"[batch {batch}] planned {len(suggestions)} experiments + "
                 f"{c.controls_per_batch} controls in {time.monotonic() - t0:.2f} s")

    # -- execution --------------------------------------------------------------------
    def _run_batch(self, batch: int, *, resume: bool) -> None:
        self._current_batch = batch
        info = next(b for b in self.db.batches() if b["batch"] == batch)
        rack = info["rack_id"]
        start_index = 0
        if resume:
            start_index = self._recover(batch, rack)
            if start_index is None:
                return
            self.log(f"[batch {batch}] resuming at step {start_index}")
        else:
            self.db.set_batch_status(batch, "running")
        self._publish("running_batch")
        failed_reason = self._run_steps(batch, rack, start_index)
        self._finish_batch(batch, failed_reason)

    def _run_steps(self, batch: int, rack: str, start_index: int, *,
                   transport_only: bool = False) -> str | None:
        """Run the workflow from `start_index`; return why the batch failed, or None."""
        for index in range(start_index, len(self.workflow.steps)):
            step = self.workflow.steps[index]
            on_vials = isinstance(step, (ExecuteStep, InspectStep))
            if transport_only and on_vials:
                continue
            if isinstance(step, InspectStep) and not self.inspect:
                continue
            # Measured vials stay with the rack: their process goes on until it is stored.
            active = [r for r in self.db.experiments(batch) if r.status != "failed"]
            if not active and on_vials:
                continue  # every vial failed: only move the rack home
            # Attempts already recorded (before a restart) count against the retries.
            prior = sum(1 for s in self.db.steps(batch) if s.step_index == index)
            outcome = None
            for attempt in range(prior, max(prior + 1, step.retries + 1)):
                outcome = self._dispatch(batch, rack, index, attempt, step, active)
                if outcome.success:
                    break
                self.log(f"[batch {batch}] step {index} ({step.describe()}) failed: "
                         f"{outcome.message}" + (" - retrying" if attempt < step.retries else ""))
            if not outcome.success:
                reason = f"step {index} ({step.describe()}) failed: {outcome.message}"
                if transport_only:
                    raise CampaignStopped(
                        f"batch {batch}: could not return rack {rack} to storage after a "
                        f"failure ({reason}); a person must clear it before resuming")
                return reason
            self._apply_vial_outcomes(index, step, outcome, active)
        return None

    def _dispatch(self, batch: int, rack: str, index: int, attempt: int, step,
                  active: Sequence[ExperimentRecord]) -> StepOutcome:
        request_id = f"{self.run_id}/b{batch}/s{index}/a{attempt}"
        self._current_step = step.describe()
        self._publish("running_batch")
        vial_params = self._vial_parameters(step, active)
        params = dict(step.parameters) if isinstance(step, ExecuteStep) else {}
        operation = step.operation if isinstance(step, ExecuteStep) else ""
        if isinstance(step, InspectStep):
            operation = "inspect"
            params = {"looks": step.looks, "confirm": step.confirm}
        step_id = self.db.start_step(
            batch, index, attempt, request_id, step.kind, step.station, operation, params,
            self.dispatcher.now(), {r.id: p for r, p in zip(active, vial_params)},
            dispatched_wall=time.time())
        outcome = self._send(request_id, step, rack, active, vial_params, recover_only=False)
        self._record(step_id, outcome, active)
        return outcome

    def _vial_parameters(self, step, active: Sequence[ExperimentRecord]) -> list[dict]:
        if isinstance(step, ExecuteStep) and step.vial_parameters:
            return [{name: r.parameters[name] for name in step.vial_parameters} for r in active]
        return [{} for _ in active]

    def _send(self, request_id, step, rack, active, vial_params, *, recover_only) -> StepOutcome:
        d = self.dispatcher
        if isinstance(step, NavigateStep):
            return d.navigate(request_id, step.station, recover_only=recover_only)
        if isinstance(step, TransferStep):
            return d.transfer(request_id, step.object_type, rack, step.source, step.target,
                              recover_only=recover_only)
        if isinstance(step, InspectStep):
            # Looking changes nothing: an interrupted inspection is simply done again.
            return self._inspect(request_id, step, active)
        per_vial = vial_params if step.vial_parameters else []
        return d.execute(request_id, step.station, step.operation, rack,
                         [r.vial_id for r in active], step.parameters, per_vial,
                         recover_only=recover_only)

    def _inspect(self, request_id: str, step: InspectStep,
                 active: Sequence[ExperimentRecord]) -> StepOutcome:
        """Look at the rack until every active vial is decided (mobile_chemist.inspection)."""
        inspection = Inspection(step.expect, {r.position: r.vial_id for r in active},
                                self.campaign.batch_size, looks=step.looks,
                                confirm=step.confirm, fail_unseen=step.fail_unseen)
        while not inspection.done():
            inspection.add(self.dispatcher.look(f"{request_id}/look{inspection.looks}",
                                                step.station))
        if not inspection.any_image():
            return StepOutcome(False, 0, f"no image could be inspected: {inspection.summary()}")
        vials = {vial_id: VialResult(vial_id, o.success, 0, o.message, o.measurements)
                 for vial_id, o in inspection.outcomes().items()}
        failed = [v for v in vials.values() if not v.success]
        if failed:
            self.log(f"[batch {active[0].batch}] {step.describe()}: {len(failed)} vial(s) "
                     f"failed: " + "; ".join(f"{v.vial_id} {v.message}" for v in failed))
        return StepOutcome(True, 0, inspection.summary(), vials)

    def _record(self, step_id: int, outcome: StepOutcome, active) -> None:
        vial_outcomes = {}
        for r in active:
            v = outcome.vials.get(r.vial_id)
            if v is not None:
                vial_outcomes[r.id] = (v.success, v.message, v.measurements)
            else:
                vial_outcomes[r.id] = (outcome.success, outcome.message, {})
        self.db.finish_step(step_id, success=outcome.success, end_time=self.dispatcher.now(),
                            error_code=outcome.error_code, message=outcome.message,
                            vial_outcomes=vial_outcomes)

    def _apply_vial_outcomes(self, index: int, step, outcome: StepOutcome, active) -> None:
        """Fail the vials a station (or an inspection) reported as failed; record the measured
        objective."""
        if not isinstance(step, (ExecuteStep, InspectStep)):
            return
        objective = self.campaign.objective
        for r in active:
            v = outcome.vials.get(r.vial_id)
            if v is None:
                self.db.fail_experiments([r.id], f"{step.describe()}: no outcome for this vial")
            elif not v.success:
                self.db.fail_experiments([r.id], f"{step.describe()}: {v.message}")
            elif index == self.measure_index:
                value = v.measurements.get(objective)
                if value is None or not math.isfinite(value):
                    self.db.fail_experiments([r.id], f"{step.describe()}: no valid {objective}")
                else:
                    self.db.complete_experiment(r.id, value, v.measurements)

    def _finish_batch(self, batch: int, failed_reason: str | None) -> None:
        if failed_reason is not None:
            records = self.db.experiments(batch)
            self.db.fail_experiments([r.id for r in records], failed_reason)
            rack = next(b for b in self.db.batches() if b["batch"] == batch)["rack_id"]
            self.log(f"[batch {batch}] failed ({failed_reason}); returning the rack to storage")
            self._return_rack(batch, rack)
        records = self.db.experiments(batch)
        leftover = [r.id for r in records if r.status in ("planned", "running")]
        if leftover:  # the workflow ended without measuring them
            self.db.fail_experiments(leftover, "the workflow ended without a measurement")
            records = self.db.experiments(batch)
        done = [r for r in records if r.status == "done"]
        self.db.set_batch_status(batch, "done" if failed_reason is None else "failed",
                                 failed_reason or "")
        self._observe(done)
        for r in records:
            self.on_experiment(r)
        s = self.summary()
        self.log(f"[batch {batch}] {len(done)}/{len(records)} measured; best so far "
                 f"{s.best_value:.3f} ({s.improvement:.2f}x baseline); "
                 f"t_sim = {s.simulated_duration_s / 3600:.1f} h")
        self._publish("running_batch")

    def _return_rack(self, batch: int, rack: str) -> None:
        """After a failure, run the rest of the workflow's transport so the rack goes home."""
        attempted = max((s.step_index for s in self.db.steps(batch)), default=-1)
        self._run_steps(batch, rack, attempted + 1, transport_only=True)

    def _recover(self, batch: int, rack: str) -> int | None:
        """Settle a batch that was running when the planner stopped; return where to go on.

        Returns None when the batch could not be recovered (it is then recorded as failed).
        """
        steps = self.db.steps(batch)
        if not steps:
            return 0
        last = steps[-1]
        if last.status == "succeeded":
            return last.step_index + 1
        if last.status == "failed":
            # The failure was recorded but the batch not closed: decide as _run_steps would.
            step = self.workflow.steps[last.step_index]
            if last.attempt < step.retries:
                return last.step_index  # retries continue with the next attempt id
            self._finish_batch(batch, f"step {last.step_index} ({step.describe()}) failed: "
                                      f"{last.message}")
            return None
        # In flight: ask the server for the outcome of the very same request.
        step = self.workflow.steps[last.step_index]
        active = [r for r in self.db.experiments(batch) if r.id in last.vial_parameters]
        vial_params = [last.vial_parameters[r.id] for r in active]
        self.log(f"[batch {batch}] recovering step {last.step_index} ({step.describe()}) "
                 f"request {last.request_id}")
        outcome = self._send(last.request_id, step, rack, active, vial_params, recover_only=True)
        if outcome.unknown_request and outcome.server_started < last.dispatched_wall:
            # The server has been up since before the step was recorded and has no record
            # of it: the planner died before the goal was sent. Sending it now is safe.
            self.log(f"[batch {batch}] request {last.request_id} never reached {step.station}; "
                     "sending it now")
            outcome = self._send(last.request_id, step, rack, active, vial_params,
                                 recover_only=False)
        if outcome.unknown_request:
            outcome = StepOutcome(False, outcome.error_code,
                                  f"interrupted: {step.station} has no record of request "
                                  f"{last.request_id} (it was restarted); sample state unknown")
        self._record(last.id, outcome, active)
        if not outcome.success:
            if not outcome.unknown_request and last.attempt < step.retries:
                return last.step_index
            reason = f"step {last.step_index} ({step.describe()}) failed: {outcome.message}"
            self._finish_batch(batch, reason)
            return None
        self._apply_vial_outcomes(last.step_index, step, outcome, active)
        return last.step_index + 1

    # -- status -----------------------------------------------------------------------
    def _publish(self, state: str) -> None:
        records = self.db.experiments()
        done = [r for r in records if r.status == "done"]
        sign = 1.0 if self.campaign.maximize else -1.0
        best = max(done, key=lambda r: sign * r.objective, default=None)
        controls = [r.objective for r in done if r.is_control]
        self.on_status({
            "campaign": self.campaign.name,
            "state": state,
            "batch": self._current_batch,
            "batches_total": self.campaign.n_batches,
            "experiments_done": len(done),
            "experiments_failed": sum(r.status == "failed" for r in records),
            "experiments_total": self.campaign.n_batches * self.campaign.batch_size,
            "current_step": self._current_step,
            "best_value": best.objective if best else math.nan,
            "best_parameters": dict(best.parameters) if best else {},
            "baseline_mean": sum(controls) / len(controls) if controls else math.nan,
            "started": float(self.db.get_meta("started_at") or 0.0),
        })
