"""The record of each job, and the table the facade looks jobs up in.

A `JobState` is written by the Dispatcher alone (and its ``progress`` by the
worker running it); the facade and handles only read it, or take a snapshot
(`JobInfo`) under its lock. Its terminal transition (`JobState.resolve`) happens
once: the first resolution wins, so a crash path and a normal path can never
resolve a handle twice or differently.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

from actors._errors import JobNotFound
from actors._info import JobInfo, Progress
from actors._log import logger
from actors._status import JobStatus
from actors.messages import ErrorInfo, Job, JSONValue

if TYPE_CHECKING:
    from actors._capacity import Capacity

__all__ = ["JobState", "JobTable"]


class JobState:
    """Everything about one job, shared by the Dispatcher, its handle and the table."""

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
        # Dispatcher-private bookkeeping: where the job is and what refers to it.
        "cancel_requested",
        "timer",
        "where",
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
        self._lock = threading.Lock()
        # Made only when a thread waits: most jobs are never waited on one by one,
        # and an Event costs more to build than the rest of the record.
        self._event: threading.Event | None = None
        self._callbacks: list[Callable[[JobState], None]] | None = []
        self.cancel_requested = False
        self.timer: int | None = None
        self.where = ""

    @property
    def finished(self) -> bool:
        """Whether the job is in a terminal state."""
        return self._callbacks is None

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job is in a terminal state; False if ``timeout`` passed first."""
        with self._lock:
            if self._callbacks is None:
                return True
            if self._event is None:
                self._event = threading.Event()
            event = self._event
        return event.wait(timeout)

    def snapshot(self) -> JobInfo:
        """A consistent, frozen view of the job now."""
        job = self.job
        with self._lock:
            return JobInfo(
                id=job.id,
                handler=job.handler,
                status=self.status,
                repo=job.repo,
                priority=job.priority,
                attempts=self.attempts,
                max_retries=job.max_retries,
                payload=job.payload,
                result=self.result,
                error=self.error,
                progress=self.progress,
                idempotency_key=job.idempotency_key,
                submitted_at=job.submitted_at,
                started_at=self.started_at,
                finished_at=self.finished_at,
            )

    def await_retry(self, job: Job, error: ErrorInfo | None) -> None:
        """An attempt failed; ``job`` (the next attempt) waits for its backoff."""
        with self._lock:
            self.job = job
            self.status = JobStatus.RETRYING
            self.error = error

    def waiting_to_pending(self) -> None:
        """Scheduled or retrying becomes pending (the job may run now), unless a
        worker has already started the attempt (the Timer hands jobs to workers
        first)."""
        with self._lock:
            if self.status in (JobStatus.SCHEDULED, JobStatus.RETRYING):
                self.status = JobStatus.PENDING

    def started(self, job: Job) -> bool:
        """Whether this attempt of the job has started."""
        return self.attempts >= job.attempt

    def start_attempt(self, job: Job) -> None:
        """An attempt of ``job`` is starting now."""
        with self._lock:
            self.job = job
            self.status = JobStatus.RUNNING
            self.attempts = job.attempt
            self.exception = None  # an earlier attempt's error is not this one's cause
            if self.started_at is None:
                self.started_at = time.time()

    def resolve(
        self,
        status: JobStatus,
        result: JSONValue = None,
        error: ErrorInfo | None = None,
    ) -> bool:
        """Enter a terminal state; False (and no change) if already resolved."""
        with self._lock:
            if self._callbacks is None:
                return False
            self.status = status
            self.result = result
            self.error = error
            self.finished_at = time.time()
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
            if self._callbacks is not None:
                self._callbacks.append(callback)
                return
        _run_callback(callback, self)


def _run_callback(callback: Callable[[JobState], None], state: JobState) -> None:
    # Callbacks run on the thread that resolves the job (the Dispatcher's): one
    # that raises is the caller's bug, reported, never the scheduler's end.
    try:
        callback(state)
    except Exception:  # noqa: BLE001 - any error of a user's callback is logged
        logger.exception("a done callback of job %s raised", state.job.id)


class JobTable:
    """Unfinished jobs by id, plus a bounded history of finished ones.

    It also owns the idempotency index (rule 10): a key maps to its job while
    the job is unfinished or completed and still in the history.
    """

    def __init__(self, capacity: Capacity, history: int) -> None:
        self._capacity = capacity
        self._history_size = history
        self._lock = threading.Lock()
        self.active: dict[str, JobState] = {}
        self._finished: OrderedDict[str, JobState] = OrderedDict()
        self._keys: dict[str, JobState] = {}

    def add(self, state: JobState) -> JobState:
        """Record a new job; if its idempotency key is held, return the holder instead."""
        key = state.job.idempotency_key
        with self._lock:
            if key is not None:
                holder = self._keys.get(key)
                if holder is not None:
                    return holder
                self._keys[key] = state
            self.active[state.job.id] = state
        return state

    def holder(self, key: str) -> JobState | None:
        """The job that holds an idempotency key, if any."""
        return self._keys.get(key)

    def get(self, job_id: str) -> JobState:
        """The job with this id, unfinished or in the history."""
        state = self.active.get(job_id) or self._finished.get(job_id)
        if state is None:
            msg = f"no job with id {job_id!r}"
            raise JobNotFound(msg)
        return state

    def unfinished(self) -> list[JobState]:
        """Every job not yet resolved."""
        with self._lock:
            return list(self.active.values())

    def finish(
        self,
        state: JobState,
        status: JobStatus,
        result: JSONValue = None,
        error: ErrorInfo | None = None,
    ) -> bool:
        """Resolve the job, give back its slot first, and move it to the history."""
        job = state.job
        with self._lock:
            if self.active.pop(job.id, None) is None:
                return False
            key = job.idempotency_key
            if (
                key is not None
                and status is not JobStatus.COMPLETED
                and self._keys.get(key) is state
            ):
                # A failed or cancelled job lets its key go: submitting it again runs it.
                del self._keys[key]
            history = self._finished
            history[job.id] = state
            while len(history) > self._history_size:
                _, old = history.popitem(last=False)
                old_key = old.job.idempotency_key
                if old_key is not None and self._keys.get(old_key) is old:
                    del self._keys[old_key]
        self._capacity.give_back()
        return state.resolve(status, result, error)
