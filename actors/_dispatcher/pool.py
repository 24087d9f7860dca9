"""The Dispatcher's worker pool: spawning, resizing, and replacing crashed workers.

A mixin of `Dispatcher` (it runs on the actor loop, with the Dispatcher's
state). Workers are the Dispatcher's children: one that dies of an unexpected
error (a postroom bug, never a handler's error, which is the job's) is
reported here from its own thread, its jobs fail, and a new worker takes its
place, up to ``restart_limit`` crashes within ``restart_window`` seconds;
past that, or when any other child dies, the scheduler crashes loudly.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from actors._jobs.info import Stats
from actors._jobs.ready import ReadyQueue
from actors._jobs.state import JobState, LabelCounts
from actors._jobs.table import JobTable
from actors._log import logger
from actors._metrics.histogram import RunHistogram
from actors._policy.handlers import HandlerSpec
from actors._runtime.actor import FailureReport
from actors._runtime.reaper import Reaper
from actors._runtime.refs import ActorRef
from actors._timer.clock import Clock
from actors._worker.worker import Worker, error_info
from actors.messages import ErrorInfo, Finished, Outcome

if TYPE_CHECKING:
    from actors._dispatcher.dispatcher import DispatcherConfig

__all__ = ["ChildFailed", "WorkerPool"]


@dataclass(frozen=True, slots=True)
class ChildFailed:
    """A child actor died of an unexpected error (told from the child's thread)."""

    kind: str
    ident: int | str
    error: ErrorInfo


class WorkerPool:
    """The pool, as the Dispatcher runs it."""

    actor_ref: ActorRef[Any]
    _config: DispatcherConfig
    _timer: ActorRef[Any] | None
    _worker_ids: itertools.count[int]
    _readies: Mapping[str, ReadyQueue]
    _handlers: Mapping[str, HandlerSpec]
    _table: JobTable
    _clock: Clock
    _tokens: Iterator[int]
    _run_times: dict[int, dict[LabelCounts, RunHistogram]]
    _reaper: Reaper
    _workers: dict[str, int]
    _worker_queue: dict[int, str]
    _crashes: deque[float]
    _states: dict[str, JobState]
    _crash: Callable[[str, Stats | None], None]
    _stats: Callable[[], Stats]
    _on_finished: Callable[[Finished], None]

    def _spawn_worker(self, queue: str) -> None:
        assert self._timer is not None
        worker_id = next(self._worker_ids)
        ready = self._readies[queue]
        spawned = Worker.spawn(
            worker_id,
            self.actor_ref,
            self._timer,
            ready,
            self._handlers,
            self._table,
            self._clock,
            self._tokens,
            self._child_failure("worker", worker_id),
            self._run_times.setdefault(worker_id, {}),
            self._config.max_payload_bytes,
        )
        # A worker reads the ready queue, not its mailbox: it is stopped there.
        self._reaper.add(spawned.thread, ready.close)
        self._workers[queue] += 1
        self._worker_queue[worker_id] = queue

    def _resize(self, workers: int, queue: str) -> int:
        now = self._workers[queue]
        for _ in range(workers - now):
            self._spawn_worker(queue)
        if workers < now:
            # Idle workers leave at once, busy ones after their current job.
            self._readies[queue].retire(now - workers)
            self._workers[queue] = workers
        return workers

    def _child_failure(self, kind: str, ident: int | str) -> FailureReport:
        me = self.actor_ref

        def report(
            _actor: object,
            _type: type[BaseException] | None,
            exc: BaseException | None,
            _tb: TracebackType | None,
        ) -> None:
            info = error_info(exc) if exc is not None else ErrorInfo("unknown", "")
            if me.is_alive():
                me.tell(ChildFailed(kind, ident, info))

        return report

    def _on_child_failed(self, message: ChildFailed) -> None:
        if message.kind != "worker":
            self._crash(
                f"the {message.kind} actor {message.ident!r} failed: {message.error.message}",
                self._stats(),
            )
            return
        crashes = self._crashes
        # The scheduler's clock, as for every other span of time it measures, so
        # a test drives the window with a ManualClock instead of sleeping past it.
        now = self._clock.now()
        crashes.append(now)
        while crashes and crashes[0] < now - self._config.restart_window:
            crashes.popleft()
        if len(crashes) > self._config.restart_limit:
            self._crash(
                f"workers failed {len(crashes)} times within {self._config.restart_window}s "
                f"(last: {message.error.message})",
                self._stats(),
            )
            return
        worker_id = int(message.ident)
        logger.error("worker %s failed and is replaced: %s", worker_id, message.error.message)
        error = ErrorInfo("postroom.WorkerCrashed", message.error.message, message.error.traceback)
        queue = self._worker_queue.pop(worker_id)
        ready = self._readies[queue]
        for job_id in ready.taken_by(worker_id):
            ready.done(job_id)
            state = self._states.get(job_id)
            if state is not None:
                outcome = Outcome("failed", error=error, retryable=False)
                self._on_finished(Finished(state.job, outcome, worker_id))
        self._workers[queue] -= 1
        self._spawn_worker(queue)
