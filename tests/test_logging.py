"""Tests for what postroom logs: failures loudly and with the job's identity, success not at all."""

from __future__ import annotations

import logging

import pytest

from actors import Fatal, JobFailed, JobTimedOut, Scheduler


def _postroom_records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("postroom") and r.levelno >= level]


def _scheduler() -> Scheduler:
    sched = Scheduler(workers=2)

    @sched.handler("ok")
    def ok(ctx, payload):
        return payload

    @sched.handler("bad", max_retries=2)
    def bad(ctx, payload):
        raise ValueError(f"bad attempt {ctx.attempt}")

    @sched.handler("fatal", max_retries=5)
    def fatal(ctx, payload):
        raise Fatal("cannot work")

    @sched.handler("slow", timeout=0.05)
    def slow(ctx, payload):
        ctx.wait(10)
        return "late"

    return sched


def test_job_failing_for_good_logs_one_error_with_its_identity(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="postroom")
    sched = _scheduler()
    with sched:
        handle = sched.submit("bad", {"x": 1}, repo="acme/api")
        with pytest.raises(JobFailed):
            handle.result(timeout=10)
    errors = _postroom_records(caplog, logging.ERROR)
    assert len(errors) == 1
    record = errors[0]
    assert record.levelno == logging.ERROR
    assert record.job_id == handle.id  # type: ignore[attr-defined]
    assert record.handler == "bad"  # type: ignore[attr-defined]
    assert record.repo == "acme/api"  # type: ignore[attr-defined]
    assert record.attempt == 3  # type: ignore[attr-defined]
    assert handle.id in record.getMessage()
    assert "bad attempt 3" in record.getMessage()


def test_job_without_repo_logs_repo_none(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="postroom")
    sched = _scheduler()
    with sched:
        handle = sched.submit("fatal")
        with pytest.raises(JobFailed):
            handle.result(timeout=10)
    errors = _postroom_records(caplog, logging.ERROR)
    assert [r.job_id for r in errors] == [handle.id]  # type: ignore[attr-defined]
    assert errors[0].repo is None  # type: ignore[attr-defined]
    assert errors[0].attempt == 1  # type: ignore[attr-defined]
    assert errors[0].handler == "fatal"  # type: ignore[attr-defined]
    # A fatal error is not retried, so no retry-cap warning either.
    warnings = _postroom_records(caplog, logging.WARNING)
    assert [r.levelno for r in warnings] == [logging.ERROR]


def test_reaching_the_retry_cap_logs_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="postroom")
    sched = _scheduler()
    with sched:
        handle = sched.submit("bad", repo="r")
        with pytest.raises(JobFailed):
            handle.result(timeout=10)
    warnings = [
        r for r in _postroom_records(caplog, logging.WARNING) if r.levelno == logging.WARNING
    ]
    assert len(warnings) == 1
    record = warnings[0]
    assert record.job_id == handle.id  # type: ignore[attr-defined]
    assert record.handler == "bad"  # type: ignore[attr-defined]
    assert record.repo == "r"  # type: ignore[attr-defined]
    # Logged when the last attempt (1 + max_retries = 3) is scheduled.
    assert record.attempt == 3  # type: ignore[attr-defined]


def test_a_timeout_is_logged_with_the_job(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="postroom")
    sched = _scheduler()
    with sched:
        handle = sched.submit("slow")
        with pytest.raises(JobTimedOut):
            handle.result(timeout=10)
    records = _postroom_records(caplog, logging.WARNING)
    assert records
    assert all(r.job_id == handle.id for r in records)  # type: ignore[attr-defined]
    assert any(r.levelno == logging.ERROR for r in records)


def test_successful_jobs_log_nothing_at_info_or_above(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="postroom")
    sched = _scheduler()
    with sched:
        handles = [sched.submit("ok", i, repo=f"r{i % 3}" if i % 2 else None) for i in range(50)]
        assert [h.result(timeout=10) for h in handles] == list(range(50))
        sched.resize(3)
    assert _postroom_records(caplog, logging.INFO) == []


def test_handler_can_log_with_the_job_identity(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="postroom")
    sched = Scheduler(workers=1)

    @sched.handler("chatty")
    def chatty(ctx, payload):
        ctx.log.info("working on %s", payload)
        return payload

    with sched:
        handle = sched.submit("chatty", "it", repo="r")
        assert handle.result(timeout=10) == "it"
    mine = [r for r in caplog.records if r.getMessage() == "working on it"]
    assert len(mine) == 1
    assert mine[0].name.startswith("postroom")
    assert mine[0].job_id == handle.id  # type: ignore[attr-defined]
    assert mine[0].attempt == 1  # type: ignore[attr-defined]
    assert mine[0].repo == "r"  # type: ignore[attr-defined]
