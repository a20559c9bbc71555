"""station_server node: one ExecuteOperation action server per station of lab.yaml.

The node only translates messages; validation and the instruments live in
`mobile_chemist.stations`. Stations served by one process share one SimulatedLab, so
the sim GC measures what the sim dispensers put into each vial.
"""

from __future__ import annotations

import threading
import time

from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node

from mobile_chemist.action import ExecuteOperation
from mobile_chemist.config import load_lab
from mobile_chemist.ledger import RequestLedger, UnknownRequest
from mobile_chemist.msg import VialOutcome
from mobile_chemist.ros.common import (end_goal, spin_node, GraphSleeper, declare, from_named_values, now_s,
                                       to_named_values, to_time_msg)
from mobile_chemist.stations import (GoalRejected, OperationGoal, OperationResult,
                                     SimulatedLab, StationError, make_driver, validate_goal)


class StationServerNode(Node):
    """Serves /stations/<name>/execute for each configured station."""

    def __init__(self):
        super().__init__("station_server")
        lab_path = declare(self, "lab_config", "", "lab layout file; empty = the package's")
        names = declare(self, "stations", [""], "stations to serve; empty = all with operations")
        seed = declare(self, "seed", 0, "seed of the simulated instruments")
        self.lab = load_lab(lab_path or None)
        names = [n for n in names if n] or [n for n, s in self.lab.stations.items() if s.operations]
        unknown = [n for n in names if n not in self.lab.stations]
        if unknown:
            raise ValueError(f"unknown stations {unknown} in parameter 'stations'")
        self.world = SimulatedLab()
        self.stations = {n: self.lab.stations[n] for n in names}
        self.drivers = {n: make_driver(self.lab.stations[n], self.world, seed) for n in names}
        self.busy = {n: threading.Lock() for n in names}
        self.ledger: RequestLedger[OperationResult] = RequestLedger()
        self.started_wall = time.time()  # see ExecuteOperation's recover_only
        self.sleeper = GraphSleeper(self)
        group = ReentrantCallbackGroup()
        self._servers = [
            ActionServer(self, ExecuteOperation, f"/stations/{n}/execute",
                         execute_callback=lambda handle, n=n: self._execute(n, handle),
                         goal_callback=self._on_goal, cancel_callback=self._on_cancel,
                         callback_group=group)
            for n in names]
        self.get_logger().info(f"serving stations: {', '.join(names)}")

    # Every well-formed goal is accepted so that a bad one still gets a result with an error
    # code and a message (a rejected goal carries neither); execute() checks it first.
    def _on_goal(self, goal_request):
        return GoalResponse.ACCEPT

    def _on_cancel(self, goal_handle):
        return CancelResponse.ACCEPT

    def _execute(self, served_as: str, goal_handle):
        msg = goal_handle.request
        start = now_s(self)
        goal = OperationGoal(
            station=msg.station or served_as, operation=msg.operation, rack_id=msg.rack_id,
            vial_ids=list(msg.vial_ids), parameters=from_named_values(msg.parameters),
            vial_parameters=[from_named_values(v.values) for v in msg.vial_parameters])
        if goal.station != served_as:
            outcome = OperationResult(False, StationError.UNKNOWN_STATION,
                                      f"goal for station {goal.station!r} sent to {served_as!r}")
        else:
            try:
                outcome = self.ledger.run(msg.request_id, lambda: self._run(goal, goal_handle),
                                          recover_only=msg.recover_only)
            except UnknownRequest:
                outcome = OperationResult(False, StationError.UNKNOWN_REQUEST,
                                          f"no record of request {msg.request_id!r}")
        result = ExecuteOperation.Result(
            success=outcome.success, error_code=int(outcome.error_code), message=outcome.message,
            vials=[VialOutcome(vial_id=v.vial_id, success=v.success, error_code=int(v.error_code),
                               message=v.message, measurements=to_named_values(v.measurements))
                   for v in outcome.vials],
            start=to_time_msg(start), end=to_time_msg(now_s(self)),
            server_started=to_time_msg(self.started_wall))
        # Device faults are the simulation's normal business; refused goals are worth a line.
        refused = not outcome.success and outcome.error_code != StationError.DEVICE
        end_goal(goal_handle, success=outcome.success,
                 canceled=outcome.error_code == StationError.CANCELED,
                 logger=self.get_logger() if refused else None,
                 message=f"goal refused: {outcome.message}")
        return result

    def _run(self, goal: OperationGoal, goal_handle) -> OperationResult:
        try:
            params = validate_goal(self.stations, goal)
        except GoalRejected as exc:
            return OperationResult(False, exc.code, exc.message)
        lock = self.busy[goal.station]
        if not lock.acquire(blocking=False):
            return OperationResult(False, StationError.BUSY,
                                   f"station {goal.station!r} is executing another goal")
        try:
            spec = self.stations[goal.station].operations[goal.operation]

            def progress(stage: str, fraction: float, vial: str):
                goal_handle.publish_feedback(ExecuteOperation.Feedback(
                    stage=stage, progress=float(fraction), current_vial=vial))

            def sleep(seconds: float) -> bool:
                return self.sleeper.sleep(seconds, lambda: goal_handle.is_cancel_requested)

            return self.drivers[goal.station].execute(spec, goal, params, progress, sleep)
        except Exception as exc:  # noqa: BLE001 - a driver bug must not kill the server
            self.get_logger().error(f"driver of {goal.station} raised: {exc!r}")
            return OperationResult(False, StationError.DEVICE, f"driver error: {exc}")
        finally:
            lock.release()


def main(args=None):
    spin_node(StationServerNode, args, num_threads=4)
