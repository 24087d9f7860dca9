"""`JournalLink`: what the parts of a scheduler with a store hold to record and to wait.

The job table, the workers, the Dispatcher and the links between jobs post
their records through it (`record`), on their own threads, without waiting;
a submitter under ``durability="commit"``, and a worker about to call a
handler, then wait for the commit of their record (`wait`). The Journal
reports each commit's end (`settled`); a job whose row the commit could not
write is named in it, and its submitter's `wait` raises.

Without a store there is no link: every part holds None and skips the
record with one test, so a scheduler without a store pays nothing for it.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Iterable
from typing import Any, Literal

from actors._errors import StoreError
from actors._runtime.actor import post_numbered
from actors._runtime.refs import ActorRef
from actors._timer.clock import Clock
from actors.messages import (
    ErrorInfo,
    Job,
    JobAccepted,
    JobEnded,
    JobReleased,
    JobRetrying,
    JSONValue,
    RunEnded,
    RunStarted,
    ScheduleRemoved,
    ScheduleSaved,
)

__all__ = ["Durability", "JournalLink"]

Durability = Literal["commit", "batch"]

_SETTLED_ALL = 2**62
"""`settled` once the Journal is gone: nobody waits any more."""


class JournalLink:
    """Posts records to the Journal and waits for their commit (module docstring)."""

    def __init__(self, durability: Durability, clock: Clock) -> None:
        """A link for one scheduler's store; `connect` gives it the Journal."""
        self.waits = durability == "commit"
        """Whether submitters (and workers, before a handler) wait for the commit."""
        self._clock = clock
        self._ref: ActorRef[Any] | None = None
        self._lock = threading.Lock()
        self._settled = 0
        self._waiters: list[tuple[int, int, Any]] = []
        """Threads waiting for a commit: (record number, arrival, a lock the
        commit that settles the record releases), a heap by number."""
        self._order = itertools.count()
        self._refused: dict[str, StoreError] = {}
        self.error: StoreError | None = None
        """The last commit's error, until a commit succeeds again (for readiness)."""
        self.retaining = False
        """Set as a shutdown stops taking jobs: the jobs it ends from here on
        are left unfinished in the store for the next start (rule 9,
        docs/guarantees.md), and an attempt it cuts short is recorded as
        interrupted."""
        self.frozen = False
        """Set as the scheduler crashes: no job's end and no attempt's end is
        recorded any more, so the next start recovers them (the crash was
        postroom's, not the jobs')."""
        self.left = 0
        """Jobs a shutdown left unfinished in the store (see ``retaining``)."""

    def connect(self, journal: ActorRef[Any]) -> None:
        """The Journal, once started."""
        self._ref = journal

    # --- records (any thread) -----------------------------------------------------

    def _post(self, record: Any) -> int:
        ref = self._ref
        if ref is None:
            return 0
        return post_numbered(ref, record)

    def accepted(
        self,
        job: Job,
        status: str,
        *,
        retry_of: str | None,
        schedule_id: str | None,
        fire_time: float | None,
        parent: str | None,
        link: str | None,
        waited: bool,
    ) -> int:
        """A job was accepted: its row. The record's number, to `wait` for."""
        due_at = self._due_at(job)
        record = JobAccepted(
            job, status, due_at, retry_of, schedule_id, fire_time, parent, link, waited
        )
        return self._post(record)

    def _due_at(self, job: Job) -> float | None:
        """When ``job`` may start, as wall-clock time (the store's), or None: at once.
        (A restart reads it back onto its own clock: `Submitter.restore`.)"""
        if job.not_before is None:
            return None
        clock = self._clock
        return clock.wall() + max(0.0, job.not_before - clock.now())

    def run_started(self, job: Job, started_at: float, worker: str) -> int:
        """An attempt starts; the number to `wait` for before calling the handler."""
        return self._post(RunStarted(job.id, job.attempt, started_at, worker, self.waits))

    def run_ended(
        self, job: Job, outcome: str, error: ErrorInfo | None, *, retryable: bool = True
    ) -> None:
        """An attempt ended (``outcome``: a `RunOutcome` value; ``retryable``:
        False when its error was final)."""
        if self.frozen:
            return
        if self.retaining and outcome == "cancelled":
            outcome = "interrupted"  # cut short by the shutdown: runs again at the next start
        self._post(RunEnded(job.id, job.attempt, time.time(), outcome, error, retryable))

    def retrying(self, job: Job, attempts: int, error: ErrorInfo | None) -> None:
        """An attempt failed; ``job`` is the next one, due at its ``not_before``."""
        self._post(JobRetrying(job.id, attempts, self._due_at(job), error))

    def released(self, job_id: str, payload: JSONValue) -> None:
        """A held follow-up or child was handed off, with this payload."""
        self._post(JobReleased(job_id, payload))

    def ended(
        self,
        job: Job,
        status: str,
        result: JSONValue,
        error: ErrorInfo | None,
    ) -> None:
        """A job reached a terminal state (not recorded for a job a graceful
        shutdown leaves for the next start: see ``retaining``)."""
        if self.frozen:
            return
        if self.retaining and status == "cancelled":
            self.left += 1
            return
        self._post(JobEnded(job.id, status, result, error, time.time(), job.idempotency_key))

    def schedule_saved(self, record: ScheduleSaved) -> None:
        """A schedule was added or changed (its definition, its pause, a fire):
        its whole row. Posted from the actor loop: never waits."""
        self._post(record)

    def schedule_removed(self, schedule_id: str) -> None:
        """A schedule was removed."""
        self._post(ScheduleRemoved(schedule_id))

    # --- waiting ----------------------------------------------------------------------

    def wait(self, number: int, job_id: str | None = None) -> None:
        """Block until the record numbered ``number`` is committed.

        Raises:
            StoreError: the commit failed and ``job_id`` (a job whose
                submitter waits) was taken out of it: it is not accepted.
        """
        with self._lock:
            if self._settled < number:
                # A lock of its own, released by the commit that settles this
                # record: a commit wakes only the threads it lets go. (One
                # Condition woke every waiter at every commit, and most went
                # back to sleep: with 16 submitters and 8 workers waiting,
                # each commit cost some twenty needless thread switches.)
                waiter = threading.Lock()
                waiter.acquire()
                heapq.heappush(self._waiters, (number, next(self._order), waiter))
            else:
                waiter = None
        if waiter is not None:
            waiter.acquire()
        if job_id is not None and self._refused:
            with self._lock:
                error = self._refused.pop(job_id, None)
            if error is not None:
                raise error

    # --- the Journal's side ---------------------------------------------------------

    def settled(self, taken: int, refused: Iterable[str], error: StoreError | None) -> None:
        """A commit ended: every record up to ``taken`` is settled; ``refused``
        (jobs whose submitters wait) were not written because of ``error``."""
        with self._lock:
            if error is not None:
                for job_id in refused:
                    self._refused[job_id] = error
            self.error = error
            self._release(taken)

    def close(self) -> None:
        """The Journal is gone: whoever waits goes on."""
        with self._lock:
            self._release(_SETTLED_ALL)

    def _release(self, taken: int) -> None:
        """Settle up to ``taken`` and let go the waiters it settles (the lock held)."""
        self._settled = settled = max(self._settled, taken)
        waiters = self._waiters
        while waiters and waiters[0][0] <= settled:
            heapq.heappop(waiters)[2].release()
