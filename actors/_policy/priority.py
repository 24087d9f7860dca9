"""Job priorities: 1 is the most urgent, 10 the least."""

from __future__ import annotations

from enum import IntEnum

__all__ = ["MAX_PRIORITY", "MIN_PRIORITY", "Priority"]

MIN_PRIORITY = 1
"""The most urgent priority a job can have."""

MAX_PRIORITY = 10
"""The least urgent priority a job can have."""


class Priority(IntEnum):
    """Named priorities. Any int from 1 (most urgent) to 10 is accepted as well."""

    USER_BLOCKING = 1
    """Someone is waiting on the result right now."""

    USER_VISIBLE = 5
    """The default: someone will look at the result soon."""

    BEST_EFFORT = 10
    """Background work that may wait behind everything else."""
