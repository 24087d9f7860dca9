"""`Scheduler`: the facade services use. It validates at the boundary, then talks
to the Dispatcher in messages; nothing here decides what happens to a job."""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

import pykka
from prometheus_client import CollectorRegistry

from actors._actor import post
from actors._actor_loop import ActorLoop
from actors._callbacks import CallbackRunner
from actors._cancel_result import CancelResult
from actors._capacity import Capacity
from actors._checks import (
    check_int,
    check_job_options,
    check_name,
    check_priority,
    check_seconds,
    unknown_handler,
    unknown_queue,
)
from actors._clock import Clock, MonotonicClock
from actors._dispatcher import BOOT, GET_STATS, Dispatcher, DispatcherConfig
from actors._errors import (
    InvalidArgument,
    QueueFull,
    SchedulerClosed,
)
from actors._exit import shut_down_at_exit
from actors._followups import JobLinks, Links
from actors._handle import JobHandle
from actors._handlers import HandlerFunc, HandlerSpec, make_spec
from actors._info import JobInfo, Stats
from actors._job_state import PARKED, READY, TIMER, JobState, LabelCounts
from actors._job_table import JobTable
from actors._json import json_copy
from actors._metrics import MetricsSnapshot, register_metrics
from actors._metrics_api import MetricsAPI
from actors._metrics_server import MetricsServer
from actors._priority import Priority
from actors._query_api import JobQueryAPI
from actors._queue import DEFAULT_QUEUE, Queue, check_queues
from actors._ready import SEQ_BITS, ReadyQueue
from actors._reaper import Reaper
from actors._repo_lock import RepoMode
from actors._resubmit import RetryLinks
from actors._retry import NO_BACKOFF, RetryPolicy
from actors._schedule_api import ScheduleAPI
from actors._shutdown_api import ASK_TIMEOUT, CLOSING, NEW, RUNNING, ShutdownAPI
from actors._status import CANCELLED, PENDING, SCHEDULED
from actors.messages import After, Cancel, ErrorInfo, Job, JSONValue, Resize, Submit

__all__ = ["OnFull", "Scheduler"]

OnFull = Literal["reject", "drop", "wait"]
F = TypeVar("F", bound=HandlerFunc)


_loop_numbers = itertools.count(1)
_scheduler_numbers = itertools.count(1)



class Scheduler(ScheduleAPI, MetricsAPI, JobQueryAPI, ShutdownAPI):
    """An embeddable job scheduler: handlers, a worker pool, repos, retries, timeouts.

    Example:
        ```py
        sched = Scheduler(workers=8)

        @sched.handler("build", max_retries=3, timeout=600)
        def build(ctx, payload):
            return {"ok": True}

        with sched:
            handle = sched.submit("build", {"sha": "abc"}, repo="repo-42")
            print(handle.result(timeout=10))
        ```
    """

    def __init__(
        self,
        workers: int = 8,
        *,
        max_pending: int = 10_000,
        on_full: OnFull = "reject",
        full_timeout: float | None = None,
        repo_mode: RepoMode = "ordered",
        repo_modes: Mapping[str, RepoMode] | None = None,
        history: int = 10_000,
        clock: Clock | None = None,
        restart_limit: int = 5,
        restart_window: float = 60.0,
        queues: Mapping[str, Queue] | None = None,
        name: str | None = None,
        metrics: bool = True,
        registry: CollectorRegistry | None = None,
    ) -> None:
        """Configure a scheduler; `start` it (or use ``with``) before submitting.

        Args:
            workers: size of the ``default`` queue's worker pool (>= 1); `resize`
                changes it later.
            max_pending: the most accepted, unfinished jobs at once in the
                ``default`` queue (back-pressure); each named queue has its own.
            on_full: what `submit` does when ``max_pending`` is reached: ``"reject"``
                raises `QueueFull`; ``"drop"`` counts the job as dropped and returns
                a handle already cancelled; ``"wait"`` blocks until there is room,
                up to ``full_timeout`` seconds (None: no limit), then raises `QueueFull`.
            full_timeout: see ``on_full="wait"``.
            repo_mode: ``"ordered"`` (a retrying or delayed job holds its repo and
                its place) or ``"mutex"`` (exclusion only: waiting jobs don't block).
            repo_modes: per-repo overrides of ``repo_mode``.
            history: how many finished jobs `job` can still look up.
            clock: where time comes from (tests pass a `ManualClock`).
            restart_limit: worker crashes (postroom bugs, not job errors) tolerated
                within ``restart_window`` seconds before the scheduler fails loudly.
            restart_window: see ``restart_limit``.
            queues: named queues besides ``default``, each with its own workers,
                bound and job defaults (see `Queue`).
            name: the scheduler's name, the ``scheduler`` label of its metrics
                (default: ``postroom-N``, N counting schedulers in the process).
            metrics: register Prometheus metrics while running
                (docs/operations.md lists them).
            registry: the ``prometheus_client`` registry to register on (None:
                the global one, which several schedulers can share).

        Raises:
            InvalidArgument: an argument is out of range or of the wrong type.
        """
        check_int("workers", workers, 1)
        check_int("max_pending", max_pending, 1)
        check_name("name", name)
        check_int("history", history, 0)
        check_int("restart_limit", restart_limit, 0)
        if on_full not in ("reject", "drop", "wait"):
            msg = f"on_full must be 'reject', 'drop' or 'wait', not {on_full!r}"
            raise InvalidArgument(msg)
        if full_timeout is not None:
            check_seconds("full_timeout", full_timeout, allow_zero=True)
        modes = dict(repo_modes or {})
        for repo, mode in [(None, repo_mode), *modes.items()]:
            if mode not in ("ordered", "mutex"):
                where = "repo_mode" if repo is None else f"repo_modes[{repo!r}]"
                msg = f"{where} must be 'ordered' or 'mutex', not {mode!r}"
                raise InvalidArgument(msg)
        self._queues = {DEFAULT_QUEUE: Queue(workers, max_pending), **check_queues(queues)}
        self._config = DispatcherConfig(
            {name: queue.workers for name, queue in self._queues.items()},
            repo_mode,
            modes,
            restart_limit,
            restart_window,
        )
        self._on_full = on_full
        self._full_timeout = full_timeout
        self._clock: Clock = clock or MonotonicClock()
        self._handlers: dict[str, HandlerSpec] = {}
        # The gate guards the scheduler's state; the table and the capacities share it.
        self._gate = threading.Lock()
        # Per named queue: its bound and the ready queue its workers take from.
        self._capacities = {
            name: Capacity(queue.max_pending, self._gate) for name, queue in self._queues.items()
        }
        self._readies = {name: ReadyQueue() for name in self._queues}
        self._defaults: dict[tuple[str, str], _Defaults] = {}
        self._table = JobTable(self._capacities, history, self._gate)
        self._retries = RetryLinks()
        # Children and follow-ups; workers reach them (ctx.submit) through the table.
        self._links = Links(self._table, self.submit, self._cancel, self._hand_off)
        self._table.links = self._links
        self._reaper = Reaper()
        self._callbacks = CallbackRunner(self._reaper)
        self._state = NEW
        self._seq = iter(range(1, 2**SEQ_BITS))
        # Job ids: a random prefix per scheduler and a counter. As unique as a
        # uuid4 per job, without a system call per submit.
        self._id_prefix = uuid.uuid4().hex[:16]
        self._drained = threading.Event()
        self._dispatcher: pykka.ActorRef[Any] | None = None
        self._timer: pykka.ActorRef[Any] | None = None
        # Timer tokens, drawn here for delayed jobs and by the actors for theirs.
        self._tokens = itertools.count(1)
        self._final_stats: Stats | None = None
        self._dropped = 0
        self._rejected = 0
        self._crash_reason = ""
        self.name = name or f"postroom-{next(_scheduler_numbers)}"
        """The ``scheduler`` label of this scheduler's metrics."""
        self._metrics = metrics
        self._registry = registry
        self._unregister_metrics: Callable[[], None] | None = None
        self._last_metrics: MetricsSnapshot | None = None
        self._metric_servers: list[MetricsServer] = []

    # --- handlers -------------------------------------------------------------------

    def handler(
        self,
        name: str,
        *,
        max_retries: int | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        throws: type[BaseException] | tuple[type[BaseException], ...] = (),
        queue: str | None = None,
    ) -> Callable[[F], F]:
        """Register the decorated function as the handler called ``name``.

        The function is called as ``func(ctx, payload)`` (or awaited, if it is
        ``async def``) and returns a JSON-able result.

        Args:
            name: the name jobs are submitted under.
            max_retries: retries after the first attempt, unless submit says
                otherwise (None: the queue's, else 0).
            timeout: seconds an attempt may run before it is told to stop (None:
                the queue's, else no limit).
            retry: the backoff between attempts (None: the queue's, else retry at once).
            throws: exception types that fail the job at once, never retried.
            queue: the named queue its jobs go to unless submit names one
                (None: ``default``).

        Raises:
            InvalidArgument: a bad option, or ``name`` is already registered.
            UnknownQueue: ``queue`` is not one of the scheduler's queues.
        """

        def register(func: F) -> F:
            self.register(
                name,
                func,
                max_retries=max_retries,
                timeout=timeout,
                retry=retry,
                throws=throws,
                queue=queue,
            )
            return func

        return register

    def register(
        self,
        name: str,
        func: HandlerFunc,
        *,
        max_retries: int | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        throws: type[BaseException] | tuple[type[BaseException], ...] = (),
        queue: str | None = None,
    ) -> None:
        """Register ``func`` as the handler called ``name`` (`handler` without the decorator).

        Raises:
            InvalidArgument: a bad option, or ``name`` is already registered.
            UnknownQueue: ``queue`` is not one of the scheduler's queues.
        """
        spec = make_spec(
            name, func, max_retries=max_retries, timeout=timeout, retry=retry, throws=throws
        )
        if queue is not None:
            self._queue_named(queue)
            spec = replace(spec, queue=queue)
        if name in self._handlers:
            msg = f"a handler named {name!r} is already registered"
            raise InvalidArgument(msg)
        self._handlers[name] = spec

    # --- lifecycle ------------------------------------------------------------------

    def start(self) -> Self:
        """Start the actors. Returns the scheduler, so ``Scheduler(...).start()`` reads well.

        Raises:
            SchedulerClosed: it was started before (a scheduler runs once).
        """
        with self._gate:
            if self._state != NEW:
                msg = f"a scheduler starts once; this one is {self._state}"
                raise SchedulerClosed(msg)
            if self._metrics:
                # First: a name already taken on the registry stops nothing started.
                self._unregister_metrics = register_metrics(
                    self._metrics_snapshot, name=self.name, registry=self._registry
                )
            loop = ActorLoop(f"postroom-ActorLoop-{next(_loop_numbers)}")
            self._reaper.add(loop.thread, loop.close)
            spawned = Dispatcher.spawn(
                loop,
                self._config,
                self._readies,
                self._capacities,
                self._tokens,
                self._clock,
                self._handlers,
                self._table,
                self._reaper,
                self._drained.set,
                self._crash,
                self._rejections,
                self._dispatcher_failed,
                self._submit_scheduled,
            )
            self._dispatcher = spawned.ref
            # Booted before anyone can submit: submit needs the Timer's ref.
            timer: pykka.ActorRef[Any] = spawned.ref.ask(BOOT, block=True, timeout=ASK_TIMEOUT)
            self._timer = timer
            self._state = RUNNING
        shut_down_at_exit(self)
        return self

    def __enter__(self) -> Self:
        if self._state == NEW:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Leaving normally lets the work finish; leaving on an error cancels it.
        self.shutdown(graceful=exc_type is None)

    @property
    def running(self) -> bool:
        """Whether the scheduler accepts jobs."""
        return self._state == RUNNING

    # --- jobs -----------------------------------------------------------------------

    def submit(
        self,
        handler: str,
        payload: Any = None,
        *,
        repo: str | None = None,
        priority: int = Priority.USER_VISIBLE,
        delay: float = 0.0,
        idempotency_key: str | None = None,
        max_retries: int | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        queue: str | None = None,
        _retry_of: str | None = None,
        _schedule: tuple[str, float] | None = None,
        _parent: str | None = None,
    ) -> JobHandle:
        """Submit a job to the handler called ``handler``.

        Args:
            handler: a registered handler's name.
            payload: the handler's input; must be JSON-able (a private copy is taken).
            repo: a concurrency key: jobs of one repo never overlap and start in
                (priority, submission) order.
            priority: 1 (most urgent) to 10; see `Priority`.
            delay: seconds to wait before the job may start.
            idempotency_key: if an unfinished or completed job holds this key,
                its handle is returned and nothing new runs.
            max_retries: overrides the handler's (which overrides the queue's).
            timeout: seconds per attempt; overrides the handler's (and the queue's).
            retry: backoff; overrides the handler's (and the queue's).
            queue: the named queue to run it on; overrides the handler's
                (default: ``default``).

        Returns:
            The job's handle.

        Raises:
            UnknownHandler: no handler has that name.
            UnknownQueue: the scheduler has no queue of that name.
            InvalidArgument: an argument is invalid (`NotSerializable` for a payload).
            QueueFull: the queue's ``max_pending`` is reached (``on_full`` "reject",
                or "wait" timed out).
            SchedulerClosed: the scheduler is not running.
        """
        if self._state != RUNNING:
            raise self._closed_error()
        spec = self._handlers.get(handler) if isinstance(handler, str) else None
        if spec is None:
            raise unknown_handler(handler, self._handlers)
        check_priority(priority)
        if (
            repo is not None
            or delay
            or idempotency_key is not None
            or max_retries is not None
            or timeout is not None
            or retry is not None
        ):
            check_job_options(repo, delay, idempotency_key, max_retries, timeout, retry)
        body = payload if type(payload) in _JSON_SCALARS else json_copy(payload)
        name = queue or spec.queue or DEFAULT_QUEUE
        if queue is not None:
            self._queue_named(queue)
        defaults = self._defaults.get((handler, name)) or self._resolve_defaults(spec, name)
        seq = next(self._seq)
        # Positional (the hot path): id, handler, payload, seq, priority, repo,
        # attempt, max_retries, timeout, retry, not_before, idempotency_key,
        # submitted_at, queue. Defaults: submit > handler > queue > built-in.
        job = Job(
            f"{self._id_prefix}-{seq}",
            handler,
            body,
            seq,
            int(priority),
            repo,
            1,
            defaults.max_retries if max_retries is None else max_retries,
            defaults.timeout if timeout is None else timeout,
            retry or defaults.retry,
            self._clock.now() + delay if delay else None,
            idempotency_key,
            time.time(),
            name,
        )
        state = JobState(job, SCHEDULED if delay else PENDING)
        state.counts = defaults.counts
        if _retry_of is not None:
            state.retry_of = _retry_of  # `retry`: linked before anyone can see it
        if _schedule is not None:
            state.schedule_id, state.fire_time = _schedule
        # A job without a repo needs no routing: it goes straight to the ready
        # queue (or, delayed, to the Timer, which puts it there when due), and
        # the Dispatcher learns of it only if it must decide something (a
        # cancel, a failure, a retry).
        direct = repo is None
        if direct:
            if delay:
                state.where = TIMER
                state.timer = next(self._tokens)
            else:
                state.where = READY
        if _parent is not None:
            # A child or a follow-up: accepted, then held until its links hand it off.
            state.status, state.where, state.links = SCHEDULED, PARKED, JobLinks(_parent)
        try:
            # A schedule's fire (on the actor loop) must never wait for room.
            holder = self._accept(state, direct=direct, wait=_schedule is None)
        except _Dropped as dropped:
            return self._dropped_handle(handler, body, str(dropped))
        return JobHandle(holder, self.cancel, self._callbacks, self._links)

    def _accept(self, state: JobState, *, direct: bool, wait: bool = True) -> JobState:
        """Take the job in and send it on its way; or return the job that holds
        its idempotency key.

        The gate (shared with the table and the capacity, taken by submitters
        only) covers the state check, the idempotency lookup, the slot, the
        table entry and the hand-off.
        """
        job = state.job
        with self._gate:
            if self._state != RUNNING:
                raise self._closed_error()
            if job.idempotency_key is not None:
                # A resubmission needs no room: it returns the job already accepted.
                held = self._table.holder(job.idempotency_key)
                if held is not None:
                    return held
            capacity = self._capacities[job.queue]
            if not capacity.try_take():
                if not wait:
                    msg = f"queue {job.queue!r} holds max_pending={capacity.limit} jobs"
                    raise QueueFull(msg)
                self._wait_for_room(capacity, job.queue)
            self._table.add(state)
            if state.where == PARKED:
                pass  # held: `Links` hands it off (actors/_followups.py)
            elif not direct:
                assert self._dispatcher is not None
                self._dispatcher.tell(Submit(job))
            elif state.timer is None:
                self._readies[job.queue].put(job)
            else:
                self._to_timer(state.timer, job)
        return state

    def _to_timer(self, token: int, job: Job) -> None:
        # Posted: if the Timer is gone, the scheduler crashed, which resolves every job.
        assert self._timer is not None and job.not_before is not None
        post(self._timer, After(token, job.not_before, "start", job.id, job.attempt, job))

    def _hand_off(self, state: JobState) -> None:
        """Send a held job (a child or a follow-up, see `Links`) on its way, as
        `_accept` sends the others. On the thread that releases it, without the
        gate: a put or a tell, never a wait."""
        job = state.job
        if job.repo is not None:
            assert self._dispatcher is not None  # set before the first submit
            try:
                self._dispatcher.tell(Submit(job))
            except pykka.ActorDeadError:
                # Shut down or crashed: that path resolves every job; this makes sure.
                error = ErrorInfo("postroom.JobCancelled", "cancelled: the scheduler stopped")
                self._table.finish(state, CANCELLED, error=error)
        elif state.timer is None:
            state.where = READY
            self._readies[job.queue].put(job)
        else:
            state.where = TIMER
            self._to_timer(state.timer, job)

    def _wait_for_room(self, capacity: Capacity, queue: str) -> None:
        """Apply ``on_full``, the gate held: return once a slot is taken, or raise."""
        where = "the scheduler" if queue == DEFAULT_QUEUE else f"queue {queue!r}"
        if self._on_full == "wait":
            if capacity.take(self._full_timeout):
                return
            if self._state != RUNNING:
                raise self._closed_error()
            self._rejected += 1
            msg = (
                f"no room within {self._full_timeout}s: {where} holds "
                f"{capacity.limit} unfinished jobs"
            )
            raise QueueFull(msg)
        msg = f"{where} holds max_pending={capacity.limit} unfinished jobs"
        if self._on_full == "drop":
            self._dropped += 1
            raise _Dropped(msg)
        self._rejected += 1
        raise QueueFull(msg)

    def _resolve_defaults(self, spec: HandlerSpec, queue: str) -> _Defaults:
        """A job's defaults for this handler on this queue: handler > queue >
        built-in (the submit's own arguments go over these). Kept per pair."""
        lane = self._queues[queue]
        defaults = _Defaults(
            spec.max_retries if spec.max_retries is not None else lane.max_retries or 0,
            spec.timeout if spec.timeout is not None else lane.timeout,
            spec.retry or lane.retry or NO_BACKOFF,
            self._table.label_counts(queue, spec.name),
        )
        self._defaults[(spec.name, queue)] = defaults
        return defaults

    def _ask(self, message: Any) -> Any:
        """Ask the Dispatcher; `SchedulerClosed` unless the scheduler is running.

        An error the Dispatcher raises for the message (a `ScheduleNotFound`,
        say) is raised here, in the caller.
        """
        dispatcher = self._dispatcher
        if self._state != RUNNING or dispatcher is None:
            raise self._closed_error()
        try:
            return dispatcher.ask(message, block=True, timeout=ASK_TIMEOUT)
        except pykka.ActorDeadError:
            raise self._closed_error() from None

    def _handle_of(self, job_id: str) -> JobHandle:
        return JobHandle(self._table.get(job_id), self.cancel, self._callbacks, self._links)

    def _queue_named(self, name: object) -> Queue:
        queue = self._queues.get(name) if isinstance(name, str) else None
        if queue is None:
            raise unknown_queue(name, self._queues)
        return queue

    def _dropped_handle(self, handler: str, payload: JSONValue, why: str) -> JobHandle:
        # Dropped jobs are counted, never silent: the caller gets a handle that is
        # already cancelled and says why. It is not kept in the job table.
        job = Job(uuid.uuid4().hex, handler, payload, seq=0, submitted_at=time.time())
        state = JobState(job, CANCELLED)
        state.resolve(CANCELLED, error=ErrorInfo("postroom.Dropped", f"dropped: {why}"))
        return JobHandle(state, _already_finished, links=self._links)

    def job(self, job_id: str) -> JobInfo:
        """A snapshot of the job with this id (unfinished, or finished and still in history).

        Raises:
            JobNotFound: no such job.
        """
        return self._table.get(job_id).snapshot()

    def cancel(self, job_id: str) -> CancelResult:
        """Cancel a job: a waiting one is removed at once, a running one is told to
        stop, and no retry follows. Harmless to repeat, or to call on a finished job.
        A job it cancels or signals has its unfinished children (``ctx.submit``)
        cancelled too, and theirs, before it returns.

        Raises:
            JobNotFound: no such job.
        """
        return self._cancel(job_id)

    def _cancel(self, job_id: str, parent: str | None = None) -> CancelResult:
        """`cancel`; ``parent`` when it is the cascade of that parent's cancel."""
        state = self._table.get(job_id)
        if state.finished:
            return CancelResult.ALREADY_FINISHED
        if self._state not in (RUNNING, CLOSING) or self._dispatcher is None:
            return CancelResult.ALREADY_FINISHED
        try:
            result: CancelResult = self._dispatcher.ask(
                Cancel(job_id, parent), block=True, timeout=ASK_TIMEOUT
            )
        except pykka.ActorDeadError:
            return CancelResult.ALREADY_FINISHED
        if result is CancelResult.CANCELLED or result is CancelResult.SIGNALLED:
            self._links.cancelled(state)  # its children, and theirs
        return result

    def stats(self) -> Stats:
        """A snapshot of the counters. Keeps answering after shutdown, with the final figures."""
        if self._final_stats is not None:
            return self._final_stats
        if self._dispatcher is None:
            return self._empty_stats()
        try:
            stats: Stats = self._dispatcher.ask(GET_STATS, block=True, timeout=ASK_TIMEOUT)
        except (pykka.ActorDeadError, pykka.Timeout):
            return self._final_stats or self._empty_stats()
        return stats

    def resize(self, workers: int, *, queue: str = DEFAULT_QUEUE) -> None:
        """Grow or shrink a queue's worker pool. A busy worker leaves after its job.

        Raises:
            InvalidArgument: ``workers`` is not an int >= 1.
            UnknownQueue: the scheduler has no queue of that name.
            SchedulerClosed: the scheduler is not running.
        """
        check_int("workers", workers, 1)
        self._queue_named(queue)
        if self._state != RUNNING or self._dispatcher is None:
            raise self._closed_error()
        try:
            self._dispatcher.ask(Resize(workers, queue), block=True, timeout=ASK_TIMEOUT)
        except pykka.ActorDeadError:
            raise self._closed_error() from None

    def _rejections(self) -> tuple[int, int]:
        return self._dropped, self._rejected


_JSON_SCALARS = frozenset((str, int, bool, type(None)))
"""Payload types that are JSON as they are (exact types: a subclass is checked)."""


def _already_finished(_job_id: str) -> CancelResult:
    return CancelResult.ALREADY_FINISHED


@dataclass(frozen=True, slots=True)
class _Defaults:
    """What a job gets when its submit does not say."""

    max_retries: int
    timeout: float | None
    retry: RetryPolicy
    counts: LabelCounts
    """The (queue, handler) counters its jobs count in."""


class _Dropped(QueueFull):
    """Internal: the job was dropped under ``on_full="drop"`` (never escapes submit)."""
