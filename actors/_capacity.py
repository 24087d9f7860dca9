"""Back-pressure: the bound on accepted, unfinished jobs (rule 8)."""

from __future__ import annotations

import threading
import time

__all__ = ["Capacity"]


class Capacity:
    """A counting bound that submit takes a slot from and a finished job gives back.

    The slot is given back just before the job's handle resolves, so a job stops
    counting no later than the moment its handle resolves.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._used = 0
        self._closed = False
        self._waiting = 0
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)

    @property
    def used(self) -> int:
        """Slots taken now."""
        return self._used

    def try_take(self) -> bool:
        """Take a slot if one is free, without waiting."""
        with self._lock:
            if self._closed or self._used >= self.limit:
                return False
            self._used += 1
            return True

    def take(self, timeout: float | None) -> bool:
        """Take a slot, waiting up to ``timeout`` seconds (None: forever) for one.

        False if none came free in time, or the bound was closed meanwhile.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while self._used >= self.limit:
                if self._closed:
                    return False
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._waiting += 1
                try:
                    self._cond.wait(remaining)
                finally:
                    self._waiting -= 1
            if self._closed:
                return False
            self._used += 1
            return True

    def give_back(self) -> None:
        """Return a slot and wake one waiting submitter."""
        with self._lock:
            self._used -= 1
            if self._waiting:
                self._cond.notify()

    def close(self) -> None:
        """Take no more slots; waiting submitters give up at once."""
        with self._lock:
            self._closed = True
            self._cond.notify_all()
