"""How many 640x480 camera frames arrive over loopback, best effort against reliable.

    python bench/image_transport.py [--frames 30] [--busy 2]

Publishes `--frames` bgr8 images (~0.9 MB each) one at a time, 0.5 s apart, as the
campaign's on-demand camera does, once with sensor-data QoS (best effort) and once with
`ON_DEMAND_IMAGE_QOS` (reliable), and counts the frames a subscriber in another process
receives. `--busy N` keeps N processes spinning meanwhile (the campaign's rendering and
vision keep both cores of the robot's PC busy); the loss appears under load.
Why the campaign graph sends images reliably: mobile_chemist/ros/common.py.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _spin_cpu(stop) -> None:
    while not stop.is_set():
        sum(i * i for i in range(10_000))


def _qos(reliable: bool):
    from rclpy.qos import qos_profile_sensor_data

    from mobile_chemist.ros.common import ON_DEMAND_IMAGE_QOS

    return ON_DEMAND_IMAGE_QOS if reliable else qos_profile_sensor_data


def _count(topic: str, reliable: bool, expected: int, result, ready) -> None:
    """Subscriber process: counts frames until `expected` arrived or 5 s of silence after
    the first (30 s for the first, while discovery matches the publisher)."""
    import rclpy
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("image_transport_counter")
    got = []
    node.create_subscription(Image, topic, got.append, _qos(reliable))
    ready.set()
    last = time.monotonic() + 25.0
    while len(got) < expected and time.monotonic() - last < 5.0:
        n = len(got)
        rclpy.spin_once(node, timeout_sec=0.1)
        if len(got) > n:
            last = time.monotonic()
    result.value = len(got)
    node.destroy_node()
    rclpy.shutdown()


def run(frames: int, reliable: bool) -> int:
    import numpy as np
    import rclpy
    from sensor_msgs.msg import Image

    topic = f"/image_transport_bench/{'reliable' if reliable else 'best_effort'}"
    ctx = multiprocessing.get_context("spawn")
    result, ready = ctx.Value("i", -1), ctx.Event()
    counter = ctx.Process(target=_count, args=(topic, reliable, frames, result, ready))
    counter.start()
    rclpy.init()
    node = rclpy.create_node("image_transport_publisher")
    pub = node.create_publisher(Image, topic, _qos(reliable))
    ready.wait(30)
    deadline = time.monotonic() + 30
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    msg = Image(height=480, width=640, encoding="bgr8", step=640 * 3,
                data=np.random.default_rng(0).integers(0, 255, 640 * 480 * 3, np.uint8).tobytes())
    for _ in range(frames):
        pub.publish(msg)
        rclpy.spin_once(node, timeout_sec=0.5)  # lets a reliable writer resend
    counter.join(60)
    node.destroy_node()
    rclpy.shutdown()
    return result.value


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=30)
    p.add_argument("--busy", type=int, default=0, help="CPU-spinning processes meanwhile")
    args = p.parse_args()
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    spinners = [ctx.Process(target=_spin_cpu, args=(stop,)) for _ in range(args.busy)]
    for s in spinners:
        s.start()
    try:
        for reliable in (False, True):
            got = run(args.frames, reliable)
            print(f"{'reliable' if reliable else 'best effort':<12} {got} of {args.frames} "
                  f"frames arrived ({args.busy} busy processes)", flush=True)
    finally:
        stop.set()
        for s in spinners:
            s.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
