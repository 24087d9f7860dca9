"""A job's options: declared once, checked once, for every call that makes a job.

`Scheduler.submit` and `JobContext.submit` take `SubmitOptions`; `JobHandle.then`
and the schedules (`Scheduler.cron`, `every`, `at`) take `JobOptions`, which is
the same less the two that only make sense for one submission (a delay and an
idempotency key). Each call says so in its signature
(``**options: Unpack[SubmitOptions]``), so a type checker knows every option,
and passes the options on as they are, to be checked here by `check_options`.

An option left out is not set: the job gets its handler's default, else its
queue's, else postroom's (no retries, no timeout, retry at once; see
``actors/_policy/queue.py``). The facade resolves those defaults once per
handler and queue.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Final, TypedDict, cast

from actors._errors import InvalidArgument
from actors._policy.checks import (
    check_int,
    check_name,
    check_priority,
    check_queue,
    check_retry,
    check_seconds,
)
from actors._policy.priority import Priority
from actors._policy.retry import RetryPolicy

if TYPE_CHECKING:
    from actors.messages import Job

__all__ = [
    "DEFAULT_PRIORITY",
    "JOB_OPTIONS",
    "JobOptions",
    "SUBMIT_OPTIONS",
    "SubmitOptions",
    "check_options",
    "options_of",
    "reject_unknown",
    "widen",
]

DEFAULT_PRIORITY: Final = int(Priority.USER_VISIBLE)
"""A job's priority when its submit names none."""


class JobOptions(TypedDict, total=False):
    """The options of a job, each optional: `JobHandle.then`, `Scheduler.cron`,
    `every` and `at` take these (`SubmitOptions` adds two)."""

    repo: str | None
    """A concurrency key: jobs of one repo never overlap and start in
    (priority, submission) order. Default: none."""
    priority: int
    """1 (most urgent) to 10; see `Priority`. Default: 5."""
    queue: str | None
    """The named queue to run it on. Default: the handler's, else ``default``."""
    max_retries: int | None
    """Retries after the first attempt (>= 0). Default: the handler's, else
    the queue's, else 0."""
    timeout: float | None
    """Seconds an attempt may run before it is told to stop. Default: the
    handler's, else the queue's, else no limit."""
    retry: RetryPolicy | None
    """The backoff between attempts. Default: the handler's, else the queue's,
    else retry at once."""


class SubmitOptions(JobOptions, total=False):
    """`JobOptions`, and two for one submission: `Scheduler.submit` and
    `JobContext.submit` take these."""

    delay: float
    """Seconds to wait before the job may start (>= 0). Default: 0."""
    idempotency_key: str | None
    """If an unfinished or completed job holds this key, the submit returns
    its handle and nothing new runs. Default: none."""


JOB_OPTIONS: Final[frozenset[str]] = JobOptions.__optional_keys__
"""The names `JobOptions` declares."""

SUBMIT_OPTIONS: Final[frozenset[str]] = SubmitOptions.__optional_keys__
"""The names `SubmitOptions` declares."""


def reject_unknown(options: Mapping[str, object], accepted: frozenset[str], call: str) -> None:
    """Refuse an option that ``call`` does not take.

    Raises:
        InvalidArgument: naming the first such option (sorted) and those it takes.
    """
    unknown = options.keys() - accepted
    if unknown:
        msg = (
            f"{call}() got an unexpected option {min(unknown)!r} "
            f"(its options: {', '.join(sorted(accepted))})"
        )
        raise InvalidArgument(msg)


def check_options(
    options: Mapping[str, object],
    queues: Collection[str],
    accepted: frozenset[str] = SUBMIT_OPTIONS,
    call: str = "submit",
) -> None:
    """Check every option ``call`` was given: one it takes, with a valid value.

    Only the options given are looked at (a submit with one option pays for one
    check).

    Args:
        options: the options as given.
        queues: the names of the scheduler's queues.
        accepted: the options ``call`` takes.
        call: the public call, for the message.

    Raises:
        InvalidArgument: an option ``call`` does not take, or a bad value; the
            message names it.
        UnknownQueue: ``queue`` is not one of ``queues``.
    """
    for name, value in options.items():
        if name not in accepted:
            reject_unknown(options, accepted, call)
        if name == "queue":
            if value is not None:
                check_queue(value, queues)
        else:
            _CHECKS[name](value)


def _check_repo(value: object) -> None:
    check_name("repo", value)


def _check_max_retries(value: object) -> None:
    if value is not None:
        check_int("max_retries", value, 0)


def _check_timeout(value: object) -> None:
    if value is not None:
        check_seconds("timeout", value)


def _check_delay(value: object) -> None:
    if value:  # 0 (or None) is no delay
        check_seconds("delay", value, allow_zero=True)


def _check_idempotency_key(value: object) -> None:
    check_name("idempotency_key", value)


_CHECKS: Final[Mapping[str, Callable[[object], None]]] = {
    "repo": _check_repo,
    "priority": check_priority,
    "max_retries": _check_max_retries,
    "timeout": _check_timeout,
    "retry": check_retry,
    "delay": _check_delay,
    "idempotency_key": _check_idempotency_key,
}
"""The check of each option's value, by name (``queue`` is checked against the
scheduler's queues); tests/test_options.py checks that every option has one."""


def widen(options: JobOptions) -> SubmitOptions:
    """``options`` as a submit takes them: the same dict. Every `JobOptions` is
    a valid `SubmitOptions` (the two it lacks are optional), which a type checker
    cannot tell: it types a TypedDict by its shape, and another dict of that shape
    could hold a ``delay`` of any type."""
    return cast("SubmitOptions", options)


def options_of(job: Job) -> SubmitOptions:
    """The `JobOptions` that make a job like ``job`` (what `Scheduler.retry`
    submits): its own values, read by name from the job."""
    # A cast: mypy cannot type a comprehension over the names as the TypedDict,
    # and each name is a field of `Job` (tests/test_options.py checks it).
    return cast("SubmitOptions", {name: getattr(job, name) for name in JOB_OPTIONS})
