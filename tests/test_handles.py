"""Tests for `JobHandle` and `JobInfo`: one terminal state per job (rule 5, docs/guarantees.md)."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter

import pytest

from actors import (
    CancelResult,
    JobCancelled,
    JobFailed,
    JobHandle,
    JobInfo,
    JobStatus,
    ManualClock,
    Scheduler,
)


class Boom(Exception):
    """A handler error the tests raise on purpose."""


def test_completed_job_resolves_with_its_result_and_fields() -> None:
    sched = Scheduler(workers=1)

    @sched.handler("add")
    def add(ctx, payload):
        return {"sum": payload["a"] + payload["b"], "attempt": ctx.attempt}

    with sched:
        handle = sched.submit("add", {"a": 2, "b": 3}, repo="r1")
        assert handle.result(timeout=10) == {"sum": 5, "attempt": 1}
        info = sched.job(handle.id)

    assert isinstance(handle, JobHandle)
    assert handle.done()
    assert handle.status is JobStatus.COMPLETED
    assert isinstance(info, JobInfo)
    assert info.id == handle.id
    assert info.handler == "add"
    assert info.repo == "r1"
    assert info.status is JobStatus.COMPLETED
    assert info.attempts == 1
    assert info.result == {"sum": 5, "attempt": 1}
    assert info.error is None
    assert info.payload == {"a": 2, "b": 3}
    assert info.started_at is not None
    assert info.finished_at is not None
    assert info.submitted_at <= info.started_at <= info.finished_at
    assert info.queue_wait is not None
    assert 0.0 <= info.queue_wait <= info.finished_at - info.submitted_at
    assert handle.info() == info


def test_failed_job_resolves_failed_with_error_and_counts_every_attempt() -> None:
    sched = Scheduler(workers=1)
    calls = Counter[str]()

    @sched.handler("flaky", max_retries=2)
    def flaky(ctx, payload):
        calls["flaky"] += 1
        raise Boom(f"attempt {ctx.attempt}")

    with sched:
        handle = sched.submit("flaky", None)
        with pytest.raises(JobFailed) as caught:
            handle.result(timeout=10)
        info = handle.info()

    assert calls["flaky"] == 3
    assert caught.value.job_id == handle.id
    assert isinstance(caught.value.__cause__, Boom)
    assert caught.value.error is not None
    assert caught.value.error.type.endswith("Boom")
    assert caught.value.error.message == "attempt 3"
    assert info.status is JobStatus.FAILED
    assert info.attempts == 3
    assert info.result is None
    assert info.error == caught.value.error
    assert info.finished_at is not None


def test_retried_job_that_succeeds_reports_all_attempts() -> None:
    sched = Scheduler(workers=1)

    @sched.handler("third_time", max_retries=5)
    def third_time(ctx, payload):
        if ctx.attempt < 3:
            raise Boom("not yet")
        return ctx.attempt

    with sched:
        handle = sched.submit("third_time")
        assert handle.result(timeout=10) == 3
    info = handle.info()
    assert info.status is JobStatus.COMPLETED
    assert info.attempts == 3
    assert info.error is None


def test_result_with_short_timeout_raises_builtin_timeout_and_job_goes_on() -> None:
    sched = Scheduler(workers=1)
    started, release = threading.Event(), threading.Event()

    @sched.handler("slow")
    def slow(ctx, payload):
        started.set()
        release.wait(10)
        return "done"

    with sched:
        handle = sched.submit("slow")
        assert started.wait(10)
        with pytest.raises(TimeoutError):
            handle.result(timeout=0.01)
        assert not handle.wait(0.01)
        assert not handle.done()
        assert handle.status is JobStatus.RUNNING
        assert sched.job(handle.id).status is JobStatus.RUNNING
        release.set()
        assert handle.result(timeout=10) == "done"
    assert handle.status is JobStatus.COMPLETED


def test_waiting_job_has_no_start_time_yet() -> None:
    sched = Scheduler(workers=1)
    started, release = threading.Event(), threading.Event()

    @sched.handler("block")
    def block(ctx, payload):
        started.set()
        release.wait(10)

    @sched.handler("noop")
    def noop(ctx, payload):
        return None

    with sched:
        first = sched.submit("block")
        assert started.wait(10)
        queued = sched.submit("noop")
        info = queued.info()
        assert info.status is JobStatus.PENDING
        assert info.started_at is None
        assert info.finished_at is None
        assert info.queue_wait is None
        assert info.attempts == 0
        release.set()
        first.result(timeout=10)
        queued.result(timeout=10)
    assert queued.info().queue_wait is not None


def test_done_callback_is_called_exactly_once_per_registration() -> None:
    sched = Scheduler(workers=1)
    release = threading.Event()

    @sched.handler("block")
    def block(ctx, payload):
        release.wait(10)
        return 7

    seen: list[tuple[str, JobHandle, JobStatus]] = []
    lock = threading.Lock()
    called = {"before": threading.Event(), "after": threading.Event()}

    def record(tag: str):
        def callback(handle: JobHandle) -> None:
            with lock:
                seen.append((tag, handle, handle.status))
            called[tag].set()

        return callback

    with sched:
        handle = sched.submit("block")
        handle.add_done_callback(record("before"))
        assert not seen
        release.set()
        assert handle.result(timeout=10) == 7
        assert called["before"].wait(10)
        handle.add_done_callback(record("after"))  # already resolved: called at once
        assert called["after"].is_set()
        # Once more through other paths that could re-resolve the job.
        handle.cancel()
        handle.result(timeout=10)

    assert sorted(tag for tag, _, _ in seen) == ["after", "before"]
    assert all(h == handle for _, h, _ in seen)
    assert all(status is JobStatus.COMPLETED for _, _, status in seen)


def test_done_callbacks_fire_once_for_each_terminal_state() -> None:
    clock = ManualClock()
    sched = Scheduler(workers=2, clock=clock)

    @sched.handler("ok")
    def ok(ctx, payload):
        return payload

    @sched.handler("bad")
    def bad(ctx, payload):
        raise Boom("no")

    calls = Counter[str]()
    lock = threading.Lock()
    all_done = threading.Event()

    def callback(handle: JobHandle) -> None:
        with lock:
            calls[handle.id] += 1
            if len(calls) == 3:
                all_done.set()

    with sched:
        handles = [
            sched.submit("ok", 1),
            sched.submit("bad", 2),
            sched.submit("ok", 3, delay=100),
        ]
        for h in handles:
            h.add_done_callback(callback)
        handles[2].cancel()
        assert all(h.wait(10) for h in handles)
        assert all_done.wait(10)

    assert [h.status for h in handles] == [
        JobStatus.COMPLETED,
        JobStatus.FAILED,
        JobStatus.CANCELLED,
    ]
    assert calls == Counter({h.id: 1 for h in handles})


def test_every_handle_resolves_exactly_once_under_load() -> None:
    sched = Scheduler(workers=4)

    @sched.handler("mixed", max_retries=1)
    def mixed(ctx, payload):
        if payload % 3 == 0:
            raise Boom(str(payload))
        return payload

    resolutions = Counter[str]()
    lock = threading.Lock()

    def callback(handle: JobHandle) -> None:
        with lock:
            resolutions[handle.id] += 1

    with sched:
        handles = []
        for i in range(300):
            h = sched.submit("mixed", i, repo=f"r{i % 7}" if i % 2 else None)
            h.add_done_callback(callback)
            handles.append(h)
        for h in handles[::5]:
            h.cancel()
        assert all(h.wait(10) for h in handles)
    # Shut down: the threads that run callbacks are joined, so every one has run.
    assert set(resolutions) == {h.id for h in handles}
    assert set(resolutions.values()) == {1}
    statuses = Counter(h.status for h in handles)
    assert sum(statuses.values()) == 300
    assert set(statuses) <= {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED}
    stats = sched.stats()
    assert stats.completed == statuses[JobStatus.COMPLETED]
    assert stats.failed == statuses[JobStatus.FAILED]
    assert stats.cancelled == statuses[JobStatus.CANCELLED]


def test_two_handles_of_one_idempotent_job_compare_equal() -> None:
    sched = Scheduler(workers=1)
    release = threading.Event()

    @sched.handler("block")
    def block(ctx, payload):
        release.wait(10)
        return "once"

    @sched.handler("noop")
    def noop(ctx, payload):
        return None

    with sched:
        first = sched.submit("block", idempotency_key="k")
        second = sched.submit("block", idempotency_key="k")
        other = sched.submit("noop")
        assert first == second
        assert first is not second
        assert hash(first) == hash(second)
        assert len({first, second}) == 1
        assert first != other
        assert first != first.id
        release.set()
        assert second.result(timeout=10) == "once"
        assert first.done()


def test_cancelled_handle_raises_job_cancelled() -> None:
    clock = ManualClock()
    sched = Scheduler(workers=1, clock=clock)

    @sched.handler("later")
    def later(ctx, payload):
        return None

    with sched:
        handle = sched.submit("later", delay=60)
        assert handle.status is JobStatus.SCHEDULED
        handle.cancel()
        with pytest.raises(JobCancelled) as caught:
            handle.result(timeout=10)
    assert caught.value.job_id == handle.id
    assert handle.status is JobStatus.CANCELLED
    info = handle.info()
    assert info.error is not None
    assert info.attempts == 0
    assert info.started_at is None
    assert info.finished_at is not None


def test_await_handle_gives_result_without_blocking_the_loop() -> None:
    sched = Scheduler(workers=1)
    release = threading.Event()

    @sched.handler("block")
    def block(ctx, payload):
        release.wait(10)
        return payload * 2

    @sched.handler("bad")
    def bad(ctx, payload):
        raise Boom("async")

    async def main(good: JobHandle, failing: JobHandle) -> object:
        # The loop keeps running while the job is blocked: this task releases it.
        async def unblock() -> None:
            await asyncio.sleep(0)
            release.set()

        task = asyncio.create_task(unblock())
        value = await asyncio.wait_for(good, 5)
        await task
        with pytest.raises(JobFailed):
            await asyncio.wait_for(failing, 5)
        return value

    with sched:
        good = sched.submit("block", 21)
        failing = sched.submit("bad")
        assert asyncio.run(main(good, failing)) == 42


# --- calling back into the scheduler from a done callback ------------------------------


@pytest.fixture
def short_asks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make a question to the Dispatcher time out after 0.5 s instead of 10 s, so a
    deadlocked ask shows up quickly."""
    monkeypatch.setattr(Scheduler, "_ask_timeout", 0.5)


@pytest.mark.usefixtures("short_asks")
def test_done_callback_can_cancel_another_job() -> None:
    clock = ManualClock()
    sched = Scheduler(workers=1, clock=clock)

    @sched.handler("bad")
    def bad(ctx, payload):
        raise Boom("first failure")

    @sched.handler("ok")
    def ok(ctx, payload):
        return payload

    outcome: list[object] = []
    called = threading.Event()

    sched.start()
    try:
        sibling = sched.submit("ok", "sibling", delay=100)
        failing = sched.submit("bad")

        def cancel_sibling(_handle: JobHandle) -> None:
            try:
                outcome.append(sibling.cancel())
            except BaseException as exc:
                outcome.append(exc)
            finally:
                called.set()

        failing.add_done_callback(cancel_sibling)
        assert called.wait(10)
        assert outcome == [CancelResult.CANCELLED]
        assert sibling.status is JobStatus.CANCELLED
    finally:
        sched.shutdown(graceful=False)


@pytest.mark.usefixtures("short_asks")
def test_done_callback_sees_real_stats() -> None:
    sched = Scheduler(workers=1)

    @sched.handler("ok")
    def ok(ctx, payload):
        return payload

    seen: list[int] = []
    called = threading.Event()

    def read_stats(_handle: JobHandle) -> None:
        try:
            seen.append(sched.stats().submitted)
        finally:
            called.set()

    with sched:
        sched.submit("ok", 1).result(timeout=10)
        second = sched.submit("ok", 2)
        second.add_done_callback(read_stats)
        assert called.wait(10)
    assert seen == [2]


@pytest.mark.parametrize("kind", [SystemExit, KeyboardInterrupt, GeneratorExit])
def test_done_callback_raising_a_base_exception_is_logged_and_later_ones_run(
    kind: type[BaseException], caplog: pytest.LogCaptureFixture
) -> None:
    """A callback that raises SystemExit (or any BaseException) on the callback
    thread must not end it: every later callback, of any job, still runs."""
    caplog.set_level(logging.ERROR, logger="postroom")
    sched = Scheduler(workers=1)
    release = threading.Event()

    @sched.handler("block")
    def block(ctx, payload):
        release.wait(10)
        return payload

    later = threading.Event()

    def explode(_handle: JobHandle) -> None:
        raise kind("from a callback")

    with sched:
        first = sched.submit("block", 1)
        second = sched.submit("block", 2)
        # Both unfinished: the callbacks go to the callback thread, in order.
        first.add_done_callback(explode)
        second.add_done_callback(lambda _handle: later.set())
        release.set()
        assert second.result(timeout=10) == 2
        assert later.wait(10), "the callback thread died with the first callback"
    mine = [r for r in caplog.records if r.name.startswith("postroom.")]
    [record] = [r for r in mine if first.id in r.getMessage()]
    assert record.exc_info is not None
    assert record.exc_info[0] is kind
