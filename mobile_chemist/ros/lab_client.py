"""LabClient: one small facade over the lab's actions, in the manner of Nav2's BasicNavigator.

Every call sends one goal, waits for its result and returns a library `StepOutcome`; it is
the planner's `Dispatcher`. The node that owns it must be spun by an executor in another
thread (the calls block on futures that the executor completes).
"""

from __future__ import annotations

import threading
import time
from typing import Mapping, Sequence

from action_msgs.msg import GoalStatus
from rclpy.action import ActionClient
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node

from mobile_chemist.action import ExecuteOperation, NavigateToStation, TransferLabware
from mobile_chemist.campaign import StepOutcome
from mobile_chemist.inspection import Look, SeenVial
from mobile_chemist.msg import VialParameters
from mobile_chemist.stations import VialResult
from mobile_chemist.vision.classes import Phase
from mobile_chemist.ros.common import from_named_values, from_time_msg, now_s, to_named_values


_TERMINAL = (GoalStatus.STATUS_SUCCEEDED, GoalStatus.STATUS_ABORTED, GoalStatus.STATUS_CANCELED)


class LabClient:
    """Navigate, transfer and execute through the lab's action servers."""

    def __init__(self, node: Node, server_timeout_s: float = 30.0, resend_after_s: float = 5.0,
                 capture_service: str = "", camera_info_topic: str = "",
                 vision_timeout_s: float = 120.0, look_timeout_s: float = 60.0,
                 recapture_after_s: float = 2.0):
        self.node = node
        self.server_timeout_s = server_timeout_s
        self.resend_after_s = resend_after_s
        self._group = ReentrantCallbackGroup()
        self._navigate = ActionClient(node, NavigateToStation, "/robot/navigate_to_station",
                                      callback_group=self._group)
        self._transfer = ActionClient(node, TransferLabware, "/robot/transfer",
                                      callback_group=self._group)
        self._stations: dict[str, ActionClient] = {}
        self.last_feedback = None
        # Vision: /vision/inspect reads the latest image; a simulated camera renders one when
        # asked (capture_service), a real one streams. camera_info gives the image width.
        from mobile_chemist.srv import InspectVials

        self._inspect = node.create_client(InspectVials, "/vision/inspect",
                                           callback_group=self._group)
        self._inspect_request = InspectVials.Request
        self._capture = None
        if capture_service:
            from std_srvs.srv import Trigger

            self._capture = node.create_client(Trigger, capture_service,
                                               callback_group=self._group)
            self._trigger_request = Trigger.Request
        self.image_width = 0
        if camera_info_topic:
            from rclpy.qos import qos_profile_sensor_data
            from sensor_msgs.msg import CameraInfo

            node.create_subscription(CameraInfo, camera_info_topic, self._on_camera_info,
                                     qos_profile_sensor_data, callback_group=self._group)
        self.vision_timeout_s = vision_timeout_s
        # A look gives up after look_timeout_s; a simulated camera is asked for a new image
        # when none newer than the look has reached vision within recapture_after_s.
        self.look_timeout_s = look_timeout_s
        self.recapture_after_s = recapture_after_s

    def now(self) -> float:
        """Seconds on the graph's clock."""
        return now_s(self.node)

    def navigate(self, request_id: str, station: str, *, recover_only: bool = False) -> StepOutcome:
        """Drive to `station` and dock there."""
        goal = NavigateToStation.Goal(request_id=request_id, recover_only=recover_only,
                                      station=station)
        result, status = self._call(self._navigate, goal)
        return self._outcome(result, status, NavigateToStation.Result.ERROR_UNKNOWN_REQUEST)

    def transfer(self, request_id: str, object_type: str, object_id: str, source: str,
                 target: str, *, recover_only: bool = False) -> StepOutcome:
        """Pick `object_id` at `source` and place it at `target`."""
        goal = TransferLabware.Goal(request_id=request_id, recover_only=recover_only,
                                    object_type=object_type, object_id=object_id,
                                    source=source, target=target)
        result, status = self._call(self._transfer, goal)
        return self._outcome(result, status, TransferLabware.Result.ERROR_UNKNOWN_REQUEST)

    def execute(self, request_id: str, station: str, operation: str, rack_id: str,
                vial_ids: Sequence[str], parameters: Mapping[str, float],
                vial_parameters: Sequence[Mapping[str, float]], *,
                recover_only: bool = False) -> StepOutcome:
        """Execute `operation` at `station` on the given vials."""
        if station not in self._stations:
            self._stations[station] = ActionClient(
                self.node, ExecuteOperation, f"/stations/{station}/execute",
                callback_group=self._group)
        goal = ExecuteOperation.Goal(
            request_id=request_id, recover_only=recover_only, station=station,
            operation=operation, rack_id=rack_id, vial_ids=list(vial_ids),
            parameters=to_named_values(parameters),
            vial_parameters=[VialParameters(vial_id=v, values=to_named_values(p))
                             for v, p in zip(vial_ids, vial_parameters)])
        result, status = self._call(self._stations[station], goal)
        outcome = self._outcome(result, status, ExecuteOperation.Result.ERROR_UNKNOWN_REQUEST)
        if result is not None:
            outcome.vials = {v.vial_id: VialResult(v.vial_id, v.success, v.error_code, v.message,
                                                   from_named_values(v.measurements))
                             for v in result.vials}
        return outcome

    def look(self, request_id: str, station: str) -> Look:
        """A fresh image of the rack at `station`, read by the vision node.

        Fresh: /vision/inspect is asked with max_age_s = the time since this look began, so
        an image that arrived before it is refused and asked for again (images travel best
        effort: a lost one is captured again).
        """
        del request_id, station  # the camera shows what is in front of it
        began = time.monotonic()
        if not self._inspect.wait_for_service(timeout_sec=self.vision_timeout_s):
            return Look(False, f"no /vision/inspect service after {self.vision_timeout_s:g} s")
        deadline = began + self.look_timeout_s
        captured_at = -1e9
        message = ""
        while time.monotonic() < deadline:
            stale = time.monotonic() - captured_at > self.recapture_after_s
            if self._capture is not None and stale:
                if not self._capture.wait_for_service(timeout_sec=self.server_timeout_s):
                    return Look(False, f"no camera service {self._capture.srv_name}")
                captured_at = time.monotonic()
                answer = self._call_service(self._capture, self._trigger_request())
                if answer is None or not answer.success:
                    return Look(False, "camera: " + (answer.message if answer else "no answer"))
            answer = self._call_service(
                self._inspect, self._inspect_request(max_age_s=time.monotonic() - began + 0.01))
            if answer is not None and answer.success:
                vials = [SeenVial(box=(d.x_min, d.y_min, d.x_max, d.y_max),
                                  confidence=d.confidence, cap_present=d.cap_present,
                                  cap_confidence=d.cap_confidence, content=Phase(d.content),
                                  phases=tuple(Phase(p.phase_class) for p in d.phases),
                                  fill_level=d.fill_level)
                         for d in answer.detections.detections]
                return Look(True, answer.message, vials, image_width=self.image_width or 640,
                            caution=answer.caution)
            message = answer.message if answer is not None else "no answer from /vision/inspect"
            time.sleep(0.1)
        return Look(False, f"vision: no fresh reading after {self.look_timeout_s:g} s: {message}")

    def _on_camera_info(self, msg) -> None:
        self.image_width = int(msg.width)

    def _call_service(self, client, request, timeout_s: float = 60.0):
        done = threading.Event()
        future = client.call_async(request)
        future.add_done_callback(lambda _: done.set())
        return future.result() if done.wait(timeout_s) else None

    # -- the one place that talks to action servers ------------------------------------
    def _call(self, client: ActionClient, goal):
        """Send `goal`, wait for the result; returns (result or None, GoalStatus).

        A goal response or a result can be lost in transit (rclpy's action client can drop
        one under a multi-threaded executor). Two recoveries, neither of which can run an
        operation twice: an unanswered goal is sent again (servers execute a request_id at
        most once), and a result that has not come is asked for again, with growing
        intervals (the terminal status may have been lost with it).
        """
        if not client.wait_for_server(timeout_sec=self.server_timeout_s):
            return None, f"no action server at {client._action_name} after {self.server_timeout_s} s"
        done = threading.Event()
        box: dict = {}
        handles: list = []

        def on_result(future):
            if "response" not in box:
                box["response"] = future.result()
                done.set()

        def on_goal(future):
            handle = future.result()
            if not handle.accepted:
                box.setdefault("response", None)
                done.set()
                return
            handles.append(handle)
            handle.get_result_async().add_done_callback(on_result)

        def on_feedback(msg):
            self.last_feedback = msg.feedback

        def send():
            client.send_goal_async(goal, feedback_callback=on_feedback).add_done_callback(on_goal)

        send()
        gone_since = None
        last_ask = time.monotonic()
        resend_after = self.resend_after_s
        while not done.wait(0.5):
            now = time.monotonic()
            # Steps may take hours; a server that has vanished from the graph ends the wait.
            if client.server_is_ready():
                gone_since = None
            elif gone_since is None:
                gone_since = now
            elif now - gone_since > self.server_timeout_s:
                return None, f"action server {client._action_name} vanished during the goal"
            if now - last_ask < resend_after:
                continue
            if not handles and goal.request_id:
                self._log_retry(f"no goal response for request {goal.request_id}; sending again")
                send()
            elif handles:
                # The terminal status and the result response can both be lost: ask for the
                # result again (harmless: the server answers every request once the goal ends).
                if any(h.status in _TERMINAL for h in handles):
                    self._log_retry(f"request {goal.request_id} finished but no result came; "
                                    "asking for it again")
                for h in handles:
                    h.get_result_async().add_done_callback(on_result)
            last_ask, resend_after = now, min(2 * resend_after, 300.0)
        response = box["response"]
        if response is None:
            return None, "goal rejected"
        return response.result, response.status

    def _log_retry(self, message: str) -> None:
        self.node.get_logger().warning(message)

    @staticmethod
    def _outcome(result, status, unknown_code: int) -> StepOutcome:
        if result is None:
            return StepOutcome(False, 0, str(status))
        outcome = StepOutcome(bool(result.success) and status == GoalStatus.STATUS_SUCCEEDED,
                              int(result.error_code), result.message)
        outcome.unknown_request = result.error_code == unknown_code and unknown_code != 0
        outcome.server_started = from_time_msg(result.server_started)
        if status == GoalStatus.STATUS_CANCELED and not outcome.message:
            outcome.message = "canceled"
        return outcome
