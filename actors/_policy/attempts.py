"""The retry decision: after an attempt ends, is there another one, and when?

Shared by the RepoLock (jobs with a repo) and the Dispatcher (jobs without), so
the cap and the backoff are applied by one piece of code (rule 4, docs/guarantees.md).
"""

from __future__ import annotations

from actors.messages import Job, Outcome

__all__ = ["next_attempt"]


def next_attempt(job: Job, outcome: Outcome, now: float) -> Job | None:
    """The job's next attempt, or None when ``outcome`` ends the job.

    A job runs at most ``1 + max_retries`` times; only a failed, retryable
    attempt earns another one, no earlier than the backoff allows.
    """
    if outcome.status != "failed" or not outcome.retryable:
        return None
    if job.attempt > job.max_retries:
        return None
    delay = job.retry.delay(job.attempt)
    return job.next_attempt(now + delay if delay > 0 else None)
