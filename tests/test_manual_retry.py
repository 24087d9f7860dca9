"""Tests for `Scheduler.retry`: a failed or cancelled job runs again as a new job."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import pytest

from actors import (
    InvalidArgument,
    JobCancelled,
    JobFailed,
    JobHandle,
    JobNotFound,
    JobStatus,
    ManualClock,
    Priority,
    Queue,
    QueueFull,
    RetryPolicy,
    Scheduler,
    SchedulerClosed,
)
from tests.helpers import WAIT, gated_scheduler, quiet, wait_until


class Boom(Exception):
    """A handler error the tests raise on purpose."""


@dataclass
class Unstable:
    """A handler that fails while ``broken`` is set and records how it was called."""

    broken: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    calls: list[dict[str, Any]] = field(default_factory=list)
    second_attempt: threading.Event = field(default_factory=threading.Event)

    def __call__(self, ctx: Any, payload: Any) -> Any:
        with self.lock:
            self.calls.append(
                {
                    "job_id": ctx.job_id,
                    "attempt": ctx.attempt,
                    "repo": ctx.repo,
                    "max_retries": ctx.max_retries,
                    "deadline": ctx.deadline,
                    "payload": payload,
                }
            )
        if ctx.attempt == 2:
            self.second_attempt.set()
        if self.broken.is_set():
            raise Boom(f"attempt {ctx.attempt}")
        return {"ran": payload}

    def of(self, job_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [call for call in self.calls if call["job_id"] == job_id]


# --- what a retry is ------------------------------------------------------------------


def test_retry_of_a_failed_job_runs_it_again_as_a_new_linked_job() -> None:
    clock = ManualClock()
    sched = Scheduler(workers=1, clock=clock, queues={"slow": Queue(workers=1)})
    unstable = Unstable()
    unstable.broken.set()
    sched.register("unstable", unstable)

    with sched:
        original = sched.submit(
            "unstable",
            {"n": 1},
            repo="r",
            priority=Priority.USER_BLOCKING,
            max_retries=1,
            timeout=30,
            queue="slow",
            idempotency_key="key-1",
        )
        with pytest.raises(JobFailed):
            original.result(timeout=WAIT)
        assert original.info().attempts == 2

        unstable.broken.clear()
        again = sched.retry(original.id)
        assert isinstance(again, JobHandle)
        assert again.result(timeout=WAIT) == {"ran": {"n": 1}}

        new, old = again.info(), sched.job(original.id)
        assert new.id != old.id
        # The same job, run again: handler, payload and every option.
        assert new.handler == "unstable"
        assert new.payload == {"n": 1}
        assert new.repo == "r"
        assert new.priority == Priority.USER_BLOCKING
        assert new.max_retries == 1
        assert new.queue == "slow"
        # A new attempt series, without the original's (released) key.
        assert new.attempts == 1
        assert new.idempotency_key is None
        assert new.status is JobStatus.COMPLETED
        [call] = unstable.of(new.id)
        assert call["attempt"] == 1
        assert call["repo"] == "r"
        assert call["max_retries"] == 1
        assert call["deadline"] == clock.now() + 30  # the timeout came along
        # Linked both ways; the original is otherwise unchanged.
        assert new.retry_of == original.id
        assert new.retried_as is None
        assert old.retried_as == again.id
        assert old.retry_of is None
        assert old.status is JobStatus.FAILED
        assert old.attempts == 2
        assert original.status is JobStatus.FAILED
        # Both are listed, the retry first (it is newer).
        assert [info.id for info in sched.jobs()] == [again.id, original.id]


def test_retry_keeps_the_backoff_policy() -> None:
    clock = ManualClock()
    sched = Scheduler(workers=1, clock=clock)
    unstable = Unstable()
    unstable.broken.set()
    sched.register("unstable", unstable)

    with sched:
        original = sched.submit("unstable", "x", max_retries=1, retry=RetryPolicy.fixed(100))
        wait_until(lambda: original.status is JobStatus.RETRYING, "the first retry's backoff")
        clock.advance(100)
        assert original.wait(WAIT)
        assert original.status is JobStatus.FAILED

        unstable.second_attempt.clear()
        again = sched.retry(original.id)
        wait_until(lambda: again.status is JobStatus.RETRYING, "the retry's first attempt")
        # Its second attempt waits for the same 100 s backoff.
        assert quiet(unstable.second_attempt)
        unstable.broken.clear()
        clock.advance(100)
        assert again.result(timeout=WAIT) == {"ran": "x"}
        assert again.info().attempts == 2


def test_retry_of_a_cancelled_job_runs_it_at_once() -> None:
    clock = ManualClock()
    sched, _gate, calls = gated_scheduler(workers=1, clock=clock)
    with sched:
        original = sched.submit("work", "later", delay=3600)
        original.cancel()
        with pytest.raises(JobCancelled):
            original.result(timeout=WAIT)
        assert calls["later"] == 0

        again = sched.retry(original.id)
        # No delay comes along: it runs without the clock moving.
        assert again.result(timeout=WAIT) == "later"
        assert calls["later"] == 1
        assert again.info().retry_of == original.id
        assert sched.job(original.id).retried_as == again.id
        assert sched.job(original.id).status is JobStatus.CANCELLED


def test_a_job_is_retried_once_then_its_retry_can_be() -> None:
    sched = Scheduler(workers=1)
    unstable = Unstable()
    unstable.broken.set()
    sched.register("unstable", unstable)

    with sched:
        first = sched.submit("unstable", 1)
        assert first.wait(WAIT)
        second = sched.retry(first.id)
        assert second.wait(WAIT)
        assert second.status is JobStatus.FAILED

        with pytest.raises(InvalidArgument, match=f"already retried as '{second.id}'"):
            sched.retry(first.id)

        unstable.broken.clear()
        third = sched.retry(second.id)
        assert third.result(timeout=WAIT) == {"ran": 1}
        chain = {info.id: (info.retry_of, info.retried_as) for info in sched.jobs()}
        assert chain == {
            first.id: (None, second.id),
            second.id: (first.id, third.id),
            third.id: (second.id, None),
        }


def test_concurrent_retries_of_one_job_run_it_once() -> None:
    sched, _gate, calls = gated_scheduler(workers=2)
    callers = 8
    start = threading.Barrier(callers)
    handles: list[JobHandle] = []
    refused: list[BaseException] = []
    lock = threading.Lock()

    def retry(job_id: str) -> None:
        start.wait(WAIT)
        try:
            handle = sched.retry(job_id)
        except InvalidArgument as exc:
            with lock:
                refused.append(exc)
        else:
            with lock:
                handles.append(handle)

    with sched:
        original = sched.submit("work", "x", delay=3600)
        original.cancel()
        assert original.wait(WAIT)
        threads = [threading.Thread(target=retry, args=(original.id,)) for _ in range(callers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT)
        assert len(handles) == 1
        assert len(refused) == callers - 1
        assert handles[0].result(timeout=WAIT) == "x"
        assert sched.job(original.id).retried_as == handles[0].id
    assert calls["x"] == 1


# --- what cannot be retried -----------------------------------------------------------


def test_retry_of_an_unfinished_or_completed_job_raises_with_its_status() -> None:
    clock = ManualClock()
    sched, gate, _calls = gated_scheduler(workers=1, clock=clock)

    @sched.handler("flaky", max_retries=1, retry=RetryPolicy.fixed(100))
    def flaky(ctx: Any, payload: Any) -> int:
        if ctx.attempt == 1:
            raise Boom("first attempt")
        return ctx.attempt

    with sched:
        completed = sched.submit("work", "done")
        assert completed.wait(WAIT)
        retrying = sched.submit("flaky")
        wait_until(lambda: retrying.status is JobStatus.RETRYING, "the first attempt to fail")
        running = sched.submit("block")
        assert gate.started.wait(WAIT)
        pending = sched.submit("work", "queued")
        scheduled = sched.submit("work", "later", delay=50)

        for handle, status in [
            (completed, "completed"),
            (retrying, "retrying"),
            (running, "running"),
            (pending, "pending"),
            (scheduled, "scheduled"),
        ]:
            assert handle.status == status
            with pytest.raises(InvalidArgument, match=f"'{handle.id}' is {status}"):
                sched.retry(handle.id)
            assert sched.job(handle.id).retried_as is None

        gate.release.set()
        clock.advance(100)
        assert all(h.wait(WAIT) for h in (retrying, running, pending, scheduled))
        assert sched.stats().submitted == 5  # nothing was re-submitted


def test_retry_of_an_unknown_or_aged_out_job_raises_job_not_found() -> None:
    sched = Scheduler(workers=1, history=1)

    @sched.handler("bad")
    def bad(ctx: Any, payload: Any) -> Any:
        raise Boom("no")

    with sched:
        with pytest.raises(JobNotFound, match="'no-such-job'"):
            sched.retry("no-such-job")
        old = sched.submit("bad", 1)
        assert old.wait(WAIT)
        assert sched.submit("bad", 2).wait(WAIT)  # pushes the first out of history
        with pytest.raises(JobNotFound):
            sched.retry(old.id)


def test_retry_after_shutdown_raises_scheduler_closed() -> None:
    sched = Scheduler(workers=1)

    @sched.handler("bad")
    def bad(ctx: Any, payload: Any) -> Any:
        raise Boom("no")

    with sched:
        failed = sched.submit("bad")
        assert failed.wait(WAIT)
    with pytest.raises(SchedulerClosed):
        sched.retry(failed.id)
    assert sched.job(failed.id).retried_as is None
    assert sched.stats().submitted == 1


def test_retry_before_start_raises_scheduler_closed() -> None:
    sched = Scheduler(workers=1)
    with pytest.raises(SchedulerClosed, match="not started"):
        sched.retry("anything")


# --- back-pressure applies as to submit -----------------------------------------------


def test_retry_under_back_pressure_raises_queue_full_like_submit() -> None:
    sched, gate, calls = gated_scheduler(workers=1, max_pending=2, on_full="reject")

    @sched.handler("bad")
    def bad(ctx: Any, payload: Any) -> Any:
        raise Boom("no")

    with sched:
        failed = sched.submit("bad")
        assert failed.wait(WAIT)
        running = sched.submit("block")
        assert gate.started.wait(WAIT)
        queued = sched.submit("work", "queued")  # the bound (2) is reached

        with pytest.raises(QueueFull):
            sched.submit("bad")
        with pytest.raises(QueueFull):
            sched.retry(failed.id)
        assert sched.job(failed.id).retried_as is None  # still retryable
        assert sched.stats().rejected == 2

        gate.release.set()
        assert running.wait(WAIT)
        assert queued.wait(WAIT)
        again = sched.retry(failed.id)
        assert again.wait(WAIT)
        assert again.status is JobStatus.FAILED
        assert sched.job(failed.id).retried_as == again.id
    assert calls["queued"] == 1


def test_retry_under_drop_returns_a_dropped_handle_and_the_job_stays_retryable() -> None:
    sched, gate, _calls = gated_scheduler(workers=1, max_pending=1, on_full="drop")

    @sched.handler("bad")
    def bad(ctx: Any, payload: Any) -> Any:
        raise Boom("no")

    with sched:
        failed = sched.submit("bad")
        assert failed.wait(WAIT)
        running = sched.submit("block")
        assert gate.started.wait(WAIT)

        dropped = sched.retry(failed.id)
        assert dropped.status is JobStatus.CANCELLED
        error = dropped.info().error
        assert error is not None
        assert error.type == "postroom.Dropped"
        assert sched.job(failed.id).retried_as is None
        assert sched.stats().dropped == 1

        gate.release.set()
        assert running.wait(WAIT)
        again = sched.retry(failed.id)
        assert again.wait(WAIT)
        assert sched.job(failed.id).retried_as == again.id
        assert again.info().retry_of == failed.id
