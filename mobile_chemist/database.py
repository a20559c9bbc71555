"""The campaign database: every experiment, failed ones included, with its full process.

One SQLite file per campaign. Every state change is its own transaction in WAL mode with
`synchronous=FULL`, so a campaign killed at any instant (SIGKILL included) leaves a
consistent record that the planner resumes from: planned batches keep their formulations
(never asked again), finished steps are never re-run, and the optimizer is rebuilt from the
measurements recorded here.

Times are seconds on the graph's clock (simulated time in simulation, ROS time on a robot).
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS batches (
    batch INTEGER PRIMARY KEY,
    rack_id TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('planned', 'running', 'done', 'failed')),
    failure_reason TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS experiments (
    id INTEGER PRIMARY KEY,
    batch INTEGER NOT NULL REFERENCES batches(batch),
    position INTEGER NOT NULL,
    vial_id TEXT NOT NULL UNIQUE,
    is_control INTEGER NOT NULL,
    parameters TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('planned', 'running', 'done', 'failed')),
    failure_reason TEXT NOT NULL DEFAULT '',
    objective REAL,
    measurements TEXT NOT NULL DEFAULT '{}',
    UNIQUE (batch, position)
);
CREATE TABLE IF NOT EXISTS steps (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    batch INTEGER NOT NULL REFERENCES batches(batch),
    step_index INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    request_id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    station TEXT NOT NULL,
    operation TEXT NOT NULL,
    parameters TEXT NOT NULL,
    start_time REAL NOT NULL,
    dispatched_wall REAL NOT NULL,
    end_time REAL,
    status TEXT NOT NULL CHECK (status IN ('started', 'succeeded', 'failed')),
    error_code INTEGER NOT NULL DEFAULT 0,
    message TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS experiment_steps (
    experiment_id INTEGER NOT NULL REFERENCES experiments(id),
    step_id INTEGER NOT NULL REFERENCES steps(id),
    parameters TEXT NOT NULL,
    success INTEGER,
    message TEXT NOT NULL DEFAULT '',
    measurements TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (experiment_id, step_id)
);
"""


@dataclass
class ExperimentRecord:
    id: int
    batch: int
    position: int
    vial_id: str
    is_control: bool
    parameters: dict[str, float]
    status: str
    failure_reason: str = ""
    objective: float | None = None
    measurements: dict[str, float] = field(default_factory=dict)


@dataclass
class StepRecord:
    id: int
    batch: int
    step_index: int
    attempt: int
    request_id: str
    kind: str
    station: str
    operation: str
    parameters: dict[str, float]
    start_time: float
    end_time: float | None
    status: str
    error_code: int
    message: str
    dispatched_wall: float = 0.0
    vial_parameters: dict[int, dict[str, float]] = field(default_factory=dict)
    vial_success: dict[int, bool | None] = field(default_factory=dict)
    vial_messages: dict[int, str] = field(default_factory=dict)


def _dumps(values: Mapping[str, float]) -> str:
    return json.dumps({k: float(v) for k, v in values.items()}, sort_keys=True)


class CampaignDatabase:
    """SQLite record of one campaign. Safe to use from several threads of one process."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                self._db.execute(statement)
        version = self.get_meta("schema_version")
        if version is None:
            self.set_meta("schema_version", str(SCHEMA_VERSION))
        elif int(version) != SCHEMA_VERSION:
            raise RuntimeError(f"{path}: schema version {version}, this code reads {SCHEMA_VERSION}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- transactions -----------------------------------------------------------------
    class _Tx:
        def __init__(self, outer: "CampaignDatabase"):
            self.outer = outer

        def __enter__(self):
            self.outer._lock.acquire()
            self.outer._db.execute("BEGIN IMMEDIATE")
            return self.outer._db

        def __exit__(self, exc_type, exc, tb):
            try:
                self.outer._db.execute("ROLLBACK" if exc_type else "COMMIT")
            finally:
                self.outer._lock.release()
            return False

    def _transaction(self) -> "_Tx":
        return CampaignDatabase._Tx(self)

    def _rows(self, table: str, batch: int | None) -> list[sqlite3.Row]:
        """All rows of `table` (one of ours, never user input), optionally of one batch."""
        where, args = ("WHERE batch=?", (batch,)) if batch is not None else ("", ())
        with self._lock:
            return self._db.execute(f"SELECT * FROM {table} {where} ORDER BY id", args).fetchall()

    # -- metadata ---------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else row["value"]

    def set_meta(self, key: str, value: str) -> None:
        with self._transaction() as db:
            db.execute("INSERT INTO meta(key, value) VALUES(?, ?) "
                       "ON CONFLICT(key) DO UPDATE SET value=excluded.value", (key, value))

    # -- batches and experiments ------------------------------------------------------
    def add_batch(self, batch: int, rack_id: str,
                  experiments: Sequence[tuple[str, bool, Mapping[str, float]]]) -> list[int]:
        """Record a planned batch atomically: (vial_id, is_control, parameters) per vial.

        Returns the new experiment ids, in rack order.
        """
        for vial_id, _, params in experiments:
            for name, value in params.items():
                if not math.isfinite(float(value)):
                    raise ValueError(f"vial {vial_id}: parameter {name} is not finite")
        with self._transaction() as db:
            db.execute("INSERT INTO batches(batch, rack_id, status) VALUES(?, ?, 'planned')",
                       (batch, rack_id))
            ids = []
            for position, (vial_id, is_control, params) in enumerate(experiments):
                cur = db.execute(
                    "INSERT INTO experiments(batch, position, vial_id, is_control, parameters, "
                    "status) VALUES(?, ?, ?, ?, ?, 'planned')",
                    (batch, position, vial_id, int(is_control), _dumps(params)))
                ids.append(cur.lastrowid)
        return ids

    def batches(self) -> list[dict]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM batches ORDER BY batch").fetchall()
        return [dict(r) for r in rows]

    def set_batch_status(self, batch: int, status: str, reason: str = "") -> None:
        with self._transaction() as db:
            db.execute("UPDATE batches SET status=?, failure_reason=? WHERE batch=?",
                       (status, reason, batch))
            if status == "running":
                db.execute("UPDATE experiments SET status='running' "
                           "WHERE batch=? AND status='planned'", (batch,))

    def experiments(self, batch: int | None = None) -> list[ExperimentRecord]:
        rows = self._rows("experiments", batch)
        return [ExperimentRecord(
            id=r["id"], batch=r["batch"], position=r["position"], vial_id=r["vial_id"],
            is_control=bool(r["is_control"]), parameters=json.loads(r["parameters"]),
            status=r["status"], failure_reason=r["failure_reason"], objective=r["objective"],
            measurements=json.loads(r["measurements"])) for r in rows]

    def fail_experiments(self, ids: Iterable[int], reason: str) -> None:
        """Mark experiments failed with a reason (only those not already finished)."""
        with self._transaction() as db:
            for exp_id in ids:
                db.execute("UPDATE experiments SET status='failed', failure_reason=? "
                           "WHERE id=? AND status IN ('planned', 'running')", (reason, exp_id))

    def complete_experiment(self, exp_id: int, objective: float,
                            measurements: Mapping[str, float]) -> None:
        if not math.isfinite(objective):
            raise ValueError(f"experiment {exp_id}: objective {objective} is not finite")
        with self._transaction() as db:
            db.execute("UPDATE experiments SET status='done', objective=?, measurements=? "
                       "WHERE id=? AND status='running'", (objective, _dumps(measurements), exp_id))

    # -- process steps ----------------------------------------------------------------
    def start_step(self, batch: int, step_index: int, attempt: int, request_id: str, kind: str,
                   station: str, operation: str, parameters: Mapping[str, float],
                   start_time: float,
                   vial_parameters: Mapping[int, Mapping[str, float]],
                   dispatched_wall: float = 0.0) -> int:
        """Record that a step was dispatched for the batch's active experiments.

        `vial_parameters` maps every active experiment's id to its per-vial parameters
        (empty for rack-level steps).

        Written before the goal is sent, so a crash after sending leaves a 'started' step
        whose request_id the planner can recover.
        """
        with self._transaction() as db:
            cur = db.execute(
                "INSERT INTO steps(batch, step_index, attempt, request_id, kind, station, "
                "operation, parameters, start_time, dispatched_wall, status) "
                "VALUES(?,?,?,?,?,?,?,?,?,?,'started')",
                (batch, step_index, attempt, request_id, kind, station, operation,
                 _dumps(parameters), start_time, dispatched_wall))
            step_id = cur.lastrowid
            for exp_id, params in vial_parameters.items():
                db.execute("INSERT INTO experiment_steps(experiment_id, step_id, parameters) "
                           "VALUES(?, ?, ?)", (exp_id, step_id, _dumps(params)))
        return step_id

    def finish_step(self, step_id: int, *, success: bool, end_time: float, error_code: int = 0,
                    message: str = "",
                    vial_outcomes: Mapping[int, tuple[bool, str, Mapping[str, float]]] = {}
                    ) -> None:
        """Record a step's outcome; `vial_outcomes` maps experiment id -> (ok, msg, data)."""
        with self._transaction() as db:
            db.execute("UPDATE steps SET status=?, end_time=?, error_code=?, message=? WHERE id=?",
                       ("succeeded" if success else "failed", end_time, error_code, message,
                        step_id))
            for exp_id, (ok, msg, data) in vial_outcomes.items():
                db.execute("UPDATE experiment_steps SET success=?, message=?, measurements=? "
                           "WHERE experiment_id=? AND step_id=?",
                           (int(ok), msg, _dumps(data), exp_id, step_id))

    def steps(self, batch: int | None = None) -> list[StepRecord]:
        rows = self._rows("steps", batch)
        with self._lock:
            links = self._db.execute("SELECT * FROM experiment_steps").fetchall()
        by_step: dict[int, list] = {}
        for link in links:
            by_step.setdefault(link["step_id"], []).append(link)
        records = []
        for r in rows:
            rec = StepRecord(
                id=r["id"], batch=r["batch"], step_index=r["step_index"], attempt=r["attempt"],
                request_id=r["request_id"], kind=r["kind"], station=r["station"],
                operation=r["operation"], parameters=json.loads(r["parameters"]),
                start_time=r["start_time"], end_time=r["end_time"], status=r["status"],
                error_code=r["error_code"], message=r["message"],
                dispatched_wall=r["dispatched_wall"])
            for link in by_step.get(r["id"], []):
                eid = link["experiment_id"]
                rec.vial_parameters[eid] = json.loads(link["parameters"])
                rec.vial_success[eid] = None if link["success"] is None else bool(link["success"])
                rec.vial_messages[eid] = link["message"]
            records.append(rec)
        return records

    def experiment_steps(self, exp_id: int) -> list[tuple[StepRecord, dict[str, float]]]:
        """The process one experiment went through: (step, this vial's parameters).

        Every step dispatched while the experiment was active links to it, rack-level steps
        (navigation, transfers, irradiation) with empty per-vial parameters.
        """
        return [(s, s.vial_parameters[exp_id]) for s in self.steps() if exp_id in s.vial_parameters]
