"""`JobHandle`: what `submit` returns — the job's id, status, result and cancel."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, Unpack

from actors._errors import JobCancelled, JobFailed, JobTimedOut, SchedulerClosed
from actors._jobs.status import CANCELLED, COMPLETED, JobStatus
from actors._policy.options import JOB_OPTIONS, JobOptions, reject_unknown
from actors._runtime import fork as _fork
from actors.messages import JSONValue

if TYPE_CHECKING:
    from actors._jobs.cancel_result import CancelResult
    from actors._jobs.info import JobInfo
    from actors._jobs.links import Links
    from actors._jobs.state import JobState
    from actors._runtime.callbacks import CallbackRunner

__all__ = ["JobHandle"]


class JobHandle:
    """A submitted job. Resolves exactly once, when the job reaches a terminal state.

    ``result()`` blocks a thread; ``await handle`` waits without blocking the event
    loop. Two handles for the same job (an idempotent resubmission) compare equal.

    In a process forked from the one that made it, the handle's job runs (or
    ran) in the parent: everything but its ``id`` raises `SchedulerForked`.
    """

    __slots__ = ("_callbacks", "_cancel", "_generation", "_links", "_state")

    def __init__(
        self,
        state: JobState,
        cancel: Callable[[str], CancelResult],
        callbacks: CallbackRunner | None = None,
        links: Links | None = None,
    ) -> None:
        self._state = state
        self._cancel = cancel
        self._callbacks = callbacks
        self._links = links
        self._generation = _fork.generation

    def __repr__(self) -> str:
        return f"<JobHandle {self.id} {self._state.job.handler} {self._state.status}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JobHandle) and other._state is self._state

    def __hash__(self) -> int:
        return hash(self._state.job.id)

    @property
    def id(self) -> str:
        """The job's id."""
        return self._state.job.id

    @property
    def status(self) -> JobStatus:
        """The job's status now."""
        return self._here().status

    def done(self) -> bool:
        """Whether the job has reached a terminal state."""
        return self._here().finished

    def info(self) -> JobInfo:
        """A snapshot of the job (same as `Scheduler.job`)."""
        return self._here().snapshot()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job is finished or ``timeout`` passes; True if finished."""
        return self._here().wait(timeout)

    def result(self, timeout: float | None = None) -> JSONValue:
        """The handler's result, blocking until the job is finished.

        Raises:
            TimeoutError: the job did not finish within ``timeout`` seconds; it
                goes on (this is not the job's own timeout).
            JobFailed: the job failed for good; ``__cause__`` is the handler's
                exception if it ran in this process.
            JobTimedOut: the job's last attempt ran past its timeout.
            JobCancelled: the job was cancelled.
            SchedulerForked: this process is a fork of the one that made the job.
        """
        if not self._here().wait(timeout):
            msg = f"job {self.id} did not finish within {timeout}s"
            raise TimeoutError(msg)
        return self._outcome()

    def cancel(self) -> CancelResult:
        """Cancel the job (same as `Scheduler.cancel`)."""
        self._here()
        return self._cancel(self.id)

    def then(
        self,
        handler: str,
        **options: Unpack[JobOptions],
    ) -> JobHandle:
        """Submit a follow-up: a job for ``handler`` that runs when, and only if,
        this job completes, with this job's result as its payload.

        The follow-up is a real job from this call on: validated as
        `Scheduler.submit` validates (its `JobOptions` mean what they mean
        there; ``delay`` and ``idempotency_key`` it does not take),
        counted against its queue's ``max_pending`` at once (``on_full``
        applies here), and visible in `Scheduler.job` as ``scheduled`` until
        this job ends. Then:

        - this job completed (or already had): the follow-up is released with
          a copy of the result as its payload, and runs as any job does;
        - it failed or was cancelled: the follow-up ends ``cancelled`` without
          running; its error names this job and how it ended.

        The two are linked: the follow-up's `JobInfo.parent` is this job's id,
        and this job's ``followups`` lists it. Follow-ups chain
        (``h.then("a").then("b")``), and a job may have several.

        Returns:
            The follow-up's handle. Under ``on_full="drop"``, with no room, a
            dropped one, already cancelled.

        Raises:
            UnknownHandler, UnknownQueue, InvalidArgument, QueueFull: as `Scheduler.submit`.
            SchedulerClosed: the scheduler is not running.
        """
        self._here()
        reject_unknown(options, JOB_OPTIONS, "then")
        links = self._links
        if links is None:
            msg = f"job {self.id}'s handle belongs to no scheduler: it cannot have follow-ups"
            raise SchedulerClosed(msg)
        return links.then(self._state, handler, options)

    def add_done_callback(self, callback: Callable[[JobHandle], None]) -> None:
        """Call ``callback(handle)`` once the job has finished.

        Callbacks run in order on the scheduler's callback thread, never on the
        thread that runs the actors, so they may block or call the scheduler
        (``submit``, ``cancel``, ``stats``). If the job has already finished,
        the callback runs at once on the calling thread. An exception it raises
        is logged on the ``postroom`` logger, with its traceback; on the
        callback thread that includes `SystemExit` and `KeyboardInterrupt`,
        and the next callback runs all the same.
        """
        runner = self._callbacks
        if runner is None or self._here().finished:
            self._state.add_done_callback(lambda _state: callback(self))
        else:
            self._state.add_done_callback(lambda _state: runner.call(callback, self))

    def __await__(self) -> Generator[Any, None, JSONValue]:
        """Wait for the result without blocking the running event loop."""
        self._here()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def wake(_state: JobState) -> None:
            # The awaiting loop may be closed by now (the await was abandoned).
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_set_once, future)

        self._state.add_done_callback(wake)
        yield from future.__await__()
        return self._outcome()

    def _here(self) -> JobState:
        """The job's state, unless this process is a fork of the one that made
        the handle: then the job is the parent's, and waiting on it here would
        wait for ever (its threads are in the parent), and its state may be
        locked by a thread that is not here either."""
        if self._generation != _fork.generation:
            raise _fork.forked_error(f"job {self.id}", _fork.owner(self._generation))
        return self._state

    def _outcome(self) -> JSONValue:
        state = self._state
        status = state.status
        if status is COMPLETED:
            return state.result
        error = state.error
        detail = f": {error.type}: {error.message}" if error is not None else ""
        if status is CANCELLED:
            raise JobCancelled(f"job {self.id} was cancelled{detail}", job_id=self.id, error=error)
        kind = (
            JobTimedOut if error is not None and error.type == "postroom.JobTimedOut" else JobFailed
        )
        raise kind(
            f"job {self.id} failed{detail}", job_id=self.id, error=error
        ) from state.exception


def _set_once(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
