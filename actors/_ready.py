"""The ready queue: the worker pool's shared mailbox, best job first.

Jobs that hold their repo (or have none) and whose time has come wait here,
ordered by priority, then submission (rule 3). The Dispatcher puts jobs in;
idle workers take the best one the moment they are free. This is the
balancing-pool pattern (one mailbox shared by all routees of a pool): a worker
never waits for a hand-off while work is queued, which removes a message and a
thread wake-up per job compared with the Dispatcher sending each worker a `Run`.

Taking a job and arming the worker's `CancelScope` happen under one lock, so a
cancel finds the job either still queued (removed) or taken (signalled), never
in between.
"""

from __future__ import annotations

import threading

from sortedcontainers import SortedList

from actors._cancel import CancelReason, CancelScope
from actors.messages import Job

__all__ = ["ReadyQueue"]


class ReadyQueue:
    """Ready jobs in (priority, seq) order, and which worker runs which."""

    def __init__(self) -> None:
        # `with self._lock` is the C-level lock; the condition shares it for waits.
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._order: SortedList = SortedList()  # (priority, seq, job id)
        self._jobs: dict[str, Job] = {}
        self._taken: dict[str, tuple[int, CancelScope]] = {}
        self._retire = 0
        self._idle = 0
        """Workers blocked in `take`: only then does `put` need to wake one."""

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
            self._order.add((job.priority, job.seq, job.id))
            if self._idle:
                self._cond.notify()

    def take(self, worker_id: int, scope: CancelScope) -> Job | None:
        """Block until there is a job for this worker; None means: retire."""
        with self._lock:
            while True:
                if self._retire > 0:
                    self._retire -= 1
                    return None
                if self._order:
                    _, _, job_id = self._order.pop(0)
                    job = self._jobs.pop(job_id)
                    scope.arm(job.id, job.attempt)
                    self._taken[job_id] = (worker_id, scope)
                    return job
                self._idle += 1
                try:
                    self._cond.wait()
                finally:
                    self._idle -= 1

    def done(self, job_id: str) -> None:
        """The worker's attempt of this job is over."""
        with self._lock:
            entry = self._taken.pop(job_id, None)
            if entry is not None:
                entry[1].disarm()

    def remove(self, job_id: str) -> Job | None:
        """Take a queued job out (cancel); None if a worker has it or nobody does."""
        with self._lock:
            job = self._jobs.pop(job_id, None)
            if job is not None:
                self._order.remove((job.priority, job.seq, job.id))
            return job

    def signal(self, job_id: str, attempt: int, reason: CancelReason) -> bool:
        """Tell the worker running this attempt to stop; False if none is."""
        with self._lock:
            entry = self._taken.get(job_id)
        return entry is not None and entry[1].fire(job_id, attempt, reason)

    def taken_by(self, worker_id: int) -> list[str]:
        """Ids of the jobs a worker holds (a crashed worker's, to settle them)."""
        with self._lock:
            return [job_id for job_id, (wid, _) in self._taken.items() if wid == worker_id]

    def retire(self, count: int) -> None:
        """Let ``count`` workers leave: each next `take` returns None."""
        with self._lock:
            self._retire += count
            self._cond.notify(count)

    def drain(self) -> list[Job]:
        """Remove and return every queued job."""
        with self._lock:
            jobs = list(self._jobs.values())
            self._jobs.clear()
            self._order.clear()
            return jobs
