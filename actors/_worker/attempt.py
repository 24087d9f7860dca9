"""One attempt of a job: call its handler, turn whatever happens into an `Outcome`.

The in-process `Worker` and a worker node's slot both run attempts through an
`AttemptRunner`, so a job ends the same way wherever it ran: a sync handler is
called on the caller's thread; an ``async def`` handler runs on an event loop
the runner keeps for its caller (one per thread, closed by `close`), so a
cancel or a deadline cancels its task for real. Whatever the handler does,
including raising `BaseException`, becomes an `Outcome`: handler errors are
data, never a failure of the thread that ran them.
"""

from __future__ import annotations

import asyncio
import inspect
import time
import traceback
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from actors._errors import Fatal, NotSerializable, PayloadTooLarge
from actors._log import job_extra
from actors._log import worker_logger as logger
from actors._policy.handlers import HandlerSpec
from actors._policy.payloads import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    INT_MAX,
    INT_MIN,
    SHORT_STR,
    json_copy,
)
from actors._worker.cancel import CancelReason, CancelScope
from actors._worker.context import JobContext, ProgressSink
from actors.messages import ErrorInfo, Job, Outcome

if TYPE_CHECKING:
    from actors._jobs.links import Links

__all__ = ["AttemptRunner", "error_info", "run_outcome", "stopped_outcome"]

ExceptionSink = Callable[[str, BaseException], None]
"""Receives ``(job_id, exception)`` of a failed attempt, for a handle to chain."""


def error_info(exc: BaseException) -> ErrorInfo:
    """An exception as data. postroom's own errors are named ``postroom.<Name>``."""
    kind = type(exc)
    module = kind.__module__
    if module == "builtins":
        name = kind.__qualname__
    elif module == "actors" or module.startswith("actors."):
        name = f"postroom.{kind.__qualname__}"
    else:
        name = f"{module}.{kind.__qualname__}"
    return ErrorInfo(
        type=name,
        message=str(exc),
        traceback="".join(traceback.format_exception(exc)),
    )


def run_outcome(outcome: Outcome) -> str:
    """The `RunOutcome` value of an attempt's outcome."""
    if outcome.status == "failed" and outcome.timed_out:
        return "timed_out"
    return outcome.status


def stopped_outcome(
    job: Job,
    reason: CancelReason | None,
    started_at: float,
    run_time: float,
    trace: str = "",
) -> Outcome:
    """The outcome of an attempt told to stop for ``reason``, however its handler
    ended: timed out at a deadline, else cancelled (a worker's attempt, or a
    node's run as its link reads it)."""
    if reason == "timeout":
        info = ErrorInfo(
            "postroom.JobTimedOut",
            f"attempt {job.attempt} ran past its timeout of {job.timeout}s",
            trace,
        )
        return Outcome(
            "failed",
            error=info,
            timed_out=True,
            started_at=started_at,
            run_time=run_time,
        )
    why = "its parent job was cancelled" if reason == "parent" else reason
    info = ErrorInfo("postroom.JobCancelled", f"attempt {job.attempt} was cancelled ({why})")
    return Outcome(
        "cancelled",
        error=info,
        retryable=False,
        started_at=started_at,
        run_time=run_time,
    )


_PLAIN = (str, int, float, list, dict, type(None))
"""Results that are certainly not awaitable (skips a slower check on the hot path)."""


class AttemptRunner:
    """Runs attempts for one thread: the handler call and its `Outcome`.

    ``scope`` is the thread's stop signal (armed by the caller for each
    attempt); ``progress`` receives ``ctx.progress``; ``links`` lets
    ``ctx.submit`` reach a scheduler (None on a node); ``on_node`` makes
    ``ctx.submit`` raise `NotSupportedOnNode`; ``keep_exception`` receives a
    failed attempt's exception (in process, a failed handle chains it).
    """

    __slots__ = (
        "_handlers",
        "_keep_exception",
        "_links",
        "_loop",
        "_max_result_bytes",
        "_on_node",
        "_progress",
        "_scope",
    )

    def __init__(
        self,
        handlers: Mapping[str, HandlerSpec],
        scope: CancelScope,
        progress: ProgressSink,
        *,
        links: Links | None = None,
        on_node: bool = False,
        keep_exception: ExceptionSink | None = None,
        max_result_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    ) -> None:
        self._handlers = handlers
        self._scope = scope
        self._progress = progress
        self._links = links
        self._on_node = on_node
        self._keep_exception = keep_exception
        self._max_result_bytes = max_result_bytes
        self._loop: asyncio.AbstractEventLoop | None = None

    def close(self) -> None:
        """Close the event loop, if an async handler ever needed one."""
        if self._loop is not None:
            self._loop.close()
            self._loop = None

    def run(self, job: Job, deadline: float | None, started_at: float) -> Outcome:
        """Call the job's handler once and return how the attempt ended.

        ``deadline`` is what ``ctx.deadline`` says (the caller's clock); the
        caller fires the scope when it passes. ``started_at`` is wall time.
        """
        scope = self._scope
        spec = self._handlers[job.handler]
        ctx = JobContext(job, scope, self._progress, deadline, self._links, self._on_node)
        t0 = time.perf_counter()
        try:
            result = spec.func(ctx, job.payload)
            if not isinstance(result, _PLAIN) and inspect.isawaitable(result):
                result = self._await(result)
        except BaseException as exc:  # noqa: BLE001 - every error is the job's, as data
            run_time = time.perf_counter() - t0
            if scope.reason is not None:
                return self.stopped(job, exc, started_at, run_time)
            return self._failed(job, spec, exc, started_at, run_time)
        run_time = time.perf_counter() - t0
        if scope.reason is not None:
            # The handler returned after it was told to stop: the attempt still
            # ends as cancelled or timed out, so the outcome does not depend on
            # how quickly a handler notices its signal.
            return self.stopped(job, None, started_at, run_time)
        try:
            kind = type(result)
            # As at submit: None, a bool, an int of 64 bits or a short ASCII str
            # needs no copy and no measure.
            if (
                result is None
                or kind is bool
                or (kind is int and INT_MIN <= result <= INT_MAX)
                or (kind is str and len(result) < SHORT_STR and result.isascii())
            ):
                value = result
            else:
                what = f"result of handler {job.handler!r}"
                value = json_copy(result, what, max_bytes=self._max_result_bytes)
        except (NotSerializable, PayloadTooLarge) as exc:
            # Never retried: the same handler would most likely return the same.
            return self.failed(job, exc, False, started_at, run_time)
        # Positional on the hot path: status, result, error, retryable,
        # timed_out, started_at, run_time.
        return Outcome("completed", value, None, True, False, started_at, run_time)

    def _await(self, awaitable: Any) -> Any:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        loop = self._loop
        task = loop.create_task(_as_coroutine(awaitable))
        self._scope.attach(loop, task)
        return loop.run_until_complete(task)

    def stopped(
        self, job: Job, exc: BaseException | None, started_at: float, run_time: float
    ) -> Outcome:
        """The outcome of an attempt told to stop (``scope.reason`` says why)."""
        trace = error_info(exc).traceback if exc is not None else ""
        return stopped_outcome(job, self._scope.reason, started_at, run_time, trace)

    def _failed(
        self,
        job: Job,
        spec: HandlerSpec,
        exc: BaseException,
        started_at: float,
        run_time: float,
    ) -> Outcome:
        cause = exc
        retryable = True
        if isinstance(exc, Fatal):
            retryable = False
            if exc.args and isinstance(exc.args[0], BaseException):
                cause = exc.args[0]
        elif isinstance(exc, spec.throws) or not isinstance(exc, Exception):
            # SystemExit, KeyboardInterrupt and the like end the job, not the
            # thread (in Pykka they would stop every actor in the process).
            retryable = False
        logger.debug(
            "job %s (%s) attempt %d raised %s",
            job.id,
            job.handler,
            job.attempt,
            type(cause).__name__,
            extra=job_extra(job),
        )
        return self.failed(job, cause, retryable, started_at, run_time)

    def failed(
        self, job: Job, cause: BaseException, retryable: bool, started_at: float, run_time: float
    ) -> Outcome:
        """The failed outcome of an attempt; ``cause`` goes to ``keep_exception``."""
        if self._keep_exception is not None:
            self._keep_exception(job.id, cause)
        return Outcome(
            "failed",
            error=error_info(cause),
            retryable=retryable,
            started_at=started_at,
            run_time=run_time,
        )


async def _as_coroutine(awaitable: Any) -> Any:
    return await awaitable
