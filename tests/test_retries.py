"""Retries (rule 4, docs/guarantees.md): the cap, fatal errors, backoff, and what a failed job
reports."""

from __future__ import annotations

import math
import random
import threading
from typing import Any

import pytest

from actors import (
    Fatal,
    JobContext,
    JobFailed,
    JobStatus,
    ManualClock,
    RetryPolicy,
    Scheduler,
)
from actors._policy.attempts import next_attempt
from actors.messages import ErrorInfo, Job, Outcome
from tests.helpers import WAIT, Runs, quiet, wait_until


class FlakyError(Exception):
    """What the test handlers raise."""


@pytest.fixture(params=[None, "r"], ids=["no-repo", "repo"])
def repo(request: pytest.FixtureRequest) -> str | None:
    """Jobs without a repo retry in the Dispatcher, with one in their RepoLock."""
    return request.param  # type: ignore[no-any-return]


def _failing(sched: Scheduler, name: str = "fail", **options: Any) -> list[BaseException]:
    """Register a handler that always raises a new `FlakyError`; returns what it raised."""
    raised: list[BaseException] = []
    lock = threading.Lock()

    def fail(ctx: JobContext, payload: Any) -> None:
        exc = FlakyError(f"attempt {ctx.attempt} of job {payload}")
        with lock:
            raised.append(exc)
        raise exc

    sched.register(name, fail, **options)
    return raised


# --- the cap ---------------------------------------------------------------------------


@pytest.mark.parametrize("max_retries", [0, 1, 3])
def test_a_failing_job_runs_at_most_one_plus_max_retries_times(
    repo: str | None, max_retries: int
) -> None:
    sched = Scheduler(workers=2)
    raised = _failing(sched, max_retries=max_retries)
    with sched:
        h = sched.submit("fail", "j", repo=repo)
        with pytest.raises(JobFailed) as failed:
            h.result(timeout=WAIT)
        info = sched.job(h.id)
        stats = sched.stats()

    calls = 1 + max_retries
    assert [str(e) for e in raised] == [f"attempt {n} of job j" for n in range(1, calls + 1)]
    assert info.status is JobStatus.FAILED
    assert info.attempts == calls
    assert stats.retried == max_retries
    assert (stats.failed, stats.completed) == (1, 0)
    # The handle chains the last attempt's own exception, and describes it as data.
    assert failed.value.__cause__ is raised[-1]
    assert failed.value.error is not None
    assert failed.value.error.type == f"{FlakyError.__module__}.FlakyError"
    assert failed.value.error.message == f"attempt {calls} of job j"
    assert info.error == failed.value.error


def test_a_job_that_succeeds_on_a_retry_completes_with_that_result(repo: str | None) -> None:
    sched = Scheduler(workers=2)
    attempts: list[int] = []

    @sched.handler("flaky", max_retries=5)
    def flaky(ctx: JobContext, payload: int) -> int:
        attempts.append(ctx.attempt)
        if ctx.attempt < 3:
            raise FlakyError("not yet")
        return payload * ctx.attempt

    with sched:
        h = sched.submit("flaky", 7, repo=repo)
        assert h.result(timeout=WAIT) == 21
        info = h.info()
        stats = sched.stats()
    assert attempts == [1, 2, 3]
    assert info.status is JobStatus.COMPLETED
    assert info.attempts == 3
    assert info.max_retries == 5
    assert (stats.retried, stats.completed, stats.failed) == (2, 1, 0)


@pytest.mark.parametrize(("handler_retries", "submit_retries"), [(5, 1), (0, 2), (3, 0)])
def test_submit_max_retries_overrides_the_handlers(
    handler_retries: int, submit_retries: int
) -> None:
    sched = Scheduler(workers=1)
    raised = _failing(sched, max_retries=handler_retries)
    with sched:
        h = sched.submit("fail", "j", max_retries=submit_retries)
        with pytest.raises(JobFailed):
            h.result(timeout=WAIT)
        assert h.info().attempts == len(raised) == 1 + submit_retries
        assert h.info().max_retries == submit_retries


# --- errors that are never retried --------------------------------------------------------


def test_fatal_stops_retries_at_once(repo: str | None) -> None:
    sched = Scheduler(workers=1)
    calls: list[int] = []

    @sched.handler("fatal", max_retries=5)
    def fatal(ctx: JobContext, payload: None) -> None:
        calls.append(ctx.attempt)
        raise Fatal("bad input")

    with sched:
        h = sched.submit("fatal", repo=repo)
        with pytest.raises(JobFailed) as failed:
            h.result(timeout=WAIT)
        stats = sched.stats()
    assert calls == [1]
    assert h.info().attempts == 1
    assert stats.retried == 0
    assert isinstance(failed.value.__cause__, Fatal)
    assert failed.value.error is not None
    assert failed.value.error.type.endswith(".Fatal")  # names the exception raised
    assert failed.value.error.message == "bad input"


def test_fatal_wrapping_an_error_reports_the_wrapped_error() -> None:
    sched = Scheduler(workers=1)
    original = KeyError("sha")

    @sched.handler("fatal", max_retries=5)
    def fatal(ctx: JobContext, payload: None) -> None:
        raise Fatal(original)

    with sched:
        h = sched.submit("fatal")
        with pytest.raises(JobFailed) as failed:
            h.result(timeout=WAIT)
    assert h.info().attempts == 1
    assert failed.value.__cause__ is original
    assert failed.value.error is not None
    assert failed.value.error.type == "KeyError"


def test_throws_stops_retries_for_those_errors_only(repo: str | None) -> None:
    sched = Scheduler(workers=1)
    calls: dict[str, list[int]] = {"value": [], "type": []}

    @sched.handler("raise", max_retries=2, throws=(ValueError,))
    def raise_(ctx: JobContext, payload: str) -> None:
        calls[payload].append(ctx.attempt)
        raise (ValueError if payload == "value" else TypeError)(payload)

    with sched:
        thrown = sched.submit("raise", "value", repo=repo)
        retried = sched.submit("raise", "type", repo=repo)
        for h in (thrown, retried):
            with pytest.raises(JobFailed):
                h.result(timeout=WAIT)
        stats = sched.stats()
    assert calls == {"value": [1], "type": [1, 2, 3]}
    assert stats.retried == 2
    assert thrown.info().error.type == "ValueError"  # type: ignore[union-attr]
    assert retried.info().error.type == "TypeError"  # type: ignore[union-attr]


# --- backoff ------------------------------------------------------------------------------


def test_a_retry_waits_for_its_backoff(repo: str | None) -> None:
    clock = ManualClock()
    runs = Runs()
    started_at: list[float] = []
    sched = Scheduler(workers=1, clock=clock)

    @sched.handler("flaky", max_retries=1, retry=RetryPolicy.fixed(5))
    def flaky(ctx: JobContext, payload: None) -> int:
        with runs.run(f"attempt{ctx.attempt}", ctx.repo):
            started_at.append(clock.now())
            if ctx.attempt == 1:
                raise FlakyError("once")
            return ctx.attempt

    with sched:
        h = sched.submit("flaky", repo=repo)
        wait_until(lambda: h.status is JobStatus.RETRYING, "the retry")
        assert h.info().error.type == f"{FlakyError.__module__}.FlakyError"  # type: ignore[union-attr]
        clock.advance(4.9)
        assert quiet(runs.started("attempt2"))
        assert h.status is JobStatus.RETRYING
        clock.advance(0.2)
        assert h.result(timeout=WAIT) == 2
    assert started_at[0] == 0
    assert started_at[1] >= 5


def test_backoff_grows_as_the_policy_says_for_each_retry() -> None:
    # Exponential base 1: the retries are due 1s, then 2s, then 4s after each failure.
    clock = ManualClock()
    runs = Runs()
    started_at: dict[int, float] = {}
    sched = Scheduler(workers=1, clock=clock)

    @sched.handler("flaky", max_retries=3, retry=RetryPolicy.exponential(base=1, cap=60))
    def flaky(ctx: JobContext, payload: None) -> int:
        with runs.run(f"attempt{ctx.attempt}"):
            started_at[ctx.attempt] = clock.now()
            if ctx.attempt <= 3:
                raise FlakyError("again")
            return ctx.attempt

    with sched:
        h = sched.submit("flaky")
        for attempt, backoff in [(2, 1.0), (3, 2.0), (4, 4.0)]:
            wait_until(
                lambda a=attempt: h.status is JobStatus.RETRYING and h.info().attempts == a - 1,
                f"the retry before attempt {attempt}",
            )
            clock.advance(backoff * 0.9)
            assert quiet(runs.started(f"attempt{attempt}"))
            clock.advance(backoff * 0.1 + 0.01)
            assert runs.started(f"attempt{attempt}").wait(WAIT)
        assert h.result(timeout=WAIT) == 4
    gaps = [started_at[n + 1] - started_at[n] for n in (1, 2, 3)]
    assert gaps == pytest.approx([1.01, 2.01, 4.01])


def test_submit_retry_policy_overrides_the_handlers() -> None:
    clock = ManualClock()
    sched = Scheduler(workers=1, clock=clock)
    attempts: list[int] = []

    @sched.handler("flaky", max_retries=1, retry=RetryPolicy.fixed(1000))
    def flaky(ctx: JobContext, payload: None) -> int:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            raise FlakyError("once")
        return ctx.attempt

    with sched:
        h = sched.submit("flaky", retry=RetryPolicy.fixed(2))
        wait_until(lambda: h.status is JobStatus.RETRYING, "the retry")
        clock.advance(2)
        assert h.result(timeout=WAIT) == 2
    assert attempts == [1, 2]


# --- RetryPolicy ------------------------------------------------------------------------


def test_exponential_doubles_up_to_the_cap() -> None:
    policy = RetryPolicy.exponential(base=1, cap=8)
    assert [policy.delay(n) for n in range(1, 6)] == [1, 2, 4, 8, 8]


def test_exponential_with_another_factor_and_a_huge_attempt() -> None:
    policy = RetryPolicy.exponential(base=0.5, cap=100, factor=3)
    assert [policy.delay(n) for n in range(1, 5)] == [0.5, 1.5, 4.5, 13.5]
    assert policy.delay(10_000) == 100  # overflow is capped, not an error


def test_linear_and_fixed() -> None:
    assert [RetryPolicy.linear(2, cap=5).delay(n) for n in range(1, 5)] == [2, 4, 5, 5]
    assert [RetryPolicy.fixed(3).delay(n) for n in range(1, 5)] == [3, 3, 3, 3]
    assert RetryPolicy().delay(1) == 0


def test_jitter_adds_at_most_its_fraction_of_the_delay() -> None:
    policy = RetryPolicy.exponential(base=2, cap=60, jitter=0.5)
    rng = random.Random(1234)
    for attempt in (1, 2, 3):
        plain = 2.0 * 2 ** (attempt - 1)
        delays = [policy.delay(attempt, rng) for _ in range(200)]
        assert all(plain <= d <= plain * 1.5 for d in delays)
        assert len(set(delays)) > 100  # really random, not a constant offset
        assert max(delays) - min(delays) > plain * 0.4  # spread over the range


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda: RetryPolicy.fixed(-1), ValueError),
        (lambda: RetryPolicy.fixed(math.nan), ValueError),
        (lambda: RetryPolicy.fixed(1, jitter=1.5), ValueError),
        (lambda: RetryPolicy.fixed(1, jitter=-0.1), ValueError),
        (lambda: RetryPolicy.linear(1, cap=-1), ValueError),
        (lambda: RetryPolicy.exponential(1, factor=0.5), ValueError),
        (lambda: RetryPolicy("quadratic", 1.0), ValueError),  # type: ignore[arg-type]
        (lambda: RetryPolicy.fixed("1"), TypeError),  # type: ignore[arg-type]
        (lambda: RetryPolicy.fixed(True), TypeError),
        (lambda: RetryPolicy.exponential(1, cap=None), TypeError),  # type: ignore[arg-type]
    ],
)
def test_invalid_policies_are_rejected(make: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        make()


# --- next_attempt ------------------------------------------------------------------------


def _job(attempt: int = 1, max_retries: int = 2, retry: RetryPolicy | None = None) -> Job:
    return Job(
        "j", "h", None, seq=1, attempt=attempt, max_retries=max_retries,
        retry=retry or RetryPolicy.fixed(3),
    )


FAILED = Outcome("failed", error=ErrorInfo("FlakyError", "x"))


def test_next_attempt_after_a_retryable_failure() -> None:
    retry = next_attempt(_job(attempt=1), FAILED, now=100.0)
    assert retry is not None
    assert (retry.attempt, retry.not_before, retry.seq) == (2, 103.0, 1)
    immediate = next_attempt(_job(retry=RetryPolicy()), FAILED, now=100.0)
    assert immediate is not None
    assert (immediate.attempt, immediate.not_before) == (2, None)


def test_next_attempt_stops_at_the_cap() -> None:
    assert next_attempt(_job(attempt=2, max_retries=2), FAILED, 0.0) is not None
    assert next_attempt(_job(attempt=3, max_retries=2), FAILED, 0.0) is None
    assert next_attempt(_job(attempt=1, max_retries=0), FAILED, 0.0) is None


@pytest.mark.parametrize(
    "outcome",
    [
        Outcome("completed", 1),
        Outcome("cancelled", error=ErrorInfo("postroom.JobCancelled", "x"), retryable=False),
        Outcome("failed", error=ErrorInfo("Fatal", "x"), retryable=False),
    ],
    ids=["completed", "cancelled", "fatal"],
)
def test_next_attempt_only_follows_retryable_failures(outcome: Outcome) -> None:
    assert next_attempt(_job(), outcome, 0.0) is None


def test_a_timed_out_attempt_is_retryable() -> None:
    timed_out = Outcome("failed", error=ErrorInfo("postroom.JobTimedOut", "x"), timed_out=True)
    retry = next_attempt(_job(), timed_out, 0.0)
    assert retry is not None
    assert retry.attempt == 2
