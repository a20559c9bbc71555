"""An in-process lab for testing the campaign runner without a ROS graph.

It uses the real station validation, simulated instruments, request ledger and robot model;
only the transport (ROS actions) and the clock (a plain counter) differ from the nodes.
"""

from __future__ import annotations

import time

from mobile_chemist.campaign import StepOutcome
from mobile_chemist.inspection import Look, SeenVial
from mobile_chemist.ledger import RequestLedger, UnknownRequest
from mobile_chemist.robot_sim import DiscreteEventRobot, MotionRefused
from mobile_chemist.stations import (GoalRejected, OperationGoal, SimulatedLab, make_driver,
                                     validate_goal)


class Crash(Exception):
    """Simulates the planner dying while a step is in flight."""


class InProcessLab:
    def __init__(self, lab, seed=0):
        self.lab = lab
        self.time = 1_000_000.0
        self.world = SimulatedLab()
        self.stations = {n: s for n, s in lab.stations.items() if s.operations}
        self.drivers = {n: make_driver(s, self.world, seed) for n, s in self.stations.items()}
        self.robot = DiscreteEventRobot(lab)
        self.ledger = RequestLedger()
        self.calls = []             # (request_id, kind) of every executed request
        self.crash_after_calls = None
        self.crash_before_send = False
        self.started_wall = time.time()
        self.looks = []             # (request_id, station) of every look
        # vision_error(look number, slot, SeenVial) -> SeenVial or None (not seen): what
        # vision gets wrong; None = vision sees the truth.
        self.vision_error = None

    def now(self):
        return self.time

    def _sleep(self, seconds):
        self.time += seconds
        return True

    def restart_servers(self):
        """The station and robot servers restart: they forget every request."""
        self.ledger = RequestLedger()
        self.started_wall = time.time()

    def _run(self, request_id, kind, work, recover_only):
        if self.crash_before_send:
            self.crash_before_send = False
            raise Crash(request_id)   # recorded as started, but the goal never left
        def counted():
            self.calls.append((request_id, kind))
            return work()
        try:
            outcome = self.ledger.run(request_id, counted, recover_only=recover_only)
        except UnknownRequest:
            return StepOutcome(False, 99, "unknown request", unknown_request=True,
                               server_started=self.started_wall)
        if self.crash_after_calls is not None and len(self.calls) >= self.crash_after_calls:
            self.crash_after_calls = None
            raise Crash(request_id)   # the work ran, but the planner never saw the result
        return outcome

    def navigate(self, request_id, station, *, recover_only):
        def work():
            try:
                plan = self.robot.plan_navigation(station)
            except MotionRefused as exc:
                return StepOutcome(False, exc.code, exc.message)
            self._sleep(plan.duration_s)
            self.robot.complete_navigation(station, plan)
            return StepOutcome(True)
        return self._run(request_id, "navigate", work, recover_only)

    def transfer(self, request_id, object_type, object_id, source, target, *, recover_only):
        def work():
            try:
                plan = self.robot.plan_transfer(object_type, object_id, source, target)
            except MotionRefused as exc:
                return StepOutcome(False, exc.code, exc.message)
            self._sleep(plan.duration_s)
            self.robot.complete_transfer(object_id, target)
            return StepOutcome(True)
        return self._run(request_id, "transfer", work, recover_only)

    def execute(self, request_id, station, operation, rack_id, vial_ids, parameters,
                vial_parameters, *, recover_only):
        def work():
            goal = OperationGoal(station, operation, rack_id, list(vial_ids), dict(parameters),
                                 [dict(p) for p in vial_parameters])
            try:
                params = validate_goal(self.stations, goal)
            except GoalRejected as exc:
                return StepOutcome(False, int(exc.code), exc.message)
            spec = self.stations[station].operations[operation]
            res = self.drivers[station].execute(spec, goal, params, lambda *a: None, self._sleep)
            return StepOutcome(res.success, int(res.error_code), res.message,
                               {v.vial_id: v for v in res.vials})
        return self._run(request_id, f"execute {station}", work, recover_only)


    def look(self, request_id, station):
        """An oracle camera + vision: the truth of the rack at the station, as the sim
        camera would render it (rack_camera.vial_spec), in slot positions 40 px apart."""
        from mobile_chemist.vision.classes import ROW_TO_PHASE, Row
        from mobile_chemist.vision.rack_camera import SimCameraSettings, vial_spec

        self.looks.append((request_id, station))
        here = [r for r, loc in self.robot.racks.items() if loc.split("/")[0] == station]
        if self.robot.docked_at != station or not here:
            return Look(False, f"no rack in view at {station}")
        vials = []
        for slot, (vial_id, state) in enumerate(self.world.rack(here[0])):
            spec = vial_spec(vial_id, state, SimCameraSettings())
            phases = tuple(ROW_TO_PHASE[Row(r)] for _, _, r in reversed(spec.layers))
            seen = SeenVial(box=(40.0 * slot + 10, 100.0, 40.0 * slot + 40, 220.0),
                            cap_present=spec.cap, content=spec.content, phases=phases,
                            fill_level=max((hi for _, hi, _ in spec.layers), default=0.0))
            if self.vision_error is not None:
                seen = self.vision_error(len(self.looks) - 1, slot, seen)
            if seen is not None:
                vials.append(seen)
        return Look(True, "", vials, image_width=40 * 16 + 20)


class RandomOptimizer:
    """A stand-in optimizer with the planner's contract, for runner tests."""

    def __init__(self, space, seed=0):
        import numpy as np
        self.space = space
        self.seed = seed
        self.observed = []
        self._np = np

    def suggest(self, n):
        rng = self._np.random.default_rng([self.seed, len(self.observed)])
        return self.space.from_array(self.space.sample(n, rng))

    def observe(self, formulations, values):
        self.observed.extend(zip([dict(f) for f in formulations], values))
