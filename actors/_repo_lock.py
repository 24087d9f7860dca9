"""The RepoLock actor: a mailbox-backed mutex for one repo.

It holds the repo's waiting jobs in (priority, submission) order and lets one
of them at a time be ready or running (rule 1, docs/guarantees.md). When the running attempt ends
(`Finished`, forwarded by the Dispatcher once the handler has returned) it
decides the retry (rule 4) and either releases the repo or keeps it:

``ordered`` mode (default)
    A job waiting for its retry keeps the repo held and its place at the head,
    and a delayed job at the head holds back the jobs behind it: the repo's jobs
    start strictly in order (rule 2).
``mutex`` mode
    Exclusion only. A job waiting for its backoff or its delay is not in the
    repo at all, so it does not block the repo's other jobs.

Retiring: the Dispatcher is the only sender. When the lock has nothing pending
or running it reports `Idle` with the number of messages it has seen; the
Dispatcher stops it only if it has sent exactly that many, so no message can be
in flight to a stopping actor (a Pykka tell to a stopping actor can be lost).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from sortedcontainers import SortedList

from actors._jobs.ready import ReadyQueue
from actors._policy.attempts import next_attempt
from actors._runtime.actor import FailureReport, post
from actors._runtime.loop import ActorLoop, LoopActor
from actors._runtime.refs import ActorRef
from actors._timer.clock import Clock
from actors.messages import (
    Done,
    Enqueue,
    Finished,
    Idle,
    Job,
    Ready,
    Retry,
    Tick,
    Wake,
    Withdraw,
)

__all__ = ["RepoLock", "RepoMode", "RepoWaits"]

RepoMode = Literal["ordered", "mutex"]


class RepoWaits:
    """How many jobs found their repo busy and had to wait: lock contention.

    Shared by all of a scheduler's RepoLocks, which run on one thread (the
    actor loop), so a plain int is enough.
    """

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0


class RepoLock(LoopActor):
    """Serialises the jobs of one repo; the Dispatcher is its only correspondent."""

    def __init__(
        self,
        loop: ActorLoop,
        repo: str,
        lock_id: int,
        mode: RepoMode,
        clock: Clock,
        dispatcher: ActorRef[Any],
        on_failure: FailureReport | None = None,
        waits: RepoWaits | None = None,
        readies: Mapping[str, ReadyQueue] | None = None,
    ) -> None:
        super().__init__(loop, on_failure)
        self.repo = repo
        self._waits = waits
        self._readies = readies
        """Where a job the facade expects (`ReadyQueue.expect`) is settled if it must wait."""
        self._lock_id = lock_id
        self._mode = mode
        self._clock = clock
        self._dispatcher = dispatcher
        self._order: SortedList = SortedList()  # (priority, seq, job id)
        self._waiting: dict[str, Job] = {}
        self._active: Job | None = None
        """The job that holds the repo: ready, running, or (ordered) awaiting a retry."""
        self._held_for_retry = False
        self._wake_due: float | None = None
        self._seen = 0

    def on_receive(self, message: Any) -> Any:
        """Apply one message, then start the next job if the repo is free."""
        self._seen += 1
        if isinstance(message, Enqueue):
            job = message.job
            self._enqueue(job)
            self._advance()
            active = self._active
            if self._readies is not None and (active is None or active.id != job.id):
                # It waits for its repo: later jobs need not wait for it (rule 3).
                self._readies[job.queue].settled(job)
            return None
        elif isinstance(message, Finished):
            self._finished(message)
        elif isinstance(message, Withdraw):
            self._withdraw(message.job_id)
        elif isinstance(message, Tick):
            self._wake_due = None
        else:
            self._seen -= 1
            return super().on_receive(message)
        self._advance()
        return None

    def _enqueue(self, job: Job) -> None:
        active = self._active
        if active is not None and active.id == job.id:
            # The retry the repo was held for has come due.
            self._active = job
            self._held_for_retry = False
            post(self._dispatcher, Ready(job))
            return
        if active is not None and self._waits is not None:
            self._waits.count += 1  # the repo is held by another job: this one waits
        self._waiting[job.id] = job
        self._order.add((job.priority, job.seq, job.id))

    def _finished(self, message: Finished) -> None:
        job, outcome = message.job, message.outcome
        if self._active is None or self._active.id != job.id:
            return  # A job cancelled before it started: nothing held for it.
        retry = next_attempt(job, outcome, self._clock.now())
        if retry is None:
            self._active = None
            post(self._dispatcher, Done(job, outcome))
        elif self._mode == "ordered":
            self._active = retry
            self._held_for_retry = True
            post(self._dispatcher, Retry(retry, outcome, hold=True))
        else:
            self._active = None
            post(self._dispatcher, Retry(retry, outcome, hold=False))

    def _withdraw(self, job_id: str) -> None:
        job = self._waiting.pop(job_id, None)
        if job is not None:
            self._order.remove((job.priority, job.seq, job.id))
        elif self._held_for_retry and self._active is not None and self._active.id == job_id:
            self._active = None
            self._held_for_retry = False
        # A ready or running job is let go by its `Finished`, never by a withdraw.

    def _advance(self) -> None:
        if self._active is not None:
            return
        if not self._order:
            post(self._dispatcher, Idle(self.repo, self._lock_id, self._seen))
            return
        _, _, job_id = self._order[0]
        job = self._waiting[job_id]
        due = job.not_before
        if due is not None and due > self._clock.now():
            # The head waits for its time and, in order, so does everyone behind it.
            if self._wake_due is None or due < self._wake_due:
                self._wake_due = due
                post(self._dispatcher, Wake(self.repo, due))
            return
        del self._order[0]
        del self._waiting[job_id]
        self._active = job
        post(self._dispatcher, Ready(job))
