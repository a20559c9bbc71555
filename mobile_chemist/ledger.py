"""At-most-once execution of requests, keyed by the goals' request_id.

A planner that is killed while a goal runs re-sends that goal with the same request_id when
it resumes. The server must not dispense twice: it returns the outcome of the execution it
already ran (or waits for the one still running).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class UnknownRequest(KeyError):
    """recover_only was asked for a request the server has no record of."""


class RequestLedger(Generic[T]):
    """Remembers the outcome of the last `capacity` requests."""

    def __init__(self, capacity: int = 1000):
        self._capacity = capacity
        self._lock = threading.Lock()
        self._done: OrderedDict[str, T] = OrderedDict()
        self._running: dict[str, threading.Event] = {}

    def run(self, request_id: str, work: Callable[[], T], *, recover_only: bool = False) -> T:
        """Run `work` once for `request_id`; repeated calls return the first outcome.

        An empty request_id disables de-duplication. With `recover_only`, never runs `work`:
        raises UnknownRequest if the request is neither running nor finished.
        """
        if not request_id:
            if recover_only:
                raise UnknownRequest("recover_only needs a request_id")
            return work()
        while True:
            with self._lock:
                if request_id in self._done:
                    return self._done[request_id]
                event = self._running.get(request_id)
                if event is None:
                    if recover_only:
                        raise UnknownRequest(request_id)
                    event = threading.Event()
                    self._running[request_id] = event
                    break
            event.wait()  # another thread runs it: wait, then read its outcome
        try:
            outcome = work()
        except BaseException:
            with self._lock:
                del self._running[request_id]
            event.set()
            raise
        with self._lock:
            self._done[request_id] = outcome
            while len(self._done) > self._capacity:
                self._done.popitem(last=False)
            del self._running[request_id]
        event.set()
        return outcome

    def is_running(self, request_id: str) -> bool:
        with self._lock:
            return request_id in self._running
