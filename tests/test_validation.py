"""Tests for argument checking: typed errors at the boundary, nothing changed behind."""

from __future__ import annotations

import enum
import functools
import math
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import pytest

from actors import (
    Clock,
    InvalidArgument,
    JobFailed,
    NotSerializable,
    PayloadTooLarge,
    QueueFull,
    RetryPolicy,
    Scheduler,
    SchedulerClosed,
    SchedulerError,
    UnknownHandler,
)
from actors import messages as m
from actors._policy.payloads import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    MAX_DEPTH,
    MAX_PAYLOAD_BYTES,
    MIN_PAYLOAD_BYTES,
)
from actors._timer.clock import CLOCK_METHODS
from transport import decode, encode


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.fixture
def sched() -> Iterator[Scheduler]:
    """A running scheduler with an ``echo`` handler; after the check, a good job
    must still run to completion on it."""
    scheduler = Scheduler(workers=2)

    @scheduler.handler("echo")
    def echo(ctx, payload):
        return payload

    with scheduler:
        yield scheduler
        assert scheduler.running
        good = {"ok": [1, 2.5, "x"]}
        assert scheduler.submit("echo", good).result(timeout=10) == good


def test_error_tree() -> None:
    assert issubclass(InvalidArgument, SchedulerError)
    assert issubclass(InvalidArgument, ValueError)
    assert issubclass(InvalidArgument, TypeError)
    assert issubclass(NotSerializable, InvalidArgument)
    for error in (UnknownHandler, QueueFull, SchedulerClosed, JobFailed, NotSerializable):
        assert issubclass(error, SchedulerError)


def test_unknown_handler(sched: Scheduler) -> None:
    with pytest.raises(UnknownHandler) as caught:
        sched.submit("nope", {})
    assert isinstance(caught.value, KeyError)
    assert "nope" in str(caught.value)
    with pytest.raises(UnknownHandler):
        sched.submit(5, {})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "payload",
    [
        {1, 2},
        object(),
        b"bytes",
        float("nan"),
        float("inf"),
        {"x": -math.inf},
        {1: "int key"},
        {"deep": {"er": [{(1, 2): "tuple key"}]}},
        [1, {"a": {3}}],
        _nested(MAX_DEPTH + 1),
        _nested(1000),
        2**64,
        [-(2**63) - 1],
        "\ud800",
        {"k": ["\udfff"]},
    ],
    ids=[
        "set",
        "object",
        "bytes",
        "nan",
        "inf",
        "nested-inf",
        "int-key",
        "tuple-key",
        "nested-set",
        "too-deep",
        "far-too-deep",
        "int-past-64-bits",
        "nested-int-past-64-bits",
        "lone-surrogate",
        "nested-lone-surrogate",
    ],
)
def test_payload_not_json_able(sched: Scheduler, payload: Any) -> None:
    before = sched.stats().submitted
    with pytest.raises(NotSerializable) as caught:
        sched.submit("echo", payload)
    assert isinstance(caught.value, InvalidArgument)
    assert sched.stats().submitted == before


def test_payload_at_the_depth_limit_is_accepted(sched: Scheduler) -> None:
    payload = _nested(MAX_DEPTH)
    assert sched.submit("echo", payload).result(timeout=10) == payload


def test_the_depth_error_names_the_path_once(sched: Scheduler) -> None:
    with pytest.raises(NotSerializable) as caught:
        sched.submit("echo", {"outer": _nested(1000)})
    message = str(caught.value)
    assert message == (
        f"payload['outer'][0][0][0][... {MAX_DEPTH - 4} more] "
        f"is nested deeper than {MAX_DEPTH} levels"
    )


class _Colour(enum.IntEnum):
    RED = 1


class _Name(str):
    pass


def test_what_submit_accepts_the_codec_carries(sched: Scheduler) -> None:
    # Subclasses and tuples are taken as their plain JSON values, so the job's
    # payload can be journaled and sent as it is.
    payload = {"c": _Colour.RED, "n": _Name("x"), "t": (1, 2), "o": OrderedDict(k=[2.5])}
    handle = sched.submit("echo", payload)
    accepted = handle.info().payload
    assert accepted == {"c": 1, "n": "x", "t": [1, 2], "o": {"k": [2.5]}}
    assert type(accepted["c"]) is int and type(accepted["n"]) is str  # type: ignore[index]
    job = m.Job("j1", "echo", accepted, seq=1)
    assert decode(encode(m.Submit(job))) == m.Submit(job)
    assert handle.result(timeout=10) == accepted


def test_a_payload_over_max_payload_bytes_is_refused_naming_its_size(sched: Scheduler) -> None:
    before = sched.stats().submitted
    huge = "x" * (64 * 2**20)  # over the codec's 16 MiB cap on a whole message
    with pytest.raises(PayloadTooLarge) as caught:
        sched.submit("echo", huge)
    error = caught.value
    assert isinstance(error, InvalidArgument)
    assert (error.size, error.limit) == (64 * 2**20 + 5, DEFAULT_MAX_PAYLOAD_BYTES)
    assert str(error) == (
        f"payload is {64 * 2**20 + 5:,} bytes encoded, "
        f"over max_payload_bytes={DEFAULT_MAX_PAYLOAD_BYTES:,}"
    )
    with pytest.raises(PayloadTooLarge):
        sched.submit("echo", {"items": ["é" * 1000] * (DEFAULT_MAX_PAYLOAD_BYTES // 2000)})
    assert sched.stats().submitted == before


def test_the_largest_payload_and_result_fit_in_one_message() -> None:
    # A payload at the highest limit is accepted, its handler returns as much,
    # and the message that carries both (Finished) is within the codec's cap.
    sched = Scheduler(workers=1, max_payload_bytes=MAX_PAYLOAD_BYTES)
    sched.register("echo", lambda ctx, payload: payload)
    biggest = "x" * (MAX_PAYLOAD_BYTES - 5)  # msgpack adds 5 bytes to a long str
    with sched:
        handle = sched.submit("echo", biggest)
        assert handle.result(timeout=30) == biggest
        with pytest.raises(PayloadTooLarge):
            sched.submit("echo", biggest + "x")
    job = m.Job("j1", "echo", biggest, seq=1)
    finished = m.Finished(job, m.Outcome("completed", result=biggest), worker=1)
    assert decode(encode(finished)) == finished


def test_every_way_in_checks_the_payload_size() -> None:
    sched = Scheduler(workers=1, max_payload_bytes=MIN_PAYLOAD_BYTES)
    big = "x" * MIN_PAYLOAD_BYTES

    @sched.handler("echo")
    def echo(ctx, payload):
        return payload

    @sched.handler("parent")
    def parent(ctx, payload):
        try:
            ctx.submit("echo", big)
        except PayloadTooLarge as exc:
            return exc.size
        return None

    with sched:
        assert sched.submit("parent").result(timeout=10) == MIN_PAYLOAD_BYTES + 3
        for add in (
            lambda: sched.cron("echo", "* * * * *", big),
            lambda: sched.every("echo", 60, big),
            lambda: sched.at("echo", 0.0, big),
        ):
            with pytest.raises(PayloadTooLarge):
                add()
        assert sched.schedules() == []
        assert sched.submit("echo", big[:-5]).result(timeout=10) == big[:-5]


def test_a_result_over_the_limit_fails_the_attempt_not_the_worker() -> None:
    sched = Scheduler(workers=1, max_payload_bytes=MIN_PAYLOAD_BYTES)
    calls: list[int] = []

    @sched.handler("blob", max_retries=3)
    def blob(ctx, payload):
        calls.append(ctx.attempt)
        return "x" * payload if ctx.attempt == 1 else {"x": "x" * payload}

    with sched:
        handle = sched.submit("blob", MIN_PAYLOAD_BYTES)
        with pytest.raises(JobFailed) as caught:
            handle.result(timeout=10)
        nested = sched.submit("blob", 10 * MIN_PAYLOAD_BYTES)
        with pytest.raises(JobFailed):
            nested.result(timeout=10)
        # The same single worker goes on with the next job.
        assert sched.submit("blob", 3).result(timeout=10) == "xxx"
        assert sched.running
        assert sched.stats().workers == 1
    error = caught.value.error
    assert error is not None
    assert error.type == "postroom.PayloadTooLarge"
    assert error.message == (
        f"result of handler 'blob' is {MIN_PAYLOAD_BYTES + 3:,} bytes encoded, "
        f"over max_payload_bytes={MIN_PAYLOAD_BYTES:,}"
    )
    assert isinstance(caught.value.__cause__, PayloadTooLarge)
    assert handle.info().attempts == 1  # not retried, though 3 retries are allowed
    assert nested.info().error.type == "postroom.PayloadTooLarge"  # type: ignore[union-attr]
    assert calls == [1, 1, 1]


@pytest.mark.parametrize(
    "limit", [0, MIN_PAYLOAD_BYTES - 1, MAX_PAYLOAD_BYTES + 1, True, 4e6, "4MiB", None]
)
def test_bad_max_payload_bytes(limit: Any) -> None:
    with pytest.raises(InvalidArgument, match="max_payload_bytes") as caught:
        Scheduler(max_payload_bytes=limit)
    assert repr(limit) in str(caught.value)


def test_payload_is_copied_at_submit(sched: Scheduler) -> None:
    payload = {"items": [1, 2], "t": (3, 4)}
    handle = sched.submit("echo", payload)
    payload["items"].append(99)
    assert handle.result(timeout=10) == {"items": [1, 2], "t": [3, 4]}


def test_result_not_json_able_fails_the_job_without_retry() -> None:
    sched = Scheduler(workers=1)
    calls: list[int] = []

    @sched.handler("unjsonable", max_retries=3)
    def unjsonable(ctx, payload):
        calls.append(ctx.attempt)
        return {"a set": {1, 2}}

    @sched.handler("echo")
    def echo(ctx, payload):
        return payload

    with sched:
        handle = sched.submit("unjsonable")
        with pytest.raises(JobFailed) as caught:
            handle.result(timeout=10)
        assert sched.submit("echo", 1).result(timeout=10) == 1
    assert caught.value.error is not None
    assert "NotSerializable" in caught.value.error.type
    assert isinstance(caught.value.__cause__, NotSerializable)
    assert calls == [1]
    assert handle.info().attempts == 1


@pytest.mark.parametrize("priority", [0, 11, -1, 5.0, True, "1", None])
def test_bad_priority(sched: Scheduler, priority: Any) -> None:
    with pytest.raises(InvalidArgument):
        sched.submit("echo", 1, priority=priority)


@pytest.mark.parametrize("priority", [1, 5, 10])
def test_good_priority(sched: Scheduler, priority: int) -> None:
    assert sched.submit("echo", priority, priority=priority).result(timeout=10) == priority


@pytest.mark.parametrize("delay", [-1, -0.001, math.nan, math.inf, "1", True])
def test_bad_delay(sched: Scheduler, delay: Any) -> None:
    with pytest.raises(InvalidArgument):
        sched.submit("echo", 1, delay=delay)


@pytest.mark.parametrize("timeout", [0, -1, 0.0, math.nan, math.inf, "5"])
def test_bad_timeout(sched: Scheduler, timeout: Any) -> None:
    with pytest.raises(InvalidArgument):
        sched.submit("echo", 1, timeout=timeout)


@pytest.mark.parametrize("max_retries", [-1, 1.5, "2", True])
def test_bad_max_retries(sched: Scheduler, max_retries: Any) -> None:
    with pytest.raises(InvalidArgument):
        sched.submit("echo", 1, max_retries=max_retries)


@pytest.mark.parametrize("repo", ["", 5, b"r"])
def test_bad_repo(sched: Scheduler, repo: Any) -> None:
    with pytest.raises(InvalidArgument):
        sched.submit("echo", 1, repo=repo)


@pytest.mark.parametrize("key", ["", 5])
def test_bad_idempotency_key(sched: Scheduler, key: Any) -> None:
    with pytest.raises(InvalidArgument):
        sched.submit("echo", 1, idempotency_key=key)


@pytest.mark.parametrize("retry", ["fixed", 1.0, {"kind": "fixed"}])
def test_bad_retry(sched: Scheduler, retry: Any) -> None:
    with pytest.raises(InvalidArgument):
        sched.submit("echo", 1, retry=retry)


def test_good_options_together(sched: Scheduler) -> None:
    handle = sched.submit(
        "echo",
        {"v": 1},
        repo="r",
        priority=1,
        delay=0,
        idempotency_key="unique-key",
        max_retries=2,
        timeout=5,
        retry=RetryPolicy.fixed(0.01),
    )
    assert handle.result(timeout=10) == {"v": 1}


@pytest.mark.parametrize("workers", [-1, 2.0, True, "2"])
def test_bad_resize(sched: Scheduler, workers: Any) -> None:
    before = sched.stats().workers
    with pytest.raises(InvalidArgument):
        sched.resize(workers)
    assert sched.stats().workers == before


def test_invalid_argument_is_value_and_type_error(sched: Scheduler) -> None:
    with pytest.raises(ValueError):
        sched.submit("echo", 1, priority=0)
    with pytest.raises(TypeError):
        sched.submit("echo", 1, priority="1")
    with pytest.raises(SchedulerError):
        sched.submit("echo", {1})


def test_registering_a_name_twice(sched: Scheduler) -> None:
    with pytest.raises(InvalidArgument):

        @sched.handler("echo")
        def echo_again(ctx, payload):
            return "impostor"

    # The first registration stays.
    assert sched.submit("echo", "original").result(timeout=10) == "original"


# --- the constructor and handler options (no running scheduler needed) ----------------


@pytest.mark.parametrize(
    "options",
    [
        {"workers": -2},
        {"workers": 1.5},
        {"on_full": "x"},
        {"on_full": None},
        {"repo_mode": "x"},
        {"repo_modes": {"r": "x"}},
        {"max_pending": 0},
        {"full_timeout": -1},
        {"restart_limit": -1},
    ],
    ids=repr,
)
def test_bad_scheduler_options(options: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument):
        Scheduler(**options)


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("", {}),
        (5, {}),
        ("h", {"max_retries": -1}),
        ("h", {"max_retries": 1.5}),
        ("h", {"timeout": 0}),
        ("h", {"retry": "fixed"}),
        ("h", {"throws": "ValueError"}),
        ("h", {"throws": (ValueError, 3)}),
    ],
    ids=repr,
)
def test_bad_handler_options(name: Any, options: dict[str, Any]) -> None:
    scheduler = Scheduler(workers=1)
    with pytest.raises(InvalidArgument):
        scheduler.register(name, lambda ctx, payload: None, **options)
    # Nothing was registered: the name is still free.
    if isinstance(name, str) and name:
        scheduler.register(name, lambda ctx, payload: None)


def test_handler_must_be_callable() -> None:
    scheduler = Scheduler(workers=1)
    with pytest.raises(InvalidArgument):
        scheduler.register("h", "not callable")  # type: ignore[arg-type]


@pytest.mark.parametrize("timeout", [-1, math.nan, "1"])
def test_bad_shutdown_timeout(sched: Scheduler, timeout: Any) -> None:
    with pytest.raises(InvalidArgument):
        sched.shutdown(timeout=timeout)
    assert sched.running  # nothing changed


# --- the clock (checked when the scheduler is made, not when it starts) ----------------


class _NoSubscribe:
    """A clock-like object that lacks `subscribe`."""

    def now(self) -> float:
        return 0.0

    def wall(self) -> float:
        return 0.0

    def wait_hint(self, due: float) -> float | None:
        return None


@pytest.mark.parametrize(
    ("clock", "missing"),
    [
        (object(), "now, wall, wait_hint, subscribe"),
        (_NoSubscribe(), "subscribe"),
        (type("NotCallable", (_NoSubscribe,), {"subscribe": 3})(), "subscribe"),
    ],
    ids=["object", "no-subscribe", "subscribe-not-callable"],
)
def test_a_clock_without_the_clock_methods_is_refused_at_construction(
    clock: Any, missing: str
) -> None:
    with pytest.raises(InvalidArgument, match=f"lacks {missing}$"):
        Scheduler(workers=1, clock=clock)


def test_a_duck_typed_clock_is_accepted() -> None:
    class Clockish(_NoSubscribe):
        def wait_hint(self, due: float) -> float | None:
            return 0.01

        def subscribe(self, callback: Any) -> Any:
            return lambda: None

    scheduler = Scheduler(workers=1, clock=Clockish())
    scheduler.register("echo", lambda ctx, payload: payload)
    with scheduler:
        assert scheduler.submit("echo", 1).result(timeout=10) == 1


# --- a handler's signature (checked when it is registered, not when it runs) ----------


def _two(ctx: Any, payload: Any) -> None:
    return None


def _three(ctx: Any, payload: Any, extra: Any) -> None:
    return None


def _keyword_only(*, ctx: Any, payload: Any) -> None:
    return None


class _Callable:
    def __call__(self, ctx: Any, payload: Any) -> None:
        return None

    def method(self, ctx: Any, payload: Any) -> None:
        return None

    def one(self, ctx: Any) -> None:
        return None


async def _async_two(ctx: Any, payload: Any) -> None:
    return None


@pytest.mark.parametrize(
    ("func", "shown"),
    [
        (lambda: None, "()"),
        (lambda ctx: None, "(ctx)"),
        (_three, "(ctx: 'Any', payload: 'Any', extra: 'Any')"),
        (_keyword_only, "(*, ctx: 'Any', payload: 'Any')"),
        (_Callable().one, "(ctx: 'Any')"),
        (functools.partial(_two, 1), "(payload: 'Any')"),
    ],
    ids=["no-args", "ctx-only", "three", "keyword-only", "bound-one", "partial"],
)
def test_a_handler_that_cannot_take_ctx_and_payload_is_refused(func: Any, shown: str) -> None:
    scheduler = Scheduler(workers=1)
    with pytest.raises(InvalidArgument) as caught:
        scheduler.register("h", func)
    message = str(caught.value)
    assert "'h'" in message
    assert shown in message
    # Nothing was registered: the name is still free.
    scheduler.register("h", _two)


def test_the_decorator_checks_the_signature_too() -> None:
    scheduler = Scheduler(workers=1)
    with pytest.raises(InvalidArgument, match="'h'"):

        @scheduler.handler("h")
        def only_ctx(ctx: Any) -> None:
            return None


@pytest.mark.parametrize(
    "func",
    [
        _two,
        _async_two,
        lambda *args: None,
        lambda ctx, payload=None, extra=1: None,
        lambda ctx, *rest, **options: None,
        _Callable(),
        _Callable().method,
        functools.partial(_three, extra=1),
        max,  # a builtin whose signature cannot be read: taken on trust
    ],
    ids=[
        "two",
        "async",
        "varargs",
        "defaults",
        "rest",
        "instance",
        "method",
        "partial",
        "builtin",
    ],
)
def test_a_handler_that_can_take_ctx_and_payload_is_accepted(func: Any) -> None:
    scheduler = Scheduler(workers=1)
    scheduler.register("h", func)


def test_clock_methods_are_the_protocols() -> None:
    declared = {name for name in vars(Clock) if not name.startswith("_")}
    assert set(CLOCK_METHODS) == declared
