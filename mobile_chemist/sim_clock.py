"""A discrete-event clock for the simulated lab (published as /clock by the sim_clock node).

Simulated operations take hours; a campaign must still finish in minutes of wall time with
a realistic simulated timeline. The clock therefore stands still while nothing waits on it
(the planner's computation costs no simulated time, as on a robot where it is seconds
against hours) and, when something does wait, advances to the earliest scheduled wake-up:
at once (`rate=inf`) or at `rate` times wall speed, for an operator watching in RViz.
"""

from __future__ import annotations

import heapq
import math
import threading


class EventClock:
    """Simulated time that moves only towards scheduled wake-ups."""

    def __init__(self, start: float = 0.0, rate: float = math.inf):
        if not rate > 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self._now = float(start)
        self._rate = float(rate)
        self._pending: list[float] = []
        self._lock = threading.Lock()

    @property
    def now(self) -> float:
        with self._lock:
            return self._now

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def schedule(self, time: float) -> float:
        """Ask the clock to reach `time`; returns the current time. Past times are no-ops."""
        if not math.isfinite(time):
            raise ValueError(f"cannot schedule a wake-up at {time}")
        with self._lock:
            if time > self._now:
                heapq.heappush(self._pending, float(time))
            return self._now

    def advance(self, wall_dt: float) -> float:
        """Move time after `wall_dt` wall seconds have passed; returns the new time."""
        with self._lock:
            if self._pending:
                target = self._pending[0]
                if math.isinf(self._rate):
                    self._now = target
                else:
                    self._now = min(target, self._now + self._rate * max(wall_dt, 0.0))
                while self._pending and self._pending[0] <= self._now:
                    heapq.heappop(self._pending)
            return self._now
