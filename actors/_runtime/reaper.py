"""The threads a scheduler started, so shutdown can join every one of them."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from actors._timer.clock import wait_seconds

__all__ = ["Reaper"]

_PRUNE_EVERY = 1024


class Reaper:
    """Keeps the threads of a scheduler's actors until they are joined.

    Retired actors (idle repo locks, shrunk workers) end on their own; their
    dead threads are pruned now and then, so a long-lived scheduler that retires
    many repo locks keeps only the live ones here.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._stops: dict[threading.Thread, Callable[[], object]] = {}
        self._added = 0

    def add(self, thread: threading.Thread, stop: Callable[[], object] | None = None) -> None:
        """Remember a started thread, and how to ask it to stop (for `stop_all`)."""
        with self._lock:
            self._threads.append(thread)
            if stop is not None:
                self._stops[thread] = stop
            self._added += 1
            if self._added % _PRUNE_EVERY == 0:
                self._threads = [t for t in self._threads if t.is_alive()]
                self._stops = {t: s for t, s in self._stops.items() if t.is_alive()}

    def owns(self, thread: threading.Thread) -> bool:
        """Whether ``thread`` is one of the scheduler's (a worker, the callbacks...)."""
        with self._lock:
            return thread in self._stops or thread in self._threads

    def stop_all(self) -> None:
        """Ask every live thread to stop (a crash: nobody is left to do it in order)."""
        with self._lock:
            stops = [stop for thread, stop in self._stops.items() if thread.is_alive()]
        for stop in stops:
            stop()

    def alive(self) -> list[threading.Thread]:
        """Threads still running."""
        with self._lock:
            return [t for t in self._threads if t.is_alive()]

    def join(self, timeout: float) -> list[threading.Thread]:
        """Join every thread within ``timeout`` seconds in all; return the ones left."""
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(wait_seconds(max(0.0, deadline - time.monotonic())))
        left = [t for t in threads if t.is_alive()]
        with self._lock:
            self._threads = left
            self._stops = {t: s for t, s in self._stops.items() if t in left}
        return left
