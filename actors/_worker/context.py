"""`JobContext`: what a handler knows about the attempt it is running."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Unpack

from actors._errors import InvalidArgument, JobCancelled, NotSupportedOnNode, SchedulerClosed
from actors._log import job_logger
from actors._policy.options import SubmitOptions
from actors._timer.clock import wait_seconds
from actors._worker.cancel import CancelScope
from actors.messages import Job

if TYPE_CHECKING:
    from actors._jobs.handle import JobHandle
    from actors._jobs.links import Links

__all__ = ["JobContext", "ProgressSink"]

ProgressSink = Callable[[str, float, str], None]
"""Receives ``(job_id, fraction, message)`` from `JobContext.progress`."""


class JobContext:
    """Passed to every handler call as its first argument.

    It carries the job's identity, the attempt number, the deadline, the stop
    signal (cancellation, timeout, shutdown), a progress reporter, and `submit`
    for child jobs.
    """

    __slots__ = ("_job", "_links", "_log", "_on_node", "_progress", "_scope", "deadline")

    def __init__(
        self,
        job: Job,
        scope: CancelScope,
        progress: ProgressSink,
        deadline: float | None,
        links: Links | None = None,
        on_node: bool = False,
    ) -> None:
        self._job = job
        self._on_node = on_node
        self._scope = scope
        self._progress = progress
        self._links = links
        self.deadline = deadline
        """Time at which this attempt is told to stop, or None: the scheduler's
        clock in process, the node's ``time.monotonic()`` on a worker node."""
        self._log: logging.LoggerAdapter[logging.Logger] | None = None

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger whose records carry the job id, handler, repo and attempt."""
        if self._log is None:
            self._log = job_logger(self._job)
        return self._log

    @property
    def job_id(self) -> str:
        """The job's id."""
        return self._job.id

    @property
    def handler(self) -> str:
        """The handler's name."""
        return self._job.handler

    @property
    def repo(self) -> str | None:
        """The job's repo, if it has one."""
        return self._job.repo

    @property
    def attempt(self) -> int:
        """1 on the first run, 2 on the first retry, and so on."""
        return self._job.attempt

    @property
    def max_retries(self) -> int:
        """How many retries the job may have after its first attempt."""
        return self._job.max_retries

    @property
    def cancelled(self) -> bool:
        """True once this attempt has been told to stop (cancel, timeout, shutdown)."""
        return self._scope.event.is_set()

    @property
    def timed_out(self) -> bool:
        """True once this attempt has run past its timeout."""
        return self._scope.reason == "timeout"

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``, waking early if told to stop.

        Returns:
            True if the attempt was told to stop.
        """
        return self._scope.event.wait(wait_seconds(seconds))

    def raise_if_cancelled(self) -> None:
        """Raise `JobCancelled` if this attempt has been told to stop."""
        if self.cancelled:
            msg = f"job {self.job_id} was told to stop ({self._scope.reason})"
            raise JobCancelled(msg, job_id=self.job_id)

    def progress(self, fraction: float, message: str = "") -> None:
        """Report progress: ``fraction`` in [0, 1] and a short message.

        Visible at once in `Scheduler.job`.
        """
        if (
            not isinstance(fraction, int | float)
            or isinstance(fraction, bool)
            or math.isnan(fraction)
            or not 0.0 <= fraction <= 1.0
        ):
            msg = f"progress fraction must be a number in [0, 1], not {fraction!r}"
            raise InvalidArgument(msg)
        if not isinstance(message, str):
            msg = f"progress message must be a str, not {type(message).__name__}"
            raise InvalidArgument(msg)
        self._progress(self._job.id, float(fraction), message)

    def submit(
        self,
        handler: str,
        payload: Any = None,
        **options: Unpack[SubmitOptions],
    ) -> JobHandle:
        """Submit a child job: a normal job, linked to this one.

        Takes `Scheduler.submit`'s arguments and applies them the same way
        (validation, defaults, back-pressure, idempotency). The child's
        `JobInfo.parent` is this job's id, and this job's ``children`` lists
        the child. Cancelling this job (`Scheduler.cancel`) cancels its
        unfinished children, and theirs; a child submitted after that cancel
        ends ``cancelled`` at once. Nothing else reaches a child: it keeps
        running when this job completes or fails, and a retry of this job
        does not cancel the children of the attempt before.

        Returns:
            The child's handle. With an idempotency key that another job holds,
            that job's handle (it is not made a child).

        Raises:
            UnknownHandler, UnknownQueue, InvalidArgument, QueueFull: as `Scheduler.submit`.
            SchedulerClosed: the scheduler is not running (shutting down, say).
            NotSupportedOnNode: the handler runs on a worker node, which has no
                scheduler to submit to.
        """
        if self._on_node:
            msg = (
                f"job {self.job_id} runs on a worker node: ctx.submit is not supported "
                "there (submit follow-ups from the scheduler's process, e.g. with then())"
            )
            raise NotSupportedOnNode(msg)
        links = self._links
        if links is None:
            msg = f"job {self.job_id}'s context has no scheduler to submit a child to"
            raise SchedulerClosed(msg)
        return links.submit_child(self._job.id, handler, payload, options)
