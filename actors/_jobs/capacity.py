"""Back-pressure: the bound on accepted, unfinished jobs (rule 8, docs/guarantees.md)."""

from __future__ import annotations

import threading
import time

from actors._timer.clock import wait_seconds

__all__ = ["Capacity"]


class Capacity:
    """A counting bound that submit takes a slot from and a finished job gives back.

    Slots taken and slots given back are two counters, each written under one
    lock only: ``taken`` under the facade's gate (submitters), `given` under
    the job table's lock (`JobTable.finish` raises it there, then calls `wake`
    if a submitter is `waiting`). So a worker giving a slot back never contends
    with a submitter; the submitter reads ``given`` as it is, which can only
    make it see fewer free slots than there are, never more.
    The slot is given back just before the job's handle resolves, so a job
    stops counting no later than the moment its handle resolves.
    """

    def __init__(self, limit: int, gate: threading.Lock) -> None:
        self.limit = limit
        self._taken = 0
        self.given = 0
        """Slots given back; raised by `JobTable.finish` under the table's lock."""
        self._closed = False
        self.waiting = 0
        """Submitters waiting for a slot (written under the gate)."""
        self._gate = gate
        self._cond = threading.Condition(gate)

    @property
    def used(self) -> int:
        """Slots taken now."""
        return self._taken - self.given

    def try_take(self) -> bool:
        """Take a slot if one is free, without waiting. The gate is held."""
        if self._closed or self._taken - self.given >= self.limit:
            return False
        self._taken += 1
        return True

    def force_take(self) -> None:
        """Take a slot even past the limit: a job recovered from the store was
        accepted before, and is never refused for want of room. The gate is held."""
        self._taken += 1

    def take(self, timeout: float | None) -> bool:
        """Take a slot, waiting up to ``timeout`` seconds (None: forever) for one.

        The gate is held, and released while waiting. False if none came free in
        time, or the bound was closed meanwhile.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        self.waiting += 1
        try:
            # ``waiting`` is set before ``given`` is read: a slot given back
            # after this read sees ``waiting`` and wakes us (see `wake`).
            while self._taken - self.given >= self.limit:
                if self._closed:
                    return False
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(wait_seconds(remaining))
        finally:
            self.waiting -= 1
        if self._closed:
            return False
        self._taken += 1
        return True

    def wake(self) -> None:
        """Wake a submitter waiting for a slot (after `given` was raised).

        ``given`` is raised before ``waiting`` is read, so a submitter that
        starts waiting after that read has already seen the slot.
        """
        with self._gate:
            self._cond.notify()

    def close(self) -> None:
        """Take no more slots; waiting submitters give up at once. Takes the gate."""
        with self._gate:
            self._closed = True
            self._cond.notify_all()
