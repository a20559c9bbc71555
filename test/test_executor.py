"""HandoffExecutor: each ready callback goes to the thread pool once (own ROS_DOMAIN_ID)."""

import threading
import time

import pytest

rclpy = pytest.importorskip("rclpy")

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup  # noqa: E402
from rclpy.node import Node  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from mobile_chemist.ros.common import HandoffExecutor  # noqa: E402


def test_each_message_is_handed_to_the_pool_once_while_callbacks_compute():
    context = rclpy.Context()
    rclpy.init(context=context)
    node = Node("handoff_test", context=context)
    handled = []

    def compute(msg):            # holds the GIL, as pure-Python work does
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 0.02:
            pass
        handled.append(msg.data)

    node.create_subscription(String, "/handoff_test", compute, 100,
                             callback_group=MutuallyExclusiveCallbackGroup())
    pub = node.create_publisher(String, "/handoff_test", 100)
    executor = HandoffExecutor(num_threads=4, context=context)
    executor.add_node(node)
    submitted = []
    submit = executor._executor.submit
    executor._executor.submit = lambda fn: (submitted.append(fn), submit(fn))[1]
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        deadline = time.monotonic() + 10
        while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        sent = [str(i) for i in range(30)]
        for data in sent:
            pub.publish(String(data=data))
        deadline = time.monotonic() + 30
        while len(handled) < len(sent) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert handled == sent          # all of them, in order (reliable, depth 100)
        # One hand-off per message; rclpy's own executor submits each many times over.
        assert len(handled) <= len(submitted) <= len(handled) + 3
    finally:
        executor.shutdown(timeout_sec=2.0)
        spinner.join(5.0)
        node.destroy_node()
        rclpy.shutdown(context=context)


def test_a_node_spun_on_one_thread_gets_the_single_threaded_executor_without_warning():
    import warnings

    from rclpy.executors import SingleThreadedExecutor

    from mobile_chemist.ros.common import make_executor

    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")   # rclpy warns when a pool has one thread
            single = make_executor(1, context=context)
        assert type(single) is SingleThreadedExecutor
        pooled = make_executor(3, context=context)
        assert type(pooled) is HandoffExecutor and pooled._executor._max_workers == 3
        with pytest.raises(ValueError, match="num_threads"):
            make_executor(0, context=context)
        single.shutdown()
        pooled.shutdown()
    finally:
        rclpy.try_shutdown(context=context)


def test_a_callback_tripping_over_the_guard_destroyed_by_shutdown_ends_the_spin_quietly():
    from rclpy.exceptions import InvalidHandle
    from rclpy.executors import Executor
    from rclpy.task import Task

    context = rclpy.Context()
    rclpy.init(context=context)
    executor = HandoffExecutor(num_threads=2, context=context)
    ready = []
    executor.wait_for_ready_callbacks = lambda *args, **kwargs: (ready.pop(0), None, None)

    def spin_twice(handler):
        """Hand `handler` to the pool, then one more so its result is collected."""
        ready.extend([handler, Task(lambda: None)])
        executor._spin_once_impl(0)
        deadline = time.monotonic() + 5
        while not handler.done() and time.monotonic() < deadline:
            time.sleep(0.01)
        executor._spin_once_impl(0)

    def lost_handle():
        raise InvalidHandle("a destroyed entity")

    try:
        with pytest.raises(InvalidHandle):       # before shutdown it is a real error
            spin_twice(Task(lost_handle))
        guard = executor._guard
        # What rclpy 9.1's shutdown() does before it stops the pool: the guard is destroyed
        # while callbacks may still be running.
        Executor.shutdown(executor)
        spin_twice(Task(guard.trigger))         # raises InvalidHandle inside the pool
    finally:
        executor.shutdown()
        rclpy.try_shutdown(context=context)
