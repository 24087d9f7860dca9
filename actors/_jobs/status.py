"""The seven states a job moves through."""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "CANCELLED",
    "COMPLETED",
    "FAILED",
    "PENDING",
    "RETRYING",
    "RUNNING",
    "SCHEDULED",
    "TERMINAL_STATUSES",
    "JobStatus",
]


class JobStatus(StrEnum):
    """Where a job is in its life.

    A job starts ``scheduled`` (it has a delay) or ``pending``, becomes
    ``running`` for each attempt, may wait as ``retrying`` between attempts, and
    ends in exactly one of ``completed``, ``failed`` or ``cancelled``.
    """

    SCHEDULED = "scheduled"
    """Waiting for its due time, or (a follow-up) for the job it follows to complete."""

    PENDING = "pending"
    """Waiting for its repo or for a free worker."""

    RUNNING = "running"
    """An attempt is executing on a worker."""

    RETRYING = "retrying"
    """An attempt failed; waiting for the backoff before the next one."""

    COMPLETED = "completed"
    """The handler returned a result."""

    FAILED = "failed"
    """The last attempt failed and no retry is left (or the error was fatal)."""

    CANCELLED = "cancelled"
    """Cancelled by the user or by shutdown."""

    @property
    def finished(self) -> bool:
        """Whether this is a terminal state."""
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})

# The members as plain module globals, for the paths every job takes: reading
# ``JobStatus.COMPLETED`` goes through the enum's metaclass (about 190 ns, and a
# job read five of them), a global costs about 15 ns.
SCHEDULED = JobStatus.SCHEDULED
PENDING = JobStatus.PENDING
RUNNING = JobStatus.RUNNING
RETRYING = JobStatus.RETRYING
COMPLETED = JobStatus.COMPLETED
FAILED = JobStatus.FAILED
CANCELLED = JobStatus.CANCELLED
