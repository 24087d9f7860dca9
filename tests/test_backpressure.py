"""Tests for back-pressure (rule 8, docs/guarantees.md) and the size of the worker pool
(`resize`)."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from actors import (
    CancelResult,
    JobCancelled,
    JobContext,
    JobFailed,
    JobHandle,
    JobNotFound,
    JobStatus,
    ManualClock,
    QueueFull,
    RetryPolicy,
    Scheduler,
    SchedulerClosed,
)
from actors._jobs.state import JobState
from tests.helpers import gated_scheduler, wait_until

# --- on_full="reject" ----------------------------------------------------------------


def test_reject_raises_queue_full_and_loses_nothing_accepted() -> None:
    sched, gate, calls = gated_scheduler(workers=1, max_pending=2, on_full="reject")
    with sched:
        first = sched.submit("block")
        assert gate.started.wait(10)
        second = sched.submit("work", "second")
        with pytest.raises(QueueFull):
            sched.submit("work", "third")
        with pytest.raises(QueueFull):
            sched.submit("work", "fourth", repo="r")
        stats = sched.stats()
        assert stats.rejected == 2
        assert stats.submitted == 2
        gate.release.set()
        assert first.result(timeout=10) == "released"
        assert second.result(timeout=10) == "second"
        # Room again.
        assert sched.submit("work", "fifth").result(timeout=10) == "fifth"
    assert calls == Counter({"second": 1, "fifth": 1})
    stats = sched.stats()
    assert stats.rejected == 2
    assert stats.completed == 3
    assert stats.dropped == 0


# --- on_full="drop" ------------------------------------------------------------------


def test_drop_returns_a_cancelled_handle_and_counts_it() -> None:
    sched, gate, calls = gated_scheduler(workers=1, max_pending=2, on_full="drop")
    with sched:
        first = sched.submit("block")
        assert gate.started.wait(10)
        second = sched.submit("work", "second")
        dropped = sched.submit("work", "dropped")
        assert dropped.done()
        assert dropped.status is JobStatus.CANCELLED
        assert dropped != second
        with pytest.raises(JobCancelled) as caught:
            dropped.result(timeout=0)
        assert caught.value.error is not None
        assert caught.value.error.type == "postroom.Dropped"
        assert dropped.info().error == caught.value.error
        assert sched.stats().dropped == 1
        gate.release.set()
        assert first.result(timeout=10) == "released"
        assert second.result(timeout=10) == "second"
    assert calls == Counter({"second": 1})
    stats = sched.stats()
    assert stats.dropped == 1
    assert stats.rejected == 0
    assert stats.submitted == 2


def test_cancel_of_a_dropped_handle_is_harmless() -> None:
    sched, gate, _calls = gated_scheduler(workers=1, max_pending=1, on_full="drop")
    with sched:
        sched.submit("block")
        assert gate.started.wait(10)
        dropped = sched.submit("work", "dropped")
        try:
            assert dropped.cancel() is CancelResult.ALREADY_FINISHED
            assert dropped.cancel() is CancelResult.ALREADY_FINISHED
            assert dropped.status is JobStatus.CANCELLED
        finally:
            gate.release.set()


def test_dropped_handle_is_not_a_known_job() -> None:
    # As implemented: the dropped job is counted but not kept in the job table.
    sched, gate, _calls = gated_scheduler(workers=1, max_pending=1, on_full="drop")
    with sched:
        sched.submit("block")
        assert gate.started.wait(10)
        dropped = sched.submit("work", "dropped")
        gate.release.set()
        with pytest.raises(JobNotFound):
            sched.job(dropped.id)


# --- on_full="wait" ------------------------------------------------------------------


def test_wait_times_out_with_queue_full() -> None:
    sched, gate, _calls = gated_scheduler(
        workers=1, max_pending=1, on_full="wait", full_timeout=0.2
    )
    with sched:
        first = sched.submit("block")
        assert gate.started.wait(10)
        t0 = time.monotonic()
        with pytest.raises(QueueFull):
            sched.submit("work", "late")
        waited = time.monotonic() - t0
        assert 0.18 <= waited < 10.0
        assert sched.stats().rejected == 1
        gate.release.set()
        assert first.result(timeout=10) == "released"
        assert sched.submit("work", "ok").result(timeout=10) == "ok"
    assert sched.stats().submitted == 2


def test_waiting_submit_gets_in_when_a_job_finishes() -> None:
    sched, gate, calls = gated_scheduler(workers=1, max_pending=1, on_full="wait", full_timeout=10)
    got: list[JobHandle] = []
    errors: list[BaseException] = []

    def submit_waiting() -> None:
        try:
            got.append(sched.submit("work", "waiter"))
        except BaseException as exc:
            errors.append(exc)

    with sched:
        first = sched.submit("block")
        assert gate.started.wait(10)
        submitter = threading.Thread(target=submit_waiting)
        submitter.start()
        submitter.join(0.1)
        assert submitter.is_alive()  # blocked: no room yet
        assert not got
        gate.release.set()
        submitter.join(5)
        assert not submitter.is_alive()
        assert not errors
        assert first.result(timeout=10) == "released"
        assert got[0].result(timeout=10) == "waiter"
    assert calls == Counter({"waiter": 1})
    assert sched.stats().rejected == 0


def test_many_waiting_submitters_all_get_in() -> None:
    sched, _gate, calls = gated_scheduler(workers=2, max_pending=3, on_full="wait", full_timeout=10)
    handles: list[JobHandle] = []
    lock = threading.Lock()

    def producer(base: int) -> None:
        for i in range(50):
            h = sched.submit("work", base + i)
            with lock:
                handles.append(h)

    with sched:
        producers = [threading.Thread(target=producer, args=(k * 1000,)) for k in range(4)]
        for p in producers:
            p.start()
        for p in producers:
            p.join(20)
        assert not any(p.is_alive() for p in producers)
        assert all(h.wait(10) for h in handles)
    assert len(handles) == 200
    assert sum(calls.values()) == 200
    assert sched.stats().completed == 200
    assert sched.stats().rejected == 0


# --- a finished job frees its slot no later than its handle resolves ------------------


def test_done_callback_of_a_job_can_submit_into_its_slot() -> None:
    sched, _gate, _calls = gated_scheduler(workers=1, max_pending=1, on_full="reject")
    submitted: list[JobHandle] = []
    errors: list[BaseException] = []
    called = threading.Event()

    def resubmit(_handle: JobHandle) -> None:
        try:
            submitted.append(sched.submit("work", "from-callback"))
        except BaseException as exc:
            errors.append(exc)
        finally:
            called.set()

    with sched:
        first = sched.submit("work", "first")
        first.add_done_callback(resubmit)
        assert first.result(timeout=10) == "first"
        assert called.wait(10)
        assert not errors, errors
        assert submitted[0].result(timeout=10) == "from-callback"


@pytest.mark.parametrize("repo", [None, "r"])
@pytest.mark.parametrize(
    "ending", ["completed", "failed", "cancelled-running", "cancelled-waiting"]
)
def test_a_job_has_given_its_slot_back_when_its_handle_resolves(
    repo: str | None, ending: str
) -> None:
    # Deterministic, where racing a submit against `result()` is not: the check
    # runs inside the resolution itself (a callback on the job's state runs on
    # the resolving thread, once the handle is resolved and before anything
    # else happens), so a slot given back even a moment after it is caught.
    clock = ManualClock()  # never advanced: a delayed job waits until cancelled
    sched, gate, _calls = gated_scheduler(
        workers=1, max_pending=1, on_full="reject", clock=clock
    )

    @sched.handler("fail")
    def fail(ctx: JobContext, payload: None) -> None:
        gate.started.set()
        assert gate.release.wait(10)
        raise RuntimeError("no")

    @sched.handler("until_cancelled")
    def until_cancelled(ctx: JobContext, payload: None) -> str:
        gate.started.set()
        assert ctx.wait(10)
        return "stopped"

    inside: list[object] = []
    resolved = threading.Event()

    def submit_from_the_resolution(state: JobState) -> None:
        try:
            inside.append(state.status)
            inside.append(sched.submit("work", "in-its-slot"))
        except BaseException as exc:
            inside.append(exc)
        finally:
            resolved.set()

    handler = {"completed": "block", "failed": "fail"}.get(ending, "until_cancelled")
    with sched:
        if ending == "cancelled-waiting":
            first = sched.submit("work", "never", repo=repo, delay=60)
        else:
            first = sched.submit(handler, repo=repo)
            assert gate.started.wait(10)
        with pytest.raises(QueueFull):
            sched.submit("work", "no-room")  # the bound is engaged
        first._state.add_done_callback(submit_from_the_resolution)
        assert not resolved.is_set()  # it will run inside the resolution
        if ending.startswith("cancelled"):
            first.cancel()
        else:
            gate.release.set()
        assert first.wait(10)
        assert resolved.wait(10)
        status, second = inside
        assert status is first.status
        assert isinstance(second, JobHandle), f"no slot inside the resolution: {second!r}"
        assert second.result(timeout=10) == "in-its-slot"
    assert first.status.value == ending.partition("-")[0]
    assert sched.stats().rejected == 1


@pytest.mark.parametrize("repo", [None, "r"])
def test_submit_right_after_result_always_fits(repo: str | None) -> None:
    sched, _gate, _calls = gated_scheduler(workers=2, max_pending=1, on_full="reject")
    with sched:
        for i in range(300):
            assert sched.submit("work", i, repo=repo).result(timeout=10) == i
    stats = sched.stats()
    assert stats.rejected == 0
    assert stats.completed == 300


@pytest.mark.parametrize(("repo", "mode"), [(None, "ordered"), ("r", "ordered"), ("r", "mutex")])
def test_a_retried_job_holds_one_slot_for_all_its_attempts(repo: str | None, mode: str) -> None:
    clock = ManualClock()
    sched, _gate, calls = gated_scheduler(
        workers=2, max_pending=1, on_full="reject", clock=clock, repo_mode=mode
    )
    refused_while_running: list[bool] = []

    @sched.handler("flaky", max_retries=3, retry=RetryPolicy.fixed(10))
    def flaky(ctx: JobContext, payload: None) -> str:
        # The second worker is free: only the bound can refuse this submit.
        try:
            sched.submit("work", f"during-attempt-{ctx.attempt}")
        except QueueFull:
            refused_while_running.append(True)
        else:
            refused_while_running.append(False)
        if ctx.attempt <= 3:
            raise RuntimeError(f"attempt {ctx.attempt}")
        return "fourth time"

    def in_backoff_after(attempt: int) -> bool:
        info = handle.info()
        return info.status is JobStatus.RETRYING and info.attempts == attempt

    with sched:
        handle = sched.submit("flaky", repo=repo)
        for attempt in (1, 2, 3):
            wait_until(lambda a=attempt: in_backoff_after(a), f"attempt {attempt}'s retry")
            with pytest.raises(QueueFull):
                sched.submit("work", f"in-backoff-{attempt}")
            clock.advance(10)
        assert handle.result(timeout=10) == "fourth time"
        # Ended: its one slot is free, and there was only one.
        assert sched.submit("work", "after").result(timeout=10) == "after"
    assert refused_while_running == [True, True, True, True]
    assert calls == Counter({"after": 1})
    stats = sched.stats()
    assert stats.retried == 3
    assert stats.rejected == 3 + 4


def test_failed_and_cancelled_jobs_free_their_slots() -> None:
    sched, gate, _calls = gated_scheduler(workers=1, max_pending=1, on_full="reject")

    @sched.handler("bad")
    def bad(ctx, payload):
        raise RuntimeError("no")

    with sched:
        for _ in range(20):
            with pytest.raises(JobFailed):
                sched.submit("bad").result(timeout=10)
            delayed = sched.submit("work", "x", delay=60)
            assert delayed.cancel() is CancelResult.CANCELLED
            running = sched.submit("block")
            assert gate.started.wait(10)
            assert running.cancel() is CancelResult.SIGNALLED
            gate.release.set()
            with pytest.raises(JobCancelled):
                running.result(timeout=10)
            gate.started.clear()
            gate.release.clear()
    assert sched.stats().rejected == 0


def test_waiting_submitter_is_released_by_shutdown() -> None:
    sched, gate, _calls = gated_scheduler(
        workers=1, max_pending=1, on_full="wait", full_timeout=None
    )
    errors: list[BaseException] = []

    @sched.handler("until_cancelled")
    def until_cancelled(ctx, payload):
        gate.started.set()
        return ctx.wait(10)

    def submit_waiting() -> None:
        try:
            sched.submit("work", "never")
        except BaseException as exc:
            errors.append(exc)

    sched.start()
    submitter = threading.Thread(target=submit_waiting)
    try:
        first = sched.submit("until_cancelled")
        assert gate.started.wait(10)
        submitter.start()
        submitter.join(0.1)
        assert submitter.is_alive()
    finally:
        sched.shutdown(graceful=False)
    submitter.join(5)
    assert not submitter.is_alive()
    assert len(errors) == 1
    assert isinstance(errors[0], SchedulerClosed)
    assert first.status is JobStatus.CANCELLED


# --- the pool's size -----------------------------------------------------------------


def test_resize_up_lets_that_many_jobs_run_at_once() -> None:
    sched = Scheduler(workers=1)
    barrier = threading.Barrier(4, timeout=10)

    @sched.handler("meet")
    def meet(ctx, payload):
        return barrier.wait()

    with sched:
        assert sched.stats().workers == 1
        sched.resize(4)
        assert sched.stats().workers == 4
        handles = [sched.submit("meet", i) for i in range(4)]
        # Each handler waits for the other three: only 4 concurrent runs complete.
        assert sorted(h.result(timeout=10) for h in handles) == [0, 1, 2, 3]


def test_resize_down_limits_concurrency() -> None:
    sched = Scheduler(workers=4)
    lock = threading.Lock()
    running = 0
    peak = 0
    barrier = threading.Barrier(4, timeout=10)

    @sched.handler("meet")
    def meet(ctx, payload):
        return barrier.wait()

    @sched.handler("measure")
    def measure(ctx, payload):
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.002)  # simulated work, so overlaps would show
        with lock:
            running -= 1
        return payload

    with sched:
        # All four workers are alive and have worked.
        assert len({h.result(timeout=10) for h in [sched.submit("meet") for _ in range(4)]}) == 4
        sched.resize(1)
        assert sched.stats().workers == 1
        handles = [sched.submit("measure", i) for i in range(40)]
        assert [h.result(timeout=10) for h in handles] == list(range(40))
    assert peak == 1


def test_resize_while_busy_then_grow_again() -> None:
    sched = Scheduler(workers=3)
    all_busy = threading.Barrier(4, timeout=10)  # three handlers and the test
    release = threading.Event()
    pair = threading.Barrier(2, timeout=10)

    @sched.handler("hold")
    def hold(ctx, payload):
        all_busy.wait()
        assert release.wait(10)
        return payload

    @sched.handler("meet2")
    def meet2(ctx, payload):
        return pair.wait()

    with sched:
        busy = [sched.submit("hold", i) for i in range(3)]
        all_busy.wait()
        sched.resize(1)  # the busy workers leave after their job
        assert sched.stats().workers == 1
        release.set()
        assert [h.result(timeout=10) for h in busy] == [0, 1, 2]
        sched.resize(2)
        assert sched.stats().workers == 2
        met = [sched.submit("meet2") for _ in range(2)]
        assert sorted(h.result(timeout=10) for h in met) == [0, 1]


def test_resize_down_applies_to_a_backlog_queued_before_it() -> None:
    sched = Scheduler(workers=4)
    all_busy = threading.Barrier(5, timeout=10)  # four handlers and the test
    release = threading.Event()
    lock = threading.Lock()
    running = 0
    peak = 0

    @sched.handler("hold")
    def hold(ctx, payload):
        all_busy.wait()
        assert release.wait(10)

    @sched.handler("measure")
    def measure(ctx, payload):
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.002)  # simulated work, so overlaps would show
        with lock:
            running -= 1
        return payload

    with sched:
        busy = [sched.submit("hold") for _ in range(4)]
        all_busy.wait()
        backlog = [sched.submit("measure", i) for i in range(40)]
        sched.resize(1)  # the four busy workers: three leave after their job
        assert sched.stats().workers == 1
        release.set()
        for h in busy:
            h.result(timeout=10)
        assert [h.result(timeout=10) for h in backlog] == list(range(40))
    assert peak == 1
