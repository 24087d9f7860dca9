"""The Worker actor: takes the best ready job, runs it, reports how it ended.

The handler call and its `Outcome` are an `AttemptRunner`'s (`attempt.py`),
shared with worker nodes: sync handlers run on the worker's own thread, ``async
def`` handlers on an event loop the worker's runner keeps. An attempt that
completed a job without a repo leaves nothing to decide, so the worker finishes
that job itself; every other outcome goes to the Dispatcher as `Finished`,
which decides what follows (retry, release, end).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from actors._jobs.ready import ReadyQueue
from actors._jobs.state import LabelCounts
from actors._jobs.status import COMPLETED
from actors._jobs.table import JobTable
from actors._journal.link import JournalLink
from actors._log import job_extra
from actors._log import worker_logger as logger
from actors._metrics.histogram import RunHistogram
from actors._policy.handlers import HandlerSpec
from actors._policy.payloads import DEFAULT_MAX_PAYLOAD_BYTES
from actors._runtime.actor import FailureReport, PostroomActor, post
from actors._runtime.refs import ActorDead, ActorRef
from actors._timer.clock import Clock
from actors._worker.attempt import AttemptRunner, error_info, run_outcome
from actors._worker.cancel import CancelScope
from actors.messages import PULL, After, CancelTimer, Finished, Job, Outcome, Pull

__all__ = ["Worker", "error_info"]


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
        self._table = table
        self._clock = clock
        self._tokens = tokens
        self._scope = CancelScope()
        self._runner = AttemptRunner(
            handlers,
            self._scope,
            _progress_sink(table),
            links=table.links,
            keep_exception=self._keep_exception,
            max_result_bytes=max_result_bytes,
        )
        self._tracing = table.tracing
        self._failure: BaseException | None = None
        """A traced attempt's exception, from `_keep_exception` to its span."""
        # Chosen once: without tracing, the hot path pays not even a test for it.
        self._run = self._runner.run if self._tracing is None else self._traced_run
        """Runs one attempt: bound once, so the hot path pays no extra lookup."""
        self._stopped = self._runner.stopped
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
                    job, run_outcome(outcome), outcome.error, retryable=outcome.retryable
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

    def _traced_run(self, job: Job, deadline: float | None, started_at: float) -> Outcome:
        """`AttemptRunner.run` inside the attempt's span (``self._run`` when tracing)."""
        tracing = self._tracing
        assert tracing is not None
        # The span is current on this thread while the handler runs, so the
        # spans a handler makes (and the jobs ``ctx.submit`` makes) are its children.
        span = tracing.start(job)
        outcome: Outcome | None = None
        try:
            outcome = self._runner.run(job, deadline, started_at)
        finally:
            failure, self._failure = self._failure, None
            tracing.end(span, outcome, failure)
            del failure  # its traceback holds this frame: no cycle left behind
        return outcome

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
        self._runner.close()

    def _keep_exception(self, job_id: str, exc: BaseException) -> None:
        if self._tracing is not None:
            self._failure = exc  # recorded on the attempt's span
        # In process, a failed handle chains the handler's real exception.
        state = self._table.active.get(job_id)
        if state is not None:
            state.keep_exception(exc)

def _progress_sink(table: JobTable) -> Callable[[str, float, str], None]:
    def sink(job_id: str, fraction: float, message: str) -> None:
        state = table.active.get(job_id)
        if state is not None:
            state.report_progress(fraction, message)

    return sink
