"""One attempt of a job, as run history keeps it: `RunInfo` and its `RunOutcome`."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from actors.messages import ErrorInfo

__all__ = ["RunInfo", "RunOutcome", "outcome_of"]


class RunOutcome(StrEnum):
    """How one attempt of a job ended."""

    COMPLETED = "completed"
    """The handler returned a result."""

    FAILED = "failed"
    """The handler raised (or its result could not be kept)."""

    TIMED_OUT = "timed_out"
    """The attempt ran past its timeout and was told to stop."""

    CANCELLED = "cancelled"
    """The job was cancelled while the attempt ran."""

    INTERRUPTED = "interrupted"
    """The process running it stopped (a crash, a kill, a shutdown that could
    not wait), or the worker node running it was lost, before the attempt
    ended: what it did is unknown, and the job is retried or failed by its
    handler's ``on_interrupt``."""


@dataclass(frozen=True, slots=True)
class RunInfo:
    """One attempt of a job (`Scheduler.runs`)."""

    job_id: str
    attempt: int
    """1 for the first attempt, 2 for the first retry, and so on."""
    started_at: float
    """Wall-clock time the attempt started (seconds since the epoch)."""
    finished_at: float | None
    """When it ended; None while it runs."""
    outcome: RunOutcome | None
    """How it ended; None while it runs."""
    error: ErrorInfo | None
    """The error it ended with (type, message, traceback), if it did not complete."""
    worker: str | None
    """The worker that ran it (``"worker-3"``), if known."""


_TIMED_OUT = "postroom.JobTimedOut"
_INTERRUPTED = frozenset({"postroom.JobInterrupted", "postroom.NodeLost"})
"""Errors of attempts cut short: by the end of the process, or of a node's session."""


def outcome_of(status: str, error: ErrorInfo | None) -> RunOutcome:
    """The outcome of an attempt that ended with this job or attempt status."""
    if status == "completed":
        return RunOutcome.COMPLETED
    if status == "cancelled":
        return RunOutcome.CANCELLED
    if error is not None and error.type == _TIMED_OUT:
        return RunOutcome.TIMED_OUT
    if error is not None and error.type in _INTERRUPTED:
        return RunOutcome.INTERRUPTED
    return RunOutcome.FAILED
