"""What `cancel` reports back."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["CancelResult"]


class CancelResult(StrEnum):
    """What a call to `Scheduler.cancel` did. Cancelling is always harmless."""

    CANCELLED = "cancelled"
    """The job was waiting; it is removed and its handle resolved as cancelled."""

    SIGNALLED = "signalled"
    """The job is running; its handler was told to stop (``ctx.cancelled``, or its
    task cancelled). The handle resolves when the handler returns; no retry follows."""

    ALREADY_CANCELLING = "already_cancelling"
    """An earlier cancel already signalled the running job."""

    ALREADY_FINISHED = "already_finished"
    """The job had already reached a terminal state; nothing changed."""
