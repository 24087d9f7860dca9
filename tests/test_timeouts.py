"""Timeouts (rule 6, docs/guarantees.md): a job past its deadline is told to stop and ends
failed, timed out."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from actors import (
    CancelResult,
    JobContext,
    JobFailed,
    JobStatus,
    JobTimedOut,
    ManualClock,
    RetryPolicy,
    Scheduler,
)
from tests.helpers import WAIT, Runs, quiet


def test_a_sync_handler_past_its_timeout_ends_timed_out() -> None:
    clock = ManualClock()
    seen: dict[str, object] = {}
    started, told = threading.Event(), threading.Event()
    sched = Scheduler(workers=1, clock=clock)

    @sched.handler("slow", timeout=30)
    def slow(ctx: JobContext, payload: None) -> str:
        seen["before"] = (ctx.cancelled, ctx.timed_out)
        started.set()
        while not ctx.cancelled:  # a loop that checks its signal now and then
            ctx.wait(0.01)
        seen["after"] = (ctx.cancelled, ctx.timed_out)
        told.set()
        return "returned normally, too late"

    with sched:
        h = sched.submit("slow")
        assert started.wait(WAIT)
        clock.advance(29.9)
        assert quiet(told)  # not told to stop before the deadline
        assert h.status is JobStatus.RUNNING
        clock.advance(0.1)
        with pytest.raises(JobTimedOut) as timed_out:
            h.result(timeout=WAIT)
        stats = sched.stats()

    assert seen == {"before": (False, False), "after": (True, True)}
    assert isinstance(timed_out.value, JobFailed)
    assert timed_out.value.error is not None
    assert timed_out.value.error.type == "postroom.JobTimedOut"
    info = h.info()
    assert info.status is JobStatus.FAILED
    assert info.attempts == 1
    assert (stats.failed, stats.completed, stats.cancelled) == (1, 0, 0)


def test_submit_timeout_overrides_the_handlers_and_ctx_wait_wakes_on_it() -> None:
    # Real time: a 0.2s timeout on a handler that would otherwise wait 60s.
    sched = Scheduler(workers=1)
    woke: list[bool] = []

    @sched.handler("sleepy", timeout=600)
    def sleepy(ctx: JobContext, payload: None) -> None:
        woke.append(ctx.wait(60))

    with sched:
        t0 = time.monotonic()
        h = sched.submit("sleepy", timeout=0.2)
        with pytest.raises(JobTimedOut):
            h.result(timeout=WAIT)
        elapsed = time.monotonic() - t0
    assert woke == [True]  # woken by the signal, not at the end of its 60s
    assert elapsed >= 0.2


@pytest.mark.parametrize("repo", [None, "r"])
def test_a_timed_out_attempt_is_retried_while_retries_are_left(repo: str | None) -> None:
    clock = ManualClock()
    calls: list[tuple[int, bool]] = []
    started = threading.Event()
    sched = Scheduler(workers=1, clock=clock)

    @sched.handler("slow", timeout=10, max_retries=2)
    def slow(ctx: JobContext, payload: int) -> int:
        if ctx.attempt == 1:
            started.set()
            ctx.wait(WAIT)
        calls.append((ctx.attempt, ctx.timed_out))
        return payload + ctx.attempt

    with sched:
        h = sched.submit("slow", 40, repo=repo)
        assert started.wait(WAIT)
        clock.advance(10)
        assert h.result(timeout=WAIT) == 42
        stats = sched.stats()
    assert calls == [(1, True), (2, False)]
    assert h.info().attempts == 2
    assert stats.retried == 1


def test_every_attempt_timing_out_fails_the_job_after_the_cap() -> None:
    sched = Scheduler(workers=1)
    attempts: list[int] = []

    @sched.handler("stuck", timeout=0.05, max_retries=2)
    def stuck(ctx: JobContext, payload: None) -> None:
        attempts.append(ctx.attempt)
        ctx.wait(WAIT)

    with sched:
        h = sched.submit("stuck")
        with pytest.raises(JobTimedOut):
            h.result(timeout=WAIT)
        stats = sched.stats()
    assert attempts == [1, 2, 3]
    assert h.info().attempts == 3
    assert (stats.retried, stats.failed) == (2, 1)


def test_an_async_handler_is_really_cancelled_at_its_timeout() -> None:
    cancelled = threading.Event()
    finished_sleep = threading.Event()
    sched = Scheduler(workers=1)

    @sched.handler("nap", timeout=0.2)
    async def nap(ctx: JobContext, payload: None) -> None:
        try:
            await asyncio.sleep(60)
            finished_sleep.set()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with sched:
        t0 = time.monotonic()
        h = sched.submit("nap")
        with pytest.raises(JobTimedOut) as timed_out:
            h.result(timeout=WAIT)
        elapsed = time.monotonic() - t0
    assert cancelled.is_set()
    assert not finished_sleep.is_set()
    assert 0.2 <= elapsed < WAIT  # stopped at its deadline, not after its 60s sleep
    assert timed_out.value.error is not None
    assert timed_out.value.error.type == "postroom.JobTimedOut"


def test_an_async_handler_that_swallows_the_cancel_still_times_out() -> None:
    clock = ManualClock()
    inside = threading.Event()
    seen: list[bool] = []
    sched = Scheduler(workers=1, clock=clock)

    @sched.handler("nap", timeout=5)
    async def nap(ctx: JobContext, payload: None) -> str:
        inside.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            seen.append(ctx.timed_out)
        return "swallowed"

    with sched:
        h = sched.submit("nap")
        assert inside.wait(WAIT)
        clock.advance(5)
        with pytest.raises(JobTimedOut):
            h.result(timeout=WAIT)
    assert seen == [True]


def test_a_job_within_its_timeout_completes() -> None:
    clock = ManualClock()
    sched = Scheduler(workers=1, clock=clock)

    @sched.handler("quick", timeout=5)
    def quick(ctx: JobContext, payload: int) -> int:
        return payload * 3

    with sched:
        h = sched.submit("quick", 14)
        assert h.result(timeout=WAIT) == 42
        # The deadline is withdrawn when the attempt ends: time passing later is harmless.
        clock.advance(100)
        assert h.status is JobStatus.COMPLETED


def test_a_timed_out_handler_holds_its_repo_until_it_returns() -> None:
    clock = ManualClock()
    runs = Runs()
    release = threading.Event()
    told = threading.Event()
    sched = Scheduler(workers=2, clock=clock)

    @sched.handler("stubborn", timeout=1)
    def stubborn(ctx: JobContext, payload: None) -> None:
        with runs.run("stubborn", ctx.repo):
            ctx.wait(WAIT)
            told.set()
            release.wait(WAIT)

    @sched.handler("next")
    def next_job(ctx: JobContext, payload: None) -> float:
        with runs.run("next", ctx.repo):
            return clock.now()

    with sched:
        try:
            a = sched.submit("stubborn", repo="r")
            b = sched.submit("next", repo="r")
            assert runs.started("stubborn").wait(WAIT)
            clock.advance(1)
            assert told.wait(WAIT)
            assert quiet(runs.started("next"))
            assert b.status is JobStatus.PENDING
        finally:
            release.set()
        with pytest.raises(JobTimedOut):
            a.result(timeout=WAIT)
        assert b.result(timeout=WAIT) == 1
    [first], [second] = runs.of("stubborn"), runs.of("next")
    assert second.start >= first.end


def test_raising_after_the_timeout_signal_still_reads_as_a_timeout() -> None:
    clock = ManualClock()
    started = threading.Event()
    sched = Scheduler(workers=1, clock=clock)

    @sched.handler("obedient", timeout=3)
    def obedient(ctx: JobContext, payload: None) -> None:
        started.set()
        ctx.wait(WAIT)
        ctx.raise_if_cancelled()  # raises JobCancelled: the attempt still timed out

    with sched:
        h = sched.submit("obedient")
        assert started.wait(WAIT)
        clock.advance(3)
        with pytest.raises(JobTimedOut):
            h.result(timeout=WAIT)
    assert h.status is JobStatus.FAILED


def test_a_timed_out_last_attempt_is_not_chained_to_an_earlier_attempts_error() -> None:
    # The handle chains the last attempt's exception; attempt 1's is not the cause
    # of attempt 2's timeout.
    clock = ManualClock()
    started = threading.Event()
    first_error = ValueError("attempt 1 failed")
    sched = Scheduler(workers=1, clock=clock)

    @sched.handler("job", max_retries=1, timeout=10)
    def job(ctx: JobContext, payload: None) -> None:
        if ctx.attempt == 1:
            raise first_error
        started.set()
        ctx.wait(WAIT)

    with sched:
        h = sched.submit("job")
        assert started.wait(WAIT)
        clock.advance(10)
        with pytest.raises(JobTimedOut) as timed_out:
            h.result(timeout=WAIT)
    assert timed_out.value.error is not None
    assert timed_out.value.error.type == "postroom.JobTimedOut"
    assert timed_out.value.__cause__ is not first_error


@pytest.mark.parametrize("repo", [None, "r"])
@pytest.mark.parametrize("ends", ["returns", "raises"])
def test_a_cancel_after_the_timeout_signal_leaves_a_timeout(repo: str | None, ends: str) -> None:
    # The timeout struck first: the attempt timed out, and the cancel that
    # lands while the handler is still winding down neither turns that into a
    # cancellation nor lets the timeout's retry through.
    clock = ManualClock()
    started, told, release = threading.Event(), threading.Event(), threading.Event()
    seen: list[tuple[int, bool]] = []
    sched = Scheduler(workers=1, clock=clock)

    @sched.handler("stubborn", timeout=1, max_retries=2, retry=RetryPolicy.fixed(0))
    def stubborn(ctx: JobContext, payload: None) -> str:
        seen.append((ctx.attempt, ctx.timed_out))
        if ctx.attempt > 1:
            return "retried"  # a retry that must not happen: it would complete
        started.set()
        ctx.wait(WAIT)
        seen.append((ctx.attempt, ctx.timed_out))
        told.set()
        assert release.wait(WAIT)
        if ends == "raises":
            ctx.raise_if_cancelled()
        return "returned after the signal"

    with sched:
        h = sched.submit("stubborn", repo=repo)
        assert started.wait(WAIT)
        clock.advance(1)
        assert told.wait(WAIT)
        try:
            assert h.cancel() is CancelResult.SIGNALLED  # still running: signalled
        finally:
            release.set()
        with pytest.raises(JobTimedOut) as caught:
            h.result(timeout=WAIT)
        stats = sched.stats()

    assert seen == [(1, False), (1, True)]
    assert caught.value.error is not None
    assert caught.value.error.type == "postroom.JobTimedOut"
    info = h.info()
    assert info.status is JobStatus.FAILED
    assert info.attempts == 1
    assert (stats.retried, stats.failed, stats.cancelled, stats.completed) == (0, 1, 0, 0)
