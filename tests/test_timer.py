"""Timers (rule 11, docs/guarantees.md): nothing delayed starts or fires before its due time."""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from actors import JobContext, JobStatus, ManualClock, MonotonicClock, RetryPolicy, Scheduler
from actors._timer.timer import Timer, TimerGauge
from actors.messages import After, CancelTimer, Fire, Forget
from tests.helpers import WAIT, Collector, Runs, barrier, collector, quiet, wait_until

# --- delayed jobs -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("repo", "mode"),
    [(None, "ordered"), ("r", "ordered"), ("r", "mutex")],
    ids=["no-repo", "ordered-repo", "mutex-repo"],
)
def test_a_delayed_job_does_not_start_before_its_due_time(repo: str | None, mode: str) -> None:
    clock = ManualClock(start=100.0)
    runs = Runs()
    sched = Scheduler(workers=2, clock=clock, repo_mode=mode)  # type: ignore[arg-type]

    @sched.handler("job")
    def job(ctx: JobContext, payload: str) -> float:
        with runs.run(payload, ctx.repo):
            return clock.now()

    with sched:
        h = sched.submit("job", "delayed", repo=repo, delay=10)
        assert h.status is JobStatus.SCHEDULED
        assert sched.job(h.id).status is JobStatus.SCHEDULED
        clock.advance(9.99)
        assert quiet(runs.started("delayed"))
        assert h.status is JobStatus.SCHEDULED
        clock.advance(0.02)
        started_at = h.result(timeout=WAIT)
    assert started_at >= 110.0
    assert h.info().attempts == 1


def test_delayed_jobs_start_one_by_one_as_their_times_come() -> None:
    clock = ManualClock()
    runs = Runs()
    sched = Scheduler(workers=2, clock=clock)

    @sched.handler("job")
    def job(ctx: JobContext, payload: str) -> float:
        with runs.run(payload):
            return clock.now()

    with sched:
        delays = {"three": 3, "one": 1, "two": 2}
        handles = {label: sched.submit("job", label, delay=d) for label, d in delays.items()}
        assert quiet(runs.started("one"))
        for now, label in [(1, "one"), (2, "two"), (3, "three")]:
            clock.advance(1)
            assert handles[label].result(timeout=WAIT) == now
            later = [other for other, d in delays.items() if d > now]
            assert all(handles[other].status is JobStatus.SCHEDULED for other in later)
    assert runs.order == ["one", "two", "three"]


def test_a_zero_delay_runs_at_once() -> None:
    clock = ManualClock()
    sched = Scheduler(workers=1, clock=clock)

    @sched.handler("job")
    def job(ctx: JobContext, payload: int) -> int:
        return payload + 1

    with sched:
        h = sched.submit("job", 1, delay=0)
        assert h.result(timeout=WAIT) == 2


def test_a_delayed_job_can_be_cancelled_before_it_is_due() -> None:
    clock = ManualClock()
    runs = Runs()
    sched = Scheduler(workers=1, clock=clock)

    @sched.handler("job")
    def job(ctx: JobContext, payload: str) -> str:
        with runs.run(payload):
            return payload

    with sched:
        cancelled = sched.submit("job", "cancelled", delay=5)
        kept = sched.submit("job", "kept", delay=5)
        assert cancelled.cancel() == "cancelled"
        clock.advance(5)
        assert kept.result(timeout=WAIT) == "kept"
        assert cancelled.status is JobStatus.CANCELLED
    assert runs.order == ["kept"]


# --- the Timer actor ------------------------------------------------------------------------


@pytest.fixture
def timer() -> Iterator[tuple[Any, Any, queue.Queue[Any], ManualClock]]:
    """A Timer on a manual clock, firing at a collector: (timer, target, fires, clock)."""
    clock = ManualClock()
    with collector() as (target, fires):
        spawned = Timer.spawn(clock, target)
        try:
            yield spawned.ref, target, fires, clock
        finally:
            spawned.ref.stop(block=True, timeout=WAIT)
            spawned.thread.join(WAIT)


def _drain(fires: queue.Queue[Any]) -> list[Any]:
    out = []
    while True:
        try:
            out.append(fires.get_nowait())
        except queue.Empty:
            return out


def test_timer_fires_in_due_order_never_early_and_never_a_cancelled_token(
    timer: tuple[Any, Any, queue.Queue[Any], ManualClock],
) -> None:
    ref, target, fires, clock = timer
    for token, due, key in [(1, 5.0, "a"), (2, 3.0, "b"), (3, 4.0, "c"), (4, 4.5, "d")]:
        ref.tell(After(token, due, "start", key))
    ref.tell(CancelTimer(3))
    barrier(ref)
    assert ref.proxy().pending.get(timeout=WAIT) == 3

    clock.advance(2.9)
    barrier(ref)
    barrier(target)
    with pytest.raises(queue.Empty):
        fires.get(timeout=0.05)

    clock.advance(7.1)  # everything is due at once: they fire earliest first
    got = [fires.get(timeout=WAIT) for _ in range(3)]
    assert got == [Fire(2, "start", "b"), Fire(4, "start", "d"), Fire(1, "start", "a")]
    barrier(ref)
    barrier(target)
    assert _drain(fires) == []
    assert ref.proxy().pending.get(timeout=WAIT) == 0


def test_timer_fires_each_entry_only_once_its_due_time_is_reached(
    timer: tuple[Any, Any, queue.Queue[Any], ManualClock],
) -> None:
    ref, target, fires, clock = timer
    ref.tell(After(1, 1.0, "retry", "x"))
    ref.tell(After(2, 2.0, "deadline", "y", attempt=3))
    barrier(ref)
    clock.advance(0.999)
    barrier(ref)
    barrier(target)
    assert _drain(fires) == []
    clock.advance(0.001)
    assert fires.get(timeout=WAIT) == Fire(1, "retry", "x")
    barrier(ref)
    barrier(target)
    assert _drain(fires) == []
    clock.advance(1)
    assert fires.get(timeout=WAIT) == Fire(2, "deadline", "y", 3)


def test_timer_fires_an_entry_that_is_already_due_at_once(
    timer: tuple[Any, Any, queue.Queue[Any], ManualClock],
) -> None:
    ref, _, fires, clock = timer
    clock.advance(50)
    ref.tell(After(9, 10.0, "tick", "repo"))
    assert fires.get(timeout=WAIT) == Fire(9, "tick", "repo")


def test_timer_forget_drops_every_entry(
    timer: tuple[Any, Any, queue.Queue[Any], ManualClock],
) -> None:
    ref, target, fires, clock = timer
    ref.tell(After(1, 1.0, "start", "a"))
    ref.tell(After(2, 2.0, "start", "b"))
    ref.tell(Forget())
    ref.tell(After(3, 3.0, "start", "c"))
    barrier(ref)
    clock.advance(10)
    assert fires.get(timeout=WAIT) == Fire(3, "start", "c")
    barrier(ref)
    barrier(target)
    assert _drain(fires) == []


class _Stamped(queue.Queue[Any]):
    """A queue that notes the clock time each item arrives at."""

    def __init__(self, clock: MonotonicClock) -> None:
        super().__init__()
        self.clock = clock

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        super().put((self.clock.now(), item), block, timeout)


def test_timer_on_real_time_never_fires_before_the_due_time() -> None:
    clock = MonotonicClock()
    fires = _Stamped(clock)
    spawned_target = Collector.spawn(fires)
    spawned = Timer.spawn(clock, spawned_target.ref)
    try:
        due = {token: clock.now() + 0.02 * token for token in (3, 1, 2)}
        for token, at in due.items():
            spawned.ref.tell(After(token, at, "start", str(token)))
        got = [fires.get(timeout=WAIT) for _ in range(3)]
    finally:
        for actor in (spawned, spawned_target):
            actor.ref.stop(block=True, timeout=WAIT)
            actor.thread.join(WAIT)
    assert [fire.token for _, fire in got] == [1, 2, 3]
    assert all(received_at >= due[fire.token] for received_at, fire in got)


def test_cancelled_entries_do_not_pile_up_and_never_fire(
    timer: tuple[Any, Any, queue.Queue[Any], ManualClock],
) -> None:
    # Deadlines are armed and cancelled once per timed job: the cancelled ones
    # must not accumulate in the Timer's structure until their due time.
    ref, target, fires, clock = timer
    for token in range(1, 20_001):
        ref.tell(After(token, 600.0 + token, "deadline", f"job-{token}", 1))
        if token % 100:
            ref.tell(CancelTimer(token))  # 99 of every 100 are cancelled
    barrier(ref)
    assert ref.proxy().pending.get(timeout=WAIT) == 200
    stored = ref.proxy().stored.get(timeout=WAIT)
    assert stored <= 200 + 1024 + 1, stored  # live entries plus at most one batch of stale
    clock.advance(600.0 + 20_000)
    barrier(ref)
    barrier(target)
    fired = [m.key for m in _drain(fires)]
    assert fired == [f"job-{t}" for t in range(100, 20_001, 100)]


# --- far-future times -------------------------------------------------------------------


def _far_future_waits(sched: Scheduler, how: str) -> None:
    """Arm one entry so far ahead that its wait is past `threading.TIMEOUT_MAX`."""
    if how == "delay":
        assert sched.submit("ok", delay=1e10).status is JobStatus.SCHEDULED
    elif how == "timeout":
        assert sched.submit("ok", timeout=1e10).result(timeout=WAIT) == "ok"
    elif how == "at":
        sched.at("ok", datetime(2400, 1, 1, tzinfo=UTC))
    elif how == "every":
        sched.every("ok", 1e10)
    else:
        policy = RetryPolicy.fixed(math.inf) if how == "fixed" else RetryPolicy.linear(math.inf)
        handle = sched.submit("fail_once", max_retries=1, retry=policy)
        wait_until(lambda: handle.status is JobStatus.RETRYING, "the job to wait for its retry")


@pytest.mark.parametrize("how", ["delay", "timeout", "at", "every", "fixed", "linear"])
def test_a_far_future_time_simply_waits_and_the_timer_keeps_firing(how: str) -> None:
    # A wait past threading.TIMEOUT_MAX once raised OverflowError in the Timer's
    # thread: it died, and no delayed job, timeout, retry or schedule fired again.
    sched = Scheduler(workers=2)
    failed_once: set[str] = set()

    @sched.handler("ok")
    def ok(ctx: JobContext, payload: Any) -> str:
        return "ok"

    @sched.handler("fail_once")
    def fail_once(ctx: JobContext, payload: Any) -> str:
        if ctx.job_id not in failed_once:
            failed_once.add(ctx.job_id)
            raise RuntimeError("first attempt fails")
        return "ok"

    sched.start()
    try:
        _far_future_waits(sched, how)
        # The Timer is alive and on time for everything after it. Twice: the
        # first may share the Timer's batch with the far entry and fire before
        # the Timer ever waits for the far one.
        for _ in range(2):
            soon = sched.submit("ok", delay=0.02)
            assert soon.result(timeout=WAIT) == "ok"
        assert sched.running
    finally:
        # The far entry cannot come due within any timeout: don't wait for it.
        sched.shutdown(graceful=False)


def test_huge_waits_of_callers_and_handlers_simply_wait() -> None:
    # Each of these once raised OverflowError: a lock wait takes at most
    # threading.TIMEOUT_MAX seconds.
    sched = Scheduler(workers=1)
    started = threading.Event()

    @sched.handler("sleepy")
    def sleepy(ctx: JobContext, payload: Any) -> bool:
        started.set()
        return ctx.wait(1e10)  # True: told to stop

    sched.start()
    try:
        handle = sched.submit("sleepy")
        assert started.wait(WAIT)
        handle.cancel()
        assert handle.wait(1e10)
        assert handle.status is JobStatus.CANCELLED
    finally:
        sched.shutdown(timeout=1e10)


def test_the_gauge_counts_entries_the_timer_has_not_taken_yet() -> None:
    # The Timer is not woken for an entry due after the one it waits for, nor
    # for a cancel (a hot-path saving): the gauge must count them anyway.
    clock = ManualClock()
    gauge = TimerGauge()
    with collector() as (target, _fires):
        spawned = Timer.spawn(clock, target, gauge=gauge)
        ref = spawned.ref
        try:
            ref.tell(After(1, 1.0, "start", "first"))
            barrier(ref)
            barrier(ref)  # the batch with the first barrier has ended: due 1.0 is armed
            assert gauge.entries == 1
            for token in range(2, 102):
                ref.tell(After(token, 2.0 + token, "start", f"job-{token}"))
            inbox = ref.actor_inbox
            assert not inbox.empty()  # the Timer sleeps on: the 100 are still queued
            assert gauge.entries == 101
            for token in (1, *range(2, 42), 999):  # 999: a stale token changes nothing
                ref.tell(CancelTimer(token))
            ref.tell(CancelTimer(2))  # twice: counted once
            assert not inbox.empty()
            assert gauge.entries == 60
            barrier(ref)  # now applied: the same count
            assert gauge.entries == 60
            assert ref.proxy().pending.get(timeout=WAIT) == 60
            ref.tell(Forget())
            ref.tell(After(500, 600.0, "start", "after-forget"))
            assert gauge.entries == 1
        finally:
            ref.stop(block=True, timeout=WAIT)
            spawned.thread.join(WAIT)
