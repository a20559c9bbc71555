"""Drive to a station's approach pose with Nav2 (through nav2_simple_commander's
BasicNavigator), then dock with the same scan-to-model registration as the builtin stack.

BasicNavigator is itself a Node that spins itself while it waits (spin_until_future_complete
on its own futures): it must never be added to an executor that is spinning. This backend
owns it and calls it from one thread only (the action's execute thread). It is imported
lazily so that the package works where Nav2 is not installed.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable

from mobile_chemist.config import LabConfig, Pose2D
from mobile_chemist.navigation.navigator import NavError

# nav2_simple_commander.robot_navigator.TaskResult values (an IntEnum there).
TASK_UNKNOWN, TASK_SUCCEEDED, TASK_CANCELED, TASK_FAILED = 0, 1, 2, 3


@dataclass
class DriveOutcome:
    """How the drive to the approach pose ended, in our error codes."""

    error_code: int
    message: str = ""

    @property
    def success(self) -> bool:
        return self.error_code == NavError.NONE


def pose_stamped(pose: Pose2D, frame_id: str, stamp=None):
    """A geometry_msgs/PoseStamped for a planar pose."""
    from geometry_msgs.msg import PoseStamped

    msg = PoseStamped()
    msg.header.frame_id = frame_id
    if stamp is not None:
        msg.header.stamp = stamp
    msg.pose.position.x, msg.pose.position.y = float(pose.x), float(pose.y)
    msg.pose.orientation.z = math.sin(pose.yaw / 2)
    msg.pose.orientation.w = math.cos(pose.yaw / 2)
    return msg


def _default_navigator():
    try:
        from nav2_simple_commander.robot_navigator import BasicNavigator
    except ImportError as exc:
        raise RuntimeError("backend 'nav2' needs Nav2 (nav2_simple_commander), which is not "
                           "installed here; use backend 'builtin'") from exc
    return BasicNavigator(node_name="mobile_chemist_nav2")


class Nav2Backend:
    """goToPose to the approach pose, poll to completion, map the result to our codes."""

    def __init__(self, lab: LabConfig, navigator: Any = None, *,
                 navigator_factory: Callable[[], Any] = _default_navigator,
                 poll_period_s: float = 0.1, sleep: Callable[[float], None] = time.sleep):
        self.lab = lab
        self._navigator = navigator
        self._factory = navigator_factory
        self.poll_period_s = poll_period_s
        self._sleep = sleep

    @property
    def navigator(self):
        if self._navigator is None:
            self._navigator = self._factory()
        return self._navigator

    def activate(self, initial_pose: Pose2D | None = None, localizer: str = "amcl") -> None:
        """Give AMCL the initial pose and wait for the Nav2 lifecycle nodes to be active."""
        nav = self.navigator
        if initial_pose is not None:
            nav.setInitialPose(pose_stamped(initial_pose, self.lab.frame_id))
        nav.waitUntilNav2Active(localizer=localizer)

    def drive_to_station(self, station: str, canceled: Callable[[], bool] = lambda: False,
                         on_feedback: Callable[[Any], None] | None = None) -> DriveOutcome:
        """Drive to the station's approach pose; blocks until Nav2 finishes or we cancel."""
        if station not in self.lab.stations:
            return DriveOutcome(NavError.UNKNOWN_STATION,
                                f"unknown station {station!r}; known: "
                                f"{', '.join(sorted(self.lab.stations))}")
        nav = self.navigator
        goal = pose_stamped(self.lab.stations[station].approach, self.lab.frame_id)
        task = nav.goToPose(goal)
        # Humble returns a bool; newer releases a task handle (None/False = rejected).
        if task is False or task is None:
            return DriveOutcome(NavError.NAVIGATION_FAILED,
                                f"Nav2 rejected the goal to {station}")
        handle = None if task is True else task

        def complete() -> bool:
            return nav.isTaskComplete() if handle is None else nav.isTaskComplete(task=handle)

        while not complete():
            if canceled():
                nav.cancelTask()
                return DriveOutcome(NavError.CANCELED, "canceled; Nav2 goal canceled")
            feedback = nav.getFeedback() if handle is None else nav.getFeedback(task=handle)
            if feedback is not None and on_feedback is not None:
                on_feedback(feedback)
            self._sleep(self.poll_period_s)
        result = nav.getResult()
        return self._outcome(int(getattr(result, "value", result)), station)

    def _outcome(self, result: int, station: str) -> DriveOutcome:
        if result == TASK_SUCCEEDED:
            return DriveOutcome(NavError.NONE)
        if result == TASK_CANCELED:
            return DriveOutcome(NavError.CANCELED, "Nav2 canceled the goal")
        detail = ""
        get_error = getattr(self.navigator, "getTaskError", None)   # newer releases only
        if callable(get_error):
            try:
                code, text = get_error()
                detail = f" (Nav2 error {code}: {text})"
            except Exception:  # noqa: BLE001 - the detail is optional
                detail = ""
        if "path" in detail.lower() or "plan" in detail.lower():
            return DriveOutcome(NavError.UNREACHABLE, f"Nav2 found no path to {station}{detail}")
        what = "failed" if result == TASK_FAILED else "ended with an unknown status"
        return DriveOutcome(NavError.NAVIGATION_FAILED,
                            f"Nav2 navigation to {station} {what}{detail}")
