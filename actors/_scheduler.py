"""`Scheduler`: the facade services use. It validates at the boundary, then talks
to the Dispatcher in messages; nothing here decides what happens to a job.

`Scheduler` is one class. It builds and starts a scheduler, holds the handlers,
and answers the calls that need no part of their own (`job`, `jobs`, `cancel`,
`stats`, `resize`). The rest it delegates to the components it owns, one module
each in ``actors/_facade/``, each given exactly the collaborators it needs:

- `Life` (``life.py``): the life state and the gate; the one owner of them,
  which every other part is given;
- `Submitter` (``submit.py``): how a job comes in, for `submit` and for the jobs
  the facade makes itself (a retry, a schedule's fire, a child, a follow-up);
- `Schedules` (``schedules.py``): `cron`, `every`, `at` and the schedule calls;
- `ManualRetry` (``retry.py``): `retry`;
- `Metrics` (``metrics.py``): the metrics registration and `serve_metrics`;
- `Shutdown` (``lifecycle.py``): `shutdown` and the crash path.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self, TypeVar, Unpack

from prometheus_client import CollectorRegistry

from actors._admin.api import AdminApp, check_token
from actors._admin.server import AdminServer
from actors._admin.source import SchedulerSource
from actors._dispatcher.config import DispatcherConfig
from actors._dispatcher.dispatcher import Dispatcher
from actors._errors import (
    InvalidArgument,
    JobNotFound,
    SchedulerAlreadyStarted,
    SchedulerClosed,
    SchedulerUnresponsive,
)
from actors._facade.durable import Durable
from actors._facade.life import CLOSING, CRASHED, FORKED, NEW, RUNNING, Life
from actors._facade.lifecycle import Shutdown
from actors._facade.metrics import Metrics
from actors._facade.nodes import Nodes
from actors._facade.restore import Restorer
from actors._facade.retry import ManualRetry
from actors._facade.schedules import DEFAULT_MISFIRE_GRACE, ScheduleHandle, Schedules
from actors._facade.submit import Submitter
from actors._jobs.cancel_result import CancelResult
from actors._jobs.capacity import Capacity
from actors._jobs.handle import JobHandle
from actors._jobs.info import JobInfo, NodeInfo, Stats
from actors._jobs.links import Links
from actors._jobs.query import JobQuery
from actors._jobs.ready import ReadyQueue
from actors._jobs.runs import RunInfo
from actors._jobs.status import JobStatus
from actors._jobs.table import JobTable
from actors._journal.link import Durability
from actors._journal.options import DEFAULT_KEEP_FINISHED, KeepFinished, check_store_options
from actors._journal.store import Synchronous
from actors._metrics.server import MetricsServer
from actors._policy.checks import check_clock, check_int, check_name, check_queue, check_seconds
from actors._policy.handlers import HandlerFunc, HandlerSpec, OnInterrupt, make_spec
from actors._policy.options import JobOptions, SubmitOptions
from actors._policy.payloads import DEFAULT_MAX_PAYLOAD_BYTES, check_max_payload_bytes
from actors._policy.queue import DEFAULT_QUEUE, Queue, check_queues
from actors._policy.registry import Handlers, handler_specs
from actors._policy.retry import RetryPolicy
from actors._repo_lock import RepoMode
from actors._runtime.callbacks import CallbackRunner
from actors._runtime.exit import shut_down_at_exit
from actors._runtime.fork import track
from actors._runtime.loop import ActorLoop
from actors._runtime.reaper import Reaper
from actors._runtime.refs import ActorDead, ActorRef, NoReply, ask
from actors._schedules.book import OverlapPolicy, ScheduleInfo
from actors._schedules.misfire import MisfirePolicy
from actors._schedules.triggers import AtTrigger, CronTrigger, IntervalTrigger
from actors._timer.clock import Clock, MonotonicClock
from actors.messages import BOOT, GET_STATS, Cancel, Resize

if TYPE_CHECKING:
    from transport.listener import Listener

__all__ = ["OnFull", "Scheduler"]

OnFull = Literal["reject", "drop", "wait"]
F = TypeVar("F", bound=HandlerFunc)


_loop_numbers = itertools.count(1)
_scheduler_numbers = itertools.count(1)


def _checked_modes(
    repo_mode: RepoMode, repo_modes: Mapping[str, RepoMode] | None
) -> dict[str, RepoMode]:
    """The per-repo modes, each checked (``repo_mode`` too)."""
    modes = dict(repo_modes or {})
    for repo, mode in [(None, repo_mode), *modes.items()]:
        if mode not in ("ordered", "mutex"):
            where = "repo_mode" if repo is None else f"repo_modes[{repo!r}]"
            msg = f"{where} must be 'ordered' or 'mutex', not {mode!r}"
            raise InvalidArgument(msg)
    return modes


class Scheduler:
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

    _ask_timeout = 10.0
    """Seconds any question to the Dispatcher may take before it is a visible
    error (a class attribute: one place for the facade, and for tests to shorten;
    a scheduler reads it once, when it is made)."""

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
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        store: str | os.PathLike[str] | None = None,
        durability: Durability = "commit",
        synchronous: Synchronous = "NORMAL",
        batch_interval: float = 0.05,
        busy_timeout: float = 5.0,
        keep_finished: KeepFinished | None = DEFAULT_KEEP_FINISHED,
        handlers: Handlers | None = None,
    ) -> None:
        """Configure a scheduler; `start` it (or use ``with``) before submitting.

        Args:
            workers: size of the ``default`` queue's worker pool (>= 0; 0: its
                jobs run only on worker nodes, see `listen`); `resize` changes it later.
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
            clock: where time comes from (tests pass a `ManualClock`): any
                object with the `Clock` protocol's methods.
            restart_limit: worker crashes (postroom bugs, not job errors) tolerated
                within ``restart_window`` seconds before the scheduler fails loudly.
            restart_window: see ``restart_limit``; seconds of ``clock``.
            queues: named queues besides ``default``, each with its own workers,
                bound and job defaults (see `Queue`).
            name: the scheduler's name, the ``scheduler`` label of its metrics
                (default: ``postroom-N``, N counting schedulers in the process).
            metrics: register Prometheus metrics while running
                (docs/operations.md lists them).
            registry: the ``prometheus_client`` registry to register on (None:
                the global one, which several schedulers can share).
            max_payload_bytes: the most bytes a payload (at submit) or a result
                (when a handler returns) may take, encoded as postroom journals
                and sends it (msgpack); over it, `PayloadTooLarge`. From 1 KiB
                to 7 MiB, default 4 MiB: a message carries a payload and a
                result within the wire format's 16 MiB.
            store: a file for the journal (SQLite): jobs, their runs and the
                schedules survive a crash and come back at the next `start`
                (docs/durability.md). None (the default) keeps everything in
                memory only.
            durability: with a store, ``"commit"`` (the default): `submit`
                returns once the job's row is committed, and a worker records
                an attempt's start before it calls the handler; concurrent
                calls share commits. ``"batch"``: `submit` returns at once and
                the job is committed within ``batch_interval``, which a crash
                can lose.
            synchronous: SQLite's ``synchronous``: ``"NORMAL"`` (the default)
                survives a crash of the process, and may lose the last commits
                on a power loss; ``"FULL"`` survives a power loss too, and
                commits more slowly.
            batch_interval: seconds a record may wait for its commit under
                ``durability="batch"`` (0 < s <= 60).
            busy_timeout: seconds a write waits for another program that holds
                the store locked before it fails with `StoreBusy`.
            keep_finished: how long the store keeps finished jobs:
                ``{"age": seconds}`` and/or ``{"count": n}``, pruned in the
                background (default: a week); None keeps them all.
            handlers: registrations made apart from the scheduler (a `Handlers`),
                registered here as `include` does.

        Raises:
            InvalidArgument: an argument is out of range or of the wrong type,
                or ``handlers`` is not a `Handlers` (or holds a name twice).
            UnknownQueue: a handler of ``handlers`` names a queue it lacks.
            GILRequired: a free-threaded Python runs without the GIL (docs/errors.md).
        """
        check_int("workers", workers, 0)
        check_int("max_pending", max_pending, 1)
        check_name("name", name)
        check_int("history", history, 0)
        check_int("restart_limit", restart_limit, 0)
        if on_full not in ("reject", "drop", "wait"):
            msg = f"on_full must be 'reject', 'drop' or 'wait', not {on_full!r}"
            raise InvalidArgument(msg)
        if full_timeout is not None:
            check_seconds("full_timeout", full_timeout, allow_zero=True)
        modes = _checked_modes(repo_mode, repo_modes)
        path = check_store_options(
            store, durability, synchronous, batch_interval, busy_timeout, keep_finished
        )
        self._queues = {DEFAULT_QUEUE: Queue(workers, max_pending), **check_queues(queues)}
        self._config = DispatcherConfig(
            {name: queue.workers for name, queue in self._queues.items()},
            repo_mode,
            modes,
            restart_limit,
            restart_window,
            check_max_payload_bytes(max_payload_bytes),
        )
        self._clock: Clock = MonotonicClock() if clock is None else check_clock(clock)
        self._handlers: dict[str, HandlerSpec] = {}
        self._life = Life(name or f"postroom-{next(_scheduler_numbers)}", self._ask_timeout)
        # Per named queue: its bound and the ready queue its workers take from. The
        # life's gate guards the scheduler's state; the table and the capacities share it.
        gate = self._life.gate
        self._capacities = {
            name: Capacity(queue.max_pending, gate) for name, queue in self._queues.items()
        }
        self._readies = {name: ReadyQueue() for name in self._queues}
        self._table = JobTable(self._capacities, history, gate)
        # Timer tokens, drawn by the submit path for delayed jobs and by the actors for theirs.
        self._tokens = itertools.count(1)
        self._reaper = Reaper()
        self._callbacks = CallbackRunner(self._reaper)
        submitter = self._submitter = Submitter(
            self._life,
            self._handlers,
            self._queues,
            self._config,
            self._table,
            self._capacities,
            self._readies,
            self._clock,
            self._tokens,
            self._callbacks,
            self.cancel,
            on_full,
            full_timeout,
        )
        # Children and follow-ups; workers reach them (ctx.submit) through the table.
        self._links = Links(self._table, submitter.submit, self._cancel, submitter.hand_off)
        submitter.attach_links(self._links)
        self._table.attach_links(self._links)
        self._retry = ManualRetry(self._life, self._table, submitter)
        self._durable: Durable | None = None
        if path is not None:
            durable = self._durable = Durable(
                path,
                durability,
                synchronous,
                batch_interval,
                busy_timeout,
                keep_finished,
                self._clock,
            )
            self._table.attach_journal(durable.link)
            self._restorer = Restorer(self._life, submitter, self._table, self._links, path)
            submitter.restorer = self._restorer
        self._schedules = Schedules(
            self._life,
            self._handlers,
            self._queues,
            self._config.max_payload_bytes,
            submitter,
        )
        self._metrics = Metrics(self._life, enabled=metrics, registry=registry)
        self._nodes = Nodes(
            self._life,
            self._readies,
            self._table,
            self._handlers,
            self._clock,
            self._tokens,
            self._reaper,
            lambda reason: self._shutdown.crash(reason, None),
        )
        self._metrics.nodes = self._nodes.figures
        self._shutdown = Shutdown(
            self._life,
            self._table,
            self._capacities,
            self._queues,
            self._reaper,
            self._metrics,
            submitter.rejections,
            self._durable,
            self._nodes.close,
        )
        if handlers is not None:
            self.include(handlers)
        track(self)  # a forked child must know this scheduler is its parent's

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
        on_interrupt: OnInterrupt = "retry",
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
            on_interrupt: with a store, what follows an attempt cut short by
                the end of the process (a crash, a kill): ``"retry"`` (the
                default; if it has retries left) or ``"fail"``.

        Raises:
            InvalidArgument: a bad option, ``name`` is already registered, or the
                function's signature cannot take ``(ctx, payload)`` (checked
                with `inspect.signature`; a callable without a readable
                signature is taken on trust).
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
                on_interrupt=on_interrupt,
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
        on_interrupt: OnInterrupt = "retry",
    ) -> None:
        """Register ``func`` as the handler called ``name`` (`handler` without the decorator).

        Raises:
            InvalidArgument: a bad option, ``name`` is already registered, or
                ``func`` cannot be called as ``func(ctx, payload)``.
            UnknownQueue: ``queue`` is not one of the scheduler's queues.
        """
        self._life.check_process()
        spec = make_spec(
            name,
            func,
            max_retries=max_retries,
            timeout=timeout,
            retry=retry,
            throws=throws,
            on_interrupt=on_interrupt,
        )
        if queue is not None:
            check_queue(queue, self._queues)
            spec = replace(spec, queue=queue)
        if name in self._handlers:
            msg = f"a handler named {name!r} is already registered"
            raise InvalidArgument(msg)
        self._handlers[name] = spec

    def include(self, handlers: Handlers) -> None:
        """Register every handler of ``handlers``, with the options it was given.

        All or nothing: every name and queue is checked before any is registered.

        Raises:
            InvalidArgument: ``handlers`` is not a `Handlers`, or one of its
                names is already registered here.
            UnknownQueue: one of its handlers names a queue the scheduler lacks.
        """
        self._life.check_process()
        if not isinstance(handlers, Handlers):
            msg = f"include takes a Handlers, not {type(handlers).__name__}"
            raise InvalidArgument(msg)
        specs = handler_specs(handlers)
        for name, spec in specs.items():
            if spec.queue is not None:
                check_queue(spec.queue, self._queues)
            if name in self._handlers:
                msg = f"a handler named {name!r} is already registered"
                raise InvalidArgument(msg)
        self._handlers.update(specs)

    # --- lifecycle ------------------------------------------------------------------

    def start(self) -> Self:
        """Start the actors. Returns the scheduler, so ``Scheduler(...).start()`` reads well.

        Raises:
            SchedulerAlreadyStarted: it is running (nothing changes).
            SchedulerClosed: it was shut down, or crashed (a scheduler runs once;
                a dispatcher that fails as it boots crashes it too).
            SchedulerForked: it was started in the process this one was forked from.
            StoreLocked: (with a store) another scheduler owns the store.
            StoreCorrupt, StoreReadOnly, StoreFull, StoreBusy, StoreError:
                (with a store) it cannot be opened or recovered; nothing started.
        """
        life = self._life
        life.check_process()  # before the gate, which a parent's thread may have held
        restored: list[Any] = []
        with life.gate:
            if life.state == RUNNING:
                msg = "the scheduler is already running: a scheduler starts once"
                raise SchedulerAlreadyStarted(msg)
            if life.state != NEW:
                msg = f"a scheduler starts once; this one is {life.state}"
                raise SchedulerClosed(msg)
            durable = self._durable
            if durable is not None:
                # First of all: a store that cannot be opened starts nothing.
                durable.open(self._handlers, self._queues)
            # Then: a name already taken on the registry stops nothing started.
            try:
                self._metrics.register()
            except BaseException:
                if durable is not None:
                    durable.close_unstarted()
                raise
            if durable is not None:
                durable.start_journal(self._reaper, self._shutdown.journal_failed)
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
                self._shutdown.drained.set,
                self._shutdown.crash,
                self._submitter.rejections,
                self._shutdown.dispatcher_failed,
                self._schedules.submit_fire,
            )
            life.dispatcher = spawned.ref
            # Booted before anyone can submit: submit needs the Timer's ref.
            try:
                timer: ActorRef[Any] = ask(spawned.ref, BOOT, timeout=life.ask_timeout)
            except NoReply as exc:
                raise SchedulerUnresponsive(str(exc)) from None
            except ActorDead:
                # Failed as it booted; its failure report (waiting for the
                # gate) crashes the scheduler.
                msg = "the scheduler crashed as it started: its dispatcher failed (see the log)"
                raise SchedulerClosed(msg) from None
            self._submitter.connect(spawned.ref, timer)
            life.started(timer)
            if durable is not None:
                restored = durable.restore(self._restorer)
        if self._durable is not None:
            self._durable.relink(self._restorer, restored)
            # After the jobs: a schedule's overlap policy asks whether its last
            # job, perhaps a recovered one, is unfinished.
            self._schedules.restore(self._durable.stored_schedules())
        shut_down_at_exit(self)
        return self

    def __enter__(self) -> Self:
        if self._life.state in (NEW, FORKED):
            self.start()  # a forked one raises
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
        """Whether the scheduler accepts jobs (never in a process forked from its own)."""
        return self._life.running

    @property
    def name(self) -> str:
        """The ``scheduler`` label of this scheduler's metrics."""
        return self._life.name

    def _after_fork_in_child(self) -> None:
        """In a child just forked, on its only thread (see ``actors/_runtime/fork.py``)."""
        if not self._life.after_fork():
            return  # never started: the child's to start
        self._metrics.close_in_child()

    # --- jobs -----------------------------------------------------------------------

    def submit(
        self, handler: str, payload: Any = None, **options: Unpack[SubmitOptions]
    ) -> JobHandle:
        """Submit a job to the handler called ``handler``.

        Args:
            handler: a registered handler's name.
            payload: the handler's input; must be JSON-able (a private copy is
                taken) and encode to at most the scheduler's ``max_payload_bytes``.
            **options: the job's `SubmitOptions`, each optional: ``repo``,
                ``priority``, ``queue``, ``max_retries``, ``timeout``, ``retry``,
                ``delay``, ``idempotency_key``. One that is given goes over the
                handler's default, which goes over the queue's.

        Returns:
            The job's handle.

        Raises:
            UnknownHandler: no handler has that name.
            UnknownQueue: the scheduler has no queue of that name.
            InvalidArgument: an argument is invalid (`NotSerializable` for a payload
                that is not JSON-able, `PayloadTooLarge` for one over the limit).
            QueueFull: the queue's ``max_pending`` is reached (``on_full`` "reject",
                or "wait" timed out).
            SchedulerClosed: the scheduler is not running.
            StoreError: (with a store, ``durability="commit"``) the job's row
                could not be committed (`StoreFull`, `StoreBusy`...): the job
                is not accepted, and nothing accepted before is lost.
        """
        return self._submitter.submit(handler, payload, options)

    def job(self, job_id: str) -> JobInfo:
        """A snapshot of the job with this id (unfinished, or finished and still in history).

        Raises:
            JobNotFound: no such job (with a store: in memory nor in the store).
            StoreError: (with a store) the store cannot be read.
            SchedulerForked: the scheduler was started in the process this one
                was forked from.
        """
        self._life.check_process()
        try:
            return self._table.get(job_id).snapshot()
        except JobNotFound:
            durable = self._durable
            info = None if durable is None else durable.job(job_id)
            if info is None:
                raise
            return info

    def jobs(
        self,
        *,
        status: JobStatus | str | None = None,
        queue: str | None = None,
        repo: str | None = None,
        handler: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[JobInfo]:
        """Snapshots of the jobs `job` can find, newest (by submission) first.

        Those are the unfinished jobs and the last ``history`` finished ones;
        with a store, every job the store holds (``keep_finished`` decides how
        long), read from it once what the Journal holds is committed, with the
        progress memory has of running ones. A job is listed if it matches
        every filter given. Without a store each call costs
        O(jobs known), a few milliseconds with the default history of 10,000:
        made for dashboards and operators, not for hot loops. Each snapshot is
        taken as the page is built, so a page is not one atomic picture, and
        pages shift as new jobs are submitted (see ``actors/_jobs/query.py``).

        Args:
            status: a `JobStatus`, or its value (``"failed"``).
            queue: a queue's name.
            repo: a repo.
            handler: a handler's name.
            limit: the most jobs to return (an int >= 0).
            offset: how many matching jobs to skip first (an int >= 0): the
                next page starts at ``offset + limit``.

        Raises:
            InvalidArgument: a filter of the wrong type, an unknown status, or
                a bad ``limit`` or ``offset``; the message names the value.
            UnknownQueue: ``queue`` is not one of the scheduler's queues.
            UnknownHandler: ``handler`` is not a registered handler.
            StoreError: (with a store) the store cannot be read, or what the
                Journal holds cannot be committed now.
            SchedulerForked: the scheduler was started in the process this one
                was forked from.
        """
        self._life.check_process()
        query = JobQuery.checked(
            status=status,
            queue=queue,
            repo=repo,
            handler=handler,
            limit=limit,
            offset=offset,
            queues=self._queues,
            handlers=self._handlers,
        )
        durable = self._durable
        if durable is not None:
            infos = durable.jobs(
                self._life.ask_timeout,
                status=status,
                queue=queue,
                repo=repo,
                handler=handler,
                limit=limit,
                offset=offset,
            )
            return [self._fresher(info) for info in infos]
        return query.select(self._table.states())

    def runs(self, job_id: str) -> list[RunInfo]:
        """The attempts of a job, oldest first: one `RunInfo` per attempt that
        started, with how it ended (None while it runs).

        With a store, from the store (every attempt, across restarts, as long
        as ``keep_finished`` keeps the job); without one, from memory, for the
        jobs `job` can find.

        Raises:
            JobNotFound: no such job.
            StoreError: (with a store) the store cannot be read.
            SchedulerForked: the scheduler was started in the process this one
                was forked from.
        """
        self._life.check_process()
        durable = self._durable
        if durable is not None:
            runs = durable.runs(job_id, self._life.ask_timeout)
            if runs is not None:
                return runs
        return self._table.get(job_id).runs()

    def _fresher(self, info: JobInfo) -> JobInfo:
        """A stored job's snapshot, with the progress memory has of it (not stored)."""
        state = self._table.active.get(info.id)
        if state is None or state.progress is None:
            return info
        return replace(info, progress=state.progress)

    def retry(self, job_id: str) -> JobHandle:
        """Run a failed or cancelled job again, as a new job with a new id.

        The new job has the original's handler, payload, repo, priority, queue,
        ``max_retries``, ``timeout`` and backoff, no idempotency key, and starts
        at attempt 1. It goes through `submit`, so back-pressure applies. The
        two are linked: the new job's `JobInfo.retry_of` is the original's id,
        and the original's ``retried_as`` the new job's. A job is retried at
        most once; to try again, retry the retry.

        Returns:
            The new job's handle. Under ``on_full="drop"`` it may be a dropped
            one, already cancelled; the original then stays retryable.

        Raises:
            SchedulerClosed: the scheduler is not running.
            JobNotFound: no such job (or it aged out of the history).
            InvalidArgument: the job is not failed or cancelled (the message
                says its status), or it was retried already.
            QueueFull: as from `submit`: no room under ``on_full="reject"``, or
                none in time under ``"wait"``.
        """
        return self._retry.retry(job_id)

    def cancel(self, job_id: str) -> CancelResult:
        """Cancel a job: a waiting one is removed at once, a running one is told to
        stop, and no retry follows. Harmless to repeat, or to call on a finished job.
        A job it cancels or signals has its unfinished children (``ctx.submit``)
        cancelled too, and theirs, before it returns.

        With a store, a job finished before this start (found by `job` in the
        store) is finished too: `CancelResult.ALREADY_FINISHED`.

        Raises:
            JobNotFound: no such job.
            StoreError: (with a store) the job is not in memory, and the store
                cannot be read.
            SchedulerForked: the scheduler was started in the process this one
                was forked from.
        """
        self._life.check_process()
        return self._cancel(job_id)

    def _cancel(self, job_id: str, parent: str | None = None) -> CancelResult:
        """`cancel`; ``parent`` when it is the cascade of that parent's cancel."""
        try:
            state = self._table.get(job_id)
        except JobNotFound:
            # A job `job` finds in the store only finished before this start
            # (every unfinished one was brought back): harmless, as in memory.
            durable = self._durable
            info = None if durable is None else durable.job(job_id)
            if info is None or not info.status.finished:
                raise
            return CancelResult.ALREADY_FINISHED
        if state.finished:
            return CancelResult.ALREADY_FINISHED
        life = self._life
        dispatcher = life.dispatcher
        if life.state not in (RUNNING, CLOSING) or dispatcher is None:
            return CancelResult.ALREADY_FINISHED
        try:
            result: CancelResult = ask(dispatcher, Cancel(job_id, parent), timeout=life.ask_timeout)
        except ActorDead:
            return CancelResult.ALREADY_FINISHED
        except NoReply as exc:
            raise SchedulerUnresponsive(str(exc)) from None
        if result is CancelResult.CANCELLED or result is CancelResult.SIGNALLED:
            self._links.cancelled(state)  # its children, and theirs
        return result

    def stats(self) -> Stats:
        """A snapshot of the counters. Keeps answering after shutdown, with the final figures.

        Raises:
            SchedulerForked: the scheduler was started in the process this one
                was forked from.
        """
        self._life.check_process()
        final = self._shutdown.final_stats
        if final is not None:
            return final
        dispatcher = self._life.dispatcher
        if dispatcher is None:
            return self._shutdown.empty_stats()
        try:
            stats: Stats = ask(dispatcher, GET_STATS, timeout=self._life.ask_timeout)
        except (ActorDead, NoReply):
            return self._shutdown.final_stats or self._shutdown.empty_stats()
        return stats

    def resize(self, workers: int, *, queue: str = DEFAULT_QUEUE) -> None:
        """Grow or shrink a queue's worker pool. A busy worker leaves after its job.

        Raises:
            InvalidArgument: ``workers`` is not an int >= 0.
            UnknownQueue: the scheduler has no queue of that name.
            SchedulerClosed: the scheduler is not running.
        """
        check_int("workers", workers, 0)
        check_queue(queue, self._queues)
        self._life.ask(Resize(workers, queue))

    def shutdown(
        self, graceful: bool = True, timeout: float = 30.0, *, cancel_grace: float = 5.0
    ) -> None:
        """Stop the scheduler; every handle resolves and every thread is joined.

        Args:
            graceful: True lets queued and running jobs finish for up to ``timeout``
                seconds, then cancels what is left; False cancels everything at once.
            timeout: see ``graceful``.
            cancel_grace: seconds running handlers get to return once told to stop.
                A sync handler that ignores ``ctx.cancelled`` longer than that is
                reported in the log and its handle resolved as cancelled, and its
                thread may outlive the call.

        It returns within ``timeout`` (if graceful) plus ``cancel_grace``, plus
        the time the Dispatcher takes to cancel what waits (about 10 us a job)
        and at most `JOIN_FLOOR` to join threads already told to stop.

        Called from a thread of the scheduler's own (a handler, a done
        callback), it cannot wait for that thread: it starts the shutdown on a
        thread of its own and returns at once. The calling handler's job
        finishes as its handler returns; a later `shutdown` from any other
        thread waits for the shutdown under way to end, and joins its thread.

        Safe to call more than once, from any thread, and on a scheduler that
        never started. In a process forked from the one that started it, it
        does nothing.

        Raises:
            InvalidArgument: ``timeout`` or ``cancel_grace`` is not a finite
                number of seconds >= 0.
        """
        self._shutdown.shutdown(graceful, timeout, cancel_grace)

    # --- schedules ------------------------------------------------------------------

    def cron(
        self,
        handler: str,
        expr: str,
        payload: Any = None,
        *,
        tz: str | None = None,
        id: str | None = None,
        overlap: OverlapPolicy = "skip",
        misfire: MisfirePolicy = "coalesce",
        misfire_grace: float = DEFAULT_MISFIRE_GRACE,
        **options: Unpack[JobOptions],
    ) -> ScheduleHandle:
        """Run ``handler`` at the times a cron expression names.

        Args:
            handler: a registered handler's name.
            expr: 5 fields (minute hour day month weekday) or 6 with leading
                seconds; see `actors._schedules.triggers` for the dialect and DST rules.
            payload: each job's payload (JSON-able; a private copy is taken).
            tz: an IANA time zone the expression is read in (default: UTC).
            id: the schedule's id (default: a new one, ``schedule-N``). If a
                schedule has this id (running, or kept in the store and
                restored at start), it is updated, not duplicated: it takes
                this definition (trigger, handler, payload, options,
                policies) and keeps its fire history, counts and pause; a
                declaration identical to it changes nothing. So a service
                can declare its schedules at every start.
            **options: the `JobOptions` of every job the schedule creates, as
                for `submit` (all but ``delay`` and ``idempotency_key``).
            overlap: ``"skip"`` (no fire while the last one's job is unfinished),
                ``"queue"`` (one after the other) or ``"allow"``.
            misfire: ``"coalesce"`` (one run for fires missed by more than
                ``misfire_grace``) or ``"skip"`` (drop them).
            misfire_grace: seconds a fire may be late and still count as on time.

        Raises:
            InvalidArgument: a bad expression (the message names it and says
                why), unknown time zone, bad ``id``, or bad option.
            UnknownHandler / UnknownQueue: no handler or queue of that name.
            SchedulerClosed: the scheduler is not running.
        """
        trigger = CronTrigger(expr, tz)
        description = expr if tz is None else f"{expr} ({tz})"
        return self._schedules.add(
            "cron", description, trigger, handler, payload, options, overlap, misfire,
            misfire_grace, id,
        )  # fmt: skip

    def every(
        self,
        handler: str,
        interval: float | timedelta,
        payload: Any = None,
        *,
        start: datetime | float | None = None,
        end: datetime | float | None = None,
        id: str | None = None,
        overlap: OverlapPolicy = "skip",
        misfire: MisfirePolicy = "coalesce",
        misfire_grace: float = DEFAULT_MISFIRE_GRACE,
        **options: Unpack[JobOptions],
    ) -> ScheduleHandle:
        """Run ``handler`` every ``interval`` (seconds, or a `timedelta`).

        Fires at ``start`` (default: when it is added), then every ``interval``
        after it, without drift, until ``end`` (default: never). Naive datetimes
        are read as UTC. The other arguments are `cron`'s (``id`` too: an
        ``every`` updated with a new interval and no ``start`` counts from when
        the schedule was first added).

        Raises:
            InvalidArgument: ``interval`` <= 0 or not a number or timedelta (the
                message names it), or a bad ``start``, ``end`` or option.
            UnknownHandler / UnknownQueue: no handler or queue of that name.
            SchedulerClosed: the scheduler is not running.
        """
        trigger = IntervalTrigger(interval, start, end)
        seconds = interval.total_seconds() if isinstance(interval, timedelta) else interval
        return self._schedules.add(
            "every", f"every {seconds:g}s", trigger, handler, payload, options, overlap,
            misfire, misfire_grace, id,
        )  # fmt: skip

    def at(
        self,
        handler: str,
        when: datetime | float,
        payload: Any = None,
        *,
        id: str | None = None,
        misfire: MisfirePolicy = "coalesce",
        misfire_grace: float = DEFAULT_MISFIRE_GRACE,
        **options: Unpack[JobOptions],
    ) -> ScheduleHandle:
        """Run ``handler`` once, at ``when`` (a datetime, naive read as UTC, or epoch seconds).

        A ``when`` in the past is not an error: it is a fire that is late. Under
        ``misfire="coalesce"`` (the default) it runs at once; under ``"skip"`` it
        runs only if it is no more than ``misfire_grace`` seconds late, and is
        counted as a misfire otherwise. ``id`` is `cron`'s: an ``at``
        declared again as it was does not run again once it has run.

        Raises:
            InvalidArgument: ``when`` is not a datetime or finite epoch seconds,
                or a bad option.
            UnknownHandler / UnknownQueue: no handler or queue of that name.
            SchedulerClosed: the scheduler is not running.
        """
        trigger = AtTrigger(when)
        moment = datetime.fromtimestamp(trigger.when).astimezone().isoformat()
        return self._schedules.add(
            "at", f"at {moment}", trigger, handler, payload, options, "allow", misfire,
            misfire_grace, id,
        )  # fmt: skip

    def schedules(self) -> list[ScheduleInfo]:
        """Every schedule, oldest first, with its next fire time and counts."""
        return self._schedules.all()

    def schedule(self, schedule_id: str) -> ScheduleInfo:
        """One schedule. Raises `ScheduleNotFound`."""
        return self._schedules.info(schedule_id)

    def pause(self, schedule_id: str) -> ScheduleInfo:
        """Stop a schedule firing until `resume`; its jobs already made go on.

        Raises:
            ScheduleNotFound: no schedule has that id.
        """
        return self._schedules.pause(schedule_id)

    def resume(self, schedule_id: str) -> ScheduleInfo:
        """Let a paused schedule fire again, from its next fire time after now.

        Fire times that passed while it was paused are not run and not
        misfires (they were not wanted); a one-shot `at` that came due while
        paused is a late fire: under ``misfire="coalesce"`` (the default) it
        runs at once, under ``"skip"`` only within ``misfire_grace``.

        Raises:
            ScheduleNotFound: no schedule has that id.
        """
        return self._schedules.resume(schedule_id)

    def trigger(self, schedule_id: str) -> JobHandle | None:
        """Run a schedule once now, without moving its fire times (even if paused).

        Returns:
            The job's handle, or None if the queue was full (counted as a skip).

        Raises:
            ScheduleNotFound: no schedule has that id.
        """
        return self._schedules.trigger(schedule_id)

    def remove(self, schedule_id: str) -> ScheduleInfo:
        """Remove a schedule; the jobs it made go on. Returns its last figures.

        Raises:
            ScheduleNotFound: no schedule has that id.
        """
        return self._schedules.remove(schedule_id)

    # --- metrics --------------------------------------------------------------------

    def listen(
        self,
        endpoint: str,
        *,
        keys: str | os.PathLike[str] | None = None,
        server_key: str | os.PathLike[str] | None = None,
        insecure: bool = False,
        heartbeat: float = 1.0,
        misses: int = 3,
    ) -> Listener:
        """Take worker nodes in on ``endpoint`` (ZeroMQ): they run jobs as workers do.

        A node (``postroom worker``, or `transport.node.Node`) connects,
        offers its handlers and capacity for one named queue, and is lent the
        best ready jobs of those handlers within the credit it gives. Rules
        hold across nodes as for local workers; a node that dies or goes
        silent for ``misses`` heartbeats has its runs ended as interrupted and
        run again (at least once) or failed by their handler's
        ``on_interrupt``. See docs/nodes.md.

        Args:
            endpoint: where to bind, e.g. ``"tcp://0.0.0.0:7555"`` (port 0 or
                ``*``: the system chooses; read `Listener.endpoint`).
            keys: the directory of node public keys (``NAME.key``) to admit (CURVE).
            server_key: this scheduler's secret key file (``NAME.key_secret``).
            insecure: no keys: plain TCP, on a loopback endpoint only (logged
                as a WARNING). For tests and one-machine setups.
            heartbeat: seconds between heartbeats, both ways.
            misses: heartbeat intervals of silence after which a node is dead.

        Returns:
            The listener: its endpoint, nodes and key reloading. The
            scheduler's shutdown closes it (nodes are told to drain first).

        Raises:
            InvalidArgument: a bad endpoint (malformed, in use), keys missing
                without ``insecure=True``, keys given with it, an unusable key
                file, or plain TCP on a non-loopback address.
            SchedulerClosed: the scheduler is not running (call `start` first).
        """
        return self._nodes.listen(
            endpoint,
            keys=keys,
            server_key=server_key,
            insecure=insecure,
            heartbeat=heartbeat,
            misses=misses,
        )

    def nodes(self) -> list[NodeInfo]:
        """The worker nodes connected now, by id (empty if it never listened)."""
        return self._nodes.nodes()

    def serve_metrics(self, port: int, addr: str = "127.0.0.1") -> MetricsServer:
        """Serve this scheduler's metrics registry at ``http://addr:port/metrics``.

        The server runs on a thread of its own until `shutdown`. Port 0 picks a
        free port: read it from the returned server's ``port``.

        Raises:
            InvalidArgument: a bad port or address, or one that cannot be bound;
                or the scheduler was made with ``metrics=False``.
            SchedulerClosed: the scheduler is not running.
        """
        return self._metrics.serve(port, addr)

    # --- admin ----------------------------------------------------------------------

    def admin_app(self, *, token: str | None = None, read_only: bool = False) -> AdminApp:
        """The admin API (docs/admin.md) as a WSGI app, for a service to mount.

        Reads need no token; every mutation (cancel, retry, pause, resume,
        trigger, remove, resize) needs ``Authorization: Bearer <token>``.

        Args:
            token: the bearer token mutations need; None generates one
                (`AdminApp.token`), logged once at WARNING on ``postroom.admin``.
            read_only: serve no mutation at all (403); no token is made.

        Raises:
            InvalidArgument: ``token`` is not None nor a str of 16 to 1024
                visible ASCII characters.
        """
        if not isinstance(read_only, bool):
            msg = f"read_only must be a bool, not {read_only!r}"
            raise InvalidArgument(msg)
        checked = check_token(token, read_only=read_only)
        return AdminApp(SchedulerSource(self), token=checked, read_only=read_only)

    def serve_admin(
        self,
        port: int,
        addr: str = "127.0.0.1",
        *,
        token: str | None = None,
        read_only: bool = False,
    ) -> AdminServer:
        """Serve the admin API (`admin_app`) at ``http://addr:port/``, with this
        scheduler's ``/metrics`` on the same port (unless ``metrics=False``).

        The server runs on threads of its own until `shutdown`. Port 0 picks a
        free port: read it from the returned server's ``port``; its ``token``
        is the one mutations need. It binds loopback unless told otherwise: see
        docs/admin.md before serving it beyond the machine.

        Raises:
            InvalidArgument: a bad port, address or token, or an address that
                cannot be bound.
            SchedulerClosed: the scheduler is not running.
        """
        if not self._life.running:
            raise self._life.closed_error()
        app = self.admin_app(token=token, read_only=read_only)
        server = AdminServer(
            port,
            app=app,
            addr=addr,
            registry=self._metrics.registry,
            metrics=self._metrics.enabled,
        )
        self._metrics.start(server)
        return server

    def _not_ready(self) -> str | None:
        """Why the admin API's ``/readyz`` is 503, or None."""
        life = self._life
        if life.state == NEW:
            return "the scheduler has not started"
        if life.state == CRASHED:
            return f"the scheduler crashed: {life.crash_reason}"
        if life.state != RUNNING:
            return f"the scheduler is {life.state}"
        durable = self._durable
        if durable is not None:
            path = os.path.abspath(durable.path)
            # SQLite writes beside the file too (its WAL and journal files).
            for where in (path, os.path.dirname(path)):
                if not os.access(where, os.W_OK):
                    return f"the store cannot be written: {where} is not writable"
        return None
