"""The ready queue: the worker pool's shared mailbox, best job first.

Jobs that hold their repo (or have none) and whose time has come wait here,
ordered by priority, then submission (rule 3). The Dispatcher puts jobs in (and
the Timer, for a due job without a repo); idle workers take the best one the
moment they are free. This is the
balancing-pool pattern (one mailbox shared by all routees of a pool): a worker
never waits for a hand-off while work is queued, which removes a message and a
thread wake-up per job compared with the Dispatcher sending each worker a `Run`.

Taking a job and arming the worker's `CancelScope` happen under one lock, so a
cancel finds the job either still queued (removed) or taken (signalled), never
in between.
"""

from __future__ import annotations

import queue
import threading
from heapq import heappop, heappush

from actors._cancel import CancelReason, CancelScope
from actors.messages import Job

__all__ = ["ReadyQueue"]


class ReadyQueue:
    """Ready jobs in (priority, seq) order, and which worker runs which.

    Every critical section is a few C-level operations (a heap push or pop, a
    dict update): under the GIL, a thread preempted while holding a lock makes
    every other thread queue behind it, so the less Python runs under the lock,
    the less often that happens. A removed job stays in the heap and is skipped
    when it surfaces (lazy deletion).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._heap: list[tuple[int, int, str]] = []  # (priority, seq, job id)
        self._jobs: dict[str, Job] = {}
        self._taken: dict[str, tuple[int, CancelScope]] = {}
        # One token per job put (or per worker to retire): idle workers block in
        # the C-coded SimpleQueue.get rather than in a Python-level Condition.
        self._tokens: queue.SimpleQueue[bool] = queue.SimpleQueue()
        self._closed = False
        self._retire = 0

    def __len__(self) -> int:
        return len(self._jobs)

    @property
    def running(self) -> int:
        """Jobs taken by a worker and not yet done."""
        return len(self._taken)

    def put(self, job: Job) -> None:
        """Queue a ready job and wake one idle worker."""
        with self._lock:
            self._jobs[job.id] = job
            heappush(self._heap, (job.priority, job.seq, job.id))
        self._tokens.put(True)

    def take(self, worker_id: int, scope: CancelScope) -> Job | None:
        """Block until there is a job for this worker; None means: retire."""
        heap, jobs, taken, tokens = self._heap, self._jobs, self._taken, self._tokens
        while True:
            token = tokens.get()
            if self._closed:
                return None
            with self._lock:
                if self._retire:
                    # Retiring goes before queued work, so a shrink takes effect
                    # at once, not after the backlog; a job's token goes back.
                    self._retire -= 1
                    if token:
                        tokens.put(True)
                    return None
                # A job token may find its job gone (cancelled, or taken by a
                # worker that came first): then wait for the next token.
                while token and heap:
                    job = jobs.pop(heappop(heap)[2], None)
                    if job is not None:
                        # Armed under the lock: a cancel finds the job either
                        # queued or taken with its scope armed, never between.
                        scope.arm(job.id, job.attempt)
                        taken[job.id] = (worker_id, scope)
                        return job

    def done(self, job_id: str) -> None:
        """The worker's attempt of this job is over (a single dict operation)."""
        entry = self._taken.pop(job_id, None)
        if entry is not None:
            entry[1].disarm()

    def remove(self, job_id: str) -> Job | None:
        """Take a queued job out (cancel); None if a worker has it or nobody does."""
        with self._lock:
            return self._jobs.pop(job_id, None)

    def signal(self, job_id: str, attempt: int, reason: CancelReason) -> bool:
        """Tell the worker running this attempt to stop; False if none is."""
        entry = self._taken.get(job_id)
        return entry is not None and entry[1].fire(job_id, attempt, reason)

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

    def retire(self, count: int) -> None:
        """Let ``count`` workers leave: the next ``count`` calls of `take` (from
        idle workers, or busy ones as they finish) return None."""
        with self._lock:
            self._retire += count
        for _ in range(count):
            self._tokens.put(False)  # wakes idle workers; spare ones are skipped
