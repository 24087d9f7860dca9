"""What becomes of schedulers in a child made by `os.fork()`.

Only the thread that forked lives on in the child. A scheduler the parent
started has a copy there, but none of its threads: a job submitted to it would
never run, a handle never resolve, and a shutdown would wait for actors that do
not answer. So, in the child, such a scheduler is marked ``forked`` by the hook
below, and every call of it raises `SchedulerForked` (its ``shutdown`` returns
at once, so a ``with`` block or the at-exit hook leaving in the child does not
hang). Its job handles know it by the fork `generation` they were made in.

A scheduler made but never started before the fork owns no thread: the child
may start its copy like any new scheduler.

The registry of schedulers is weak (it keeps none alive) and the hook is
registered once per process, when this module is imported.
"""

from __future__ import annotations

import os
import weakref
from typing import Protocol

from actors._errors import SchedulerForked

__all__ = ["FORKED", "forked_error", "generation", "owner", "track"]

FORKED = "forked"
"""A scheduler's state in a child process when its parent had started it."""

generation = 0
"""How many forks lie between this process and the one that imported postroom
first: a handle made in an older generation belongs to a parent's scheduler."""

_pids = [os.getpid()]
"""The process of each generation, this one's last."""


class _Forkable(Protocol):
    def _after_fork_in_child(self) -> None: ...


_schedulers: weakref.WeakSet[_Forkable] = weakref.WeakSet()


def track(scheduler: _Forkable) -> None:
    """Have ``scheduler._after_fork_in_child()`` called in every child forked
    from here while the scheduler lives."""
    _schedulers.add(scheduler)


def owner(of_generation: int) -> int:
    """The process id of a generation (see `generation`)."""
    return _pids[of_generation]


def forked_error(what: str, owner_pid: int) -> SchedulerForked:
    """The error for a call, in a child, of ``what`` (a scheduler, a job's
    handle) that belongs to the process ``owner_pid``."""
    msg = (
        f"{what} belongs to process {owner_pid}, which this process was forked "
        "from: its threads run there, not here. Make a new Scheduler in this process."
    )
    return SchedulerForked(msg)


def _in_child() -> None:
    # Runs in the child right after the fork, on its only thread: nothing here
    # may wait for a lock, since the thread that held one may not exist here.
    global generation  # noqa: PLW0603 - this process's own fork record
    generation += 1
    _pids.append(os.getpid())
    for scheduler in list(_schedulers):
        scheduler._after_fork_in_child()  # noqa: SLF001 - the scheduler's own hook


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_in_child)
