"""Tests for what postroom logs: failures loudly and with the job's identity, success not at all."""

from __future__ import annotations

import ast
import logging
import re
import threading
from pathlib import Path

import pytest

from actors import Fatal, JobFailed, JobTimedOut, ManualClock, Scheduler, _log

ROOT = Path(__file__).resolve().parent.parent


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
    assert record.name == "postroom.dispatcher"
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
    assert record.name == "postroom.dispatcher"
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
    assert mine[0].name == "postroom.handler"
    assert mine[0].job_id == handle.id  # type: ignore[attr-defined]
    assert mine[0].attempt == 1  # type: ignore[attr-defined]
    assert mine[0].repo == "r"  # type: ignore[attr-defined]


# --- one logger per part, all under "postroom" -----------------------------------------


def _loggers() -> dict[str, logging.Logger]:
    """The loggers actors/_log.py defines, by their name there."""
    return {name: value for name, value in vars(_log).items() if isinstance(value, logging.Logger)}


def test_every_part_logs_under_postroom() -> None:
    loggers = _loggers()
    assert loggers["logger"].name == "postroom"
    parts = {log.name for name, log in loggers.items() if name != "logger"}
    assert len(parts) >= 6
    for name in parts:
        assert re.fullmatch(r"postroom\.[a-z]+", name), name
        assert logging.getLogger(name).parent is loggers["logger"]


def test_no_module_makes_its_own_logger() -> None:
    """actors/_log.py is the one place a logger is named: a module that called
    ``getLogger`` itself could log outside ``postroom`` unseen. (The CLI quiets
    the parent by name, which names nothing new.)"""
    for path in sorted((ROOT / "actors").rglob("*.py")):
        if path.name == "_log.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "getLogger":
                args = [a.value for a in node.args if isinstance(a, ast.Constant)]
                assert args == ["postroom"], f"{path.relative_to(ROOT)} names a logger {args}"


def test_docs_list_every_logger() -> None:
    text = (ROOT / "docs" / "operations.md").read_text()
    section = text[text.index("## Logging") :]
    for log in _loggers().values():
        assert f"`{log.name}`" in section, f"docs/operations.md does not list {log.name}"


class _Collect(logging.Handler):
    """Records that reach the handler, and an event per logger name."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.seen: dict[str, threading.Event] = {}
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._guard:
            self.records.append(record)
            self.seen.setdefault(record.name, threading.Event()).set()

    def wait_for(self, name: str) -> bool:
        with self._guard:
            event = self.seen.setdefault(name, threading.Event())
        return event.wait(10)


def test_each_part_logs_on_its_own_logger_and_the_parent_hears_them_all() -> None:
    """A handler on ``postroom`` (what an application installs) receives the
    records of every part, each on the part's logger."""
    parent = logging.getLogger("postroom")
    collect = _Collect()
    level = parent.level
    parent.addHandler(collect)
    parent.setLevel(logging.DEBUG)
    clock = ManualClock()
    sched = Scheduler(workers=1, clock=clock)

    @sched.handler("bad")
    def bad(ctx, payload):
        ctx.log.info("about to fail")
        raise ValueError("no")

    @sched.handler("ok")
    def ok(ctx, payload):
        return payload

    def explode(_handle: object) -> None:
        raise RuntimeError("callback bug")

    try:
        with sched:
            with pytest.raises(JobFailed):
                sched.submit("bad").result(timeout=10)
            # A fire more than misfire_grace late, skipped: the schedules' warning.
            sched.at("ok", clock.wall() - 3600, misfire="skip", misfire_grace=1)
            assert collect.wait_for("postroom.schedules")
            # A done callback that raises, on the callback thread: the runtime's.
            pending = sched.submit("ok", 2, delay=10)
            pending.add_done_callback(explode)
            clock.advance(10)
            assert pending.result(timeout=10) == 2
            assert collect.wait_for("postroom.runtime")
    finally:
        parent.removeHandler(collect)
        parent.setLevel(level)
    names = {r.name for r in collect.records}
    assert {
        "postroom.handler",
        "postroom.worker",
        "postroom.dispatcher",
        "postroom.schedules",
        "postroom.runtime",
    } <= names
    assert all(name.startswith("postroom.") for name in names), names
