"""Tests for `actors._policy.options`: one declaration and one check of a job's
options, for every call that makes a job."""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from actors import (
    InvalidArgument,
    JobContext,
    JobHandle,
    ManualClock,
    Priority,
    RetryPolicy,
    Scheduler,
    UnknownQueue,
)
from actors._policy.options import (
    JOB_OPTIONS,
    SUBMIT_OPTIONS,
    JobOptions,
    SubmitOptions,
    options_of,
)
from actors.messages import Job

WAIT = 10.0

BAD = {
    "repo": "",
    "priority": 11,
    "queue": "nope",
    "max_retries": -1,
    "timeout": 0,
    "retry": "fixed",
    "delay": -1,
    "idempotency_key": 5,
}
"""A bad value of every option (a new option needs one here)."""


@pytest.fixture
def sched() -> Iterator[Scheduler]:
    """A running scheduler with an ``echo`` handler and a queue ``q``."""
    from actors import Queue

    scheduler = Scheduler(workers=1, clock=ManualClock(), queues={"q": Queue(1)})
    scheduler.register("echo", lambda ctx, payload: payload)
    with scheduler:
        yield scheduler


def _options_parameter(func: Callable[..., Any]) -> type:
    """The TypedDict a call's ``**options`` is typed with."""
    params = inspect.signature(func).parameters.values()
    (var_keyword,) = [p for p in params if p.kind is inspect.Parameter.VAR_KEYWORD]
    # Evaluated alone: other annotations may name types imported for typing only.
    hint = eval(var_keyword.annotation, func.__globals__)
    assert typing.get_origin(hint) is typing.Unpack, hint
    (options,) = typing.get_args(hint)
    return typing.cast("type", options)


@pytest.mark.parametrize(
    ("func", "options"),
    [
        (Scheduler.submit, SubmitOptions),
        (JobContext.submit, SubmitOptions),
        (JobHandle.then, JobOptions),
        (Scheduler.cron, JobOptions),
        (Scheduler.every, JobOptions),
        (Scheduler.at, JobOptions),
    ],
    ids=["submit", "ctx.submit", "then", "cron", "every", "at"],
)
def test_every_call_that_makes_a_job_takes_the_declared_options(
    func: Callable[..., Any], options: type
) -> None:
    assert _options_parameter(func) is options
    # No option is declared again as a parameter of its own.
    names = set(inspect.signature(func).parameters)
    assert not names & SUBMIT_OPTIONS


def test_the_two_declarations_differ_by_delay_and_idempotency_key() -> None:
    only_submit = SUBMIT_OPTIONS - JOB_OPTIONS
    assert only_submit == {"delay", "idempotency_key"}
    assert JOB_OPTIONS < SUBMIT_OPTIONS
    assert BAD.keys() == SUBMIT_OPTIONS


@pytest.mark.parametrize("name", sorted(BAD))
def test_every_option_is_checked(sched: Scheduler, name: str) -> None:
    expected = UnknownQueue if name == "queue" else InvalidArgument
    with pytest.raises(expected, match=name if name != "queue" else "nope"):
        sched.submit("echo", 1, **{name: BAD[name]})
    assert sched.stats().submitted == 0


@pytest.mark.parametrize("name", sorted(BAD.keys() & JOB_OPTIONS))
def test_then_and_the_schedules_check_their_options_as_submit_does(
    sched: Scheduler, name: str
) -> None:
    expected = UnknownQueue if name == "queue" else InvalidArgument
    parent = sched.submit("echo", 1)
    assert parent.result(timeout=WAIT) == 1
    with pytest.raises(expected):
        parent.then("echo", **{name: BAD[name]})
    for add in (
        lambda: sched.cron("echo", "* * * * *", **{name: BAD[name]}),
        lambda: sched.every("echo", 60, **{name: BAD[name]}),
        lambda: sched.at("echo", 4_000_000_000, **{name: BAD[name]}),
    ):
        with pytest.raises(expected):
            add()
    assert sched.schedules() == []
    assert sched.stats().submitted == 1


def test_a_child_s_options_are_checked_as_submit_does(sched: Scheduler) -> None:
    @sched.handler("parent")
    def parent(ctx: JobContext, payload: Any) -> dict[str, str]:
        errors = {}
        for name, value in BAD.items():
            try:
                ctx.submit("echo", 1, **{name: value})
            except (InvalidArgument, UnknownQueue) as exc:
                errors[name] = type(exc).__name__
        return errors

    errors = sched.submit("parent").result(timeout=WAIT)
    assert errors == {
        name: "UnknownQueue" if name == "queue" else "InvalidArgument" for name in BAD
    }


@pytest.mark.parametrize(
    ("call", "option"),
    [
        ("submit", "prioirty"),
        ("then", "delay"),
        ("then", "idempotency_key"),
        ("cron", "delay"),
        ("every", "idempotency_key"),
        ("at", "delay"),
    ],
)
def test_an_option_a_call_does_not_take_is_refused_naming_it(
    sched: Scheduler, call: str, option: str
) -> None:
    calls: dict[str, Callable[..., Any]] = {
        "submit": lambda **o: sched.submit("echo", 1, **o),
        "then": lambda **o: sched.submit("echo", 1).then("echo", **o),
        "cron": lambda **o: sched.cron("echo", "* * * * *", **o),
        "every": lambda **o: sched.every("echo", 60, **o),
        "at": lambda **o: sched.at("echo", 4_000_000_000, **o),
    }
    with pytest.raises(InvalidArgument, match=rf"{call}\(\) got an unexpected option '{option}'"):
        calls[call](**{option: 1})
    assert sched.schedules() == []


@pytest.mark.parametrize("hidden", ["_retry_of", "_schedule", "_parent"])
def test_submit_has_no_hidden_keyword_arguments(sched: Scheduler, hidden: str) -> None:
    with pytest.raises(InvalidArgument, match=f"unexpected option '{hidden}'"):
        sched.submit("echo", 1, **{hidden: "x"})
    assert sched.stats().submitted == 0


def test_a_schedule_s_jobs_carry_its_options(sched: Scheduler) -> None:
    retry = RetryPolicy.fixed(2.0)
    handle = sched.every(
        "echo",
        60,
        "tick",
        repo="r",
        priority=Priority.USER_BLOCKING,
        queue="q",
        max_retries=3,
        timeout=9.0,
        retry=retry,
    )
    job = handle.trigger()
    assert job is not None
    info = job.info()
    assert (info.repo, info.priority, info.max_retries) == ("r", 1, 3)
    assert job._state.job.queue == "q"
    assert (job._state.job.timeout, job._state.job.retry) == (9.0, retry)
    assert job.result(timeout=WAIT) == "tick"


def test_options_of_a_job_are_its_own_values() -> None:
    retry = RetryPolicy.exponential(1.0)
    job = Job(
        "id", "h", None, seq=1, priority=2, repo="r", max_retries=4, timeout=3.0,
        retry=retry, idempotency_key="k", queue="q",
    )  # fmt: skip
    assert options_of(job) == {
        "repo": "r",
        "priority": 2,
        "queue": "q",
        "max_retries": 4,
        "timeout": 3.0,
        "retry": retry,
    }
    # Each option of a job is a field of `Job` under the same name.
    assert JOB_OPTIONS.issubset(field.name for field in dataclasses.fields(Job))
