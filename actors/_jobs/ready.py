"""The ready queue: the worker pool's shared mailbox, best job first.

Jobs that hold their repo (or have none) and whose time has come wait here,
ordered by priority, then submission (rule 3, docs/guarantees.md). The Dispatcher puts jobs in (and
the Timer, for a due job without a repo); idle workers take the best one the
moment they are free. This is the
balancing-pool pattern (one mailbox shared by all routees of a pool): a worker
never waits for a hand-off while work is queued, which removes a message and a
thread wake-up per job compared with the Dispatcher sending each worker a `Run`.

The heap holds one int per job, ``priority << SEQ_BITS | seq``: the same
(priority, seq) order as a tuple, at about half the cost to push and pop.

It takes no lock on the path of a job. Under the GIL each of its steps (a dict
store or pop, a heap push or pop of plain tuples) is one C call that no other
thread can interleave with; a lock around them only made things worse: the
submitting thread holds it while the interpreter switches it out, and every
worker then queues behind it (measured: 8,000 contended acquisitions in 20,000
jobs). A job is in the queue while its key is in ``_jobs``: whoever pops it
from there (a worker taking it, or a cancel removing it) owns it.

A job with a repo reaches this queue later than one without: it goes through
the Dispatcher and its RepoLock first, on the actor loop. So that it still
competes by (priority, submission) with every job submitted after it (rule 3,
docs/guarantees.md), the facade *expects* it here as it submits it, and the
first to learn where it went settles the expectation: this queue when the job
is put, the RepoLock when the job must wait for its repo, the Dispatcher when
it was cancelled on its way. A worker about to take a job worse than one still
on its way gives it back and waits for that one to be settled (microseconds:
a few hops on the actor loop). While nothing is expected, a take costs one
truth test more.

A cancel that comes between a worker popping a job and registering it as taken
finds it in neither place and cannot signal it. That is why the Dispatcher
marks the job ``cancel_requested`` before it looks, and the worker checks that
mark after it has registered the job and before it starts it (`Worker`).

Worker nodes take from the same queue, through their `NodeLink`
(``transport/link.py``), so priorities and the expectation rule hold for
remote jobs unchanged. A link must not block (it has its node's messages to
read), so it takes with `take_now`, which never waits and takes only jobs
of the handlers its node offered; when it finds none it may take, it
`watch`es: the next `put`, or the settling of an expected job, calls it back
once. A link takes no token: the token of the job it took stays behind, and
wakes a worker for nothing, or is drained by the link's next take. Tokens
only ever outnumber jobs, which costs a wake-up, never a job left waiting.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Container
from heapq import heappop, heappush
from typing import Protocol

from actors._worker.cancel import CancelReason, CancelScope
from actors.messages import Job

__all__ = ["SEQ_BITS", "ReadyQueue", "Signal"]

SEQ_BITS = 52
"""Bits of a job's ``seq`` in its heap key: 4.5e15 submissions per scheduler."""


def _key(job: Job) -> int:
    return job.priority << SEQ_BITS | job.seq


class Signal(Protocol):
    """How a taken attempt is told to stop: a worker's `CancelScope`, or a
    node link's per-run signal, which sends the stop over the wire."""

    def fire(self, job_id: str, attempt: int, reason: CancelReason) -> bool:
        """Tell the attempt to stop; False if it is not the attempt this signal is for."""
        ...


class ReadyQueue:
    """Ready jobs in (priority, seq) order, and which worker runs which.

    A removed job stays in the heap and is skipped when it surfaces (lazy
    deletion). The lock guards the count of workers told to retire and the
    jobs expected (`expect`).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)
        # Jobs with a repo on their way here (see the module docstring): their
        # keys, and the same keys in a heap for the best one (lazy deletion).
        self._expected: set[int] = set()
        self._expected_heap: list[int] = []
        self._waited: dict[int, int] = {}
        """Expected jobs workers wait for, with how many wait (under the lock):
        only the settling of one of these wakes anybody."""
        self._heap: list[int] = []  # priority << SEQ_BITS | seq
        self._jobs: dict[int, Job] = {}  # by the same key
        self._taken: dict[str, tuple[int, Signal]] = {}
        # One token per job put (or per worker to retire): idle workers block in
        # the C-coded SimpleQueue.get rather than in a Python-level Condition.
        self._tokens: queue.SimpleQueue[bool] = queue.SimpleQueue()
        self._closed = False
        self._retire = 0
        self._watchers: list[Callable[[], object]] = []
        """Node links to call back at the next put or settling (under the lock)."""

    def __len__(self) -> int:
        return len(self._jobs)

    @property
    def running(self) -> int:
        """Jobs taken by a worker and not yet done."""
        return len(self._taken)

    def put(self, job: Job) -> None:
        """Queue a ready job and wake one idle worker."""
        # In this order: an entry on the heap always finds its job in _jobs.
        key = job.priority << SEQ_BITS | job.seq
        self._jobs[key] = job
        heappush(self._heap, key)
        self._tokens.put(True)
        if self._expected:
            self._settle(key)
        if self._watchers:
            self._wake_watchers()

    def expect(self, job: Job) -> None:
        """``job`` (with a repo, due now) was just submitted and is on its way.

        Until it is settled (`put` here, or `settled`), no worker takes a job
        that comes after it in (priority, submission) order.
        """
        key = job.priority << SEQ_BITS | job.seq
        with self._lock:
            self._expected.add(key)
            heappush(self._expected_heap, key)

    def settled(self, job: Job) -> None:
        """``job`` will not come here now (it waits for its repo, or was
        cancelled on its way): stop holding later jobs back for it."""
        if self._expected:
            self._settle(job.priority << SEQ_BITS | job.seq)

    def _settle(self, key: int) -> None:
        with self._lock:
            if key in self._expected:
                self._expected.discard(key)
                if key in self._waited:
                    self._settled.notify_all()
        if self._watchers:
            self._wake_watchers()

    def watch(self, wake: Callable[[], object]) -> None:
        """Call ``wake`` once, at the next `put` or settling of an expected job
        (or at `close`), on that caller's thread: it must not block.

        For a node link that found nothing to take: it watches *before* it
        takes again, so a job put in between is never missed.
        """
        with self._lock:
            self._watchers.append(wake)

    def _wake_watchers(self) -> None:
        with self._lock:
            watchers, self._watchers = self._watchers, []
        for wake in watchers:
            wake()

    def take_now(
        self, taker_id: int, accepts: Container[str], signal: Callable[[Job], Signal]
    ) -> Job | None:
        """Take the best ready job whose handler is in ``accepts``, without waiting.

        For node links (see the module docstring). The best job of all is
        looked at first; only when its handler is not accepted are the other
        queued jobs scanned, which costs a pass over the queue: a node that
        offers a few of its queue's handlers should have a queue of its own.

        Args:
            taker_id: who takes it (`taken_by` finds it by this id).
            accepts: the handlers the taker runs.
            signal: makes the taken attempt's stop signal (`signal` fires it).

        Returns:
            The job, now taken; None if no job may be taken now (none queued,
            none of these handlers, or a better job is still expected).
        """
        if self._closed or not self._jobs:
            return None
        heap, jobs = self._heap, self._jobs
        while True:
            try:
                key = heappop(heap)
            except IndexError:
                return None
            job = jobs.pop(key, None)
            if job is not None:
                break
        if job.handler not in accepts:
            # Give it back, with a token: a worker may have spent the one it
            # came with on the heap this take emptied for a moment.
            jobs[key] = job
            heappush(heap, key)
            self._tokens.put(True)
            found = self._best_of(accepts)
            if found is None:
                return None
            key, job = found
        if self._expected and self._expected_before(key) is not None:
            jobs[key] = job
            heappush(heap, key)
            self._tokens.put(True)
            return None  # the link watches: the settling calls it back
        # The job's token, so tokens don't pile up; if a worker holds it, that
        # worker finds the heap without this job and waits again.
        with contextlib.suppress(queue.Empty):
            self._tokens.get_nowait()
        self._taken[job.id] = (taker_id, signal(job))
        return job

    def _best_of(self, accepts: Container[str]) -> tuple[int, Job] | None:
        """Pop the best queued job of one of these handlers, by a pass over the
        queue; its heap entry stays behind, skipped when it surfaces."""
        jobs = self._jobs
        while True:
            best = None
            for key in list(jobs):  # a copy: workers pop from it meanwhile
                job = jobs.get(key)
                if job is not None and job.handler in accepts and (best is None or key < best):
                    best = key
            if best is None:
                return None
            job = jobs.pop(best, None)
            if job is not None:
                return best, job
            # Taken by someone else between the pass and the pop: look again.

    def _expected_before(self, key: int) -> int | None:
        """The best job on its way that comes before ``key``; None if none does."""
        with self._lock:
            expected, heap = self._expected, self._expected_heap
            while heap and heap[0] not in expected:
                heappop(heap)
            return heap[0] if heap and heap[0] < key else None

    def _wait_settled(self, key: int) -> None:
        with self._lock:
            waited = self._waited
            waited[key] = waited.get(key, 0) + 1
            try:
                while key in self._expected and not self._closed:
                    self._settled.wait()
            finally:
                if waited[key] == 1:
                    del waited[key]
                else:
                    waited[key] -= 1

    def take(self, worker_id: int, scope: CancelScope) -> Job | None:
        """Block until there is a job for this worker; None means: retire."""
        heap, jobs, taken, tokens = self._heap, self._jobs, self._taken, self._tokens
        while True:
            token = tokens.get()
            if self._closed:
                return None
            if self._retire and self._retire_one(token=token):
                return None
            # Each token stands for one job put: there are never more live jobs
            # on the heap than tokens left. A token may find its job gone
            # (cancelled, or taken by a worker that came first): popping on
            # skips removed entries; an empty heap means: wait for the next token.
            while token:
                try:
                    key = heappop(heap)
                except IndexError:
                    break
                job = jobs.pop(key, None)
                if job is not None:
                    if self._expected and (first := self._expected_before(key)) is not None:
                        # A better job is on its way (rule 3): give this one
                        # back with its token, wait for that one to be settled.
                        jobs[key] = job
                        heappush(heap, key)
                        tokens.put(True)
                        self._wait_settled(first)
                        break
                    scope.arm(job.id, job.attempt)
                    taken[job.id] = (worker_id, scope)
                    return job

    def _retire_one(self, *, token: bool) -> bool:
        """Let this worker retire if some still must. Retiring goes before queued
        work, so a shrink takes effect at once, not after the backlog."""
        with self._lock:
            if not self._retire:
                return False
            self._retire -= 1
        if token:
            self._tokens.put(True)  # the job's token goes back
        return True

    def done(self, job_id: str) -> None:
        """The worker's attempt of this job is over (a single dict operation).

        Nothing can signal the attempt after this: `signal` finds no entry. The
        scope stays armed until the worker's next `take` re-arms it, harmlessly.
        """
        self._taken.pop(job_id, None)

    def remove(self, job: Job) -> Job | None:
        """Take a queued job out (cancel); None if a worker has it or nobody does.

        Any attempt of the job will do: priority and seq never change.
        """
        return self._jobs.pop(_key(job), None)

    def signal(self, job_id: str, attempt: int, reason: CancelReason) -> bool:
        """Tell the worker running this attempt to stop; False if none is."""
        entry = self._taken.get(job_id)
        return entry is not None and entry[1].fire(job_id, attempt, reason)

    def is_taken(self, job_id: str) -> bool:
        """Whether a worker has taken the job (it runs, or is about to)."""
        return job_id in self._taken

    def taken_by(self, worker_id: int) -> list[str]:
        """Ids of the jobs a worker holds (a crashed worker's, to settle them)."""
        return [job_id for job_id, (wid, _) in list(self._taken.items()) if wid == worker_id]

    def close(self) -> None:
        """Hand no more jobs out; wake one waiting worker to leave.

        For a crash, when queued jobs must not run: each worker's stop calls it
        once, so every worker wakes and leaves.
        """
        self._closed = True
        self._tokens.put(False)
        with self._lock:
            self._settled.notify_all()  # nobody waits for a job that won't come
        self._wake_watchers()

    def retire(self, count: int) -> None:
        """Let ``count`` workers leave: the next ``count`` calls of `take` (from
        idle workers, or busy ones as they finish) return None."""
        with self._lock:
            self._retire += count
        for _ in range(count):
            self._tokens.put(False)  # wakes idle workers; spare ones are skipped
