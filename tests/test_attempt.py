"""`AttemptRunner`: one attempt's handler call and its `Outcome`, as the in-process
Worker and a worker node's slot both run it."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from actors import Fatal, NotSupportedOnNode, SchedulerClosed
from actors._policy.handlers import HandlerSpec, make_spec
from actors._worker.attempt import AttemptRunner
from actors._worker.cancel import CancelScope
from actors._worker.context import JobContext
from actors.messages import Job

WAIT = 10.0


def _spec(name: str, func: Any, throws: Any = ()) -> HandlerSpec:
    return make_spec(name, func, max_retries=None, timeout=None, retry=None, throws=throws)


def _job(handler: str, payload: Any = None, *, timeout: float | None = None) -> Job:
    return Job(id="j1", handler=handler, payload=payload, seq=1, attempt=1, timeout=timeout)


def _runner(
    specs: dict[str, HandlerSpec],
    scope: CancelScope | None = None,
    *,
    on_node: bool = False,
    progress: list[tuple[str, float, str]] | None = None,
    kept: list[BaseException] | None = None,
) -> tuple[AttemptRunner, CancelScope]:
    scope = scope or CancelScope()
    sink = progress if progress is not None else []
    keep = kept if kept is not None else []
    runner = AttemptRunner(
        specs,
        scope,
        lambda job_id, fraction, message: sink.append((job_id, fraction, message)),
        on_node=on_node,
        keep_exception=lambda _job_id, exc: keep.append(exc),
    )
    return runner, scope


def test_a_completed_attempt_carries_the_result_and_the_progress_reaches_the_sink() -> None:
    def work(ctx: JobContext, payload: Any) -> Any:
        ctx.progress(0.5, "half")
        return {"got": payload}

    progress: list[tuple[str, float, str]] = []
    runner, scope = _runner({"work": _spec("work", work)}, progress=progress)
    scope.arm("j1", 1)
    outcome = runner.run(_job("work", [1]), None, 123.0)
    assert (outcome.status, outcome.result) == ("completed", {"got": [1]})
    assert outcome.started_at == 123.0
    assert progress == [("j1", 0.5, "half")]


def test_errors_become_failed_outcomes_retryable_unless_fatal_or_thrown() -> None:
    def boom(ctx: JobContext, payload: Any) -> Any:
        raise ValueError("boom")

    def fatal(ctx: JobContext, payload: Any) -> Any:
        raise Fatal(KeyError("gone"))

    kept: list[BaseException] = []
    specs = {
        "boom": _spec("boom", boom),
        "fatal": _spec("fatal", fatal),
        "thrown": _spec("thrown", boom, throws=ValueError),
    }
    runner, scope = _runner(specs, kept=kept)
    scope.arm("j1", 1)
    failed = runner.run(_job("boom"), None, 0.0)
    assert (failed.status, failed.retryable) == ("failed", True)
    assert failed.error is not None and failed.error.type == "ValueError"
    fatal_outcome = runner.run(_job("fatal"), None, 0.0)
    assert fatal_outcome.retryable is False
    assert fatal_outcome.error is not None and fatal_outcome.error.type == "KeyError"
    assert runner.run(_job("thrown"), None, 0.0).retryable is False
    assert [type(e) for e in kept] == [ValueError, KeyError, ValueError]


def test_a_stopped_attempt_is_cancelled_or_timed_out_by_the_scope_reason() -> None:
    waiting = threading.Event()

    def waits(ctx: JobContext, payload: Any) -> Any:
        waiting.set()
        ctx.wait(WAIT)
        return "late"

    runner, scope = _runner({"waits": _spec("waits", waits)})
    for reason, status, timed_out in (("cancel", "cancelled", False), ("timeout", "failed", True)):
        waiting.clear()
        scope.arm("j1", 1)
        fire = threading.Thread(
            target=lambda r=reason: (waiting.wait(WAIT), scope.fire("j1", 1, r))
        )
        fire.start()
        outcome = runner.run(_job("waits", timeout=1.0), 1.0, 0.0)
        fire.join()
        assert (outcome.status, outcome.timed_out) == (status, timed_out)
        assert outcome.run_time < WAIT


def test_an_async_handler_runs_on_the_runners_loop_and_a_fire_cancels_its_task() -> None:
    started = threading.Event()

    async def sleeper(ctx: JobContext, payload: Any) -> Any:
        if payload == "quick":
            await asyncio.sleep(0)
            return "done"
        started.set()
        await asyncio.sleep(WAIT)
        return "late"

    runner, scope = _runner({"sleeper": _spec("sleeper", sleeper)})
    try:
        scope.arm("j1", 1)
        assert runner.run(_job("sleeper", "quick"), None, 0.0).result == "done"
        scope.arm("j1", 2)
        job = Job(id="j1", handler="sleeper", payload="slow", seq=1, attempt=2)
        firer = threading.Thread(target=lambda: (started.wait(WAIT), scope.fire("j1", 2, "cancel")))
        firer.start()
        outcome = runner.run(job, None, 0.0)
        firer.join()
        assert outcome.status == "cancelled"
        assert outcome.run_time < WAIT
    finally:
        runner.close()
    runner.close()  # idempotent


def test_ctx_submit_on_a_node_raises_not_supported_on_node() -> None:
    seen: list[BaseException] = []

    def parent(ctx: JobContext, payload: Any) -> Any:
        try:
            ctx.submit("child")
        except Exception as exc:
            seen.append(exc)
            raise

    runner, scope = _runner({"parent": _spec("parent", parent)}, on_node=True)
    scope.arm("j1", 1)
    outcome = runner.run(_job("parent"), None, 0.0)
    assert outcome.status == "failed"
    assert outcome.error is not None and outcome.error.type == "postroom.NotSupportedOnNode"
    assert isinstance(seen[0], NotSupportedOnNode)
    assert "worker node" in str(seen[0])


def test_ctx_submit_without_links_in_process_still_says_scheduler_closed() -> None:
    ctx = JobContext(_job("x"), CancelScope(), lambda *_: None, None, None)
    with pytest.raises(SchedulerClosed):
        ctx.submit("child")
