"""Tests for cancellation (rule 7, docs/guarantees.md): waiting jobs go at once, running ones
are told."""

from __future__ import annotations

import logging
import threading
from collections import Counter

import pytest
from prometheus_client import CollectorRegistry

from actors import (
    CancelResult,
    JobCancelled,
    JobHandle,
    JobNotFound,
    JobStatus,
    ManualClock,
    RetryPolicy,
    Scheduler,
)
from tests.helpers import gated_scheduler, wait_until


class Boom(Exception):
    """A handler error the tests raise on purpose."""


def _assert_cancelled_now(sched: Scheduler, job_id: str) -> None:
    info = sched.job(job_id)
    assert info.status is JobStatus.CANCELLED
    assert info.error is not None
    assert info.error.type == "postroom.JobCancelled"


# --- waiting jobs: removed at once ---------------------------------------------------


def test_cancel_pending_job_behind_busy_repo() -> None:
    sched, gate, calls = gated_scheduler(workers=2)
    with sched:
        blocker = sched.submit("block", repo="r")
        assert gate.started.wait(10)
        waiting = sched.submit("work", "waiting", repo="r")
        assert waiting.status is JobStatus.PENDING

        assert sched.cancel(waiting.id) is CancelResult.CANCELLED
        # Resolved by the time cancel returns, not when the repo frees up.
        assert waiting.done()
        _assert_cancelled_now(sched, waiting.id)
        with pytest.raises(JobCancelled):
            waiting.result(timeout=0)

        after = sched.submit("work", "after", repo="r")
        gate.release.set()
        assert blocker.result(timeout=10) == "released"
        assert after.result(timeout=10) == "after"
    assert calls == Counter({"after": 1})


def test_cancelling_a_waiting_job_lets_the_next_job_of_its_repo_run() -> None:
    sched, gate, calls = gated_scheduler(workers=2)
    with sched:
        blocker = sched.submit("block", repo="r")
        assert gate.started.wait(10)
        handles = [sched.submit("work", i, repo="r") for i in range(5)]
        for h in handles[::2]:
            assert h.cancel() is CancelResult.CANCELLED
        gate.release.set()
        blocker.result(timeout=10)
        for h in handles[1::2]:
            assert h.result(timeout=10) in (1, 3)
    assert calls == Counter({"1": 1, "3": 1})


def test_cancel_delayed_head_of_ordered_repo_releases_the_repo() -> None:
    clock = ManualClock()
    sched, _gate, calls = gated_scheduler(workers=1, clock=clock)
    with sched:
        delayed = sched.submit("work", "delayed", repo="r", delay=100)
        assert delayed.status is JobStatus.SCHEDULED
        # In ordered mode the delayed head holds back the job behind it.
        behind = sched.submit("work", "behind", repo="r")
        assert not behind.wait(0.05)
        assert delayed.cancel() is CancelResult.CANCELLED
        assert delayed.done()
        assert behind.result(timeout=10) == "behind"
        clock.advance(200)
        tail = sched.submit("work", "tail", repo="r")
        assert tail.result(timeout=10) == "tail"
    assert calls == Counter({"behind": 1, "tail": 1})


def test_cancel_scheduled_job_before_its_time() -> None:
    clock = ManualClock()
    sched, _gate, calls = gated_scheduler(workers=1, clock=clock)
    with sched:
        doomed = sched.submit("work", "doomed", delay=100)
        # Due after the doomed one: had the doomed one fired, it would run first.
        sentinel = sched.submit("work", "sentinel", delay=150)
        assert doomed.status is JobStatus.SCHEDULED
        assert doomed.cancel() is CancelResult.CANCELLED
        assert doomed.done()
        with pytest.raises(JobCancelled):
            doomed.result(timeout=0)
        clock.advance(200)
        assert sentinel.result(timeout=10) == "sentinel"
    assert calls == Counter({"sentinel": 1})


class _RetryScheduled(logging.Handler):
    """Sets ``event`` when the Dispatcher logs that a job's last retry is scheduled.

    That record is written after the job became ``retrying``: a deterministic
    signal that it now waits for its backoff.
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.event = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "retry cap" in record.getMessage():
            self.event.set()


@pytest.mark.parametrize(("repo", "mode"), [(None, "ordered"), ("r", "ordered"), ("r", "mutex")])
def test_cancel_job_retrying_in_backoff_stops_its_retries(repo: str | None, mode: str) -> None:
    clock = ManualClock()
    sched = Scheduler(workers=1, clock=clock, repo_mode=mode)  # type: ignore[arg-type]
    calls = Counter[str]()

    @sched.handler("flaky", max_retries=1, retry=RetryPolicy.fixed(100))
    def flaky(ctx, payload):
        calls["flaky"] += 1
        raise Boom("try later")

    @sched.handler("work")
    def work(ctx, payload):
        calls[str(payload)] += 1
        return payload

    watcher = _RetryScheduled()
    logging.getLogger("postroom").addHandler(watcher)
    try:
        with sched:
            flaky_h = sched.submit("flaky", repo=repo)
            assert watcher.event.wait(10)
            assert flaky_h.status is JobStatus.RETRYING
            assert flaky_h.cancel() is CancelResult.CANCELLED
            assert flaky_h.done()
            with pytest.raises(JobCancelled):
                flaky_h.result(timeout=0)
            # Due after the retry would have been: had it fired, it would run
            # first, and in an ordered repo the sentinel would wait for it.
            sentinel = sched.submit("work", "sentinel", delay=150, repo=repo)
            clock.advance(200)
            assert sentinel.result(timeout=10) == "sentinel"
    finally:
        logging.getLogger("postroom").removeHandler(watcher)
    assert flaky_h.info().attempts == 1
    assert calls["flaky"] == 1
    assert sched.stats().retried == 1
    assert sched.stats().cancelled == 1


@pytest.mark.parametrize(
    ("repo", "mode"),
    [(None, "ordered"), ("r", "ordered"), ("r", "mutex")],
    ids=["no-repo", "ordered-repo", "mutex-repo"],
)
def test_cancel_job_retrying_in_backoff_removes_its_timer_entry(
    repo: str | None, mode: str
) -> None:
    # A retry entry left behind is invisible to the job (its handle is
    # resolved, a stale entry fires into nothing) but it is memory held until
    # its due time, and the gauge is where an operator sees it.
    registry = CollectorRegistry()
    clock = ManualClock()
    sched = Scheduler(
        workers=1,
        clock=clock,
        repo_mode=mode,  # type: ignore[arg-type]
        name="backoff",
        registry=registry,
    )

    @sched.handler("flaky", max_retries=1, retry=RetryPolicy.fixed(100))
    def flaky(ctx, payload):
        raise Boom("try later")

    def timer_entries() -> float | None:
        # A scrape asks the Dispatcher: it answers after the message that
        # scheduled the retry (or cancelled it) has been handled in full.
        return registry.get_sample_value("postroom_timer_entries", {"scheduler": "backoff"})

    with sched:
        handle = sched.submit("flaky", repo=repo)
        wait_until(lambda: handle.status is JobStatus.RETRYING, "the retry's backoff")
        assert timer_entries() == 1
        assert handle.cancel() is CancelResult.CANCELLED
        assert timer_entries() == 0
        clock.advance(200)
        assert timer_entries() == 0
    assert handle.info().attempts == 1


def test_cancel_job_queued_behind_busy_worker() -> None:
    sched, gate, calls = gated_scheduler(workers=1)
    with sched:
        blocker = sched.submit("block")
        assert gate.started.wait(10)
        queued = sched.submit("work", "queued")
        after = sched.submit("work", "after")
        assert queued.status is JobStatus.PENDING
        assert sched.cancel(queued.id) is CancelResult.CANCELLED
        assert queued.done()
        _assert_cancelled_now(sched, queued.id)
        gate.release.set()
        blocker.result(timeout=10)
        assert after.result(timeout=10) == "after"
    assert calls == Counter({"after": 1})


# --- running jobs: signalled -------------------------------------------------------


def test_cancel_running_job_signals_it_and_resolves_after_it_returns() -> None:
    sched = Scheduler(workers=1)
    started, saw_cancel, release = threading.Event(), threading.Event(), threading.Event()

    @sched.handler("long")
    def long(ctx, payload):
        started.set()
        if ctx.wait(10):
            saw_cancel.set()
        release.wait(10)
        return "ignored"

    with sched:
        handle = sched.submit("long")
        assert started.wait(10)
        assert handle.cancel() is CancelResult.SIGNALLED
        assert saw_cancel.wait(10)
        # The handler has not returned: the job is still running, not resolved.
        assert not handle.wait(0.05)
        assert handle.status is JobStatus.RUNNING
        assert handle.cancel() is CancelResult.ALREADY_CANCELLING
        release.set()
        with pytest.raises(JobCancelled):
            handle.result(timeout=10)
    assert handle.status is JobStatus.CANCELLED
    assert sched.stats().cancelled == 1


def test_signalled_job_that_raises_is_not_retried() -> None:
    sched, _gate, calls = gated_scheduler(workers=1)
    started = threading.Event()

    @sched.handler("stubborn", max_retries=5)
    def stubborn(ctx, payload):
        calls["stubborn"] += 1
        started.set()
        ctx.wait(10)
        raise Boom("interrupted")

    with sched:
        handle = sched.submit("stubborn", repo="r")
        assert started.wait(10)
        assert sched.cancel(handle.id) is CancelResult.SIGNALLED
        with pytest.raises(JobCancelled) as caught:
            handle.result(timeout=10)
        # The repo is free again and no retry holds it.
        assert sched.submit("work", "next", repo="r").result(timeout=10) == "next"
    assert caught.value.error is not None
    assert caught.value.error.type == "postroom.JobCancelled"
    assert handle.info().attempts == 1
    assert calls["stubborn"] == 1
    stats = sched.stats()
    assert stats.retried == 0
    assert stats.failed == 0
    assert stats.cancelled == 1


def test_cancel_async_handler_cancels_its_task() -> None:
    import asyncio

    sched = Scheduler(workers=1)
    started = threading.Event()
    outcome: list[str] = []

    @sched.handler("sleepy")
    async def sleepy(ctx, payload):
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise
        return "woke"

    with sched:
        handle = sched.submit("sleepy")
        assert started.wait(10)
        assert handle.cancel() is CancelResult.SIGNALLED
        with pytest.raises(JobCancelled):
            handle.result(timeout=10)
    assert outcome == ["cancelled"]


# --- harmless repeats, unknown ids -------------------------------------------------


def test_cancel_finished_jobs_says_already_finished() -> None:
    clock = ManualClock()
    sched, _gate, _calls = gated_scheduler(workers=1, clock=clock)
    with sched:
        done = sched.submit("work", "done")
        assert done.result(timeout=10) == "done"
        assert sched.cancel(done.id) is CancelResult.ALREADY_FINISHED
        assert done.cancel() is CancelResult.ALREADY_FINISHED
        assert done.status is JobStatus.COMPLETED
        assert done.result(timeout=0) == "done"

        cancelled = sched.submit("work", "x", delay=10)
        assert cancelled.cancel() is CancelResult.CANCELLED
        assert cancelled.cancel() is CancelResult.ALREADY_FINISHED
        assert cancelled.status is JobStatus.CANCELLED
    assert sched.stats().cancelled == 1
    assert sched.stats().completed == 1


def test_cancel_unknown_id_raises_job_not_found() -> None:
    sched, _gate, _calls = gated_scheduler()
    with sched:
        with pytest.raises(JobNotFound):
            sched.cancel("no-such-job")
        with pytest.raises(KeyError):
            sched.cancel("no-such-job")
        # The scheduler is unaffected.
        assert sched.submit("work", 1).result(timeout=10) == 1


def test_cancel_many_waiting_jobs_across_repos() -> None:
    sched, gate, calls = gated_scheduler(workers=1)
    with sched:
        blocker = sched.submit("block")
        assert gate.started.wait(10)
        handles = [sched.submit("work", i, repo=f"r{i % 4}") for i in range(40)]
        cancelled = handles[::3]
        for h in cancelled:
            assert h.cancel() is CancelResult.CANCELLED
        gate.release.set()
        blocker.result(timeout=10)
        kept = [h for h in handles if h not in cancelled]
        assert [h.result(timeout=10) for h in kept] == [i for i in range(40) if i % 3]
    assert set(calls) == {str(i) for i in range(40) if i % 3}
    assert set(calls.values()) == {1}
    assert sched.stats().cancelled == len(cancelled)


def test_a_cancel_racing_a_due_time_never_runs_the_cancelled_job() -> None:
    # When a delayed job falls due, the Timer hands it to the ready queue and
    # then tells the dispatcher; a cancel can land anywhere around that. Which
    # interleaving happens is up to the threads; whichever it is, a job reported
    # CANCELLED never runs and ends cancelled, and one reported SIGNALLED ends
    # cancelled or (its attempt had already returned) completed.
    clock = ManualClock()
    sched = Scheduler(workers=2, clock=clock)
    ran: set[int] = set()
    lock = threading.Lock()

    @sched.handler("record")
    def record(ctx: object, payload: int) -> int:
        with lock:
            ran.add(payload)
        return payload

    results: dict[int, tuple[CancelResult, JobHandle]] = {}
    with sched:
        for i in range(200):
            handle = sched.submit("record", i, delay=1.0)
            clock.advance(1.0)
            results[i] = (handle.cancel(), handle)
        for _, handle in results.values():
            assert handle.wait(5)
    for i, (result, handle) in results.items():
        if result is CancelResult.CANCELLED:
            assert i not in ran, f"job {i} ran after its cancel removed it"
            assert handle.status is JobStatus.CANCELLED
        elif result is CancelResult.ALREADY_FINISHED:
            assert handle.status is JobStatus.COMPLETED
        else:
            assert result is CancelResult.SIGNALLED
            assert handle.status in (JobStatus.CANCELLED, JobStatus.COMPLETED)
