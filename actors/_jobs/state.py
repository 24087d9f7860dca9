"""The record of each job (`JobState`), and where an unfinished job is.

A `JobState` is written by the Dispatcher, and by the worker running it (its
attempt, its progress, and the completion of a job without a repo); the facade
and handles only read it, or take a snapshot (`JobInfo`) under its lock. Its
terminal transition (`JobState.resolve`) happens once: the first resolution
wins, so a crash path and a normal path can never resolve a handle twice or
differently. The table that holds the records is in ``actors/_jobs/table.py``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from actors._jobs.info import JobInfo, Progress
from actors._jobs.status import PENDING, RETRYING, RUNNING, SCHEDULED, JobStatus
from actors._log import jobs_logger as logger
from actors._timer.clock import wait_seconds
from actors._worker.cancel import CancelReason
from actors.messages import ErrorInfo, Job, JSONValue

if TYPE_CHECKING:
    from actors._jobs.links import JobLinks

__all__ = ["HELD", "PARKED", "READY", "REPO", "TIMER", "JobState", "LabelCounts"]

# Where an unfinished job is (`JobState.where`), as the Dispatcher knows it.
# "" means: accepted, its `Submit` on the way to the Dispatcher.
TIMER = "timer"
"""Scheduled or retrying, held by the Timer only."""
HELD = "held"
"""Retrying in ordered mode: the Timer has its due time, its repo holds its place."""
REPO = "repo"
"""In its repo lock: waiting, or its outcome being decided there."""
READY = "ready"
"""In the ready queue, or taken from it by a worker."""
PARKED = "parked"
"""A child or a follow-up, accepted and held until its links hand it off
(``actors/_jobs/links.py``); the Dispatcher has not seen it."""


class LabelCounts:
    """Jobs accepted and ended for one (queue, handler): the metrics' labels.

    One record per pair, found once when a submit resolves its defaults and
    then carried by each job's state, so counting costs an attribute increment
    (no key to build and hash per job). ``submitted`` is raised under the gate,
    the rest under the table's lock.
    """

    __slots__ = ("cancelled", "completed", "failed", "handler", "queue", "submitted")

    def __init__(self, queue: str, handler: str) -> None:
        self.queue = queue
        self.handler = handler
        self.submitted = 0
        self.completed = 0
        self.failed = 0
        self.cancelled = 0


_STRIPES = tuple(threading.Lock() for _ in range(256))
"""The locks `JobState`s share, picked by ``seq``.

A lock of its own per job was one more object for every pending job: 56
bytes, and one more for the cyclic GC to walk (a ``_thread.lock`` is
GC-tracked), a million times over with a million jobs waiting. A state's
critical sections hold plain loads and stores only and never take a second
state's lock, so two jobs sharing a stripe wait at most for a few of each
other's bytecodes, and can never deadlock.
"""
_STRIPE_MASK = len(_STRIPES) - 1


def _new_stripes_in_child() -> None:
    # After os.fork(), a stripe a thread of the parent held stays held for ever
    # in the child (that thread is not there). The jobs of the parent's
    # schedulers keep the old ones, unused here (actors/_runtime/fork.py); new jobs
    # get these.
    global _STRIPES  # noqa: PLW0603 - rebuilt once per fork, in the child
    _STRIPES = tuple(threading.Lock() for _ in range(len(_STRIPES)))


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_stripes_in_child)


class JobState:
    """Everything about one job, shared by the Dispatcher, its handle and the table.

    Its fields change under its lock (one of the shared `_STRIPES`), in
    sections with no call in them: see `_STRIPES`.
    """

    __slots__ = (
        "_callbacks",
        "_event",
        "_lock",
        "attempts",
        "error",
        "exception",
        "finished_at",
        "job",
        "progress",
        "result",
        "started_at",
        "status",
        # Dispatcher bookkeeping: where the job is (set by the facade for a job it
        # queues itself) and what refers to it.
        "cancel_requested",
        "counts",
        "timer",
        "where",
        # Manual retry links (`Scheduler.retry`), set by the facade.
        "retry_of",
        "retried_as",
        "schedule_id",
        "fire_time",
        # Parent, children and follow-ups (`actors/_jobs/links.py`).
        "links",
    )

    def __init__(self, job: Job, status: JobStatus) -> None:
        self.job = job
        self.status = status
        self.attempts = 0
        self.result: JSONValue = None
        self.error: ErrorInfo | None = None
        self.exception: BaseException | None = None
        self.progress: Progress | None = None
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self._lock = _STRIPES[job.seq & _STRIPE_MASK]
        # Made only when a thread waits: most jobs are never waited on one by one,
        # and an Event costs more to build than the rest of the record.
        self._event: threading.Event | None = None
        # The shared empty tuple until a callback is added: most jobs never get
        # one, and a list per job is 56 bytes and one more object for the
        # cyclic GC to walk (it shows with a million jobs pending). None once
        # resolved.
        self._callbacks: Sequence[Callable[[JobState], None]] | None = ()
        self.counts: LabelCounts | None = None
        """Its (queue, handler) counters; set when the table accepts it."""
        self.cancel_requested: CancelReason | None = None
        """Why the job was cancelled, once it was (then it must not start, nor retry)."""
        self.timer: int | None = None
        self.where = ""
        self.retry_of: str | None = None
        """The id of the job this one re-runs (`Scheduler.retry`)."""
        self.retried_as: str | None = None
        """The id of the job that re-runs this one, once retried."""
        self.schedule_id: str | None = None
        """The schedule that created it, if one did."""
        self.fire_time: float | None = None
        """The fire time (epoch seconds) it stands for, if a schedule created it."""
        self.links: JobLinks | None = None
        """Its parent, children and follow-ups, once it has any of them."""

    @property
    def finished(self) -> bool:
        """Whether the job is in a terminal state."""
        return self._callbacks is None

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job is in a terminal state; False if ``timeout`` passed first."""
        if self._callbacks is None:
            return True
        fresh = threading.Event() if self._event is None else None  # built outside the lock
        with self._lock:
            if self._callbacks is None:
                return True
            if self._event is None:
                self._event = fresh
            event = self._event
        assert event is not None  # set above, or before (it is never unset)
        return event.wait(wait_seconds(timeout))

    def snapshot(self) -> JobInfo:
        """A consistent, frozen view of the job now."""
        with self._lock:  # loads only; the record is built after
            job = self.job
            now = (
                self.status,
                self.attempts,
                self.result,
                self.error,
                self.progress,
                self.started_at,
                self.finished_at,
                self.retried_as,
            )
        status, attempts, result, error, progress, started_at, finished_at, retried_as = now
        links = self.links
        return JobInfo(
            id=job.id,
            handler=job.handler,
            status=status,
            repo=job.repo,
            priority=job.priority,
            attempts=attempts,
            max_retries=job.max_retries,
            payload=job.payload,
            result=result,
            error=error,
            progress=progress,
            idempotency_key=job.idempotency_key,
            submitted_at=job.submitted_at,
            started_at=started_at,
            finished_at=finished_at,
            queue=job.queue,
            retry_of=self.retry_of,
            retried_as=retried_as,
            schedule_id=self.schedule_id,
            fire_time=self.fire_time,
            parent=links.parent if links is not None else None,
            children=tuple(links.children) if links is not None else (),
            followups=tuple(links.followups) if links is not None else (),
        )

    def await_retry(self, job: Job, error: ErrorInfo | None) -> None:
        """An attempt failed; ``job`` (the next attempt) waits for its backoff."""
        with self._lock:
            self.job = job
            self.status = RETRYING
            self.error = error

    def waiting_to_pending(self) -> None:
        """Scheduled or retrying becomes pending (the job may run now), unless a
        worker has already started the attempt (the Timer hands jobs to workers
        first)."""
        with self._lock:
            if self.status in (SCHEDULED, RETRYING):
                self.status = PENDING

    def started(self, job: Job) -> bool:
        """Whether this attempt of the job has started."""
        return self.attempts >= job.attempt

    def start_attempt(self, job: Job, now: float) -> None:
        """An attempt of ``job`` is starting now (``now``: wall-clock time)."""
        # No call inside the lock (see `_STRIPES`, and `JobTable` on why that matters).
        with self._lock:
            self.job = job
            self.status = RUNNING
            self.attempts = job.attempt
            self.exception = None  # an earlier attempt's error is not this one's cause
            if self.started_at is None:
                self.started_at = now

    def resolve(
        self,
        status: JobStatus,
        result: JSONValue = None,
        error: ErrorInfo | None = None,
    ) -> bool:
        """Enter a terminal state; False (and no change) if already resolved."""
        now = time.time()
        with self._lock:
            if self._callbacks is None:
                return False
            self.status = status
            self.result = result
            self.error = error
            self.finished_at = now
            callbacks, self._callbacks = self._callbacks, None
            event = self._event
        if event is not None:
            event.set()
        for callback in callbacks:
            _run_callback(callback, self)
        return True

    def add_done_callback(self, callback: Callable[[JobState], None]) -> None:
        """Call ``callback(state)`` once resolved (at once, if it already is)."""
        with self._lock:
            callbacks = self._callbacks
            if callbacks is not None:
                self._callbacks = [*callbacks, callback]
                return
        _run_callback(callback, self)


def _run_callback(callback: Callable[[JobState], None], state: JobState) -> None:
    # Callbacks run on the thread that resolves the job (the Dispatcher's): one
    # that raises is the caller's bug, reported, never the scheduler's end.
    try:
        callback(state)
    except Exception:  # noqa: BLE001 - any error of a user's callback is logged
        logger.exception("a done callback of job %s raised", state.job.id)
