"""Clocks: where the Timer reads the time, and how it learns that time moved.

The scheduler takes a clock so that tests can drive time by hand (`ManualClock`)
instead of sleeping. All due times inside postroom are in the clock's units
(seconds on an arbitrary monotonic scale), never wall-clock time. Schedules
(cron, intervals, `at`) are defined in wall-clock time: `Clock.wall` gives it,
and they turn each fire time into a due time on the monotonic scale when they
arm it, checking the wall clock again when it comes (so a wall clock set back
meanwhile cannot make a fire early).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

__all__ = ["CLOCK_METHODS", "MAX_WAIT", "Clock", "ManualClock", "MonotonicClock", "wait_seconds"]

MAX_WAIT = threading.TIMEOUT_MAX
"""The longest one wait on a lock, condition or event may be (about 292 years on
Linux): a longer one raises `OverflowError` instead of waiting."""


def wait_seconds(seconds: float | None) -> float | None:
    """``seconds`` as a lock, condition or event wait takes it (None: forever).

    A far-future due time or a caller's huge timeout must simply wait, not
    raise: anything longer than `MAX_WAIT` waits `MAX_WAIT`, and every caller
    looks again when it wakes.
    """
    if seconds is None or seconds <= MAX_WAIT:
        return seconds
    return MAX_WAIT


class Clock(Protocol):
    """What the scheduler needs from a clock."""

    def now(self) -> float:
        """The current time in seconds on a monotonic scale."""
        ...

    def wall(self) -> float:
        """The current wall-clock time, in seconds since the epoch."""
        ...

    def wait_hint(self, due: float) -> float | None:
        """How long a thread may block before ``due`` could have arrived.

        ``0.0`` means it is due now; ``None`` means only a `subscribe` callback
        can announce that time moved (a manual clock).
        """
        ...

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` whenever time jumps; returns a function to unsubscribe."""
        ...


CLOCK_METHODS = ("now", "wall", "wait_hint", "subscribe")
"""The methods of `Clock`, which the scheduler checks a clock has when it is made."""


class MonotonicClock:
    """Real time from `time.monotonic`; time never jumps, so nobody is called back."""

    def now(self) -> float:
        """The current time in seconds on a monotonic scale."""
        return time.monotonic()

    def wall(self) -> float:
        """`time.time`."""
        return time.time()

    def wait_hint(self, due: float) -> float | None:
        """Seconds until ``due``, at least 0."""
        return max(0.0, due - time.monotonic())

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Real time does not jump: nothing to subscribe to."""
        return _nothing


def _nothing() -> None:
    return None


class ManualClock:
    """A clock that moves only when told to, for tests of time-based behaviour.

    Its wall time starts at ``wall`` (seconds since the epoch; default: 2026-01-01
    00:00 UTC, so schedule tests do not depend on the day they run) and moves
    with `advance`.
    """

    def __init__(self, start: float = 0.0, *, wall: float = 1_767_225_600.0) -> None:
        self._now = start
        self._wall_offset = wall - start
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], None]] = []

    def now(self) -> float:
        """The current manual time."""
        return self._now

    def wall(self) -> float:
        """The manual wall-clock time: ``wall`` plus every `advance` so far."""
        return self._now + self._wall_offset

    def wait_hint(self, due: float) -> float | None:
        """0 if ``due`` has come, else None: wait until `advance` calls back."""
        return 0.0 if due <= self._now else None

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` after every `advance`."""
        with self._lock:
            self._callbacks.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._callbacks:
                    self._callbacks.remove(callback)

        return unsubscribe

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` and wake whoever waits on it."""
        if seconds < 0:
            msg = f"a clock cannot go backwards ({seconds!r})"
            raise ValueError(msg)
        with self._lock:
            self._now += seconds
            callbacks = list(self._callbacks)
        for callback in callbacks:
            callback()
