"""The Dispatcher actor: the only owner of the worker pool, and the one that decides.

It routes each job with a repo to its `RepoLock` (and a delayed one through
the `Timer`), fills the global ready queue that idle workers take from, best
priority then oldest first (rule 3; work pulling: a worker takes a job only
when it is free), forwards `Finished` to the repo so the repo lock can decide
the retry, decides retries of jobs without a repo, cancels, supervises its
children and runs shutdown.

A job without a repo never passes through here unless something must be
decided: the facade queues it (or hands it to the Timer), and a worker ends it
if it completes. The Dispatcher reads the job table's dict of unfinished jobs,
so it finds such a job all the same, with ``where`` saying where it may be.
Whoever ends a job does it through `JobTable.finish`, whose first call wins
(rule 5, docs/guarantees.md).

Everything here runs on the actor loop's thread (shared with the RepoLocks);
other threads see job state only through `JobState` snapshots and handles.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, get_args

from actors._dispatcher.config import DispatcherConfig
from actors._dispatcher.figures import DispatcherFigures
from actors._dispatcher.pool import WorkerPool, report_to
from actors._dispatcher.schedules import ScheduleDriver, SubmitScheduled
from actors._jobs.cancel_result import CancelResult
from actors._jobs.capacity import Capacity
from actors._jobs.info import Stats
from actors._jobs.ready import ReadyQueue
from actors._jobs.state import HELD, READY, REPO, TIMER, JobState
from actors._jobs.status import CANCELLED, COMPLETED, FAILED
from actors._jobs.table import JobTable
from actors._log import dispatcher_logger as logger
from actors._log import job_extra
from actors._policy.attempts import next_attempt
from actors._policy.handlers import HandlerSpec
from actors._repo_lock import RepoLock
from actors._runtime.actor import FailureReport, post
from actors._runtime.loop import ActorLoop, LoopActor
from actors._runtime.reaper import Reaper
from actors._runtime.refs import ActorRef, stop
from actors._timer.clock import Clock
from actors._timer.timer import Timer
from actors._worker.cancel import CancelReason
from actors.messages import (
    AddSchedule,
    After,
    Boot,
    Cancel,
    CancelTimer,
    ChildFailed,
    Close,
    Done,
    Enqueue,
    ErrorInfo,
    Finished,
    Fire,
    Forget,
    GetMetrics,
    GetStats,
    Halt,
    Idle,
    Job,
    ListSchedules,
    Outcome,
    Ready,
    Resize,
    RestoreSchedules,
    Retry,
    ScheduleCall,
    Submit,
    Tick,
    TimerKind,
    Wake,
    Withdraw,
)

# The facade imports its asks and the config from here (BOOT ... DispatcherConfig);
# they are defined in actors.messages and actors._dispatcher.config.
__all__ = [
    "Dispatcher",
    "SubmitScheduled",
]


_HALT_TIMEOUT = 5.0
"""Seconds the dispatcher waits for the Timer to stop at shutdown."""


@dataclass(slots=True)
class _Repo:
    ref: ActorRef[Any]
    lock_id: int
    sent: int = 0
    """Messages sent to this lock: it may retire only once it has seen them all."""


class Dispatcher(LoopActor):
    """Routes jobs, owns the pool, resolves handles. See the module docstring.

    The parts it owns are components it holds and calls, each with its own
    state: the worker pool (``_pool``), the schedule driver (``_schedules``)
    and the figures (``_figures``). Routing, retries, timers, repos,
    cancellation and shutdown are its own.
    """

    def __init__(
        self,
        loop: ActorLoop,
        config: DispatcherConfig,
        readies: Mapping[str, ReadyQueue],
        capacities: Mapping[str, Capacity],
        tokens: Iterator[int],
        clock: Clock,
        handlers: Mapping[str, HandlerSpec],
        table: JobTable,
        reaper: Reaper,
        drained: Callable[[], None],
        crash: Callable[[str, Stats | None], None],
        counts: Callable[[], tuple[int, int]],
        on_failure: FailureReport | None = None,
        submit_scheduled: SubmitScheduled | None = None,
    ) -> None:
        super().__init__(loop, on_failure)
        self._loop = loop
        self._config = config
        self._clock = clock
        self._table = table
        self._reaper = reaper
        self._drained = drained
        self._crash = crash
        # The unfinished jobs (the table's own dict: the facade adds to it, and
        # whoever finishes a job takes it out, under the table's lock).
        self._states = table.active
        self._readies = readies
        """Per named queue, the ready queue its workers take from."""
        self._repos: dict[str, _Repo] = {}
        self._timer: ActorRef[Any] | None = None
        self._timers_forgotten = False
        """Set by a cancelling close: the Timer was told to forget every entry."""
        self._tokens = tokens
        """Timer tokens, shared with the facade and the workers (``next`` is atomic)."""
        self._lock_ids = itertools.count(1)
        self._pool = WorkerPool(
            self.actor_ref,
            config.workers,
            readies,
            handlers,
            table,
            clock,
            tokens,
            reaper,
            restart_limit=config.restart_limit,
            restart_window=config.restart_window,
            max_result_bytes=config.max_payload_bytes,
            fail=self._on_finished,
            crash=self._crash_now,
        )
        self._leaving = False
        """Closing with a store: jobs that would wait are left for the next start."""
        self._schedules = ScheduleDriver(
            clock,
            self._states,
            self._after,
            self._cancel_timer,
            submit_scheduled,
            lambda: table.journal,
        )
        self._figures = DispatcherFigures(
            table,
            readies,
            capacities,
            self._pool.workers,
            self._pool.run_times,
            self._schedules.book,
            self._repos.__len__,
            counts,
        )
        self._handlers_by_type = self._handler_table()

    # --- messages ---------------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        """Handle one message: one dict lookup picks the handler."""
        handle = self._handlers_by_type.get(type(message))
        if handle is None:
            return super().on_receive(message)
        return handle(message)

    def _handler_table(self) -> dict[type, Callable[[Any], Any]]:
        pool, schedules, figures = self._pool, self._schedules, self._figures
        return {
            Finished: self._on_finished,
            Submit: lambda m: self._on_submit(m.job),
            Ready: lambda m: self._on_ready(m.job),
            Done: self._on_done,
            Idle: self._on_idle,
            Retry: self._on_retry,
            Fire: self._on_fire,
            Wake: self._on_wake,
            Cancel: self._on_cancel,
            GetStats: lambda _m: figures.stats(),
            GetMetrics: lambda _m: figures.metrics(),
            AddSchedule: lambda m: schedules.add(m.spec, m.schedule_id),
            RestoreSchedules: schedules.restore,
            ScheduleCall: schedules.call,
            ListSchedules: lambda _m: schedules.infos(),
            Resize: lambda m: pool.resize(m.workers, m.queue),
            Close: lambda m: self._close(cancel=m.cancel, keep_running=m.keep_running),
            ChildFailed: self._on_child_failed,
            Boot: lambda _m: self._boot(),
            Halt: lambda _m: self._halt(),
        }

    def _boot(self) -> ActorRef[Any]:
        """Start the Timer and the workers; the Timer's ref goes to the facade,
        which sends delayed jobs without a repo to it directly."""
        timer = Timer.spawn(
            self._clock,
            self.actor_ref,
            self._readies,
            self._table,
            report_to(self.actor_ref, "timer", 0),
            self._figures.timer_gauge,
        )
        self._reaper.add(timer.thread, _stopper(timer.ref))
        self._timer = timer.ref
        self._pool.start(timer.ref)
        return timer.ref

    # --- supervision --------------------------------------------------------------

    def _on_child_failed(self, message: ChildFailed) -> None:
        """A child died of a postroom bug: a worker is replaced (within the pool's
        restart limit); any other child crashes the scheduler."""
        if message.kind != "worker":
            self._crash_now(
                f"the {message.kind} actor {message.ident!r} failed: {message.error.message}"
            )
            return
        self._pool.replace(int(message.ident), message.error)

    def _crash_now(self, reason: str) -> None:
        """Crash the scheduler (the facade's callback), with the final figures."""
        self._crash(reason, self._figures.stats())

    # --- routing ----------------------------------------------------------------

    def _on_submit(self, job: Job) -> None:
        state = self._states.get(job.id)
        if state is None:
            # Resolved already (cancelled on its way, or a crash); nothing to
            # route, and the ready queue must not hold later jobs back for it.
            self._readies[job.queue].settled(job)
            return
        self._route(state, job)

    def _route(self, state: JobState, job: Job) -> None:
        """Send a job that may run (now or at its ``not_before``) where it waits."""
        repo = job.repo
        due = job.not_before
        if due is not None and due > self._clock.now():
            if repo is not None and self._config.mode(repo) == "ordered":
                # In ordered mode a delayed job keeps its place in the repo.
                state.to_repo()
                self._to_repo(repo, Enqueue(job))
            else:
                kind: TimerKind = "start" if job.attempt == 1 else "retry"
                state.to_timer(self._after(due, kind, job.id, None if repo else job))
            return
        if repo is not None:
            state.to_repo()
            self._to_repo(repo, Enqueue(job))
        else:
            self._make_ready(state, job)

    def _make_ready(self, state: JobState, job: Job) -> None:
        state.make_ready(job)
        self._readies[job.queue].put(job)

    def _on_ready(self, job: Job) -> None:
        state = self._states.get(job.id)
        if state is None:
            # Cancelled while the repo made it ready: let the repo go at once.
            self._readies[job.queue].settled(job)
            self._to_repo(job.repo, Finished(job, _cancelled("cancel")))  # type: ignore[arg-type]
            return
        self._make_ready(state, job)

    # --- attempts ending ----------------------------------------------------------

    def _on_finished(self, message: Finished) -> None:
        job, outcome = message.job, message.outcome
        self._table.count_run(outcome.run_time)
        state = self._states.get(job.id)
        if state is not None and state.cancel_requested and outcome.status == "failed":
            # A cancel stops retries; an attempt that failed meanwhile ends cancelled
            # (a timeout that struck first still reads as the timeout it was).
            if outcome.timed_out:
                outcome = replace(outcome, retryable=False)
            else:
                outcome = replace(outcome, status="cancelled", retryable=False)
        if job.repo is not None:
            if state is not None:
                state.to_repo()
            self._to_repo(job.repo, Finished(job, outcome))
        elif state is not None:
            self._settle(state, job, outcome)

    def _settle(self, state: JobState, job: Job, outcome: Outcome) -> None:
        """Decide what follows an attempt of a job without a repo."""
        retry = next_attempt(job, outcome, self._clock.now())
        if retry is None:
            self._finish(state, outcome)
        else:
            self._schedule_retry(state, retry, outcome, hold=False)

    def _on_retry(self, message: Retry) -> None:
        state = self._states.get(message.job.id)
        if state is None:
            if message.hold:
                self._to_repo(message.job.repo, Withdraw(message.job.id))  # type: ignore[arg-type]
            return
        self._schedule_retry(state, message.job, message.outcome, hold=message.hold)

    def _schedule_retry(self, state: JobState, job: Job, outcome: Outcome, *, hold: bool) -> None:
        self._figures.count_retry(job)
        state.await_retry(job, outcome.error)
        journal = self._table.journal
        if journal is not None:
            journal.retrying(job, job.attempt - 1, outcome.error)
        if job.attempt == job.max_retries + 1:
            logger.warning(
                "job %s (%s) reached its retry cap: attempt %d of %d is its last",
                job.id,
                job.handler,
                job.attempt,
                job.max_retries + 1,
                extra=job_extra(job),
            )
        due = job.not_before
        if due is not None and due > self._clock.now():
            state.to_timer(self._after(due, "retry", job.id, None if job.repo else job), hold=hold)
        elif job.repo is not None:
            state.to_repo()
            self._to_repo(job.repo, Enqueue(job))
        else:
            self._make_ready(state, job)
        if self._leaving:
            # A graceful shutdown with a store: the retry is the next start's
            # (cancelled here, it stays retrying in the store).
            self._cancel(job.id, "shutdown")

    def _on_done(self, message: Done) -> None:
        state = self._states.get(message.job.id)
        if state is not None:
            self._finish(state, message.outcome)

    def _finish(self, state: JobState, outcome: Outcome) -> None:
        job = state.job
        status = _STATUS[outcome.status]
        if not self._table.finish(state, status, outcome.result, outcome.error):
            return  # Finished on another path first (a crash, a stuck shutdown).
        if status is FAILED:
            logger.error(
                "job %s (%s) failed for good after %d attempt(s): %s",
                job.id,
                job.handler,
                job.attempt,
                outcome.error.message if outcome.error else "unknown error",
                extra=job_extra(job),
            )

    # --- timers -------------------------------------------------------------------

    def _after(self, due: float, kind: TimerKind, key: str, job: Job | None = None) -> int:
        token = next(self._tokens)
        assert self._timer is not None
        post(self._timer, After(token, due, kind, key, job=job))
        return token

    def _on_wake(self, message: Wake) -> None:
        self._after(message.due, "tick", message.repo)

    def _cancel_timer(self, token: int) -> None:
        if self._timer is not None and not self._timers_forgotten:
            post(self._timer, CancelTimer(token))

    def _forget_timers(self) -> None:
        """Drop every entry of the Timer's; from now on no timer is armed or cancelled."""
        if self._timer is not None and not self._timers_forgotten:
            post(self._timer, Forget())
        self._timers_forgotten = True

    def _on_fire(self, message: Fire) -> None:
        kind, key = message.kind, message.key
        if kind == "tick":
            if key in self._repos:
                self._to_repo(key, Tick(key))
            return
        if kind == "schedule":
            self._schedules.fire(key, message.token)
            return
        state = self._states.get(key)
        if state is None:
            return
        if kind == "deadline":
            # The ready queue checks the attempt: a deadline that outlived its
            # attempt finds nobody to signal.
            if self._readies[state.job.queue].signal(key, message.attempt, "timeout"):
                job = state.job
                logger.warning(
                    "job %s (%s) attempt %d passed its timeout of %ss: told to stop",
                    job.id,
                    job.handler,
                    message.attempt,
                    job.timeout,
                    extra=job_extra(job),
                )
            return
        if state.timer != message.token:
            return  # Superseded or cancelled: never act on a stale entry.
        # Only jobs with a repo come back here: the Timer hands a due job
        # without one straight to the ready queue (see `Timer`).
        job = state.job
        assert job.repo is not None
        state.to_repo()  # and its timer is spent
        self._to_repo(job.repo, Enqueue(job))

    # --- repos --------------------------------------------------------------------

    def _to_repo(self, repo: str, message: Any) -> None:
        entry = self._repos.get(repo)
        if entry is None:
            lock_id = next(self._lock_ids)
            # Repo locks share the Dispatcher's loop thread: no thread per repo,
            # and a hop between them is a queue operation, not a wake-up.
            spawned = RepoLock.spawn(
                self._loop,
                repo,
                lock_id,
                self._config.mode(repo),
                self._clock,
                self.actor_ref,
                report_to(self.actor_ref, "repo", repo),
                self._figures.repo_waits,
                self._readies,
            )
            entry = self._repos[repo] = _Repo(spawned.ref, lock_id)
        entry.sent += 1
        post(entry.ref, message)

    def _on_idle(self, message: Idle) -> None:
        entry = self._repos.get(message.repo)
        if entry is None or entry.lock_id != message.lock_id or entry.sent != message.seen:
            return  # Messages are on their way to it: it will not stay idle.
        del self._repos[message.repo]
        entry.ref.stop(block=False)

    # --- cancellation ---------------------------------------------------------------

    def _on_cancel(self, message: Cancel) -> CancelResult:
        reason: CancelReason = "cancel" if message.parent is None else "parent"
        return self._cancel(message.job_id, reason, message.parent)

    def _cancel(self, job_id: str, reason: CancelReason, parent: str | None = None) -> CancelResult:
        state = self._states.get(job_id)
        if state is None:
            self._table.get(job_id)  # raises JobNotFound for an unknown id
            return CancelResult.ALREADY_FINISHED
        if not state.request_cancel(reason):
            return CancelResult.ALREADY_CANCELLING
        job = state.job
        where = state.where
        ready = self._readies[job.queue]
        if where == READY:
            if ready.remove(job) is None:
                # A worker has it: signal the attempt. If it has just ended, its
                # Finished is on the way and the cancel still stops any retry.
                ready.signal(job_id, job.attempt, reason)
                return CancelResult.SIGNALLED
            if job.repo is not None:
                self._to_repo(job.repo, Finished(job, _cancelled(reason, parent)))
        elif where in (TIMER, HELD):
            token = state.take_timer()
            if token is not None:
                self._cancel_timer(token)
            if where == HELD:
                self._to_repo(job.repo, Withdraw(job.id))  # type: ignore[arg-type]
            elif (
                job.repo is None
                and ready.remove(job) is None
                and (ready.signal(job_id, job.attempt, reason) or state.started(job))
            ):
                # The Timer had put it in the ready queue already (its Fire is on
                # the way) and a worker has it: running, or just run, means
                # signalled. If the Timer puts it there only after this cancel,
                # no worker runs it: workers never run a finished job.
                return CancelResult.SIGNALLED
        elif where == REPO:
            self._to_repo(job.repo, Withdraw(job.id))  # type: ignore[arg-type]
        self._finish(state, _cancelled(reason, parent))
        return CancelResult.CANCELLED

    # --- shutdown -------------------------------------------------------------------

    def _close(self, *, cancel: bool, keep_running: bool = False) -> None:
        self._schedules.close()
        if cancel:
            self._leaving = keep_running
            # Nothing needs a timer any more: drop them all with one message
            # rather than one CancelTimer per waiting job.
            self._forget_timers()
            for job_id in list(self._states):
                state = self._states.get(job_id)
                if state is None:
                    continue
                if keep_running and self._readies[state.job.queue].is_taken(job_id):
                    continue  # running: it may finish (the store keeps the rest)
                self._cancel(job_id, "shutdown")
        # Workers finish jobs too: the table tells whichever thread ends the last one.
        self._table.when_empty(self._drained)

    def _halt(self) -> None:
        """Stop every child; their threads are joined by the facade (the reaper)."""
        self._pool.halt()
        refs = [entry.ref for entry in self._repos.values()]
        self._repos.clear()
        if self._timer is not None:
            # Stopped and gone before the dispatcher itself stops, so no late
            # Fire can be told to a stopped dispatcher.
            self._timer.tell(Forget())
            stop(self._timer, timeout=_HALT_TIMEOUT)  # NoReply: the facade's shutdown logs it
            self._timer = None
        for ref in refs:
            ref.stop(block=False)


_STATUS = {
    "completed": COMPLETED,
    "failed": FAILED,
    "cancelled": CANCELLED,
}


def _stopper(ref: ActorRef[Any]) -> Callable[[], object]:
    return lambda: ref.stop(block=False)


def _cancel_outcome(message: str) -> Outcome:
    return Outcome("cancelled", error=ErrorInfo("postroom.JobCancelled", message), retryable=False)


_CANCELLED = {
    reason: _cancel_outcome("cancelled by shutdown" if reason == "shutdown" else "cancelled")
    for reason in get_args(CancelReason)
}
"""One outcome per reason, shared by every job cancelled for it: a forceful
shutdown with a million jobs waiting builds no million error records."""


def _cancelled(reason: CancelReason, parent: str | None = None) -> Outcome:
    if parent is None:
        return _CANCELLED[reason]
    return _cancel_outcome(f"cancelled: its parent job {parent} was cancelled")
