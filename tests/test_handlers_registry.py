"""`Handlers`: registrations made apart from a scheduler, taken by
``Scheduler(handlers=...)`` and `Scheduler.include` with their options."""

from __future__ import annotations

from typing import Any

import pytest

from actors import (
    Handlers,
    InvalidArgument,
    JobFailed,
    Queue,
    RetryPolicy,
    Scheduler,
    UnknownQueue,
)
from actors._policy.registry import handler_specs

WAIT = 10.0


def _noop(ctx: Any, payload: Any) -> Any:
    return payload


def test_the_decorator_keeps_every_option_and_returns_the_function() -> None:
    handlers = Handlers()
    policy = RetryPolicy.fixed(2.0)

    @handlers.handler(
        "build",
        max_retries=3,
        timeout=600,
        retry=policy,
        throws=KeyError,
        queue="cpu",
        on_interrupt="fail",
    )
    def build(ctx: Any, payload: Any) -> Any:
        return payload

    assert build(None, 7) == 7
    spec = handler_specs(handlers)["build"]
    assert (spec.func, spec.max_retries, spec.timeout, spec.retry) == (build, 3, 600, policy)
    assert (spec.throws, spec.queue, spec.on_interrupt) == ((KeyError,), "cpu", "fail")
    assert handlers.names() == ["build"] and "build" in handlers and len(handlers) == 1


@pytest.mark.parametrize(
    "bad",
    [
        {"max_retries": -1},
        {"timeout": 0},
        {"throws": "x"},
        {"on_interrupt": "maybe"},
        {"queue": ""},
        {"queue": 3},
    ],
)
def test_register_checks_the_options_as_the_scheduler_does(bad: dict[str, Any]) -> None:
    handlers = Handlers()
    with pytest.raises(InvalidArgument):
        handlers.register("h", _noop, **bad)
    assert len(handlers) == 0


def test_a_bad_signature_and_a_second_registration_are_refused() -> None:
    handlers = Handlers()
    with pytest.raises(InvalidArgument, match="func\\(ctx, payload\\)"):
        handlers.register("h", lambda: None)
    handlers.register("h", _noop)
    with pytest.raises(InvalidArgument, match="already registered"):
        handlers.register("h", _noop)


def test_a_scheduler_made_with_handlers_runs_them_with_their_options() -> None:
    handlers = Handlers()
    calls: list[int] = []

    @handlers.handler("flaky", max_retries=2)
    def flaky(ctx: Any, payload: Any) -> Any:
        calls.append(ctx.attempt)
        if ctx.attempt < 3:
            raise ValueError("again")
        return "ok"

    @handlers.handler("fatal", max_retries=5, throws=KeyError)
    def fatal(ctx: Any, payload: Any) -> Any:
        raise KeyError("never retried")

    with Scheduler(workers=1, metrics=False, handlers=handlers) as sched:
        assert sched.submit("flaky").result(WAIT) == "ok"
        with pytest.raises(JobFailed):
            sched.submit("fatal").result(WAIT)
        assert sched.job(sched.jobs(handler="fatal")[0].id).attempts == 1
    assert calls == [1, 2, 3]


def test_include_sends_a_handlers_jobs_to_its_queue() -> None:
    handlers = Handlers()
    handlers.register("where", lambda ctx, payload: ctx.job_id, queue="cpu")
    sched = Scheduler(workers=1, metrics=False, queues={"cpu": Queue(1)})
    sched.include(handlers)
    with sched:
        handle = sched.submit("where")
        handle.result(WAIT)
        assert sched.job(handle.id).queue == "cpu"


def test_include_is_all_or_nothing() -> None:
    handlers = Handlers()
    handlers.register("a", _noop)
    handlers.register("b", _noop, queue="missing")
    sched = Scheduler(workers=1, metrics=False)
    with pytest.raises(UnknownQueue, match="missing"):
        sched.include(handlers)
    with pytest.raises(UnknownQueue):
        Scheduler(workers=1, metrics=False, handlers=handlers)
    sched.register("a2", _noop)
    other = Handlers()
    other.register("fresh", _noop)
    other.register("a2", _noop)
    with pytest.raises(InvalidArgument, match="already registered"):
        sched.include(other)
    # Neither attempt registered anything: "a" and "fresh" are still free.
    sched.register("a", _noop)
    sched.register("fresh", _noop)


def test_include_refuses_what_is_not_a_handlers() -> None:
    sched = Scheduler(workers=1, metrics=False)
    with pytest.raises(InvalidArgument, match="Handlers"):
        sched.include({"h": _noop})  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="Handlers"):
        Scheduler(workers=1, metrics=False, handlers=[_noop])  # type: ignore[arg-type]
