"""The options of a scheduler's store, checked where they enter (`Scheduler()`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TypedDict

from actors._errors import InvalidArgument
from actors._policy.checks import check_int, check_seconds

__all__ = ["DEFAULT_KEEP_FINISHED", "PRUNE_EVERY", "KeepFinished", "check_store_options"]


class KeepFinished(TypedDict, total=False):
    """How long the store keeps finished jobs (``keep_finished=``); either or both.

    Older or beyond the count, a finished job is pruned in the background with
    its runs. Unfinished jobs are never pruned.
    """

    age: float
    """Seconds after it finished."""
    count: int
    """The newest finished jobs kept."""


DEFAULT_KEEP_FINISHED: KeepFinished = {"age": 7 * 86_400.0}
"""A week of finished jobs, unless the scheduler is told otherwise."""

PRUNE_EVERY = 60.0
"""Seconds between two background prunes."""


def check_store_options(
    store: object,
    durability: object,
    synchronous: object,
    batch_interval: object,
    busy_timeout: object,
    keep_finished: object,
) -> str | None:
    """Check the store's options at the boundary; the store's path (or None).

    Raises:
        InvalidArgument: naming the option that is wrong.
    """
    if durability not in ("commit", "batch"):
        msg = f"durability must be 'commit' or 'batch', not {durability!r}"
        raise InvalidArgument(msg)
    if synchronous not in ("NORMAL", "FULL"):
        msg = f"synchronous must be 'NORMAL' or 'FULL', not {synchronous!r}"
        raise InvalidArgument(msg)
    check_seconds("batch_interval", batch_interval)
    assert isinstance(batch_interval, int | float)
    if batch_interval > 60:
        msg = f"batch_interval must be at most 60 seconds, not {batch_interval!r}"
        raise InvalidArgument(msg)
    check_seconds("busy_timeout", busy_timeout, allow_zero=True)
    if keep_finished is not None:
        if not isinstance(keep_finished, Mapping) or not set(keep_finished) <= {"age", "count"}:
            msg = f"keep_finished must be a dict with 'age' and/or 'count', not {keep_finished!r}"
            raise InvalidArgument(msg)
        if "age" in keep_finished:
            check_seconds("keep_finished['age']", keep_finished["age"])
        if "count" in keep_finished:
            check_int("keep_finished['count']", keep_finished["count"], 0)
    if store is None:
        return None
    if not isinstance(store, str | os.PathLike) or not os.fspath(store):
        msg = f"store must be a file path (str or os.PathLike), not {store!r}"
        raise InvalidArgument(msg)
    path = os.fspath(store)
    if path == ":memory:" or not isinstance(path, str):
        msg = f"store must be a file on disk, not {store!r}"
        raise InvalidArgument(msg)
    return path
