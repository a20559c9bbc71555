"""How many messages each rclpy executor handles while its callbacks compute.

A subscription whose callback computes for `--work-ms` (holding the GIL, as numpy-light
Python does) is fed at `--rate-hz` for `--seconds`; the figures are messages handled and
executor wake-ups per second. rclpy's MultiThreadedExecutor re-submits a callback until a
pool thread has started it, and that loop starves the callback (mobile_chemist.ros.common.
HandoffExecutor). Run: python bench/executor.py
"""

from __future__ import annotations

import argparse
import os
import threading
import time


def run(kind: str, work_ms: float, rate_hz: float, seconds: float) -> tuple[int, float]:
    import rclpy
    import rclpy.executors as executors
    from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
    from rclpy.node import Node
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import LaserScan

    from mobile_chemist.ros.common import HandoffExecutor

    context = rclpy.Context()
    rclpy.init(context=context)
    node = Node("executor_bench", context=context)
    handled = [0]

    def compute(_msg):
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < work_ms / 1000:
            pass
        handled[0] += 1

    latest = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST,
                        reliability=ReliabilityPolicy.BEST_EFFORT)
    node.create_subscription(LaserScan, "/executor_bench", compute, latest,
                             callback_group=MutuallyExclusiveCallbackGroup())
    pub = node.create_publisher(LaserScan, "/executor_bench", latest)
    executor = {"single": lambda: executors.SingleThreadedExecutor(context=context),
                "multi": lambda: executors.MultiThreadedExecutor(4, context=context),
                "handoff": lambda: HandoffExecutor(4, context=context)}[kind]()
    executor.add_node(node)
    wakeups = [0]
    wait = executor.wait_for_ready_callbacks

    def counted(*args, **kwargs):
        wakeups[0] += 1
        return wait(*args, **kwargs)

    executor.wait_for_ready_callbacks = counted
    threading.Thread(target=executor.spin, daemon=True).start()
    msg = LaserScan(ranges=[1.0] * 500)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pub.publish(msg)
        time.sleep(1.0 / rate_hz)
    result = handled[0], wakeups[0] / seconds
    executor.shutdown(timeout_sec=1.0)
    node.destroy_node()
    rclpy.shutdown(context=context)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work-ms", type=float, default=20.0)
    ap.add_argument("--rate-hz", type=float, default=75.0)
    ap.add_argument("--seconds", type=float, default=7.0)
    args = ap.parse_args()
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    ceiling = args.seconds * min(args.rate_hz, 1000.0 / args.work_ms)
    print(f"callback {args.work_ms:g} ms, {args.rate_hz:g} Hz for {args.seconds:g} s "
          f"(at most ~{ceiling:.0f} can be handled)")
    print(f"{'executor':<10} {'handled':>8} {'wake-ups/s':>11}")
    for kind in ("single", "multi", "handoff"):
        handled, rate = run(kind, args.work_ms, args.rate_hz, args.seconds)
        print(f"{kind:<10} {handled:>8} {rate:>11.0f}")


if __name__ == "__main__":
    main()
