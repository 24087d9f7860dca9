"""The record of each job, and the table the facade looks jobs up in.

A `JobState` is written by the Dispatcher, and by the worker running it (its
attempt, its progress, and the completion of a job without a repo); the facade
and handles only read it, or take a snapshot (`JobInfo`) under its lock. Its
terminal transition (`JobState.resolve`) happens once: the first resolution
wins, so a crash path and a normal path can never resolve a handle twice or
differently.

The `JobTable` counts what the statistics report about jobs (accepted,
finished by status, attempts run) under the lock it already takes to add and
finish a job, so whichever thread finishes a job counts it exactly once.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from actors._cancel import CancelReason
from actors._errors import JobNotFound
from actors._info import JobInfo, Progress
from actors._log import logger
from actors._status import COMPLETED, FAILED, PENDING, RETRYING, RUNNING, SCHEDULED, JobStatus
from actors.messages import ErrorInfo, Job, JSONValue

if TYPE_CHECKING:
    from actors._capacity import Capacity
    from actors._followups import JobLinks, Links

__all__ = [
    "HELD",
    "PARKED",
    "READY",
    "REPO",
    "TIMER",
    "JobCounts",
    "JobState",
    "JobTable",
    "LabelCounts",
]

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
(``actors/_followups.py``); the Dispatcher has not seen it."""


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
        # Parent, children and follow-ups (`actors/_followups.py`).
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
        return event.wait(timeout)

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
        # No call inside the lock (see JobTable on why that matters).
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


@dataclass(frozen=True, slots=True)
class JobCounts:
    """The job counters at one moment (`JobTable.counts`)."""

    submitted: int
    completed: int
    failed: int
    cancelled: int
    runs: int
    """Attempts that ended (each counted once, whatever followed)."""
    run_time: float
    """Seconds those attempts ran, in all."""


class JobTable:
    """Unfinished jobs by id, plus a bounded history of finished ones.

    It also owns the idempotency index (rule 10): a key maps to its job while
    the job is unfinished or completed and still in the history; and the job
    counters, and the hook that tells a closing scheduler its last job ended.

    Who locks what, and why so little: under the GIL, a thread that holds a
    lock across any call can be switched out right there (with many threads
    runnable, one of them has almost always asked for the GIL by then), and
    every thread that needs the lock then blocks behind it: a convoy. Measured
    with eight workers, a lock held across calls on the finish path was
    contended on half of all jobs. So:

    - Submitters hold the facade's gate (shared with `Capacity`) to accept a
      job (`holder`, then `add`); workers never take it on the hot path.
    - Finishing needs no lock to decide who finishes: popping the job from
      ``active`` is one atomic step, and only the thread that popped it goes
      on. The counters are then raised under the table's lock, in a section
      with no call in it, so nobody is switched out while holding it.
    - Idempotency keys change under the gate on both paths; finishing a job
      that holds a key (rare) takes the gate, holding no other lock.
    """

    def __init__(
        self, capacities: Mapping[str, Capacity], history: int, gate: threading.Lock
    ) -> None:
        self._capacities = capacities
        """Each named queue's bound: a job gives its slot back to its own queue's."""
        self._history_size = history
        self._gate = gate
        self._lock = threading.Lock()
        self.active: dict[str, JobState] = {}
        # The history: a dict for lookups and a deque of ids for age (both C,
        # both cheaper per job than an OrderedDict).
        self._finished: dict[str, JobState] = {}
        self._finished_order: deque[str] = deque()
        self._keys: dict[str, JobState] = {}
        self._submitted = 0
        self._labels: dict[tuple[str, str], LabelCounts] = {}
        self._completed = 0
        self._failed = 0
        self._cancelled = 0
        self._runs = 0
        self._run_time = 0.0
        self._history_len = 0
        self._resolved = 0
        """Jobs whose `finish` has run to the end (handle resolved, callbacks queued)."""
        self._on_empty: Callable[[], None] | None = None
        self.links: Links | None = None
        """The scheduler's job links, which ``ctx.submit`` needs: a worker
        reaches them through the table it already holds. Set by the facade."""

    def add(self, state: JobState) -> None:
        """Record a new job; the caller holds the gate and has checked its key is free."""
        key = state.job.idempotency_key
        if key is not None:
            self._keys[key] = state
        job = state.job
        counts = state.counts
        if counts is None:
            counts = state.counts = self.label_counts(job.queue, job.handler)
        self.active[job.id] = state
        self._submitted += 1
        counts.submitted += 1

    def count_run(self, run_time: float) -> None:
        """An attempt ended and something other than `finish` follows (a retry)."""
        with self._lock:
            self._runs += 1
            self._run_time += run_time

    def counts(self) -> JobCounts:
        """The counters now, read together."""
        with self._lock:
            figures = (
                self._submitted,
                self._completed,
                self._failed,
                self._cancelled,
                self._runs,
                self._run_time,
            )
        return JobCounts(*figures)

    def when_empty(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once every job accepted so far has finished, its
        handle resolved and its callbacks queued: now, or on the thread that
        ends the last one. For shutdown's drain, once submits have stopped.

        "Finished" is counted after the resolution, not when the job leaves
        ``active``: two workers may end the last two jobs at once, and the one
        that empties ``active`` first must not let shutdown go on (and close the
        callback thread) while the other is still resolving its handle.
        """
        with self._lock:
            empty = self._resolved == self._submitted
            if not empty:
                self._on_empty = callback
        if empty:
            callback()

    def _into_history(self, state: JobState, status: JobStatus, *, evict: bool) -> None:
        job = state.job
        if job.idempotency_key is not None and status is not COMPLETED:
            # A failed or cancelled job lets its key go: submitting it again runs it.
            self._release_key(state)
        self._finished_order.append(job.id)
        if evict:
            # One eviction per entry over the bound, decided in `finish`. This
            # job's entry is in already, so there is always one to take.
            old = self._finished.pop(self._finished_order.popleft())
            if old.job.idempotency_key is not None:
                self._release_key(old)

    def _release_key(self, state: JobState) -> None:
        key = state.job.idempotency_key
        with self._gate:
            if key is not None and self._keys.get(key) is state:
                del self._keys[key]

    def holder(self, key: str) -> JobState | None:
        """The job that holds an idempotency key, if any (read under the gate)."""
        return self._keys.get(key)

    def get(self, job_id: str) -> JobState:
        """The job with this id, unfinished or in the history."""
        state = self.active.get(job_id) or self._finished.get(job_id)
        if state is None:
            msg = f"no job with id {job_id!r}"
            raise JobNotFound(msg)
        return state

    def label_counts(self, queue: str, handler: str) -> LabelCounts:
        """The one counter record of this (queue, handler) pair."""
        counts = self._labels.get((queue, handler))
        if counts is None:
            counts = self._labels.setdefault((queue, handler), LabelCounts(queue, handler))
        return counts

    def all_label_counts(self) -> list[LabelCounts]:
        """Every (queue, handler) record so far (a copy: safe to iterate)."""
        return list(self._labels.values())

    def waiting_by_queue(self) -> Counter[tuple[str, str]]:
        """Unfinished jobs not running, per (queue, status): O(unfinished jobs)."""
        counts: Counter[tuple[str, str]] = Counter()
        for state in list(self.active.values()):
            status = state.status
            if status is not RUNNING:
                counts[state.job.queue, status.value] += 1
        return counts

    def unfinished(self) -> list[JobState]:
        """Every job not yet resolved."""
        with self._lock:
            return list(self.active.values())

    def states(self) -> list[JobState]:
        """Every job `get` can find, unfinished or in the history, each once: O(jobs known).

        No lock: each ``list(d.values())`` runs in C without giving up the GIL,
        so it is an atomic copy. A job that finishes between the two copies is
        in both, and counted once; none is missed, since `finish` puts a job in
        the history before it takes it out of ``active``.
        """
        active = list(self.active.values())
        finished = list(self._finished.values())
        # JobState hashes by identity: this dedupes in C, keeping the order.
        return list(dict.fromkeys(active + finished))

    def finish(
        self,
        state: JobState,
        status: JobStatus,
        result: JSONValue = None,
        error: ErrorInfo | None = None,
        run_time: float | None = None,
    ) -> bool:
        """Resolve the job, give back its slot first, and move it to the history.

        ``run_time`` is the last attempt's, when it ran and has not been counted
        (`count_run`) yet. False, and nothing counted, if the job had already
        finished: the first finish wins.
        """
        job = state.job
        if state._callbacks is None:  # noqa: SLF001 - `finished`, without a call
            return False  # finished before (a crash path and a normal one, say)
        # Into the history before out of ``active``, so `get` finds the job at
        # every moment. (A second finisher racing this one stores the same entry.)
        self._finished[job.id] = state
        if self.active.pop(job.id, None) is None:
            return False  # another thread finished it first
        capacity = self._capacities[job.queue]
        counts = state.counts
        assert counts is not None  # set by `add`
        # Plain loads, stores and int arithmetic only: nothing in here can be
        # switched out while it holds the lock.
        with self._lock:
            if status is COMPLETED:
                self._completed += 1
                counts.completed += 1
            elif status is FAILED:
                self._failed += 1
                counts.failed += 1
            else:
                self._cancelled += 1
                counts.cancelled += 1
            if run_time is not None:
                self._runs += 1
                self._run_time += run_time
            capacity.given += 1
            self._history_len += 1
            evict = self._history_len > self._history_size
            if evict:
                self._history_len -= 1
        if capacity.waiting:
            capacity.wake()
        self._into_history(state, status, evict=evict)
        resolved = state.resolve(status, result, error)
        with self._lock:
            self._resolved += 1
            on_empty = None
            if self._on_empty is not None and self._resolved == self._submitted:
                on_empty, self._on_empty = self._on_empty, None
        if on_empty is not None:
            on_empty()
        return resolved
