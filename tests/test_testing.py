"""`actors.testing`: the helpers users' own tests rely on.

`wait_idle` must return only once everything that can happen before the clock
moves has happened (each test below would see a job unfinished, or a callback
not run, if it returned early), and must return, not time out, when all that
is left waits for a time still ahead.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

import actors
from actors import InvalidArgument, JobNotFound, JobStatus, RetryPolicy, Scheduler
from actors.messages import Job
from actors.testing import ManualClock, _busy, _Hook, _hook, wait_idle
from tests.helpers import WAIT, quiet


def _scheduler(clock: ManualClock | None = None, **options: Any) -> tuple[Scheduler, list[Any]]:
    """A scheduler whose handlers take a little real time, and what they ran."""
    ran: list[Any] = []
    sched = Scheduler(workers=2, clock=clock, **options)

    @sched.handler("work")
    def work(ctx, payload):
        # Real work takes time: a wait_idle that returned at once would see it unfinished.
        threading.Event().wait(0.02)
        ran.append(payload)
        return payload

    return sched, ran


def test_manual_clock_is_the_one_actors_exports() -> None:
    assert ManualClock is actors.ManualClock


def test_waits_for_submitted_jobs_to_finish() -> None:
    sched, ran = _scheduler()
    with sched:
        handles = [sched.submit("work", n, repo=f"r{n % 3}" if n % 2 else None) for n in range(8)]
        wait_idle(sched, timeout=WAIT)
        assert all(h.done() for h in handles)
        assert sorted(ran) == list(range(8))


def test_a_delayed_job_is_waited_for_once_it_is_due() -> None:
    clock = ManualClock()
    sched, ran = _scheduler(clock)
    with sched:
        later = sched.submit("work", "later", delay=60)
        now = sched.submit("work", "now")
        wait_idle(sched, timeout=WAIT)  # returns: "later" waits for a time ahead
        assert now.done()
        assert later.status is JobStatus.SCHEDULED
        clock.advance(60)
        # Due now, but the Timer acts on its own thread: still "scheduled" here,
        # perhaps. wait_idle waits for it to run.
        wait_idle(sched, timeout=WAIT)
        assert later.status is JobStatus.COMPLETED
        assert ran == ["now", "later"]


def test_a_retry_is_waited_for_once_its_backoff_is_over() -> None:
    clock = ManualClock()
    sched = Scheduler(workers=1, clock=clock)

    @sched.handler("flaky", max_retries=1, retry=RetryPolicy.fixed(30))
    def flaky(ctx, payload):
        if ctx.attempt == 1:
            raise ValueError("first time")
        return ctx.attempt

    with sched:
        handle = sched.submit("flaky")
        wait_idle(sched, timeout=WAIT)
        assert handle.status is JobStatus.RETRYING
        clock.advance(30)
        wait_idle(sched, timeout=WAIT)
        assert handle.status is JobStatus.COMPLETED
        assert handle.result(timeout=0) == 2


def test_a_job_held_back_in_an_ordered_repo_does_not_count_as_busy() -> None:
    """In an ordered repo a delayed head keeps the jobs behind it pending until
    its time: nothing can happen before the clock moves, so the scheduler is idle."""
    clock = ManualClock()
    sched, ran = _scheduler(clock, repo_modes={"free": "mutex"})
    with sched:
        head = sched.submit("work", "head", repo="held", delay=60)
        behind = sched.submit("work", "behind", repo="held")
        urgent = sched.submit("work", "urgent", repo="held", priority=1)  # goes ahead: runs
        sched.submit("work", "later", repo="free", delay=60)
        free = sched.submit("work", "free", repo="free")  # mutex: not held back
        wait_idle(sched, timeout=WAIT)
        assert urgent.done()
        assert free.done()
        assert behind.status is JobStatus.PENDING
        assert head.status is JobStatus.SCHEDULED
        clock.advance(60)
        wait_idle(sched, timeout=WAIT)
        assert ran[:2] == ["urgent", "free"] or ran[:2] == ["free", "urgent"]
        assert ran.index("head") < ran.index("behind")
        assert len(ran) == 5


def test_a_follow_up_is_waited_for_once_its_job_completes() -> None:
    clock = ManualClock()
    sched, ran = _scheduler(clock)
    with sched:
        first = sched.submit("work", "first", delay=10)
        then = first.then("work")
        wait_idle(sched, timeout=WAIT)  # the follow-up waits for a job that waits
        assert then.status is JobStatus.SCHEDULED
        clock.advance(10)
        wait_idle(sched, timeout=WAIT)
        assert then.status is JobStatus.COMPLETED
        assert ran == ["first", "first"]


def test_a_schedule_is_waited_for_when_it_is_due() -> None:
    clock = ManualClock()
    sched, ran = _scheduler(clock)
    with sched:
        ticks = sched.every("work", 60, "tick")  # first fire: now
        wait_idle(sched, timeout=WAIT)
        assert ticks.info().fires == 1
        assert ran == ["tick"]
        clock.advance(60)
        wait_idle(sched, timeout=WAIT)
        assert ticks.info().fires == 2
        assert ran == ["tick", "tick"]
        ticks.pause()
        clock.advance(60)
        wait_idle(sched, timeout=WAIT)  # paused: not due, not waited for
        assert ran == ["tick", "tick"]


def test_done_callbacks_have_run() -> None:
    sched, _ = _scheduler()
    called: list[str] = []

    def slow_callback(handle: Any) -> None:
        threading.Event().wait(0.05)  # the callback's own work
        called.append(handle.id)

    with sched:
        handles = [sched.submit("work", n) for n in range(3)]
        for handle in handles:
            handle.add_done_callback(slow_callback)
        wait_idle(sched, timeout=WAIT)
        assert sorted(called) == sorted(h.id for h in handles)


def test_work_a_callback_submits_is_waited_for() -> None:
    sched, ran = _scheduler()
    with sched:
        first = sched.submit("work", "first")
        first.add_done_callback(lambda _handle: sched.submit("work", "from the callback"))
        wait_idle(sched, timeout=WAIT)
        assert ran == ["first", "from the callback"]


def test_callbacks_of_jobs_a_callback_ran_have_run() -> None:
    """A callback submits a job and waits for it; that job's own callback is
    queued behind everything ``wait_idle`` waited for the first time round."""
    sched, ran = _scheduler()
    called: list[str] = []

    def second_callback(handle: Any) -> None:
        threading.Event().wait(0.05)  # the callback's own work
        called.append("second")

    def first_callback(handle: Any) -> None:
        threading.Event().wait(0.05)  # the callback's own work, before it submits
        second = sched.submit("work", "second")
        second.add_done_callback(second_callback)
        second.wait(WAIT)

    with sched:
        sched.submit("work", "first").add_done_callback(first_callback)
        wait_idle(sched, timeout=WAIT)
        assert ran == ["first", "second"]
        assert called == ["second"]


def test_raises_timeout_error_naming_what_is_busy() -> None:
    sched = Scheduler(workers=1)
    release = threading.Event()

    @sched.handler("block")
    def block(ctx, payload):
        release.wait(WAIT)

    with sched:
        handle = sched.submit("block")
        try:
            with pytest.raises(TimeoutError, match=f"job {handle.id} \\(block\\)"):
                wait_idle(sched, timeout=0.05)
        finally:
            release.set()
        wait_idle(sched, timeout=WAIT)
        assert handle.done()


def test_a_scheduler_not_running_is_idle() -> None:
    sched, _ = _scheduler()
    wait_idle(sched, timeout=0)  # never started
    with sched:
        handle = sched.submit("work", 1)
    wait_idle(sched, timeout=0)  # shut down: every job resolved
    assert handle.done()


@pytest.mark.parametrize(
    ("target", "timeout"),
    [(object(), 1.0), (None, 1.0), ("sched", -1), ("sched", "1"), ("sched", float("nan"))],
)
def test_bad_arguments_raise_invalid_argument(target: Any, timeout: Any) -> None:
    sched = Scheduler(workers=1)
    with pytest.raises(InvalidArgument):
        wait_idle(sched if target == "sched" else target, timeout=timeout)


def test_the_hook_reads_what_wait_idle_needs() -> None:
    """The internals `wait_idle` reads (`actors.testing._hook`) are where it
    looks for them: a change inside the scheduler that moved one fails here."""
    clock = ManualClock(start=100.0)
    sched, _ = _scheduler(clock, repo_modes={"m": "mutex"})
    hook = _hook(sched)
    assert hook.clock is clock
    assert hook.ordered("any")
    assert not hook.ordered("m")
    ran = threading.Event()
    with sched:
        handle = sched.submit("work", None, delay=5)
        [state] = hook.unfinished()
        assert state.job.id == handle.id
        assert state.status is JobStatus.SCHEDULED
        assert state.job.not_before == 105.0
        hook.run_after_callbacks(lambda _: ran.set())
        assert ran.wait(WAIT)
        handle.cancel()  # never due on this clock: shutdown would wait for it


# --- due times, deterministically --------------------------------------------------------


class _HeldClock:
    """A manual clock whose moves reach the scheduler only on `tell`.

    Between `advance` and `tell` a delayed job is due but its Timer has not
    heard: the job is still ``scheduled``, and ``wait_idle`` must see it due.
    """

    def __init__(self) -> None:
        self._inner = ManualClock()
        self._told: list[Callable[[], None]] = []

    def now(self) -> float:
        return self._inner.now()

    def wall(self) -> float:
        return self._inner.wall()

    def wait_hint(self, due: float) -> float | None:
        return self._inner.wait_hint(due)

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        self._told.append(callback)
        return lambda: self._told.remove(callback)

    def advance(self, seconds: float) -> None:
        self._inner.advance(seconds)  # nobody subscribed to the inner clock

    def tell(self) -> None:
        for callback in list(self._told):
            callback()


def test_a_due_job_the_timer_has_not_acted_on_is_waited_for() -> None:
    clock = _HeldClock()
    sched, ran = _scheduler(clock)  # type: ignore[arg-type]
    with sched:
        handle = sched.submit("work", "due", delay=60)
        wait_idle(sched, timeout=WAIT)
        clock.advance(60)
        assert handle.status is JobStatus.SCHEDULED  # due, but the Timer sleeps on
        returned = threading.Event()
        waiter = threading.Thread(target=lambda: (wait_idle(sched, timeout=WAIT), returned.set()))
        waiter.start()
        try:
            assert quiet(returned), "wait_idle returned with a due job not yet run"
        finally:
            clock.tell()
            waiter.join(WAIT)
        assert returned.is_set()
        assert handle.status is JobStatus.COMPLETED
        assert ran == ["due"]


def test_a_due_schedule_the_timer_has_not_acted_on_is_waited_for() -> None:
    clock = _HeldClock()
    sched, ran = _scheduler(clock)  # type: ignore[arg-type]
    with sched:
        ticks = sched.every("work", 60, "tick")  # first fire: now
        wait_idle(sched, timeout=WAIT)
        assert ran == ["tick"]
        clock.advance(60)  # the second fire is due; no job exists for it yet
        returned = threading.Event()
        waiter = threading.Thread(target=lambda: (wait_idle(sched, timeout=WAIT), returned.set()))
        waiter.start()
        try:
            assert quiet(returned), "wait_idle returned with a schedule due"
        finally:
            clock.tell()
            waiter.join(WAIT)
        assert returned.is_set()
        assert ticks.info().fires == 2
        assert ran == ["tick", "tick"]


def test_a_due_job_behind_a_delayed_head_of_an_ordered_repo_is_idle() -> None:
    clock = ManualClock()
    sched, ran = _scheduler(clock)
    with sched:
        head = sched.submit("work", "head", repo="r", delay=60)
        second = sched.submit("work", "second", repo="r", delay=30)
        clock.advance(30)
        wait_idle(sched, timeout=WAIT)  # "second" is due, but its repo waits for "head"
        assert second.status is JobStatus.SCHEDULED
        clock.advance(30)
        wait_idle(sched, timeout=WAIT)
        assert (head.status, second.status) == (JobStatus.COMPLETED, JobStatus.COMPLETED)
        assert ran == ["head", "second"]


def test_a_follow_up_queued_behind_a_delayed_head_is_idle() -> None:
    clock = ManualClock()
    sched, ran = _scheduler(clock)
    with sched:
        head = sched.submit("work", "head", repo="r", delay=60)
        first = sched.submit("work", "first")
        then = first.then("work", repo="r")
        wait_idle(sched, timeout=WAIT)  # "then" was released, and waits in its repo
        assert first.status is JobStatus.COMPLETED
        assert then.status is not JobStatus.COMPLETED
        clock.advance(60)
        wait_idle(sched, timeout=WAIT)
        assert head.status is JobStatus.COMPLETED
        assert then.status is JobStatus.COMPLETED
        assert ran == ["first", "head", "first"]


# --- what counts as busy, case by case --------------------------------------------------


@dataclass
class _State:
    """What `_busy` reads of a job's state."""

    status: JobStatus
    job: Job


@dataclass
class _Scheduler:
    """What `_busy` asks a scheduler: jobs' parents (by id), and nothing about schedules."""

    parents: dict[str, str | None] = field(default_factory=dict)
    finished: set[str] = field(default_factory=set)
    running: bool = False

    def job(self, job_id: str) -> Any:
        if job_id not in self.parents and job_id not in self.finished:
            raise JobNotFound(job_id)
        status = JobStatus.COMPLETED if job_id in self.finished else JobStatus.PENDING
        return _Info(self.parents.get(job_id), status)


@dataclass
class _Info:
    parent: str | None
    status: JobStatus


_S, _P, _R, _W = JobStatus.SCHEDULED, JobStatus.PENDING, JobStatus.RETRYING, JobStatus.RUNNING
_seqs = iter(range(1, 1_000_000))


def _job(name: str, status: JobStatus, *, due: float | None = None, repo: str | None = None,
         priority: int = 5) -> _State:  # fmt: skip
    return _State(status, Job(name, "h", None, next(_seqs), priority, repo, not_before=due))


def _busy_of(states: list[_State], *, mutex: tuple[str, ...] = (), **scheduler: Any) -> str | None:
    clock = ManualClock(start=100.0)
    hook = _Hook(lambda: states, clock, lambda repo: repo not in mutex, lambda call: None)  # type: ignore[arg-type, return-value]
    return _busy(_Scheduler(**scheduler), hook)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("states", "busy_with"),
    [
        ([], None),
        ([_job("a", _W)], "a"),
        ([_job("a", _P)], "a"),
        ([_job("a", _S, due=150.0)], None),
        ([_job("a", _S, due=100.0)], "a"),
        ([_job("a", _R, due=150.0)], None),
        ([_job("a", _R, due=50.0)], "a"),
        ([_job("a", _R)], "a"),  # a retry at once: on its way
        # An ordered repo waits for its delayed head, and for a job awaiting its retry.
        ([_job("head", _S, due=150.0, repo="r"), _job("b", _P, repo="r")], None),
        ([_job("head", _S, due=150.0, repo="r"), _job("b", _S, due=90.0, repo="r")], None),
        ([_job("b", _P, repo="r"), _job("head", _R, due=150.0, repo="r")], None),
        # ... but not for a later job, nor in another repo, nor in a mutex repo.
        ([_job("b", _P, repo="r", priority=1), _job("head", _S, due=150.0, repo="r")], "b"),
        ([_job("b", _P, repo="r"), _job("head", _S, due=150.0, repo="r")], "b"),
        ([_job("head", _S, due=150.0, repo="r"), _job("b", _P, repo="other")], "b"),
        ([_job("head", _S, due=150.0, repo="m"), _job("b", _P, repo="m")], "b"),
    ],
)
def test_what_keeps_a_scheduler_busy(states: list[_State], busy_with: str | None) -> None:
    busy = _busy_of(states, mutex=("m",))
    if busy_with is None:
        assert busy is None
    else:
        assert busy is not None
        assert busy.startswith(f"job {busy_with} ")


def test_a_job_without_a_due_time_waits_for_its_parent_only_while_it_is_unfinished() -> None:
    waiting = [_job("child", _S), _job("parent", _S, due=150.0)]
    assert _busy_of(waiting, parents={"child": "parent", "parent": None}) is None
    released = [_job("child", _S)]
    busy = _busy_of(released, parents={"child": "parent"}, finished={"parent"})
    assert busy is not None
    assert busy.startswith("job child ")
    # Released, but queued behind a delayed head of its ordered repo: idle.
    behind = [_job("head", _S, due=150.0, repo="r"), _job("child", _S, repo="r")]
    assert _busy_of(behind, parents={"child": "parent"}, finished={"parent"}) is None
