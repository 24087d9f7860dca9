"""Async: ``async def`` handlers, and awaiting a handle from an event loop."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from actors import JobCancelled, JobContext, JobFailed, JobStatus, JobTimedOut, Scheduler
from tests.helpers import WAIT


class BoomError(Exception):
    """Raised by the test handlers."""


# --- async handlers ------------------------------------------------------------------------


def test_an_async_handler_runs_and_returns_its_result() -> None:
    sched = Scheduler(workers=2)
    seen: list[tuple[str, str | None, int]] = []

    @sched.handler("double")
    async def double(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(0.001)  # really awaits something on the worker's loop
        seen.append((ctx.job_id, ctx.repo, ctx.attempt))
        return {"doubled": [x * 2 for x in payload["xs"]]}

    with sched:
        handles = [sched.submit("double", {"xs": [n, n + 1]}, repo="r") for n in range(5)]
        results = [h.result(timeout=WAIT) for h in handles]
    assert results == [{"doubled": [2 * n, 2 * n + 2]} for n in range(5)]
    assert sorted(seen) == sorted((h.id, "r", 1) for h in handles)


def test_an_async_handler_error_is_retried_and_chained() -> None:
    sched = Scheduler(workers=1)
    raised: list[BoomError] = []

    @sched.handler("flaky", max_retries=2)
    async def flaky(ctx: JobContext, payload: None) -> None:
        await asyncio.sleep(0)
        raised.append(BoomError(f"attempt {ctx.attempt}"))
        raise raised[-1]

    with sched:
        h = sched.submit("flaky")
        with pytest.raises(JobFailed) as failed:
            h.result(timeout=WAIT)
        assert sched.stats().retried == 2
    assert [str(e) for e in raised] == ["attempt 1", "attempt 2", "attempt 3"]
    assert failed.value.__cause__ is raised[-1]
    assert h.info().attempts == 3


def test_an_async_handler_is_cancelled_for_real() -> None:
    inside = threading.Event()
    cancelled = threading.Event()
    sched = Scheduler(workers=1)

    @sched.handler("nap")
    async def nap(ctx: JobContext, payload: None) -> None:
        inside.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with sched:
        h = sched.submit("nap")
        assert inside.wait(WAIT)
        assert h.cancel() == "signalled"
        with pytest.raises(JobCancelled):
            h.result(timeout=WAIT)
    assert cancelled.is_set()
    assert h.status is JobStatus.CANCELLED


def test_one_worker_runs_async_and_sync_handlers_one_after_the_other() -> None:
    sched = Scheduler(workers=1)

    @sched.handler("async")
    async def async_(ctx: JobContext, payload: int) -> int:
        await asyncio.sleep(0)
        return payload + 1

    @sched.handler("sync")
    def sync(ctx: JobContext, payload: int) -> int:
        return payload - 1

    with sched:
        handles = [sched.submit("async" if n % 2 else "sync", n) for n in range(6)]
        assert [h.result(timeout=WAIT) for h in handles] == [
            n + 1 if n % 2 else n - 1 for n in range(6)
        ]


# --- awaiting a handle -----------------------------------------------------------------------


def test_awaiting_a_handle_does_not_block_the_event_loop() -> None:
    # The job can only finish once the ticker has ticked five times while the
    # test awaits the job: a blocking await would starve the ticker, and the
    # handler would give up waiting and report it.
    ticked_enough = threading.Event()
    sched = Scheduler(workers=1)

    @sched.handler("wait_for_ticks")
    def wait_for_ticks(ctx: JobContext, payload: None) -> bool:
        return ticked_enough.wait(WAIT)

    async def main() -> tuple[bool, int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.005)
                ticks += 1
                if ticks == 5:
                    ticked_enough.set()

        task = asyncio.create_task(ticker())
        try:
            result = await sched.submit("wait_for_ticks")
        finally:
            task.cancel()
        return result, ticks

    with sched:
        result, ticks = asyncio.run(main())
    assert result is True
    assert ticks >= 5


def test_awaiting_a_handle_returns_the_result_of_a_slow_job() -> None:
    sched = Scheduler(workers=2)

    @sched.handler("slow")
    async def slow(ctx: JobContext, payload: int) -> int:
        await asyncio.sleep(0.2)  # simulated work
        return payload * payload

    async def main() -> tuple[list[int], int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        try:
            results = await asyncio.gather(*(sched.submit("slow", n) for n in (3, 4)))
        finally:
            task.cancel()
        return list(results), ticks

    with sched:
        results, ticks = asyncio.run(main())
    assert results == [9, 16]
    assert ticks >= 3  # the loop kept running for the ~200ms the jobs took


def test_awaiting_a_finished_handle_returns_at_once() -> None:
    sched = Scheduler(workers=1)

    @sched.handler("echo")
    def echo(ctx: JobContext, payload: str) -> str:
        return payload[::-1]

    async def main(handle: Any) -> str:
        return await asyncio.wait_for(handle, WAIT)  # type: ignore[no-any-return]

    with sched:
        h = sched.submit("echo", "abc")
        assert h.result(timeout=WAIT) == "cba"
        assert asyncio.run(main(h)) == "cba"


def test_awaiting_a_failed_handle_raises_like_result() -> None:
    sched = Scheduler(workers=1)
    raised: list[BoomError] = []

    @sched.handler("boom")
    def boom(ctx: JobContext, payload: str) -> None:
        raised.append(BoomError(payload))
        raise raised[-1]

    async def main() -> None:
        await sched.submit("boom", "kaput")

    with sched, pytest.raises(JobFailed) as failed:
        asyncio.run(main())
    assert failed.value.__cause__ is raised[0]
    assert failed.value.error is not None
    assert failed.value.error.message == "kaput"


def test_awaiting_a_timed_out_handle_raises_job_timed_out() -> None:
    sched = Scheduler(workers=1)

    @sched.handler("nap", timeout=0.05)
    async def nap(ctx: JobContext, payload: None) -> None:
        await asyncio.sleep(60)

    async def main() -> None:
        await sched.submit("nap")

    with sched, pytest.raises(JobTimedOut):
        asyncio.run(main())


def test_awaiting_a_cancelled_handle_raises_job_cancelled() -> None:
    inside = threading.Event()
    sched = Scheduler(workers=1)

    @sched.handler("wait")
    def wait(ctx: JobContext, payload: None) -> None:
        inside.set()
        ctx.wait(WAIT)

    async def main() -> str:
        h = sched.submit("wait")
        await asyncio.to_thread(inside.wait, WAIT)
        cancelled = h.cancel()
        try:
            await h
        except JobCancelled:
            return str(cancelled)
        return "not cancelled"

    with sched:
        assert asyncio.run(main()) == "signalled"


def test_a_job_outliving_an_abandoned_await_does_not_crash_the_scheduler() -> None:
    # The abandoned await leaves its wake-up registered on a loop that is closed
    # by the time the job finishes: waking it must not harm the scheduler.
    release = threading.Event()
    sched = Scheduler(workers=1)

    @sched.handler("job")
    def job(ctx: JobContext, payload: int) -> int:
        release.wait(WAIT)
        return payload * 2

    async def give_up(handle: Any) -> bool:
        try:
            await asyncio.wait_for(handle, 0.05)
        except TimeoutError:
            return True
        return False

    with sched:
        try:
            h = sched.submit("job", 21)
            assert asyncio.run(give_up(h))  # gave up waiting; that loop is closed now
        finally:
            release.set()
        assert h.result(timeout=WAIT) == 42
        assert sched.submit("job", 1).result(timeout=WAIT) == 2
        assert sched.running
