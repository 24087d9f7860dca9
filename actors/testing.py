"""Helpers for testing code that uses postroom.

`ManualClock` moves only when told to: pass it as ``Scheduler(clock=...)`` and
a test controls delays, backoff, timeouts and schedules without sleeping.
`wait_idle` blocks until a scheduler has nothing left to do before its clock
moves on, so a test can submit work and then assert on what it did.

`wait_idle` polls (every millisecond at first, then up to every 10 ms) with a
deadline: no event says "this scheduler is idle". A job's handle says when
that job ends, but not when it starts waiting for a backoff, and nothing says
when a due timer has been acted on. It reads one internal hook, `_hook`: the
scheduler's unfinished jobs with each one's due time, its clock, its repo
modes and its callback thread; no public call shows a waiting job's due time.
``tests/test_testing.py`` checks the hook, so a change inside the scheduler
that moved any of it fails there, not in users' tests.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from actors._errors import InvalidArgument, JobNotFound, SchedulerClosed
from actors._jobs.status import PENDING, RETRYING, RUNNING, SCHEDULED
from actors._policy.checks import check_seconds
from actors._scheduler import Scheduler
from actors._timer.clock import Clock, ManualClock

if TYPE_CHECKING:
    from actors._jobs.state import JobState

__all__ = ["ManualClock", "wait_idle"]

_FIRST_POLL = 0.001
_LAST_POLL = 0.01
"""Poll intervals (seconds): short at first, since most waits end within a few
milliseconds; never longer than this, so a test waits at most that long extra."""


@dataclass(frozen=True, slots=True)
class _Hook:
    """What `wait_idle` reads inside a scheduler (the one place it does)."""

    unfinished: Callable[[], list[JobState]]
    """The jobs not yet resolved."""
    clock: Clock
    """The scheduler's clock: due times are on its `Clock.now` scale."""
    ordered: Callable[[str], bool]
    """Whether a repo is in ``ordered`` mode (a waiting head holds it)."""
    run_after_callbacks: Callable[[Callable[[object], None]], None]
    """Queue a call behind every done callback queued so far."""


def _hook(scheduler: Scheduler) -> _Hook:
    """The scheduler's internals `wait_idle` reads; nothing else here touches them."""
    # SLF001 on each line: this is the documented hook (see the module docstring).
    config = scheduler._config  # noqa: SLF001
    callbacks = scheduler._callbacks  # noqa: SLF001
    table = scheduler._table  # noqa: SLF001

    def ordered(repo: str) -> bool:
        return config.mode(repo) == "ordered"

    def run_after_callbacks(call: Callable[[object], None]) -> None:
        callbacks.call(call, None)

    return _Hook(table.unfinished, scheduler._clock, ordered, run_after_callbacks)  # noqa: SLF001


def wait_idle(scheduler: Scheduler, *, timeout: float = 10.0) -> None:
    """Block until nothing in ``scheduler`` can happen before its clock moves on.

    Idle means, at one moment:

    - no job is running;
    - every other unfinished job waits for a time the scheduler's clock has
      not reached: its own due time (``delay``, a retry's backoff), or that of
      a job ahead of it in an ``ordered`` repo; or (a follow-up, a child) it
      waits for its parent, which is unfinished and so waits itself;
    - no schedule that is not paused has a fire time that has come;
    - every done callback queued so far (`JobHandle.add_done_callback`) has run.

    With a `ManualClock`, that is everything the test can see until it calls
    `ManualClock.advance`; then ``wait_idle`` again waits for what came due.
    With the real clock, a job due in the future is not waited for.

    Args:
        scheduler: a `Scheduler`, running or not (one that is not running is
            idle once its jobs are resolved, which shutdown sees to).
        timeout: the most seconds to wait (a finite number >= 0).

    Raises:
        TimeoutError: the scheduler was still busy after ``timeout`` seconds;
            the message names what it was busy with.
        InvalidArgument: ``scheduler`` is not a `Scheduler`, or a bad ``timeout``.
        SchedulerForked: the scheduler was started in the process this one was
            forked from.
    """
    if not isinstance(scheduler, Scheduler):
        msg = f"scheduler must be a Scheduler, not {type(scheduler).__name__}"
        raise InvalidArgument(msg)
    check_seconds("timeout", timeout, allow_zero=True)
    hook = _hook(scheduler)
    deadline = time.monotonic() + timeout
    poll = _FIRST_POLL
    while True:
        busy = _busy(scheduler, hook)
        if busy is None:
            # Done callbacks run on their own thread: a test that asserts on
            # what they did needs them run. A callback may submit or cancel a
            # job, so look again after them: idle only if nothing moved.
            before = _figures(scheduler)
            if _callbacks_ran(scheduler, hook, deadline):
                busy = _busy(scheduler, hook)
                if busy is None and _figures(scheduler) == before:
                    return
            else:
                busy = "done callbacks are still running"
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            msg = f"scheduler {scheduler.name} not idle after {timeout}s: {busy}"
            raise TimeoutError(msg)
        time.sleep(min(poll, remaining))
        poll = min(poll * 2, _LAST_POLL)


def _figures(scheduler: Scheduler) -> tuple[int, int]:
    """Jobs submitted and finished so far (raises `SchedulerForked` in a fork)."""
    stats = scheduler.stats()
    return stats.submitted, stats.finished


def _busy(scheduler: Scheduler, hook: _Hook) -> str | None:
    """What keeps the scheduler from being idle now, or None if nothing does."""
    now = hook.clock.now()
    states = hook.unfinished()
    # Jobs that wait for a time still ahead, by repo: in an ordered repo they
    # hold back the jobs behind them.
    waiting: dict[str, list[JobState]] = {}
    # Jobs that may move now: pending, due, or released by their parent.
    movable: list[tuple[JobState, str]] = []
    for state in states:
        status, job = state.status, state.job
        if status is RUNNING:
            return f"job {job.id} ({job.handler}) is running"
        if status is PENDING:
            movable.append((state, "pending"))
            continue
        if status is not SCHEDULED and status is not RETRYING:
            continue  # resolved since the list was taken
        due = job.not_before
        if due is not None and due > now:
            if job.repo is not None:
                waiting.setdefault(job.repo, []).append(state)
        elif due is not None or status is RETRYING:
            movable.append((state, f"{status.value} and due"))
        elif _parent_finished(scheduler, job.id):
            # A follow-up or child whose parent ended: on its way to its queue.
            movable.append((state, "released by the job it waited for"))
    for state, why in movable:
        if not _held_back(state, waiting, hook):
            return f"job {state.job.id} ({state.job.handler}) is {why}"
    return _due_schedule(scheduler, hook)


def _parent_finished(scheduler: Scheduler, job_id: str) -> bool:
    """Whether a job without a due time no longer waits for its parent (or has none)."""
    try:
        parent = scheduler.job(job_id).parent
        return parent is None or scheduler.job(parent).status.finished
    except JobNotFound:  # resolved meanwhile, or the parent aged out of history
        return True


def _held_back(state: JobState, waiting: dict[str, list[JobState]], hook: _Hook) -> bool:
    """Whether a job waits behind a job of its repo that waits for a time.

    In an ordered repo a job awaiting its retry keeps the repo, and a delayed
    job ahead of it in (priority, submission) order keeps its place: the repo
    starts nothing else until that job's time comes.
    """
    job = state.job
    if job.repo is None or job.repo not in waiting or not hook.ordered(job.repo):
        return False
    place = (job.priority, job.seq)
    return any(
        other.status is RETRYING or (other.job.priority, other.job.seq) < place
        for other in waiting[job.repo]
    )


def _due_schedule(scheduler: Scheduler, hook: _Hook) -> str | None:
    """A schedule whose fire time has come, if any (schedules fire in wall time)."""
    if not scheduler.running:
        return None
    try:
        infos = scheduler.schedules()
    except SchedulerClosed:  # shut down meanwhile: nothing fires any more
        return None
    wall = hook.clock.wall()
    for info in infos:
        if not info.paused and info.next_fire is not None and info.next_fire.timestamp() <= wall:
            return f"schedule {info.id} ({info.handler}) is due"
    return None


def _callbacks_ran(scheduler: Scheduler, hook: _Hook, deadline: float) -> bool:
    """Whether every done callback queued so far ran by ``deadline``.

    A marker queued behind them runs once they have. A scheduler that is not
    running has no callback thread to ask (shutdown joined it, after its
    callbacks ran).
    """
    if not scheduler.running:
        return True
    ran = threading.Event()
    hook.run_after_callbacks(lambda _: ran.set())
    while not ran.wait(min(_LAST_POLL, max(0.0, deadline - time.monotonic()))):
        if not scheduler.running:
            return True  # shut down meanwhile: its callbacks ran, or never will
        if time.monotonic() >= deadline:
            return False
    return True
