"""Conversions and helpers shared by the nodes."""

from __future__ import annotations

import math
import threading
import time
from typing import Mapping

from builtin_interfaces.msg import Time
from rclpy.executors import (ConditionReachedException, ExternalShutdownException,
                             MultiThreadedExecutor, ShutdownException, TimeoutException)
from rclpy.exceptions import InvalidHandle
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from mobile_chemist.msg import NamedValue

#: Latched topics (campaign status, experiments): late joiners such as RViz get the last.
LATCHED_QOS = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                         reliability=ReliabilityPolicy.RELIABLE)
#: Images taken on demand: every one must arrive. A ~1 MB frame sent best effort travels
#: as many fragments and is often lost over loopback (bench/image_transport.py: 1 to 16 of
#: 30 arrived, 30 of 30 reliable), and each lost one cost the planner a new capture.
ON_DEMAND_IMAGE_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)


def to_named_values(values: Mapping[str, float]) -> list[NamedValue]:
    return [NamedValue(name=str(k), value=float(v)) for k, v in values.items()]


def from_named_values(values) -> dict[str, float]:
    return {v.name: float(v.value) for v in values}


def to_time_msg(seconds: float) -> Time:
    sec = math.floor(seconds)
    return Time(sec=int(sec), nanosec=int(round((seconds - sec) * 1e9)) % 1_000_000_000)


def from_time_msg(msg: Time) -> float:
    return msg.sec + msg.nanosec * 1e-9


def now_s(node: Node) -> float:
    return node.get_clock().now().nanoseconds * 1e-9


def declare(node: Node, name: str, default, description: str):
    """Declare a parameter with a description (shown by `ros2 param describe`)."""
    from rcl_interfaces.msg import ParameterDescriptor

    return node.declare_parameter(name, default, ParameterDescriptor(description=description)).value


def uses_sim_time(node: Node) -> bool:
    return bool(node.get_parameter("use_sim_time").value)


class GraphSleeper:
    """Sleep on the node's clock: simulated time via the sim_clock node, or wall time.

    With use_sim_time, asks /sim_clock/schedule to advance the clock to the wake-up time
    (when no such service exists, for example under Gazebo, it simply waits for /clock).
    """

    def __init__(self, node: Node):
        self.node = node
        self._schedule = None
        if uses_sim_time(node):
            from mobile_chemist.srv import ScheduleWakeup

            self._schedule = node.create_client(ScheduleWakeup, "/sim_clock/schedule")
            self._request_type = ScheduleWakeup.Request

    def wait_for_time(self, timeout_s: float = 30.0) -> bool:
        """Block until the clock has a time (sim time is 0 before the first /clock)."""
        deadline = time.monotonic() + timeout_s
        while now_s(self.node) <= 0.0:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def sleep(self, seconds: float, canceled=lambda: False) -> bool:
        """Sleep `seconds` of graph time; returns False if `canceled()` became true."""
        if seconds <= 0:
            return not canceled()
        if self._schedule is None:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                if canceled():
                    return False
                time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
            return True
        if not self.wait_for_time():
            raise RuntimeError("no /clock received while use_sim_time is set")
        wake = now_s(self.node) + seconds
        if self._schedule.service_is_ready() or self._schedule.wait_for_service(timeout_sec=2.0):
            done = threading.Event()
            future = self._schedule.call_async(self._request_type(time=to_time_msg(wake)))
            future.add_done_callback(lambda _: done.set())
            done.wait(5.0)
        while now_s(self.node) < wake - 1e-9:
            if canceled():
                return False
            time.sleep(0.0005)
        return True


def end_goal(goal_handle, *, success: bool, canceled: bool, logger=None, message: str = ""):
    """Set a goal's terminal state the way every server here does.

    Canceled only if the client asked for it; a failure is logged (when a logger is given)
    and aborts the goal, whose result still carries the error code and message.
    """
    if canceled and goal_handle.is_cancel_requested:
        goal_handle.canceled()
    elif success:
        goal_handle.succeed()
    else:
        if logger is not None:
            logger.warning(message)
        goal_handle.abort()


class HandoffExecutor(MultiThreadedExecutor):
    """rclpy's MultiThreadedExecutor, but each callback is handed to its pool only once.

    rclpy's (9.1) yields a callback's task again on every turn until a pool thread has
    started it, and submits it again each time; while callbacks compute, that loop holds the
    GIL and starves them. `python bench/executor.py` (20 ms callback fed at 75 Hz for 7 s,
    2 cores): rclpy's handled 24 messages at 3,578 wake-ups/s, this one 341 at 49/s, as many
    as the SingleThreadedExecutor (344). Waiting until a pool thread has taken the callback
    before looking for the next one removes the loop. It overrides rclpy's private
    `_spin_once_impl` (and uses its `_executor` pool and `_futures`), as rclpy 9.1.2, pinned
    in requirements.txt, has them; test/test_executor.py fails if that hook changes.
    """

    def _spin_once_impl(self, timeout_sec=None, wait_condition=lambda: False) -> None:
        try:
            handler, _entity, _node = self.wait_for_ready_callbacks(timeout_sec, None,
                                                                    wait_condition)
        except (ExternalShutdownException, ShutdownException, TimeoutException,
                ConditionReachedException):
            return
        started = threading.Event()

        def run():
            started.set()
            handler()

        self._executor.submit(run)
        self._futures.append(handler)
        started.wait()
        for future in self._futures[:]:
            if future.done():
                self._futures.remove(future)
                try:
                    future.result()  # raise the callback's exception here, as rclpy does
                except InvalidHandle:
                    # rclpy 9.1's shutdown() destroys the guard condition without waiting
                    # for running callbacks (its wait reads the flag it has just set), and a
                    # handler that triggers the guard afterwards trips over it: expected
                    # once shut down, an error before.
                    if not self._is_shutdown:
                        raise


def make_executor(num_threads: int, context=None):
    """The executor for a node that needs `num_threads` callbacks at once (1: no pool)."""
    from rclpy.executors import SingleThreadedExecutor

    if num_threads < 1:
        raise ValueError(f"num_threads must be 1 or more, got {num_threads}")
    if num_threads == 1:
        return SingleThreadedExecutor(context=context)
    return HandoffExecutor(num_threads, context=context)


def spin_node(node_class, args=None, num_threads: int = 4) -> None:
    """The main() of a node that only serves callbacks: init, spin until Ctrl-C, clean up."""
    import rclpy

    rclpy.init(args=args)
    node = node_class()
    executor = make_executor(num_threads)
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
