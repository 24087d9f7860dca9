"""The table the facade looks jobs up in: unfinished jobs, a bounded history,
the idempotency keys and the job counters.

The `JobTable` counts what the statistics report about jobs (accepted,
finished by status, attempts run) under the lock it already takes to add and
finish a job, so whichever thread finishes a job counts it exactly once.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from actors._errors import JobNotFound
from actors._jobs.gil import require_gil
from actors._jobs.state import JobState, LabelCounts
from actors._jobs.status import COMPLETED, FAILED, RUNNING, JobStatus
from actors.messages import ErrorInfo, JSONValue

if TYPE_CHECKING:
    from actors._jobs.capacity import Capacity
    from actors._jobs.links import Links
    from actors._journal.link import JournalLink
    from actors._tracing import Tracing

__all__ = ["JobCounts", "JobTable"]


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

    It also owns the idempotency index (rule 10, docs/guarantees.md): a key maps to its job while
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
        """The table of one scheduler: built once, by `Scheduler()`.

        Raises:
            GILRequired: on a free-threaded build without the GIL (`require_gil`).
        """
        require_gil()  # before anything of the store is used (actors/_jobs/__init__.py)
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
        self._repo_load: dict[str, int] = {}
        """Unfinished jobs per repo that has any (`add` counts up, `finish` down)."""
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
        reaches them through the table it already holds (`attach_links`)."""
        self.tracing: Tracing | None = None
        """Spans per attempt, when the scheduler traces (``tracing=``): set
        before the submitter and the workers are built, which read it once."""
        self.journal: JournalLink | None = None
        """The store's link, when the scheduler has a store (`attach_journal`):
        every part that records a change reaches it through the table."""

    def attach_journal(self, journal: JournalLink) -> None:
        """Record every job's changes in the store (the facade, once, before start)."""
        self.journal = journal

    def attach_links(self, links: Links) -> None:
        """Give workers the scheduler's job links (the facade, once, as it is
        built: `Links` needs the table first)."""
        self.links = links

    def add(self, state: JobState) -> bool:
        """Record a new job; the caller holds the gate and has checked its key is free.

        Returns:
            True if the job has a repo and no other job of that repo is unfinished.
        """
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
        repo = job.repo
        if repo is None:
            return False
        with self._lock:  # `finish` counts down under it, from other threads
            load = self._repo_load.get(repo, 0)
            self._repo_load[repo] = load + 1
        return load == 0

    def withdraw(self, state: JobState, error: ErrorInfo) -> None:
        """Undo `add`: the job's row could not be committed, so it was never
        accepted (its submit raises). It leaves no trace in the counters, its
        slot and its key are given back, and a handle of it (an idempotent
        resubmit's) resolves as failed with ``error``.

        The submitting thread, after its commit failed; the job was never
        sent on its way, so nothing else can end it meanwhile.
        """
        job = state.job
        if self.active.pop(job.id, None) is None:
            return
        if job.idempotency_key is not None:
            self._release_key(state)
        capacity = self._capacities[job.queue]
        counts = state.counts
        with self._lock:
            self._submitted -= 1
            if counts is not None:
                counts.submitted -= 1
            capacity.given += 1
            if job.repo is not None:
                self._repo_done(job.repo)
            on_empty = None
            if self._on_empty is not None and self._resolved == self._submitted:
                on_empty, self._on_empty = self._on_empty, None
        if capacity.waiting:
            capacity.wake()
        state.resolve(FAILED, error=error)
        if on_empty is not None:
            on_empty()

    def _repo_done(self, repo: str) -> None:
        """One job of ``repo`` fewer is unfinished (the table's lock held)."""
        load = self._repo_load[repo] - 1
        if load:
            self._repo_load[repo] = load
        else:
            del self._repo_load[repo]

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
            if job.repo is not None:
                self._repo_done(job.repo)
            self._history_len += 1
            evict = self._history_len > self._history_size
            if evict:
                self._history_len -= 1
        if capacity.waiting:
            capacity.wake()
        self._into_history(state, status, evict=evict)
        journal = self.journal
        if journal is not None:
            journal.ended(job, status.value, result, error)
        resolved = state.resolve(status, result, error)
        with self._lock:
            self._resolved += 1
            on_empty = None
            if self._on_empty is not None and self._resolved == self._submitted:
                on_empty, self._on_empty = self._on_empty, None
        if on_empty is not None:
            on_empty()
        return resolved
