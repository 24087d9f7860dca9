"""How a worker node's slot runs one attempt: the `Runner` shape, and `ThreadRunner`.

Each slot of a `transport.node.Node` is a thread that owns one runner and calls
it for one attempt at a time. `ThreadRunner` calls the handler on the slot's
own thread, through the same `AttemptRunner` an in-process worker uses, so an
attempt ends the same way on a node as in the scheduler's process. A runner
that puts the handler in a child process (for a hard time limit) has the same
two methods, so a `Node` takes either.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Protocol

from actors._errors import UnknownHandler
from actors._policy.handlers import HandlerSpec
from actors._policy.payloads import DEFAULT_MAX_PAYLOAD_BYTES
from actors._worker.attempt import AttemptRunner, error_info
from actors._worker.cancel import CancelScope
from actors._worker.context import ProgressSink
from actors.messages import Job, Outcome

__all__ = ["Runner", "ThreadRunner"]


class Runner(Protocol):
    """What a node's slot calls: one attempt at a time, from the slot's thread."""

    def run(
        self, job: Job, scope: CancelScope, progress: ProgressSink, deadline: float | None
    ) -> Outcome:
        """Run one attempt of ``job`` and return how it ended.

        ``scope`` is armed for ``(job.id, job.attempt)`` by the caller and may
        be fired from another thread (a cancel, the deadline); if it is fired
        already, the handler is not called and the outcome says why.
        ``progress`` receives ``(job_id, fraction, message)``. ``deadline`` is
        ``time.monotonic()`` at which the attempt is told to stop, or None.
        Never raises for anything the handler does.
        """
        ...

    def close(self) -> None:
        """Release what the runner holds (an event loop, a child process). Idempotent."""
        ...


class ThreadRunner:
    """Runs the handler on the calling (slot) thread, as an in-process worker does.

    Args:
        handlers: the registrations, by name.
        max_result_bytes: the most bytes a result may take, encoded.
    """

    def __init__(
        self,
        handlers: Mapping[str, HandlerSpec],
        *,
        max_result_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    ) -> None:
        self._handlers = handlers
        self._max_result_bytes = max_result_bytes
        self._attempts: AttemptRunner | None = None
        self._scope: CancelScope | None = None
        self._progress: ProgressSink | None = None

    def run(
        self, job: Job, scope: CancelScope, progress: ProgressSink, deadline: float | None
    ) -> Outcome:
        """Run one attempt of ``job`` on this thread (see `Runner.run`)."""
        attempts = self._attempts
        if attempts is None or scope is not self._scope:
            # One AttemptRunner per scope: it keeps the event loop of async
            # handlers, which belongs to the slot thread that calls it.
            if attempts is not None:
                attempts.close()
            attempts = self._attempts = AttemptRunner(
                self._handlers,
                scope,
                self._report,
                on_node=True,
                max_result_bytes=self._max_result_bytes,
            )
            self._scope = scope
        self._progress = progress
        started_at = time.time()
        if scope.reason is not None:
            # Cancelled before it started: never call the handler.
            return attempts.stopped(job, None, started_at, 0.0)
        if job.handler not in self._handlers:
            # The scheduler sends only what the node offered; if it does not,
            # another node may have the handler: the attempt is retryable.
            exc = UnknownHandler(f"this node has no handler named {job.handler!r}")
            return Outcome("failed", error=error_info(exc), started_at=started_at)
        return attempts.run(job, deadline, started_at)

    def _report(self, job_id: str, fraction: float, message: str) -> None:
        progress = self._progress
        if progress is not None:
            progress(job_id, fraction, message)

    def close(self) -> None:
        """Close the event loop, if an async handler ever needed one. Idempotent."""
        if self._attempts is not None:
            self._attempts.close()
            self._attempts = None
            self._scope = None
