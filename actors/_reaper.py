"""The threads a scheduler started, so shutdown can join every one of them."""

from __future__ import annotations

import threading
import time
from typing import Any

import pykka

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
        self._refs: dict[threading.Thread, pykka.ActorRef[Any]] = {}
        self._added = 0

    def add(self, thread: threading.Thread, ref: pykka.ActorRef[Any] | None = None) -> None:
        """Remember a started thread (and its actor, so `stop_all` can reach it)."""
        with self._lock:
            self._threads.append(thread)
            if ref is not None:
                self._refs[thread] = ref
            self._added += 1
            if self._added % _PRUNE_EVERY == 0:
                self._threads = [t for t in self._threads if t.is_alive()]
                self._refs = {t: r for t, r in self._refs.items() if t.is_alive()}

    def stop_all(self) -> None:
        """Ask every live actor to stop (a crash: nobody is left to do it in order)."""
        with self._lock:
            refs = [ref for thread, ref in self._refs.items() if thread.is_alive()]
        for ref in refs:
            ref.stop(block=False)

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
            thread.join(max(0.0, deadline - time.monotonic()))
        left = [t for t in threads if t.is_alive()]
        with self._lock:
            self._threads = left
            self._refs = {t: r for t, r in self._refs.items() if t in left}
        return left
