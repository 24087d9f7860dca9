"""Argument checks at the boundary: each raises `InvalidArgument` naming the value."""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable
from typing import cast

from actors._errors import InvalidArgument, UnknownHandler, UnknownQueue
from actors._policy.priority import MAX_PRIORITY, MIN_PRIORITY
from actors._policy.retry import RetryPolicy
from actors._timer.clock import CLOCK_METHODS, Clock

__all__ = [
    "check_clock",
    "check_int",
    "check_name",
    "check_priority",
    "check_queue",
    "check_retry",
    "check_seconds",
    "unknown_handler",
    "unknown_queue",
]


def check_clock(value: object) -> Clock:
    """``value``, which has every method of the `Clock` protocol (checked here:
    the Timer would otherwise fail on the first one it lacks, at `start`)."""
    missing = [name for name in CLOCK_METHODS if not callable(getattr(value, name, None))]
    if missing:
        msg = (
            f"clock must be a Clock (with methods {', '.join(CLOCK_METHODS)}); "
            f"{value!r} lacks {', '.join(missing)}"
        )
        raise InvalidArgument(msg)
    return cast("Clock", value)


def check_int(name: str, value: object, minimum: int) -> None:
    """An int (not a bool) no smaller than ``minimum``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        msg = f"{name} must be an int >= {minimum}, not {value!r}"
        raise InvalidArgument(msg)


def check_seconds(name: str, value: object, *, allow_zero: bool = False) -> None:
    """A finite number of seconds, > 0 (or >= 0 with ``allow_zero``)."""
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or value < 0
        or (value == 0 and not allow_zero)
    ):
        bound = ">= 0" if allow_zero else "> 0"
        msg = f"{name} must be a finite number of seconds {bound}, not {value!r}"
        raise InvalidArgument(msg)


def check_name(name: str, value: object) -> None:
    """None, or a non-empty str (a repo, an idempotency key)."""
    if value is not None and (not isinstance(value, str) or not value):
        msg = f"{name} must be a non-empty str or None, not {value!r}"
        raise InvalidArgument(msg)


def check_priority(value: object) -> None:
    """An int from 1 (most urgent) to 10."""
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or not MIN_PRIORITY <= value <= MAX_PRIORITY
    ):
        msg = f"priority must be an int from {MIN_PRIORITY} to {MAX_PRIORITY}, not {value!r}"
        raise InvalidArgument(msg)


def check_retry(value: object) -> None:
    """None or a `RetryPolicy`."""
    if value is not None and not isinstance(value, RetryPolicy):
        msg = f"retry must be a RetryPolicy, not {value!r}"
        raise InvalidArgument(msg)


def check_queue(name: object, queues: Collection[str]) -> None:
    """One of the scheduler's ``queues``, by name.

    Raises:
        UnknownQueue: naming it, and the queues there are.
    """
    if not isinstance(name, str) or name not in queues:
        raise unknown_queue(name, queues)


def unknown_handler(name: object, registered: Iterable[str]) -> UnknownHandler:
    """The error for a handler name nobody registered, listing those that are."""
    return UnknownHandler(f"no handler named {name!r} (registered: {sorted(registered)})")


def unknown_queue(name: object, queues: Iterable[str]) -> UnknownQueue:
    """The error for a queue name the scheduler lacks, listing its queues."""
    return UnknownQueue(f"no queue named {name!r} (queues: {sorted(queues)})")
