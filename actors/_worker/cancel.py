"""The cancel signal: how a stop request reaches a handler that is running.

A worker busy in a handler cannot read its mailbox, so cancellation travels on
a side channel: each worker owns one `CancelScope`. The ready queue arms it
as the worker takes a job; the Dispatcher fires it for that attempt on
`cancel()` or at the deadline; a fire meant for another attempt is ignored.
Firing sets a `threading.Event` (sync handlers poll ``ctx.cancelled`` or wait
on it) and cancels the asyncio task of an async handler for real.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Literal

__all__ = ["CancelReason", "CancelScope"]

CancelReason = Literal["cancel", "timeout", "shutdown", "parent"]
"""Why a job is told to stop: `Scheduler.cancel`, its deadline, shutdown, or a
cancel of its parent job (the cascade of ``ctx.submit`` children)."""


class CancelScope:
    """One worker's stop signal, armed for one attempt at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._attempt: tuple[str, int] | None = None
        self.event = threading.Event()
        """Set once the current attempt has been told to stop."""
        self.reason: CancelReason | None = None
        """Why the current attempt was told to stop, or None. Set before `event`,
        so reading it is the cheap way to ask whether the attempt was told."""
        self._task: tuple[asyncio.AbstractEventLoop, asyncio.Task[Any]] | None = None

    def arm(self, job_id: str, attempt: int) -> None:
        """Start listening for stop requests meant for this attempt."""
        with self._lock:
            self._task = None
            if self.reason is not None:
                # Fired for the previous attempt: start this one with a fresh
                # signal (cheaper than Event.clear on every attempt).
                self.reason = None
                self.event = threading.Event()
            self._attempt = (job_id, attempt)

    def fire(self, job_id: str, attempt: int, reason: CancelReason) -> bool:
        """Tell the attempt to stop; False if that attempt is not the armed one."""
        with self._lock:
            if self._attempt != (job_id, attempt):
                return False
            if self.reason is None:
                self.reason = reason
            self.event.set()
            if self._task is not None:
                loop, task = self._task
                loop.call_soon_threadsafe(task.cancel)
            return True

    def attach(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> None:
        """Register the async handler's task so a fire cancels it."""
        with self._lock:
            self._task = (loop, task)
            if self.event.is_set():
                task.cancel()
