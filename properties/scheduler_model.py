"""A recorded run of a real scheduler, for the rules to be checked on.

`Run` owns a scheduler on a `ManualClock` with one handler, ``work``, whose
behaviour each job's payload picks (complete, fail, fail once, fail fatally,
or hang until told to stop). Every start and end of an attempt, every submit and
every cancel is appended to one trace under one lock, so the trace is a total
order of what happened. `check_trace` (``scheduler_rules.py``) then holds the
run to the rules. The stateful machine in ``test_scheduler_machine.py`` drives it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from actors import (
    CancelResult,
    Fatal,
    JobContext,
    JobHandle,
    ManualClock,
    RetryPolicy,
    Scheduler,
)

MODES = ("ok", "fail", "fail_once", "fatal", "hang", "gate")
HANG_TIMEOUT = 5.0
"""Manual seconds a ``hang`` job may run before its deadline stops it."""


@dataclass
class Submitted:
    """What the test asked for, and what submit returned."""

    index: int
    """Position of the submit in the trace."""
    order: int
    """Submission order among accepted jobs (the scheduler's ``seq`` order)."""
    handle: JobHandle
    mode: str
    repo: str | None
    priority: int
    due: float
    """Clock time before which the job must not start."""
    delay: float
    max_retries: int
    backoff: float
    key: str | None
    new: bool
    """False when the submit returned an existing job's handle (idempotency)."""
    returned: int = 0
    """Trace length when submit returned: the key lookup happened before it (and
    after ``index``), so a holder that ended in between may have let the key go."""
    callbacks: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Event:
    kind: str  # "submit", "start", "end", "cancel"
    job_id: str
    attempt: int = 0
    repo: str | None = None
    now: float = 0.0
    detail: Any = None


class Run:
    """One scheduler under test, with its trace."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.clock = ManualClock()
        self.sched = Scheduler(workers=workers, clock=self.clock, max_pending=10_000)
        self.sched.register("work", self._work)
        self._lock = threading.Lock()
        self.trace: list[Event] = []
        self.jobs: dict[str, Submitted] = {}
        self.order: list[Submitted] = []
        self.unfinished: list[JobHandle] = []
        self.gate = threading.Event()
        self.closing = False
        self.gate_running = threading.Event()
        self.cancel_began: dict[int, int] = {}
        """Trace index of each "cancel" event -> index of its "cancelling" event."""
        self.sched.start()

    def _record(self, event: Event) -> int:
        with self._lock:
            self.trace.append(event)
            return len(self.trace) - 1

    def _work(self, ctx: JobContext, payload: dict[str, Any]) -> Any:
        self._record(Event("start", ctx.job_id, ctx.attempt, ctx.repo, self.clock.now()))
        try:
            mode = payload["mode"]
            if mode == "hang":
                # Until cancelled or past its deadline (or the run is over: a
                # seeded bug may leave a hang job that nobody can signal).
                while not self.closing and not ctx.wait(0.01):
                    pass
                return None
            if mode == "gate":
                # Hold the worker until the test opens the gate (or cancels us).
                gate = self.gate
                self.gate_running.set()
                while not self.closing and not gate.wait(0.005):
                    if ctx.cancelled:
                        return None
                return payload["n"]
            if mode == "ok":
                # A moment of real work, so that jobs queue up behind each other.
                ctx.wait(0.002)
            if mode == "fail" or (mode == "fail_once" and ctx.attempt == 1):
                raise RuntimeError(f"{mode} on attempt {ctx.attempt}")
            if mode == "fatal":
                raise Fatal("no retry can help")
            return payload["n"]
        finally:
            told = "timeout" if ctx.timed_out else "stop" if ctx.cancelled else None
            self._record(
                Event("end", ctx.job_id, ctx.attempt, ctx.repo, self.clock.now(), detail=told)
            )

    def submit(
        self,
        mode: str,
        repo: str | None,
        priority: int,
        delay: float,
        max_retries: int,
        backoff: float,
        key: str | None,
    ) -> Submitted:
        n = len(self.order)
        index = self._record(Event("submit", "", detail=n))
        due = self.clock.now() + delay
        handle = self.sched.submit(
            "work",
            {"mode": mode, "n": n},
            repo=repo,
            priority=priority,
            delay=delay,
            max_retries=max_retries,
            retry=RetryPolicy.fixed(backoff),
            timeout=HANG_TIMEOUT if mode == "hang" else None,
            idempotency_key=key,
        )
        returned = len(self.trace)
        new = handle.id not in self.jobs
        entry = Submitted(
            index, n, handle, mode, repo, priority, due, delay, max_retries, backoff, key, new,
            returned,
        )  # fmt: skip
        if new:
            self.jobs[handle.id] = entry
            handle.add_done_callback(lambda _h, e=entry: e.callbacks.append(1))
        self.order.append(entry)
        return entry

    def open_gate(self) -> None:
        """Release the jobs waiting at the gate, once the Dispatcher has seen
        every earlier submit (`stats` is answered after them: one mailbox)."""
        self.sched.stats()
        self._record(Event("open", ""))
        gate, self.gate = self.gate, threading.Event()
        gate.set()

    def cancel(self, entry: Submitted) -> CancelResult:
        # Recorded before and after: a job the cancel removed (CANCELLED) must
        # not start after the cancel began; one it signalled may have been taken
        # by a worker a moment before, so only after the cancel returned counts.
        before = self._record(Event("cancelling", entry.handle.id, now=self.clock.now()))
        result = entry.handle.cancel()
        self._record(Event("cancel", entry.handle.id, detail=result))
        self.cancel_began[len(self.trace) - 1] = before
        return result

    def finish(self, budget: float = 5.0) -> None:
        """Move time on until every job is finished (or ``budget`` real seconds
        passed), then shut down. Jobs still unfinished are kept in ``unfinished``."""
        deadline = time.monotonic() + budget
        pending = [e.handle for e in self.jobs.values() if not e.handle.done()]
        while pending and time.monotonic() < deadline:
            self.open_gate()
            self.clock.advance(50.0)
            pending[0].wait(0.02)
            pending = [h for h in pending if not h.done()]
        self.unfinished = pending
        self.closing = True  # no gate holds a job any more
        self.open_gate()
        self.sched.shutdown(graceful=True, timeout=5.0)
