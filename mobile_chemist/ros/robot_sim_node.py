"""robot_sim node: navigate and transfer actions served by the discrete-event robot model."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

from geometry_msgs.msg import Pose2D as Pose2DMsg
from geometry_msgs.msg import PoseStamped
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from std_msgs.msg import String

from mobile_chemist.action import NavigateToStation, TransferLabware
from mobile_chemist.config import load_lab
from mobile_chemist.ledger import RequestLedger, UnknownRequest
from mobile_chemist.robot_sim import DiscreteEventRobot, MotionRefused
from mobile_chemist.ros.common import end_goal, spin_node, LATCHED_QOS, GraphSleeper, declare, now_s, to_time_msg
from mobile_chemist.srv import GetLabState


@dataclass
class Outcome:
    success: bool
    error_code: int = 0
    message: str = ""
    distance: float = 0.0


class RobotSimNode(Node):
    """Serves /robot/navigate_to_station, /robot/transfer and /robot/lab_state."""

    def __init__(self):
        super().__init__("robot_sim")
        lab_path = declare(self, "lab_config", "", "lab layout file; empty = the package's")
        self.lab = load_lab(lab_path or None)
        self.robot = DiscreteEventRobot(self.lab)
        self.sleeper = GraphSleeper(self)
        self.ledger: RequestLedger[Outcome] = RequestLedger()
        self.started_wall = time.time()  # see the actions' recover_only
        self.motion = threading.Lock()   # one motion at a time, as on the real robot
        # In physics mode nodes/navigation drives the base: it serves the navigate action,
        # publishes /robot/pose, and tells us where the base is docked.
        self.serve_navigation = declare(
            self, "serve_navigation", True,
            "serve /robot/navigate_to_station; false where nodes/navigation serves it and "
            "publishes /robot/docked_at (physics mode)")
        group = ReentrantCallbackGroup()
        accept = lambda _request: GoalResponse.ACCEPT  # noqa: E731 - checked in execute
        cancel = lambda _handle: CancelResponse.ACCEPT  # noqa: E731
        if self.serve_navigation:
            self.pose_pub = self.create_publisher(PoseStamped, "/robot/pose", LATCHED_QOS)
            self._nav = ActionServer(self, NavigateToStation, "/robot/navigate_to_station",
                                     execute_callback=self._navigate, goal_callback=accept,
                                     cancel_callback=cancel, callback_group=group)
        else:
            self.pose_pub = None
            self.robot.set_docked_at(None)   # until the navigation node says otherwise
            self.create_subscription(String, "/robot/docked_at", self._on_docked_at,
                                     LATCHED_QOS, callback_group=group)
        self._transfer = ActionServer(self, TransferLabware, "/robot/transfer",
                                      execute_callback=self._transfer_cb, goal_callback=accept,
                                      cancel_callback=cancel, callback_group=group)
        self.create_service(GetLabState, "/robot/lab_state", self._lab_state, callback_group=group)
        self._publish_pose()

    def _pose_msg(self) -> PoseStamped:
        p = self.robot.pose
        msg = PoseStamped()
        msg.header.frame_id = self.lab.frame_id
        msg.header.stamp = to_time_msg(now_s(self))
        msg.pose.position.x, msg.pose.position.y = p.x, p.y
        msg.pose.orientation.z, msg.pose.orientation.w = math.sin(p.yaw / 2), math.cos(p.yaw / 2)
        return msg

    def _publish_pose(self):
        if self.pose_pub is not None:
            self.pose_pub.publish(self._pose_msg())

    def _on_docked_at(self, msg: String) -> None:
        self.robot.set_docked_at(msg.data or None)

    def _guarded(self, request_id: str, recover_only: bool, work, busy_code: int) -> Outcome:
        def locked():
            if not self.motion.acquire(blocking=False):
                return Outcome(False, busy_code, "the robot is executing another motion")
            try:
                return work()
            except MotionRefused as exc:
                return Outcome(False, exc.code, exc.message)
            finally:
                self.motion.release()
        try:
            return self.ledger.run(request_id, locked, recover_only=recover_only)
        except UnknownRequest:
            return Outcome(False, 0, f"no record of request {request_id!r}")

    def _navigate(self, goal_handle):
        req = goal_handle.request
        codes = NavigateToStation.Result

        def work() -> Outcome:
            plan = self.robot.plan_navigation(req.station)
            if plan.duration_s > 0:
                self.robot.undock()
            feedback = NavigateToStation.Feedback()
            feedback.distance_remaining = plan.distance_m
            goal_handle.publish_feedback(feedback)
            if not self.sleeper.sleep(plan.duration_s, lambda: goal_handle.is_cancel_requested):
                return Outcome(False, codes.ERROR_CANCELED, "canceled; the robot stopped en route")
            self.robot.complete_navigation(req.station, plan)
            self._publish_pose()
            return Outcome(True, distance=plan.distance_m)

        out = self._guarded(req.request_id, req.recover_only, work, codes.ERROR_BUSY)
        if req.recover_only and not out.success and out.message.startswith("no record"):
            out.error_code = codes.ERROR_UNKNOWN_REQUEST
        result = NavigateToStation.Result(success=out.success, error_code=out.error_code,
                                          message=out.message, distance_travelled=out.distance)
        result.pose = self._pose_msg()
        result.docking_correction = Pose2DMsg()
        return self._finish(goal_handle, out, result, codes.ERROR_CANCELED)

    def _transfer_cb(self, goal_handle):
        req = goal_handle.request
        codes = TransferLabware.Result

        def work() -> Outcome:
            self.robot.plan_transfer(req.object_type, req.object_id, req.source, req.target)
            for stage, seconds in (("picking", self.lab.robot.pick_s),
                                   ("placing", self.lab.robot.place_s)):
                goal_handle.publish_feedback(TransferLabware.Feedback(stage=stage, progress=0.0))
                if not self.sleeper.sleep(seconds, lambda: goal_handle.is_cancel_requested):
                    return Outcome(False, codes.ERROR_CANCELED, f"canceled while {stage}")
            self.robot.complete_transfer(req.object_id, req.target)
            return Outcome(True)

        out = self._guarded(req.request_id, req.recover_only, work, codes.ERROR_BUSY)
        if req.recover_only and not out.success and out.message.startswith("no record"):
            out.error_code = codes.ERROR_UNKNOWN_REQUEST
        result = TransferLabware.Result(success=out.success, error_code=out.error_code,
                                        message=out.message)
        return self._finish(goal_handle, out, result, codes.ERROR_CANCELED)

    def _finish(self, goal_handle, out: Outcome, result, canceled_code: int):
        result.server_started = to_time_msg(self.started_wall)
        end_goal(goal_handle, success=out.success, canceled=out.error_code == canceled_code,
                 logger=self.get_logger(), message=out.message)
        return result

    def _lab_state(self, request, response):
        response.docked_at = self.robot.docked_at or ""
        response.rack_ids = list(self.robot.racks)
        response.rack_locations = list(self.robot.racks.values())
        return response


def main(args=None):
    spin_node(RobotSimNode, args, num_threads=4)
