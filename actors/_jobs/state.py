"""The record of each job (`JobState`), where an unfinished job is, and the
transitions that change them.

Every change of a job's state is one of `JobState`'s methods, named for the
transition (`to_repo`, `make_ready`, `start_attempt`, `resolve`...); no
actor and no facade assigns a field (``tests/test_job_store.py`` checks it).
Each field has one owner at each state, and each transition's docstring says
who calls it, on which thread, which fields it writes and what makes it
atomic (``actors/_jobs/__init__.py`` says once what the GIL does for the
whole store). In short:

- Before the table holds it, the submitting thread builds the record
  (``__init__``, `as_retry_of`, `from_schedule`, `park`): nobody else sees it.
- ``where`` and ``timer`` (where the job waits) belong to the Dispatcher (the
  actor loop's thread) once it routes the job; before that, to the submitter,
  and for a parked job to the thread that hands it off (`unpark`).
- ``cancel_requested`` belongs to the Dispatcher (`request_cancel`).
- ``job``, ``status``, ``attempts``, ``started_at``, ``exception`` and
  ``progress`` of a running attempt belong to its worker (`start_attempt`,
  `keep_exception`, `report_progress`); of a waiting job, to whoever moves it
  (`make_ready`, `await_retry`, `waiting_to_pending`, `release`).
- The end (`resolve`) happens once: the first resolution wins, so a crash path
  and a normal path can never resolve a handle twice or differently. The table
  (``actors/_jobs/table.py``) calls it, from whichever thread ends the job.
- ``retried_as`` belongs to `RetryLinks` (``actors/_jobs/resubmit.py``) and
  ``links`` to `Links` (``actors/_jobs/links.py``), each under its own lock.

The facade and handles only read a record, or take a snapshot (`JobInfo`)
under its lock.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from actors._jobs.info import JobInfo, Progress
from actors._jobs.runs import RunInfo, RunOutcome, outcome_of
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
    """Everything about one job, shared by the Dispatcher, its worker, its handle
    and the table; changed only by its transitions (the module docstring).

    Fields read together (`snapshot`) change under its lock (one of the shared
    `_STRIPES`), in sections with no call in them: see `_STRIPES`. A
    transition that stores one field alone takes no lock: under the GIL a
    store is atomic, and a snapshot sees it before or after, never half.
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
        # Dispatcher bookkeeping: where the job is (set by the submitter for a
        # job it queues itself) and what refers to it.
        "cancel_requested",
        "counts",
        "timer",
        "where",
        # Manual retry links (`Scheduler.retry`).
        "retry_of",
        "retried_as",
        "schedule_id",
        "fire_time",
        # Parent, children and follow-ups (`actors/_jobs/links.py`).
        "links",
        # Run history in memory (`runs`): the attempts that did not end the job,
        # and who runs the current one since when.
        "past_runs",
        "run_started_at",
        "run_worker",
    )

    def __init__(
        self,
        job: Job,
        status: JobStatus,
        counts: LabelCounts | None = None,
        where: str = "",
        timer: int | None = None,
    ) -> None:
        """A new job's record, built by the submitting thread before any other sees it.

        Args:
            job: its first attempt.
            status: ``pending``, or ``scheduled`` if it waits for a time.
            counts: its (queue, handler) counters (else the table finds them).
            where: "" (on its way to the Dispatcher), or, for a job the
                submitter queues itself, `READY` or `TIMER`.
            timer: the Timer token of a delayed job the submitter queues itself.
        """
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
        self.counts = counts
        """Its (queue, handler) counters; set when the table accepts it at the latest."""
        self.cancel_requested: CancelReason | None = None
        """Why the job was cancelled, once it was (then it must not start, nor retry)."""
        self.timer = timer
        """The token of the Timer entry the job waits for, if it does."""
        self.where = where
        """Where the unfinished job is: `TIMER`, `HELD`, `REPO`, `READY`, `PARKED`."""
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
        self.past_runs: tuple[RunInfo, ...] = ()
        """The attempts that ended without ending the job (each followed by a retry)."""
        self.run_started_at: float | None = None
        """When the current (or last) attempt started (wall clock)."""
        self.run_worker: str | None = None
        """The worker running (or that ran) the current or last attempt."""

    # --- built by the submitter, before the table holds the job: no lock --------

    def as_retry_of(self, job_id: str) -> None:
        """This job re-runs ``job_id`` (`Scheduler.retry`).

        The submitting thread, before the table holds the job; writes
        ``retry_of``, never changed after.
        """
        self.retry_of = job_id

    def from_schedule(self, schedule_id: str, fire_time: float) -> None:
        """A schedule's fire made this job (the fire time in epoch seconds).

        The submitting thread (the actor loop, for a fire), before the table
        holds the job; writes ``schedule_id`` and ``fire_time``, never changed after.
        """
        self.schedule_id = schedule_id
        self.fire_time = fire_time

    def recovered(
        self,
        attempts: int,
        started_at: float | None,
        error: ErrorInfo | None,
        links: JobLinks | None,
    ) -> None:
        """A job read back from the store: ``attempts`` started before the
        restart, the first at ``started_at``, the last ending with ``error``;
        ``links`` name its parent, if it has one.

        The starting thread, before the table holds the job; its run history
        is the store's (`Scheduler.runs` reads it there). From here `Links`
        owns ``links``, as after `park`.
        """
        self.attempts = attempts
        self.started_at = started_at
        self.error = error
        self.links = links

    def park(self, links: JobLinks) -> None:
        """A child or follow-up: held (`PARKED`, ``scheduled``) until its links
        hand it off, with ``links`` naming its parent.

        The submitting thread, before the table holds the job; writes
        ``status``, ``where`` and ``links`` (``timer``, if the submitter drew a
        token, stays for the hand-off). From here `Links` owns ``links``.
        """
        self.status = SCHEDULED
        self.where = PARKED
        self.links = links

    # --- where it waits: the Dispatcher's, on the actor loop --------------------

    def to_repo(self) -> None:
        """The job is in its repo lock now (sent there, or its outcome is
        decided there), with no timer of its own.

        The Dispatcher, on the actor loop; writes ``where`` and ``timer``, which
        nobody else reads once the job is routed. No lock: two stores, read by
        the same thread only.
        """
        self.where = REPO
        self.timer = None

    def to_timer(self, token: int, *, hold: bool = False) -> None:
        """The job waits for the Timer entry ``token``: delayed, or retrying
        after its backoff (``hold``: in ordered mode, its repo keeps its place).

        The Dispatcher on the actor loop, or, for a job it queues itself, the
        submitter or the thread handing off a parked job (before the
        Dispatcher has seen it); writes ``where`` (`TIMER` or `HELD`) and
        ``timer``. No lock: both are read only by the thread that owns them.
        """
        self.where = HELD if hold else TIMER
        self.timer = token

    def take_timer(self) -> int | None:
        """Forget the job's Timer entry (a cancel); the token to cancel, if any.

        The Dispatcher, on the actor loop; writes ``timer``. No lock (as `to_timer`).
        """
        token, self.timer = self.timer, None
        return token

    def make_ready(self, job: Job) -> None:
        """``job`` (this attempt) goes into the ready queue now: the caller
        puts it there just after. Scheduled or retrying becomes pending.

        The Dispatcher on the actor loop (from its repo, the Timer, or a
        retry due at once), or the thread handing off a parked job without a
        repo; writes ``job``, ``where`` and ``status`` under the lock, so a
        snapshot never pairs the new attempt with the old status. One call
        for the three: it is on the path of every job with a repo.
        """
        with self._lock:
            self.job = job
            self.where = READY
            if self.status in (SCHEDULED, RETRYING):
                self.status = PENDING

    def unpark(self) -> bool:
        """Take a held job for its hand-off (or its end): True once, for one caller.

        `Links`, under its lock (which makes the test and the store one step
        for every caller), on the thread that releases the job; ``where``
        goes from `PARKED` to "" (in transit), and the hand-off sets where it
        really goes.
        """
        if self.where != PARKED or self._callbacks is None:
            return False
        self.where = ""
        return True

    def release(self, job: Job) -> None:
        """A parked follow-up is released: ``job`` carries its parent's result
        as payload, and it is pending now.

        `Links`, on the thread that resolved the parent, once `unpark`
        gave it this job; writes ``job`` and ``status`` under the lock.
        """
        with self._lock:
            self.job = job
            if self.status in (SCHEDULED, RETRYING):
                self.status = PENDING

    def request_cancel(self, reason: CancelReason) -> bool:
        """Mark the job cancelled (``reason``), before the Dispatcher looks for
        it; False (and no change) if it was marked before.

        The Dispatcher, on the actor loop; writes ``cancel_requested``. A worker
        reads the mark after it registers the job as taken, so a cancel that
        finds the job in neither place still stops it (`ReadyQueue`). No lock:
        one thread tests and stores, and under the GIL the store is atomic
        for the readers.
        """
        if self.cancel_requested is not None:
            return False
        self.cancel_requested = reason
        return True

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

    def runs(self) -> list[RunInfo]:
        """The attempts run so far in this process, oldest first (`Scheduler.runs`
        without a store): those that were retried, then the last one, running
        or ended with the job."""
        with self._lock:
            past = self.past_runs
            attempts, started, worker = self.attempts, self.run_started_at, self.run_worker
            status, error, finished_at = self.status, self.error, self.finished_at
            done = self._callbacks is None
        runs = list(past)
        if started is None or attempts <= (past[-1].attempt if past else 0):
            return runs  # no attempt beyond those (cancelled while it waited)
        if status is RUNNING or not done:
            runs.append(RunInfo(self.job.id, attempts, started, None, None, None, worker))
        else:
            outcome = outcome_of(status.value, error)
            kept = None if outcome is RunOutcome.COMPLETED else error
            runs.append(RunInfo(self.job.id, attempts, started, finished_at, outcome, kept, worker))
        return runs

    def await_retry(self, job: Job, error: ErrorInfo | None) -> None:
        """An attempt failed; ``job`` (the next attempt) waits for its backoff.

        The Dispatcher, on the actor loop; writes ``job``, ``status``
        (``retrying``), ``error`` and ``past_runs`` (the attempt that failed)
        under the lock. Where it waits follows (`to_timer`, `to_repo` or
        `make_ready`).
        """
        run = None
        if self.run_started_at is not None:
            run = RunInfo(
                self.job.id,
                self.attempts,
                self.run_started_at,
                time.time(),
                outcome_of("failed", error),
                error,
                self.run_worker,
            )
        with self._lock:
            self.job = job
            self.status = RETRYING
            self.error = error
            if run is not None:
                self.past_runs = (*self.past_runs, run)

    def waiting_to_pending(self) -> None:
        """Scheduled or retrying becomes pending (the job may run now), unless a
        worker has already started the attempt (the Timer hands jobs to workers
        first).

        The Timer's thread (a due job without a repo, just before it queues
        it), or `Links` handing off a child; writes ``status`` under the lock,
        since a worker may be starting the attempt at the same moment.
        """
        with self._lock:
            if self.status in (SCHEDULED, RETRYING):
                self.status = PENDING

    def started(self, job: Job) -> bool:
        """Whether this attempt of the job has started."""
        return self.attempts >= job.attempt

    def start_attempt(self, job: Job, now: float, worker: str | None = None) -> None:
        """An attempt of ``job`` is starting now (``now``: wall-clock time) on ``worker``.

        The worker that took it, on its thread; from here until it reports the
        outcome it owns ``job``, ``status`` (``running``), ``attempts``,
        ``started_at``, ``exception`` and ``progress``. Under the lock, so a
        snapshot sees the attempt whole.
        """
        # No call inside the lock (see `_STRIPES`, and `JobTable` on why that matters).
        with self._lock:
            self.job = job
            self.status = RUNNING
            self.attempts = job.attempt
            self.exception = None  # an earlier attempt's error is not this one's cause
            self.run_started_at = now
            self.run_worker = worker
            if self.started_at is None:
                self.started_at = now

    def keep_exception(self, exc: BaseException) -> None:
        """The running attempt raised ``exc``: a failed handle chains it, in process.

        The worker running the attempt, on its thread; writes ``exception``
        (one store: atomic under the GIL, no lock).
        """
        self.exception = exc

    def report_progress(self, fraction: float, message: str) -> None:
        """The running attempt's handler reported progress (``ctx.progress``).

        The worker running the attempt (or a thread its handler started);
        writes ``progress`` (one store of a new frozen record: atomic under
        the GIL, no lock; the last report wins).
        """
        self.progress = Progress(fraction, message)

    def resolve(
        self,
        status: JobStatus,
        result: JSONValue = None,
        error: ErrorInfo | None = None,
    ) -> bool:
        """Enter a terminal state; False (and no change) if already resolved.

        `JobTable.finish` (whichever thread ends the job: a worker, the actor
        loop, a canceller), or the submitter for a dropped job no table holds;
        writes ``status``, ``result``, ``error`` and ``finished_at`` under the
        lock, which also makes the first resolution the only one. Callbacks
        run after, on this thread, outside the lock.
        """
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
