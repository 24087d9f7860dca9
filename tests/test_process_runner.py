"""Tests for `transport.process_runner`: a slot's attempts in a real child process.

The handlers are in ``tests/slot_apps.py``, imported by the child. A test that
must act while a handler runs waits for the handler's first progress report
(relayed on the calling thread) and acts in the progress callback: no sleeps.
"""

from __future__ import annotations

import itertools
import os
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from actors._errors import InvalidArgument, SchedulerClosed
from actors._worker.cancel import CancelReason, CancelScope
from actors.messages import Job, Outcome
from transport.process_runner import ProcessRunner

APP = "tests.slot_apps:handlers"
GRACE = 0.2
_seq = itertools.count(1)


def _job(handler: str, payload: Any = None, *, timeout: float | None = None) -> Job:
    seq = next(_seq)
    return Job(f"job-{seq}", handler, payload, seq, timeout=timeout)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def runner() -> Iterator[ProcessRunner]:
    runner = ProcessRunner(APP, GRACE)
    try:
        yield runner
    finally:
        runner.close()


def _run(
    runner: ProcessRunner,
    job: Job,
    *,
    deadline: float | None = None,
    on_progress: Callable[[CancelScope, Job], None] | None = None,
) -> tuple[Outcome, list[tuple[float, str]]]:
    scope = CancelScope()
    scope.arm(job.id, job.attempt)
    reports: list[tuple[float, str]] = []

    def progress(job_id: str, fraction: float, message: str) -> None:
        assert job_id == job.id
        reports.append((fraction, message))
        if on_progress is not None:
            on_progress(scope, job)

    return runner.run(job, scope, progress, deadline), reports


def _fire(reason: CancelReason) -> Callable[[CancelScope, Job], None]:
    def fire(scope: CancelScope, job: Job) -> None:
        scope.fire(job.id, job.attempt, reason)

    return fire


def test_a_completed_result_comes_back_from_the_child(runner: ProcessRunner) -> None:
    assert "echo" in runner.handlers
    outcome, _ = _run(runner, _job("echo", {"n": [1, 2.5, "x"]}))
    assert outcome.status == "completed"
    assert outcome.result == {"payload": {"n": [1, 2.5, "x"]}, "pid": runner.pid, "attempt": 1}
    assert runner.pid != os.getpid()


def test_a_raise_fails_retryable_and_fatal_does_not(runner: ProcessRunner) -> None:
    outcome, _ = _run(runner, _job("boom", 3))
    assert outcome.status == "failed"
    assert outcome.retryable
    assert outcome.error is not None and outcome.error.type == "ValueError"
    assert outcome.error.message == "boom 3"
    assert "Traceback" in outcome.error.traceback
    outcome, _ = _run(runner, _job("fatal"))
    assert outcome.status == "failed"
    assert not outcome.retryable
    # The cause Fatal wraps, as an in-process worker records it.
    assert outcome.error is not None and outcome.error.type == "ValueError"
    assert outcome.error.message == "no use retrying"


def test_a_cancel_is_relayed_to_the_child(runner: ProcessRunner) -> None:
    pid = runner.pid
    outcome, _ = _run(runner, _job("wait_cancel"), on_progress=_fire("cancel"))
    assert outcome.status == "cancelled"
    assert outcome.error is not None and outcome.error.type == "postroom.JobCancelled"
    assert runner.pid == pid  # the handler stopped: nothing was killed


def test_a_timeout_cancel_is_relayed_and_the_run_times_out(runner: ProcessRunner) -> None:
    pid = runner.pid
    job = _job("wait_cancel", timeout=30)
    outcome, _ = _run(runner, job, deadline=time.monotonic() + 30, on_progress=_fire("timeout"))
    assert outcome.status == "failed"
    assert outcome.timed_out
    assert outcome.error is not None and outcome.error.type == "postroom.JobTimedOut"
    assert runner.pid == pid


def test_progress_is_relayed_in_order(runner: ProcessRunner) -> None:
    outcome, reports = _run(runner, _job("progress"))
    assert outcome.result == "done"
    assert reports == [(1 / 3, "step 1"), (2 / 3, "step 2"), (1.0, "step 3")]


def test_async_handlers_run_and_are_cancelled_for_real(runner: ProcessRunner) -> None:
    outcome, _ = _run(runner, _job("async_echo", "a"))
    assert outcome.status == "completed"
    assert outcome.result == {"async": "a"}
    # The handler sleeps 60 s unless its task is cancelled.
    outcome, _ = _run(runner, _job("async_wait_cancel"), on_progress=_fire("cancel"))
    assert outcome.status == "cancelled"
    assert outcome.run_time < 30


def test_a_handler_that_prints_does_not_corrupt_the_pipe(runner: ProcessRunner) -> None:
    outcome, _ = _run(runner, _job("prints"))
    assert outcome.status == "completed"
    assert outcome.result == "printed"


@pytest.mark.parametrize("handler", ["stuck_sleep", "stuck_spin"])
def test_a_stuck_handler_is_killed_at_deadline_plus_grace(
    runner: ProcessRunner, handler: str
) -> None:
    old = runner.pid
    assert old is not None
    # Its cancel is fired at the deadline, as a slot does, and ignored.
    start = time.monotonic()
    deadline = start + 0.3
    outcome, _ = _run(runner, _job(handler, timeout=0.3), deadline=deadline)
    took = time.monotonic() - start
    assert outcome.status == "failed"
    assert outcome.timed_out
    assert outcome.retryable
    assert outcome.error is not None and outcome.error.type == "postroom.JobTimedOut"
    assert "killed 0.2s past its deadline" in outcome.error.message
    assert took >= 0.3 + GRACE
    assert not _alive(old)  # killed and reaped
    # The next run works, in another process.
    outcome, _ = _run(runner, _job("pid"))
    assert outcome.status == "completed"
    assert outcome.result == runner.pid
    assert outcome.result != old


def test_a_stuck_handler_that_ignores_a_relayed_cancel_is_killed(runner: ProcessRunner) -> None:
    old = runner.pid
    deadline = time.monotonic() + 0.3
    job = _job("stuck_sleep", timeout=0.3)
    outcome, _ = _run(runner, job, deadline=deadline, on_progress=_fire("timeout"))
    assert outcome.timed_out
    assert outcome.error is not None and "killed" in outcome.error.message
    assert runner.pid != old
    assert _run(runner, _job("echo", 1))[0].status == "completed"


def test_a_child_that_exits_mid_run_is_a_crash_and_is_replaced(runner: ProcessRunner) -> None:
    old = runner.pid
    outcome, _ = _run(runner, _job("exit_now"))
    assert outcome.status == "failed"
    assert outcome.retryable
    assert outcome.error is not None and outcome.error.type == "postroom.WorkerCrashed"
    assert "exited with code 7" in outcome.error.message
    assert old is not None and not _alive(old)
    outcome, _ = _run(runner, _job("pid"))
    assert outcome.status == "completed"
    assert outcome.result != old


def test_a_child_killed_from_outside_is_a_crash(runner: ProcessRunner) -> None:
    old = runner.pid
    assert old is not None

    def kill(scope: CancelScope, job: Job) -> None:
        os.kill(old, signal.SIGKILL)

    outcome, _ = _run(runner, _job("stuck_sleep"), on_progress=kill)
    assert outcome.error is not None and outcome.error.type == "postroom.WorkerCrashed"
    assert "code -9" in outcome.error.message
    assert _run(runner, _job("echo", 2))[0].status == "completed"


@pytest.mark.parametrize("kind", ["huge", "junk"])
def test_a_bad_frame_from_the_child_fails_the_run_and_replaces_it(
    runner: ProcessRunner, kind: str
) -> None:
    old = runner.pid
    assert old is not None
    # No deadline: only the bad frame can end this run.
    outcome, _ = _run(runner, _job("bad_frame", kind))
    assert outcome.status == "failed"
    assert outcome.error is not None and outcome.error.type == "postroom.DecodeError"
    assert not _alive(old)
    assert _run(runner, _job("echo", 3))[0].status == "completed"


def test_close_ends_the_child_and_is_idempotent() -> None:
    runner = ProcessRunner(APP, GRACE)
    pid = runner.pid
    assert pid is not None and _alive(pid)
    assert _run(runner, _job("echo", 1))[0].status == "completed"
    runner.close()
    assert not _alive(pid)
    assert runner.pid is None
    runner.close()
    with pytest.raises(SchedulerClosed):
        _run(runner, _job("echo"))


def test_a_scheduler_app_gives_its_handlers() -> None:
    runner = ProcessRunner("tests.slot_apps:scheduler", GRACE)
    try:
        assert runner.handlers == ("boom", "echo")
        assert _run(runner, _job("echo", 5))[0].result["payload"] == 5  # type: ignore[index]
    finally:
        runner.close()


@pytest.mark.parametrize(
    ("app", "words"),
    [
        ("tests.slot_apps:not_handlers", "not a Handlers or a Scheduler"),
        ("tests.slot_apps:as_dict", "is a dict, not a Handlers"),
        ("tests.slot_apps", "module:attr"),
        ("tests.no_such_module:handlers", "ModuleNotFoundError"),
        ("tests.slot_apps:missing", "AttributeError"),
    ],
)
def test_an_app_the_child_cannot_load_is_invalid(app: str, words: str) -> None:
    with pytest.raises(InvalidArgument, match=words):
        ProcessRunner(app, GRACE)


@pytest.mark.parametrize("grace", [0, -1, float("inf"), "1"])
def test_a_bad_grace_is_invalid(grace: Any) -> None:
    with pytest.raises(InvalidArgument, match="grace"):
        ProcessRunner(APP, grace)


def test_ctx_submit_in_a_child_raises_not_supported_on_node(runner: ProcessRunner) -> None:
    outcome, _ = _run(runner, _job("submit_child"))
    assert outcome.status == "failed"
    assert outcome.error is not None and outcome.error.type == "postroom.NotSupportedOnNode"


def test_a_scope_fired_before_the_run_never_calls_the_handler(runner: ProcessRunner) -> None:
    job = _job("exit_now")  # would take the child down if it ran
    pid = runner.pid
    scope = CancelScope()
    scope.arm(job.id, job.attempt)
    scope.fire(job.id, job.attempt, "cancel")
    outcome = runner.run(job, scope, lambda *_: None, None)
    assert outcome.status == "cancelled"
    assert outcome.run_time == 0.0
    assert runner.pid == pid


def test_an_unknown_handler_fails_retryable(runner: ProcessRunner) -> None:
    outcome, _ = _run(runner, _job("nobody"))
    assert outcome.status == "failed"
    assert outcome.retryable  # another node may have it
    assert outcome.error is not None and outcome.error.type == "postroom.UnknownHandler"


def test_a_replacement_that_cannot_load_the_app_fails_runs_until_one_can(
    runner: ProcessRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POSTROOM_TEST_BREAK_SLOT_APPS", "1")
    assert _run(runner, _job("exit_now"))[0].error.type == "postroom.WorkerCrashed"  # type: ignore[union-attr]
    outcome, _ = _run(runner, _job("echo", 1))
    assert outcome.status == "failed"
    assert outcome.retryable
    assert outcome.error is not None and outcome.error.type == "postroom.WorkerCrashed"
    assert "could not start" in outcome.error.message
    assert "slot_apps broken on purpose" in outcome.error.message
    monkeypatch.delenv("POSTROOM_TEST_BREAK_SLOT_APPS")
    outcome, _ = _run(runner, _job("echo", 2))
    assert outcome.status == "completed"
