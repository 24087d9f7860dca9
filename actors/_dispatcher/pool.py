"""The Dispatcher's worker pool: spawning, resizing, and replacing crashed workers.

A component the Dispatcher owns and calls on the actor loop, one message at
a time; nothing else touches it. Workers are the Dispatcher's children: one
that dies of an unexpected error (a postroom bug, never a handler's error,
which is the job's) is reported from its own thread as a `ChildFailed` told
to the Dispatcher (`report_to`), which hands it here: its jobs fail, and a
new worker takes its place, up to ``restart_limit`` crashes within
``restart_window`` seconds; past that the scheduler crashes loudly.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from types import TracebackType
from typing import Any

from actors._jobs.ready import ReadyQueue
from actors._jobs.state import LabelCounts
from actors._jobs.table import JobTable
from actors._log import dispatcher_logger as logger
from actors._metrics.histogram import RunHistogram
from actors._policy.handlers import HandlerSpec
from actors._runtime.actor import FailureReport
from actors._runtime.reaper import Reaper
from actors._runtime.refs import ActorRef
from actors._timer.clock import Clock
from actors._worker.worker import Worker, error_info
from actors.messages import ChildFailed, ErrorInfo, Finished, Outcome

__all__ = ["WorkerPool", "report_to"]


def report_to(supervisor: ActorRef[Any], kind: str, ident: int | str) -> FailureReport:
    """How a child of the Dispatcher reports its death: a `ChildFailed` told to
    ``supervisor`` from the dying child's thread (workers, the Timer, RepoLocks)."""

    def report(
        _actor: object,
        _type: type[BaseException] | None,
        exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        info = error_info(exc) if exc is not None else ErrorInfo("unknown", "")
        if supervisor.is_alive():
            supervisor.tell(ChildFailed(kind, ident, info))

    return report


class WorkerPool:
    """The workers of each named queue, as the Dispatcher runs them."""

    def __init__(
        self,
        dispatcher: ActorRef[Any],
        sizes: Mapping[str, int],
        readies: Mapping[str, ReadyQueue],
        handlers: Mapping[str, HandlerSpec],
        table: JobTable,
        clock: Clock,
        tokens: Iterator[int],
        reaper: Reaper,
        *,
        restart_limit: int,
        restart_window: float,
        max_result_bytes: int,
        fail: Callable[[Finished], None],
        crash: Callable[[str], None],
    ) -> None:
        """Build the pool; `start` spawns its first workers.

        Args:
            dispatcher: the Dispatcher's ref: workers tell it `Finished`, and
                their failure reports go to it.
            sizes: the pool size per named queue at `start`.
            readies: per named queue, the ready queue its workers take from.
            handlers, table, clock, tokens: what every worker is spawned with.
            reaper: joins each worker's thread at shutdown.
            restart_limit: worker crashes tolerated within ``restart_window``
                seconds (of ``clock``).
            restart_window: see ``restart_limit``.
            max_result_bytes: the most bytes a handler's result may encode to.
            fail: ends an attempt a crashed worker held (the Dispatcher's
                handling of `Finished`).
            crash: crashes the scheduler with a reason, when workers fail
                too often.
        """
        self._dispatcher = dispatcher
        self._sizes = sizes
        self._readies = readies
        self._handlers = handlers
        self._table = table
        self._clock = clock
        self._tokens = tokens
        self._reaper = reaper
        self._restart_limit = restart_limit
        self._restart_window = restart_window
        self._max_result_bytes = max_result_bytes
        self._fail = fail
        self._crash = crash
        self._timer: ActorRef[Any] | None = None
        """Given at `start`, dropped at `halt`: no worker is spawned without it."""
        self._ids = itertools.count(1)
        self._queue_of: dict[int, str] = {}
        """Each live worker's queue."""
        self._crashes: deque[float] = deque()
        """When workers crashed, within the restart window."""
        self._workers = dict.fromkeys(readies, 0)
        self._run_times: dict[int, dict[LabelCounts, RunHistogram]] = {}

    @property
    def workers(self) -> Mapping[str, int]:
        """Per queue: workers alive or starting, not counting those told to retire
        (read by the figures; written here only)."""
        return self._workers

    @property
    def run_times(self) -> Mapping[int, dict[LabelCounts, RunHistogram]]:
        """Each worker's run-time histograms, written by that worker only and kept
        after it leaves, so counts never go down (read by the figures)."""
        return self._run_times

    def start(self, timer: ActorRef[Any]) -> None:
        """Spawn the first workers; ``timer`` is the Timer they arm deadlines with."""
        self._timer = timer
        for queue, workers in self._sizes.items():
            for _ in range(workers):
                self._spawn(queue)

    def _spawn(self, queue: str) -> None:
        assert self._timer is not None
        worker_id = next(self._ids)
        ready = self._readies[queue]
        spawned = Worker.spawn(
            worker_id,
            self._dispatcher,
            self._timer,
            ready,
            self._handlers,
            self._table,
            self._clock,
            self._tokens,
            report_to(self._dispatcher, "worker", worker_id),
            self._run_times.setdefault(worker_id, {}),
            self._max_result_bytes,
        )
        # A worker reads the ready queue, not its mailbox: it is stopped there.
        self._reaper.add(spawned.thread, ready.close)
        self._workers[queue] += 1
        self._queue_of[worker_id] = queue

    def resize(self, workers: int, queue: str) -> int:
        """Grow or shrink ``queue``'s pool to ``workers``; returns ``workers``."""
        now = self._workers[queue]
        for _ in range(workers - now):
            self._spawn(queue)
        if workers < now:
            # Idle workers leave at once, busy ones after their current job.
            self._readies[queue].retire(now - workers)
            self._workers[queue] = workers
        return workers

    def replace(self, worker_id: int, error: ErrorInfo) -> None:
        """A worker died of a postroom bug: fail its jobs and spawn another, or
        crash the scheduler if workers failed too often."""
        crashes = self._crashes
        # The scheduler's clock, as for every other span of time it measures, so
        # a test drives the window with a ManualClock instead of sleeping past it.
        now = self._clock.now()
        crashes.append(now)
        while crashes and crashes[0] < now - self._restart_window:
            crashes.popleft()
        if len(crashes) > self._restart_limit:
            self._crash(
                f"workers failed {len(crashes)} times within {self._restart_window}s "
                f"(last: {error.message})"
            )
            return
        logger.error("worker %s failed and is replaced: %s", worker_id, error.message)
        crashed = ErrorInfo("postroom.WorkerCrashed", error.message, error.traceback)
        queue = self._queue_of.pop(worker_id)
        ready = self._readies[queue]
        active = self._table.active
        for job_id in ready.taken_by(worker_id):
            ready.done(job_id)
            state = active.get(job_id)
            if state is not None:
                outcome = Outcome("failed", error=crashed, retryable=False)
                self._fail(Finished(state.job, outcome, worker_id))
        self._workers[queue] -= 1
        self._spawn(queue)

    def halt(self) -> None:
        """Retire every worker (shutdown); from now on none is spawned."""
        for queue, ready in self._readies.items():
            ready.retire(self._workers[queue])
            self._workers[queue] = 0
        self._timer = None
