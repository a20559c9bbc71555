"""station_server node: one ExecuteOperation action server per station of lab.yaml.

The node only translates messages; validation and the instruments live in
`mobile_chemist.stations`. Stations served by one process share one SimulatedLab, so
the sim GC measures what the sim dispensers put into each vial.

With `camera_topic` set it is also the simulated camera of the rack (it owns the vials'
truth): `/sim_camera/capture` (std_srvs/Trigger) asks /robot/lab_state where the robot is
docked and which rack stands there, renders that rack (`vision.rack_camera`, settings in
config/vision.yaml `sim_camera`) and publishes the image on `camera_topic` and its
CameraInfo on `<namespace>/camera_info`.
"""

from __future__ import annotations

import threading
import time

from std_msgs.msg import Header

from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node

from mobile_chemist.action import ExecuteOperation
from mobile_chemist.config import load_lab
from mobile_chemist.ledger import RequestLedger, UnknownRequest
from mobile_chemist.msg import VialOutcome
from mobile_chemist.ros.common import (ON_DEMAND_IMAGE_QOS, GraphSleeper, declare, end_goal,
                                       from_named_values, now_s, spin_node, to_named_values,
                                       to_time_msg)
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
        self.camera = None
        camera_topic = declare(self, "camera_topic", "",
                               "publish a simulated camera image of the rack here; empty = no camera")
        if camera_topic:
            self._start_camera(camera_topic, declare(self, "vision_config", "",
                                                     "vision config; empty = the package's"),
                               group)

    # -- the simulated rack camera -------------------------------------------------------
    def _start_camera(self, topic: str, vision_config: str, group) -> None:
        from sensor_msgs.msg import CameraInfo, Image
        from std_srvs.srv import Trigger

        from mobile_chemist.srv import GetLabState
        from mobile_chemist.vision.rack_camera import RackCamera, load_sim_camera_settings

        self.camera = RackCamera(load_sim_camera_settings(vision_config or None))
        self._image_type, self._info_type = Image, CameraInfo
        # Reliable: a reliable publisher serves best-effort subscribers too.
        self.image_pub = self.create_publisher(Image, topic, ON_DEMAND_IMAGE_QOS)
        info_topic = topic.rsplit("/", 1)[0] + "/camera_info"
        self.info_pub = self.create_publisher(CameraInfo, info_topic, ON_DEMAND_IMAGE_QOS)
        self.lab_state = self.create_client(GetLabState, "/robot/lab_state", callback_group=group)
        self._lab_state_request = GetLabState.Request
        self.create_service(Trigger, "/sim_camera/capture", self._capture, callback_group=group)
        self.get_logger().info(f"simulated rack camera ({self.camera.cfg.renderer}) on {topic}")

    def _rack_in_view(self) -> tuple[str, str] | str:
        """(station, rack id) where the robot is docked, or why there is nothing to see."""
        if not self.lab_state.wait_for_service(timeout_sec=5.0):
            return "no /robot/lab_state service"
        done = threading.Event()
        future = self.lab_state.call_async(self._lab_state_request())
        future.add_done_callback(lambda _: done.set())
        if not done.wait(10.0) or future.result() is None:
            return "no answer from /robot/lab_state"
        state = future.result()
        station = state.docked_at
        if not station:
            return "the robot is not docked at a station"
        here = [r for r, loc in zip(state.rack_ids, state.rack_locations)
                if loc.split("/", 1)[0] == station]
        if not here:
            return f"no rack at {station}"
        return station, here[0]

    def _capture(self, request, response):
        from mobile_chemist.ros.vision_node import array_to_image

        where = self._rack_in_view()
        if isinstance(where, str):
            response.success, response.message = False, where
            return response
        station, rack = where
        try:
            scene = self.camera.capture(self.world.rack(rack), station)
        except Exception as exc:  # noqa: BLE001 - a renderer failure is the caller's answer
            response.success, response.message = False, f"rendering failed: {exc!r}"
            return response
        cfg = self.camera.cfg
        header = Header(frame_id=cfg.frame_id, stamp=self.get_clock().now().to_msg())
        f, cx, cy = cfg.intrinsics()
        info = self._info_type(header=header, width=cfg.width, height=cfg.height,
                               distortion_model="plumb_bob")
        info.d = [0.0] * 5
        info.k = [f, 0.0, cx, 0.0, f, cy, 0.0, 0.0, 1.0]
        info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        info.p = [f, 0.0, cx, 0.0, 0.0, f, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
        self.info_pub.publish(info)
        self.image_pub.publish(array_to_image(scene.image, header))
        response.success = True
        response.message = (f"image {self.camera.captures} of rack {rack} at {station} "
                            f"({len(scene.vials)} vials in view)")
        return response

    def destroy_node(self):
        if self.camera is not None:
            self.camera.close()
        return super().destroy_node()

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
