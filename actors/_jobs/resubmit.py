"""Manual retry (`Scheduler.retry`): a failed or cancelled job runs again as a new job.

The new job is an ordinary submission, so validation, back-pressure and shutdown
apply to it as to `Scheduler.submit`. It has its own id and attempt count, the
original's handler, payload, repo, priority, queue, retries, timeout and backoff,
and no idempotency key (the original's was released when it failed or was
cancelled). The two are linked both ways: ``retry_of`` on the new job,
``retried_as`` on the original.

A job is retried at most once, so ``retried_as`` names one job; to try again,
retry the retry. `RetryLinks` makes that hold when two threads retry one job at
once: the first claims it, the second is refused.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from actors._errors import InvalidArgument
from actors._jobs.status import CANCELLED, FAILED

if TYPE_CHECKING:
    from actors._jobs.state import JobState

__all__ = ["RETRYABLE", "RetryLinks"]

RETRYABLE = frozenset({FAILED, CANCELLED})
"""The statuses `Scheduler.retry` accepts."""


class RetryLinks:
    """Claims on jobs being retried, and the ``retried_as`` link once they are.

    Every write of `JobState.retried_as` happens here, under one lock held for a
    few loads and stores only (no call inside, see `JobTable`).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._claimed: set[str] = set()
        """Ids of jobs whose retry is being submitted right now."""

    def claim(self, state: JobState) -> None:
        """Claim a job for a retry; `release` must follow, whatever happens.

        Raises:
            InvalidArgument: the job is not failed or cancelled (the message
                says its status), or it was already retried, or another call is
                retrying it now.
        """
        job_id = state.job.id
        # Terminal statuses never change: read once, no lock needed.
        status = state.status
        if status not in RETRYABLE:
            msg = f"job {job_id!r} is {status}: only a failed or cancelled job can be retried"
            raise InvalidArgument(msg)
        with self._lock:
            retried_as = state.retried_as
            busy = job_id in self._claimed
            if retried_as is None and not busy:
                self._claimed.add(job_id)
                return
        if retried_as is not None:
            msg = f"job {job_id!r} was already retried as {retried_as!r}; retry that job instead"
        else:
            msg = f"job {job_id!r} is being retried by another call"
        raise InvalidArgument(msg)

    def release(self, state: JobState, retried_as: str | None) -> None:
        """End a claim: link the job to its retry's id, or (None) leave it retryable."""
        job_id = state.job.id
        with self._lock:
            if retried_as is not None:
                state.retried_as = retried_as
            self._claimed.discard(job_id)
