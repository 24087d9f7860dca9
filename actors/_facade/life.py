"""A scheduler's life: its state, the gate that guards it, and its actors while it runs.

``NEW`` until `Scheduler.start`, ``RUNNING``, then ``CLOSING`` while a shutdown
drains and ``CLOSED`` when it has; or ``CRASHED`` when an actor it cannot do
without fails; or ``FORKED`` in a child process forked from the one that
started it. `Life` is the one owner of that state: every part of the facade
is given the same `Life` and reads it there, and it changes only through the
transitions below (`started`, `closing`, `closed`, `crashed`, `after_fork`).
"""

from __future__ import annotations

import os
import threading
from typing import Any

from actors._errors import SchedulerClosed, SchedulerCrashed, SchedulerUnresponsive
from actors._runtime.fork import FORKED, forked_error
from actors._runtime.refs import ActorDead, ActorRef, NoReply, ask

__all__ = ["CLOSED", "CLOSING", "CRASHED", "FORKED", "NEW", "RUNNING", "Life"]

NEW, RUNNING, CLOSING, CLOSED, CRASHED = "new", "running", "closing", "closed", "crashed"


class Life:
    """The life state of one scheduler, and how to reach its Dispatcher."""

    __slots__ = (
        "ask_timeout",
        "crash_reason",
        "dispatcher",
        "forked_from",
        "gate",
        "name",
        "state",
        "timer",
    )

    def __init__(self, name: str, ask_timeout: float) -> None:
        self.name = name
        """The scheduler's name (errors of a forked copy name it)."""
        self.ask_timeout = ask_timeout
        """Seconds any question to the Dispatcher may take before it is a visible error."""
        self.state = NEW
        """One of the states above; written only by the transitions, under ``gate``
        (`after_fork` excepted: it runs on a child's only thread)."""
        self.gate = threading.Lock()
        """Guards ``state``; the job table and the capacities share it."""
        self.crash_reason = ""
        """Why it crashed (``CRASHED`` only)."""
        self.forked_from = 0
        """The process that started it, in a child forked from it (``FORKED`` only)."""
        self.dispatcher: ActorRef[Any] | None = None
        """The Dispatcher, set once by `Scheduler.start` (the gate held)."""
        self.timer: ActorRef[Any] | None = None
        """The Timer, set once by `started` (the Dispatcher boots it)."""

    @property
    def running(self) -> bool:
        """Whether the scheduler accepts jobs."""
        return self.state == RUNNING

    def closed_error(self) -> SchedulerClosed:
        """The error for a call the scheduler cannot take in its state now."""
        state = self.state
        if state == FORKED:
            return forked_error(f"the scheduler {self.name!r}", self.forked_from)
        if state == CRASHED:
            err = SchedulerClosed(f"the scheduler crashed: {self.crash_reason}")
            err.__cause__ = SchedulerCrashed(self.crash_reason)
            return err
        if state == NEW:
            return SchedulerClosed("the scheduler is not started: call start() or use `with`")
        return SchedulerClosed("the scheduler is shut down")

    def check_process(self) -> None:
        """Raise `SchedulerForked` if this is a forked copy of a started scheduler.

        Calls that would otherwise answer from the copy's stale state, or wait
        on threads that are not in this process, check this first.
        """
        if self.state == FORKED:
            raise self.closed_error()

    def ask(self, message: Any) -> Any:
        """Ask the Dispatcher; `SchedulerClosed` unless the scheduler is running.

        An error the Dispatcher raises for the message (a `ScheduleNotFound`,
        say) is raised here, in the caller.
        """
        dispatcher = self.dispatcher
        if self.state != RUNNING or dispatcher is None:
            raise self.closed_error()
        try:
            return ask(dispatcher, message, timeout=self.ask_timeout)
        except ActorDead:
            raise self.closed_error() from None
        except NoReply as exc:
            raise SchedulerUnresponsive(str(exc)) from None

    # --- transitions ----------------------------------------------------------------

    def started(self, timer: ActorRef[Any]) -> None:
        """``NEW`` -> ``RUNNING``, its Dispatcher having booted ``timer``. The gate is held."""
        self.timer = timer
        self.state = RUNNING

    def closing(self) -> str:
        """A shutdown begins, the gate held: ``NEW`` -> ``CLOSED`` (nothing ran),
        ``RUNNING`` or ``CRASHED`` -> ``CLOSING``. Returns the state before; if
        that is ``CLOSING`` or ``CLOSED``, another shutdown has it and nothing changes."""
        previous = self.state
        if previous not in (CLOSING, CLOSED):
            self.state = CLOSED if previous == NEW else CLOSING
        return previous

    def closed(self) -> None:
        """``CLOSING`` -> ``CLOSED``: the shutdown has ended. Takes the gate."""
        with self.gate:
            if self.state == CLOSING:
                self.state = CLOSED

    def crashed(self, reason: str) -> bool:
        """-> ``CRASHED``, unless it has ended already (crashed or closed): True
        if it changed. Takes the gate."""
        with self.gate:
            if self.state in (CRASHED, CLOSED):
                return False
            self.state = CRASHED
            self.crash_reason = reason
            return True

    def after_fork(self) -> bool:
        """In a child just forked, on its only thread: True if the copy is the
        parent's (now ``FORKED``), False if it never started and is the child's."""
        if self.state == NEW and self.gate.acquire(blocking=False):
            # Never started, and no thread was starting it: the child's to start.
            self.gate.release()
            return False
        # Not the gate: a thread of the parent may have held it, and none will
        # release it here. Every call checks the state before taking it.
        if self.state != FORKED:  # else forked before: it is a grandparent's
            self.forked_from = os.getppid()
            self.state = FORKED
        return True
