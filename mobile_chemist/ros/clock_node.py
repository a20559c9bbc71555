"""sim_clock node: publishes /clock from an EventClock and serves /sim_clock/schedule."""

from __future__ import annotations

import math
import time

from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rosgraph_msgs.msg import Clock as ClockMsg

from mobile_chemist.ros.common import spin_node, declare, from_time_msg, to_time_msg
from mobile_chemist.sim_clock import EventClock
from mobile_chemist.srv import ScheduleWakeup


class SimClockNode(Node):
    """The simulated lab's clock: still while idle, jumping to the next scheduled wake-up."""

    def __init__(self):
        super().__init__("sim_clock")
        factor = declare(self, "real_time_factor", 0.0,
                         "simulated seconds per wall second while something waits; "
                         "0 = jump straight to the next wake-up")
        start = declare(self, "start_time", 0.0,
                        "simulated start time (s since the epoch); 0 = the wall time now")
        tick_hz = declare(self, "tick_hz", 500.0, "how often the clock advances and publishes")
        if start <= 0:
            start = float(math.floor(time.time()))
        self.clock = EventClock(start=start, rate=factor if factor > 0 else math.inf)
        self._pub = self.create_publisher(ClockMsg, "/clock", 10)
        group = ReentrantCallbackGroup()
        self.create_service(ScheduleWakeup, "/sim_clock/schedule", self._on_schedule,
                            callback_group=group)
        # Wall-time timers: this node is the time source, so it must not use sim time.
        self._wall = Clock(clock_type=ClockType.STEADY_TIME)
        self._last_tick = time.monotonic()
        self._last_published = None
        self._last_publish_wall = 0.0
        self.create_timer(1.0 / tick_hz, self._tick, callback_group=group, clock=self._wall)
        self._publish(self.clock.now)

    def _on_schedule(self, request, response):
        self.clock.schedule(from_time_msg(request.time))
        response.now = to_time_msg(self.clock.now)
        return response

    def _tick(self):
        wall = time.monotonic()
        now = self.clock.advance(wall - self._last_tick)
        self._last_tick = wall
        # Publish on every change, and at 10 Hz while idle for late joiners.
        if now != self._last_published or wall - self._last_publish_wall > 0.1:
            self._publish(now)

    def _publish(self, now: float):
        self._pub.publish(ClockMsg(clock=to_time_msg(now)))
        self._last_published = now
        self._last_publish_wall = time.monotonic()


def main(args=None):
    spin_node(SimClockNode, args, num_threads=2)
