"""`JobContext`: what a handler knows about its attempt, and the progress it reports."""

from __future__ import annotations

import logging
import math
import threading
from typing import Any

import pytest

from actors import (
    InvalidArgument,
    JobCancelled,
    JobContext,
    JobFailed,
    JobStatus,
    ManualClock,
    Progress,
    Scheduler,
)
from tests.helpers import WAIT


def test_ctx_names_the_job_handler_repo_and_attempt() -> None:
    sched = Scheduler(workers=2)
    seen: dict[str, dict[str, Any]] = {}

    @sched.handler("inspect", max_retries=4)
    def inspect(ctx: JobContext, payload: str) -> None:
        seen[payload] = {
            "job_id": ctx.job_id,
            "handler": ctx.handler,
            "repo": ctx.repo,
            "attempt": ctx.attempt,
            "max_retries": ctx.max_retries,
            "deadline": ctx.deadline,
            "cancelled": ctx.cancelled,
            "timed_out": ctx.timed_out,
        }

    with sched:
        a = sched.submit("inspect", "a", repo="acme/api")
        b = sched.submit("inspect", "b", max_retries=1)
        a.result(timeout=WAIT)
        b.result(timeout=WAIT)
    common = {"handler": "inspect", "attempt": 1, "deadline": None}
    common |= {"cancelled": False, "timed_out": False}
    assert seen["a"] == {"job_id": a.id, "repo": "acme/api", "max_retries": 4, **common}
    assert seen["b"] == {"job_id": b.id, "repo": None, "max_retries": 1, **common}
    assert a.id != b.id


def test_ctx_attempt_counts_up_across_retries() -> None:
    sched = Scheduler(workers=1)
    attempts: list[tuple[int, int]] = []

    @sched.handler("flaky", max_retries=3)
    def flaky(ctx: JobContext, payload: None) -> int:
        attempts.append((ctx.attempt, ctx.max_retries))
        if ctx.attempt < 4:
            raise RuntimeError("again")
        return ctx.attempt

    with sched:
        assert sched.submit("flaky").result(timeout=WAIT) == 4
    assert attempts == [(1, 3), (2, 3), (3, 3), (4, 3)]


def test_ctx_deadline_is_the_attempt_start_plus_its_timeout() -> None:
    clock = ManualClock(start=1000.0)
    deadlines: list[float | None] = []
    sched = Scheduler(workers=1, clock=clock)

    @sched.handler("job", timeout=30)
    def job(ctx: JobContext, payload: None) -> None:
        deadlines.append(ctx.deadline)

    with sched:
        sched.submit("job").result(timeout=WAIT)
        clock.advance(5)
        sched.submit("job", timeout=2.5).result(timeout=WAIT)
    assert deadlines == [1030.0, 1007.5]


def test_progress_is_visible_while_the_job_runs() -> None:
    reported = threading.Event()
    release = threading.Event()
    sched = Scheduler(workers=1)

    @sched.handler("long")
    def long(ctx: JobContext, payload: str) -> str:
        ctx.progress(0.25)
        ctx.progress(0.5, f"half of {payload}")
        reported.set()
        release.wait(WAIT)
        return payload

    with sched:
        try:
            h = sched.submit("long", "build")
            assert reported.wait(WAIT)
            info = sched.job(h.id)
            assert info.status is JobStatus.RUNNING
            assert info.progress == Progress(0.5, "half of build")
            assert h.info().progress == Progress(0.5, "half of build")
        finally:
            release.set()
        assert h.result(timeout=WAIT) == "build"


def test_progress_at_the_bounds_is_accepted() -> None:
    sched = Scheduler(workers=1)
    after: list[Progress | None] = []

    @sched.handler("job")
    def job(ctx: JobContext, payload: None) -> None:
        ctx.progress(0)
        after.append(sched.job(ctx.job_id).progress)
        ctx.progress(1, "done")
        after.append(sched.job(ctx.job_id).progress)

    with sched:
        sched.submit("job").result(timeout=WAIT)
    assert after == [Progress(0.0, ""), Progress(1.0, "done")]


@pytest.mark.parametrize(
    ("fraction", "message"),
    [(1.5, ""), (-0.1, ""), (math.nan, ""), ("x", ""), (True, ""), (None, ""), (0.5, 3)],
)
def test_invalid_progress_raises_inside_the_handler(fraction: Any, message: Any) -> None:
    sched = Scheduler(workers=1)
    caught: list[BaseException] = []

    @sched.handler("job")
    def job(ctx: JobContext, payload: None) -> str:
        try:
            ctx.progress(fraction, message)
        except InvalidArgument as exc:
            caught.append(exc)
        return "went on"

    with sched:
        h = sched.submit("job")
        assert h.result(timeout=WAIT) == "went on"
    assert len(caught) == 1
    assert isinstance(caught[0], ValueError | TypeError)
    assert h.info().progress is None  # nothing was recorded


def test_an_uncaught_invalid_progress_fails_the_job() -> None:
    sched = Scheduler(workers=1)

    @sched.handler("job")
    def job(ctx: JobContext, payload: None) -> None:
        ctx.progress(2.0, "too far")

    with sched:
        h = sched.submit("job")
        with pytest.raises(JobFailed, match="progress") as failed:
            h.result(timeout=WAIT)
    assert isinstance(failed.value.__cause__, InvalidArgument)


def test_raise_if_cancelled_ends_a_cancelled_job() -> None:
    inside = threading.Event()
    checked: list[bool] = []
    sched = Scheduler(workers=1)

    @sched.handler("job")
    def job(ctx: JobContext, payload: None) -> str:
        ctx.raise_if_cancelled()  # not cancelled yet: nothing happens
        checked.append(ctx.cancelled)
        inside.set()
        ctx.wait(WAIT)
        checked.append(ctx.cancelled)
        ctx.raise_if_cancelled()
        return "should not get here"

    with sched:
        h = sched.submit("job")
        assert inside.wait(WAIT)
        assert h.cancel() == "signalled"
        with pytest.raises(JobCancelled):
            h.result(timeout=WAIT)
    assert checked == [False, True]
    assert h.status is JobStatus.CANCELLED


def test_ctx_log_records_carry_the_job(caplog: pytest.LogCaptureFixture) -> None:
    sched = Scheduler(workers=1)

    @sched.handler("job")
    def job(ctx: JobContext, payload: None) -> None:
        ctx.log.warning("working on it")

    with sched, caplog.at_level(logging.WARNING, logger="postroom"):
        h = sched.submit("job", repo="r")
        h.result(timeout=WAIT)
    [record] = [r for r in caplog.records if r.getMessage() == "working on it"]
    assert (record.job_id, record.handler, record.repo, record.attempt) == (h.id, "job", "r", 1)
