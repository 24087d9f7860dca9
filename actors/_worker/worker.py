"""The Worker actor: takes the best ready job, runs it, reports how it ended.

Sync handlers run on the worker's own thread; ``async def`` handlers run on an
event loop the worker owns, so a cancel or a deadline cancels their task for
real. Whatever the handler does, including raising `BaseException`, the worker
turns it into an `Outcome`: handler errors are data, never a failure of the
actor. An attempt that completed a job without a repo leaves nothing to decide,
so the worker finishes that job itself; every other outcome goes to the
Dispatcher as `Finished`, which decides what follows (retry, release, end).
"""

from __future__ import annotations

import asyncio
import inspect
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from actors._errors import Fatal, NotSerializable, PayloadTooLarge
from actors._jobs.ready import ReadyQueue
from actors._jobs.state import LabelCounts
from actors._jobs.status import COMPLETED
from actors._jobs.table import JobTable
from actors._journal.link import JournalLink
from actors._log import job_extra
from actors._log import worker_logger as logger
from actors._metrics.histogram import RunHistogram
from actors._policy.handlers import HandlerSpec
from actors._policy.payloads import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    INT_MAX,
    INT_MIN,
    SHORT_STR,
    json_copy,
)
from actors._runtime.actor import FailureReport, PostroomActor, post
from actors._runtime.refs import ActorDead, ActorRef
from actors._timer.clock import Clock
from actors._worker.cancel import CancelScope
from actors._worker.context import JobContext
from actors.messages import PULL, After, CancelTimer, ErrorInfo, Finished, Job, Outcome, Pull

__all__ = ["Worker", "error_info"]


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


_PLAIN = (str, int, float, list, dict, type(None))
"""Results that are certainly not awaitable (skips a slower check on the hot path)."""


class Worker(PostroomActor):
    """Takes the best ready job whenever it is free, runs it, reports `Finished`.

    It is stopped through the ready queue, which hands it None instead of a job.
    """

    def __init__(
        self,
        worker_id: int,
        dispatcher: ActorRef[Any],
        timer: ActorRef[Any],
        ready: ReadyQueue,
        handlers: Mapping[str, HandlerSpec],
        table: JobTable,
        clock: Clock,
        tokens: Iterator[int],
        on_failure: FailureReport | None = None,
        run_times: dict[LabelCounts, RunHistogram] | None = None,
        max_result_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    ) -> None:
        super().__init__(on_failure)
        self.worker_id = worker_id
        self._run_times = {} if run_times is None else run_times
        """Run-time histograms per (queue, handler) record: written by this worker only."""
        self._dispatcher = dispatcher
        self._timer = timer
        self._ready = ready
        self._handlers = handlers
        self._table = table
        self._clock = clock
        self._tokens = tokens
        self._scope = CancelScope()
        self._progress = _progress_sink(table)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._max_result_bytes = max_result_bytes
        self._name = f"worker-{worker_id}"
        """How run history names this worker."""
        self._journal = table.journal

    def on_start(self) -> None:
        """Start pulling."""
        self.actor_ref.tell(PULL)

    def on_receive(self, message: Any) -> Any:
        """Run attempts until the ready queue says to retire, then stop.

        Workers are stopped only through the ready queue (`ReadyQueue.retire`),
        so the loop need not return to the mailbox between jobs.
        """
        if not isinstance(message, Pull):
            return super().on_receive(message)
        take, worker_id, scope = self._ready.take, self.worker_id, self._scope
        while (job := take(worker_id, scope)) is not None:
            self._attempt(job)
        self.stop()
        return None

    def _attempt(self, job: Job) -> None:
        state = self._table.active.get(job.id)
        if state is None:
            # Finished already (cancelled as its due time came): never run it.
            self._ready.done(job.id)
            return
        scope = self._scope
        if state.cancel_requested:
            # A cancel that came as this worker took the job may have found it
            # neither queued nor taken (see `ReadyQueue`): stop it here.
            scope.fire(job.id, job.attempt, state.cancel_requested)
        started_at = time.time()
        if scope.reason is not None:
            # Told to stop between being taken and starting: the handler is never
            # called, and no attempt is counted (none ran).
            outcome = self._stopped(job, None, started_at, 0.0)
        else:
            state.start_attempt(job, started_at, self._name)
            counts = state.counts
            journal = self._journal
            if journal is not None:
                self._record_start(journal, job, started_at)
            # No frame above the handler may hold the job's record while it runs:
            # a handler's exception is kept on the record (`_keep_exception`), and
            # its traceback reaches every frame up the stack. A record in that
            # cycle outlives its job until the cyclic GC runs, and forever if it
            # was frozen (`gc.freeze()`, docs/capacity.md).
            del state
            if job.timeout is None:
                outcome = self._run(job, None, started_at)
            else:
                outcome = self._timed_run(job, started_at)
            # Keyed by the job's (queue, handler) record: hashed by identity, no
            # key to build. A new key: readers copy the dict before iterating.
            histogram = self._run_times.get(counts)  # type: ignore[arg-type]
            if histogram is None:
                histogram = self._run_times[counts] = RunHistogram()  # type: ignore[index]
            histogram.observe(outcome.run_time)
            if journal is not None:
                journal.run_ended(
                    job, _run_outcome(outcome), outcome.error, retryable=outcome.retryable
                )
        self._ready.done(job.id)
        if job.repo is None and outcome.status == "completed":
            # Nothing is left to decide: no repo to release, no retry. The job
            # ends here, without a hop through the Dispatcher.
            finished = self._table.active.get(job.id)
            if finished is not None:  # else cancelled or crashed meanwhile: finished there
                self._table.finish(finished, COMPLETED, outcome.result, run_time=outcome.run_time)
            return
        try:
            self._dispatcher.tell(Finished(job, outcome, self.worker_id))
        except ActorDead:
            # A shutdown that stopped waiting for this handler (its handle is
            # resolved already), or a crash: nobody is left to tell.
            logger.debug("job %s ended after the dispatcher stopped", job.id, extra=job_extra(job))

    def _record_start(self, journal: JournalLink, job: Job, started_at: float) -> None:
        number = journal.run_started(job, started_at, self._name)
        if journal.waits:
            # The start is on record before the handler can do anything: a
            # crash from here on leaves an interrupted run.
            journal.wait(number)

    def _timed_run(self, job: Job, started_at: float) -> Outcome:
        assert job.timeout is not None
        deadline = self._clock.now() + job.timeout
        token = next(self._tokens)
        post(self._timer, After(token, deadline, "deadline", job.id, job.attempt))
        try:
            return self._run(job, deadline, started_at)
        finally:
            post(self._timer, CancelTimer(token))

    def on_stop(self) -> None:
        """Close the event loop, if an async handler ever needed one."""
        if self._loop is not None:
            self._loop.close()

    def _run(self, job: Job, deadline: float | None, started_at: float) -> Outcome:
        scope = self._scope
        spec = self._handlers[job.handler]
        ctx = JobContext(job, scope, self._progress, deadline, self._table.links)
        t0 = time.perf_counter()
        try:
            result = spec.func(ctx, job.payload)
            if not isinstance(result, _PLAIN) and inspect.isawaitable(result):
                result = self._await(result)
        except BaseException as exc:  # noqa: BLE001 - every error is the job's, as data
            run_time = time.perf_counter() - t0
            if scope.reason is not None:
                return self._stopped(job, exc, started_at, run_time)
            return self._failed(job, spec, exc, started_at, run_time)
        run_time = time.perf_counter() - t0
        if scope.reason is not None:
            # The handler returned after it was told to stop: the attempt still
            # ends as cancelled or timed out, so the outcome does not depend on
            # how quickly a handler notices its signal.
            return self._stopped(job, None, started_at, run_time)
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
            return self._attempt_failed(job, exc, False, started_at, run_time)
        # Positional on the hot path: status, result, error, retryable,
        # timed_out, started_at, run_time.
        return Outcome("completed", value, None, True, False, started_at, run_time)

    def _keep_exception(self, job_id: str, exc: BaseException) -> None:
        # In process, a failed handle chains the handler's real exception.
        state = self._table.active.get(job_id)
        if state is not None:
            state.keep_exception(exc)

    def _await(self, awaitable: Any) -> Any:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        loop = self._loop
        task = loop.create_task(_as_coroutine(awaitable))
        self._scope.attach(loop, task)
        return loop.run_until_complete(task)

    def _stopped(
        self, job: Job, exc: BaseException | None, started_at: float, run_time: float
    ) -> Outcome:
        reason = self._scope.reason
        if reason == "timeout":
            info = ErrorInfo(
                "postroom.JobTimedOut",
                f"attempt {job.attempt} ran past its timeout of {job.timeout}s",
                error_info(exc).traceback if exc is not None else "",
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
            # SystemExit, KeyboardInterrupt and the like end the job, not the actor
            # (in Pykka they would stop every actor in the process).
            retryable = False
        logger.debug(
            "job %s (%s) attempt %d raised %s",
            job.id,
            job.handler,
            job.attempt,
            type(cause).__name__,
            extra=job_extra(job),
        )
        return self._attempt_failed(job, cause, retryable, started_at, run_time)

    def _attempt_failed(
        self, job: Job, cause: BaseException, retryable: bool, started_at: float, run_time: float
    ) -> Outcome:
        """The failed outcome of an attempt; ``cause`` is kept for the handle to chain."""
        self._keep_exception(job.id, cause)
        return Outcome(
            "failed",
            error=error_info(cause),
            retryable=retryable,
            started_at=started_at,
            run_time=run_time,
        )


def _run_outcome(outcome: Outcome) -> str:
    """The `RunOutcome` value of an attempt's outcome."""
    if outcome.status == "failed" and outcome.timed_out:
        return "timed_out"
    return outcome.status


async def _as_coroutine(awaitable: Any) -> Any:
    return await awaitable


def _progress_sink(table: JobTable) -> Callable[[str, float, str], None]:
    def sink(job_id: str, fraction: float, message: str) -> None:
        state = table.active.get(job_id)
        if state is not None:
            state.report_progress(fraction, message)

    return sink
