"""The NodeLink actor: one connected worker node, as worker capacity of one queue.

A node is a process, here or on another machine, that runs jobs over the wire
(`transport.protocol`). To the rest of the scheduler its link is one more
taker of its queue's ready queue, like a local worker: it takes the best
ready job whose handler the node offered, within the credit the node gave,
so priorities, repo exclusion, retries, timeouts, cancellation and
back-pressure hold for remote jobs unchanged (rules 1-11, docs/guarantees.md). Everything
after an attempt ends goes the way a local worker's does: the link tells the
Dispatcher `Finished`, or finishes a completed job without a repo itself.

Leases and fencing (rule 13, docs/guarantees.md): every `Run` carries a lease, a number drawn
once per dispatch from the listener's counter, so no two dispatches share
one. The link holds the leases of its runs; a `NodeFinished` or `Progress`
naming a lease it does not hold (the run was ended since: the node was
declared dead, say, and its job sent elsewhere) is rejected, counted and
logged, never applied. While a lease is held its job counts as taken, so its
repo stays held (rule 1) until the lease is resolved: by the node's word, or
by the end of the session.

A session ends when the node says `Bye`, when it is silent for
``misses`` heartbeat intervals (declared dead), when it cannot be reached,
when a new `Hello` comes from the same connection, or at shutdown. Each run
it still holds then ends as an ``interrupted`` attempt (error type
``postroom.NodeLost``), retried or failed by the handler's ``on_interrupt``
and retry cap: delivery is at least once, never silently zero (rule 12).

Liveness is judged by arrival only (any message counts), never by comparing
clocks, and on real time: a test's manual clock does not hold it. The link's
own heartbeats come from its loop, not the I/O thread, so a stuck link goes
silent as a stuck node does.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from actors._jobs.info import NodeInfo
from actors._jobs.ready import ReadyQueue
from actors._jobs.status import COMPLETED
from actors._jobs.table import JobTable
from actors._log import job_extra
from actors._log import nodes_logger as logger
from actors._policy.handlers import HandlerSpec
from actors._runtime.actor import FailureReport, post
from actors._runtime.refs import ActorDead, ActorRef
from actors._runtime.timed import TimedActor
from actors._timer.clock import Clock, MonotonicClock
from actors._worker.attempt import run_outcome, stopped_outcome
from actors._worker.cancel import CancelReason
from actors.messages import (
    After,
    Bye,
    CancelRun,
    CancelTimer,
    Credit,
    Drain,
    ErrorInfo,
    Finished,
    Heartbeat,
    Job,
    NodeFinished,
    Outcome,
    Progress,
    Run,
    Welcome,
)
from transport.io import MAX_BATCH
from transport.protocol import SchedulerMessage

__all__ = ["DRAIN", "LinkParts", "NodeLink", "NodeTotals", "Session"]

_link_ids = itertools.count(2)
"""Link ids are negative (-2, -3, ...): a worker's are positive, -1 is nobody."""


@dataclass(frozen=True, slots=True)
class LinkParts:
    """What of the scheduler a link works with (built once by the listener)."""

    readies: Mapping[str, ReadyQueue]
    table: JobTable
    handlers: Mapping[str, HandlerSpec]
    clock: Clock
    """The scheduler's clock: deadlines are armed on it, as a worker arms them."""
    tokens: Iterator[int]
    """Timer tokens (shared with the facade and the workers)."""
    leases: Iterator[int]
    """Lease numbers, one per dispatch, unique for the listener's life."""
    dispatcher: ActorRef[Any]
    timer: ActorRef[Any]
    send: Callable[[bytes, SchedulerMessage], None]
    """Sends a message to a node (the I/O thread's ``send``)."""
    send_many: Callable[[bytes, Sequence[SchedulerMessage]], None]
    """Sends up to `MAX_BATCH` messages to a node as one (``send_many``)."""
    heartbeat: float
    misses: int


@dataclass(slots=True)
class NodeTotals:
    """Counters of one node over its sessions (the listener keeps them per node
    label, so a node that comes back continues its counts)."""

    dispatched: int = 0
    completed: int = 0
    failed: int = 0
    redispatched: int = 0
    """Runs ended by a lost session (interrupted), so sent again or failed."""
    stale: int = 0
    """Results or progress naming a lease not held: rejected, never applied."""
    heartbeat_misses: int = 0
    """Heartbeat intervals that passed without a word from the node."""
    sessions: int = 0


@dataclass(slots=True)
class _Lease:
    job: Job
    signal: _RunSignal
    token: int | None
    """The deadline's timer token, if the job has a timeout."""
    started_at: float
    span: Any = None
    """The attempt's span, when the scheduler traces (``tracing=``): made
    here, around the lease, so a node needs no OpenTelemetry of its own."""


class _RunSignal:
    """A dispatched attempt's stop signal: firing it sends `CancelRun` (via the link)."""

    __slots__ = ("_link", "attempt", "job_id", "lease", "reason")

    def __init__(self, link: ActorRef[Any], lease: int, job: Job) -> None:
        self._link = link
        self.lease = lease
        self.job_id = job.id
        self.attempt = job.attempt
        self.reason: CancelReason | None = None

    def fire(self, job_id: str, attempt: int, reason: CancelReason) -> bool:
        """Signal the run (on the caller's thread, usually the Dispatcher's)."""
        if job_id != self.job_id or attempt != self.attempt:
            return False
        if self.reason is None:
            self.reason = reason
            post(self._link, _Stop(self))
        return True


@dataclass(frozen=True, slots=True)
class _Stop:
    signal: _RunSignal


@dataclass(frozen=True, slots=True)
class _Arrived:
    """The ready queue has news (a put, a settling): look again."""


@dataclass(frozen=True, slots=True)
class _End:
    """End the session (the listener: shutdown, a new Hello, unreachable)."""

    why: str


@dataclass(frozen=True, slots=True)
class _Undelivered:
    lease: int


@dataclass(frozen=True, slots=True)
class _DrainNode:
    """Tell the node to drain (a graceful shutdown): it finishes, then says Bye."""


_ARRIVED = _Arrived()
DRAIN = _DrainNode()
"""Posted by the listener to drain a link's node."""


@dataclass(slots=True)
class Session:
    """Who a link's node is, from its Hello."""

    node: bytes
    node_id: str
    queue: str
    accepts: frozenset[str]
    capacity: int
    label: str
    """Its figures' name: its key's name under CURVE, else its node id."""
    key: str | None
    """The name of the key it connected with (CURVE), else None."""
    connected_at: float = field(default_factory=time.time)


class NodeLink(TimedActor):
    """One node's session (see the module docstring). Its mailbox takes the
    node's messages (posted by the listener from the I/O thread), the ready
    queue's call-backs and the signals of its runs."""

    def __init__(
        self,
        parts: LinkParts,
        session: Session,
        totals: NodeTotals,
        on_ended: Callable[[NodeLink], None],
        on_failure: FailureReport | None = None,
    ) -> None:
        clock = MonotonicClock()  # real time: liveness must not follow a test's clock
        super().__init__(clock, on_failure)
        self.link_id = -next(_link_ids)
        self._now = clock.now
        self._parts = parts
        self._session = session
        self.totals = totals
        self._on_ended = on_ended
        self._ready = parts.readies[session.queue]
        self._credit = 0
        self._leases: dict[int, _Lease] = {}
        self._watching = False
        self._draining = False
        self._ended = False
        self._heard = self._now()
        self._beat_at = self._heard
        self._counted_misses = 0
        self._name = f"node:{session.node_id}"
        """How run history names the node that ran an attempt."""
        self._made: _RunSignal | None = None
        self._recorded = 0
        self._handlers, self._node_handlers = self._handler_tables()
        """The journal number of the last run start this link recorded."""

    @classmethod
    def open(
        cls,
        parts: LinkParts,
        session: Session,
        totals: NodeTotals,
        on_ended: Callable[[NodeLink], None],
        on_failure: FailureReport | None = None,
    ) -> tuple[NodeLink, threading.Thread]:
        """Make a link and start its thread; the listener keeps the actor for its figures."""
        link = cls(parts, session, totals, on_ended, on_failure)
        link._start_actor_loop()
        assert link._thread is not None
        return link, link._thread

    # --- what others read -----------------------------------------------------------

    @property
    def node(self) -> bytes:
        """The node's routing id (its connection)."""
        return self._session.node

    @property
    def node_id(self) -> str:
        """The id the node gave in its Hello."""
        return self._session.node_id

    def info(self) -> NodeInfo:
        """A snapshot for `Scheduler.nodes` (read from any thread: plain reads)."""
        session, totals = self._session, self.totals
        return NodeInfo(
            node_id=session.node_id,
            key=session.key,
            queue=session.queue,
            handlers=tuple(sorted(session.accepts)),
            capacity=session.capacity,
            in_flight=len(self._leases),
            credit=self._credit,
            connected_at=session.connected_at,
            last_heard=time.time() - (self._now() - self._heard),
            draining=self._draining,
            dispatched=totals.dispatched,
            completed=totals.completed,
            failed=totals.failed,
            redispatched=totals.redispatched,
            stale_rejected=totals.stale,
            heartbeat_misses=totals.heartbeat_misses,
        )

    # --- the loop -------------------------------------------------------------------

    def on_start(self) -> None:
        """Welcome the node; from now on its silence counts."""
        session, parts = self._session, self._parts
        self.totals.sessions += 1
        self._send(Welcome(session.node_id, parts.heartbeat, parts.heartbeat * parts.misses))
        # The loop reads its due time after each message: a node that says
        # nothing after Hello must still get heartbeats, and be found silent.
        self._inbox.due = self.next_due()
        logger.info(
            "node %s connected: queue %r, capacity %d, %d handler(s)",
            session.node_id,
            session.queue,
            session.capacity,
            len(session.accepts),
        )

    def next_due(self) -> float | None:
        """The next heartbeat to send, or the moment the node counts as dead."""
        if self._ended:
            return None
        # The next miss to count: one interval after the last one counted (not
        # after the last word heard, which lies in the past once one is missed).
        next_miss = self._heard + self._parts.heartbeat * (self._counted_misses + 1)
        return min(self._beat_at, next_miss)

    def on_due(self) -> None:
        """Send a heartbeat when one is due; count missed ones; declare death."""
        if self._ended:
            return
        now = self._now()
        interval = self._parts.heartbeat
        if now >= self._beat_at:
            self._send(Heartbeat(time.time()))
            self._beat_at = now + interval
        silent = now - self._heard
        missed = int(silent / interval)
        if missed > self._counted_misses:
            self.totals.heartbeat_misses += missed - self._counted_misses
            self._counted_misses = missed
        if missed >= self._parts.misses:
            self._end(f"silent for {silent:.1f}s ({missed} heartbeats missed): declared dead")

    def on_posted(self, message: Any) -> None:
        """Handle a message from the node, the ready queue, a run's signal or the listener."""
        if self._ended:
            if type(message) is NodeFinished:
                self._stale(message.job_id, message.lease, "result")
            return
        handle = self._handlers.get(type(message))
        if handle is not None:
            handle(message)
            return
        # From the node: any word at all says it lives.
        self._heard = self._now()
        self._counted_misses = 0
        handle = self._node_handlers.get(type(message))
        if handle is not None:
            handle(message)
        # Heartbeat: nothing more than the arrival itself.

    def _handler_tables(
        self,
    ) -> tuple[dict[type, Callable[[Any], None]], dict[type, Callable[[Any], None]]]:
        own: dict[type, Callable[[Any], None]] = {
            _Arrived: self._on_arrived,
            _Stop: lambda m: self._signal(m.signal),
            _End: lambda m: self._end(m.why),
            _DrainNode: self._on_drain_node,
            _Undelivered: lambda m: self._undelivered(m.lease),
        }
        node: dict[type, Callable[[Any], None]] = {
            NodeFinished: self._finished,
            Credit: self._on_credit,
            Progress: self._progress,
            Drain: self._on_drain,
            Bye: lambda _m: self._end("said goodbye"),
        }
        return own, node

    def _on_arrived(self, _message: _Arrived) -> None:
        self._watching = False
        self._fill()

    def _on_credit(self, message: Credit) -> None:
        self._credit += message.slots
        self._fill()

    def _on_drain(self, _message: Drain) -> None:
        self._draining = True
        logger.info("node %s is draining: no more jobs go to it", self.node_id)

    def _on_drain_node(self, _message: _DrainNode) -> None:
        self._draining = True
        self._send(Drain())
        if not self._leases:
            self._end("drained")

    def on_receive(self, message: Any) -> Any:
        """Asks and tells from the listener go the way posted messages do."""
        self.on_posted(message)

    # --- dispatching ----------------------------------------------------------------

    def _make_signal(self, job: Job) -> _RunSignal:
        signal = self._made = _RunSignal(self.actor_ref, next(self._parts.leases), job)
        return signal

    def _fill(self) -> None:
        """Take ready jobs for the node while it has credit; watch if none is there."""
        if self._draining:
            return
        ready, accepts, take_id = self._ready, self._session.accepts, self.link_id
        runs: list[Run] = []
        while self._credit > 0:
            if not self._watching:
                # Before taking: a job put between a failed take and the
                # watch would otherwise wait for the next one.
                self._watching = True
                ready.watch(self._wake)
            job = ready.take_now(take_id, accepts, self._make_signal)
            if job is None:
                break
            signal = self._made
            assert signal is not None
            run = self._start(job, signal)
            if run is not None:
                runs.append(run)
        journal = self._parts.table.journal
        if runs and journal is not None and journal.waits:
            # Every start is on record before its handler can run (as a worker waits).
            journal.wait(self._recorded)
        # One multipart message per batch: a credit of 64 costs one hand-off
        # to the I/O thread and one network send, not 64.
        for start in range(0, len(runs), MAX_BATCH):
            self._send_many(runs[start : start + MAX_BATCH])

    def _wake(self) -> None:
        # On the thread that put a job: post and go (never block there).
        post(self.actor_ref, _ARRIVED)

    def _start(self, job: Job, signal: _RunSignal) -> Run | None:
        parts = self._parts
        state = parts.table.active.get(job.id)
        if state is None:
            # Finished already (cancelled as it was taken): never send it.
            self._ready.done(job.id)
            return None
        if state.cancel_requested:
            # A cancel that found it neither queued nor taken: stop it here,
            # as a worker does, without counting an attempt.
            self._ready.done(job.id)
            outcome = Outcome(
                "cancelled",
                error=ErrorInfo("postroom.JobCancelled", f"attempt {job.attempt} was cancelled"),
                retryable=False,
            )
            self._tell(Finished(job, outcome, self.link_id))
            return None
        started_at = time.time()
        state.start_attempt(job, started_at, self._name)
        journal = parts.table.journal
        if journal is not None:
            self._recorded = journal.run_started(job, started_at, self._name)
        token = None
        if job.timeout is not None:
            token = next(parts.tokens)
            due = parts.clock.now() + job.timeout
            post(parts.timer, After(token, due, "deadline", job.id, job.attempt))
        tracing = parts.table.tracing
        span = None if tracing is None else tracing.start(job, current=False)
        self._leases[signal.lease] = _Lease(job, signal, token, started_at, span)
        self._credit -= 1
        self.totals.dispatched += 1
        return Run(job, signal.lease)

    # --- runs ending ----------------------------------------------------------------

    def _finished(self, message: NodeFinished) -> None:
        lease = self._leases.get(message.lease)
        if lease is None or lease.job.id != message.job_id or lease.job.attempt != message.attempt:
            self._stale(message.job_id, message.lease, "result")
            return
        del self._leases[message.lease]
        self._end_run(lease, _as_told(lease, message.outcome), "node")

    def _end_run(self, lease: _Lease, outcome: Outcome, how: str) -> None:
        job, parts = lease.job, self._parts
        if lease.token is not None:
            post(parts.timer, CancelTimer(lease.token))
        self._ready.done(job.id)
        if lease.span is not None:
            tracing = parts.table.tracing
            assert tracing is not None  # a lease has a span only when it traces
            tracing.end(lease.span, outcome, None, interrupted=how == "interrupted")
        journal = parts.table.journal
        if journal is not None:
            ended = how if how == "interrupted" else run_outcome(outcome)
            journal.run_ended(job, ended, outcome.error, retryable=outcome.retryable)
        if outcome.status == "completed":
            self.totals.completed += 1
        elif how != "interrupted":
            self.totals.failed += 1
        if job.repo is None and outcome.status == "completed":
            state = parts.table.active.get(job.id)
            if state is not None:  # else cancelled or ended meanwhile
                parts.table.finish(state, COMPLETED, outcome.result, run_time=outcome.run_time)
            return
        self._tell(Finished(job, outcome, self.link_id))

    def _tell(self, message: Finished) -> None:
        try:
            self._parts.dispatcher.tell(message)
        except ActorDead:
            job = message.job
            logger.debug("job %s ended after the dispatcher stopped", job.id, extra=job_extra(job))

    def _progress(self, message: Progress) -> None:
        lease = self._leases.get(message.lease)
        if lease is None or lease.job.id != message.job_id:
            self._stale(message.job_id, message.lease, "progress")
            return
        fraction = message.fraction
        if not 0.0 <= fraction <= 1.0:  # NaN too: a node's bug is not the job's
            return
        state = self._parts.table.active.get(message.job_id)
        if state is not None:
            state.report_progress(fraction, message.message)

    def _stale(self, job_id: str, lease: int, what: str) -> None:
        self.totals.stale += 1
        logger.warning(
            "node %s: rejected a %s for job %s under lease %d, which it no longer holds",
            self.node_id,
            what,
            job_id,
            lease,
        )

    def _signal(self, signal: _RunSignal) -> None:
        if signal.lease in self._leases and signal.reason is not None:
            self._send(CancelRun(signal.job_id, signal.attempt, signal.lease, signal.reason))

    def _undelivered(self, lease: int) -> None:
        """A Run the node's connection could not take: the handler never saw it,
        so it runs again whatever ``on_interrupt`` says."""
        entry = self._leases.pop(lease, None)
        if entry is not None:
            self.totals.redispatched += 1
            outcome = _lost(entry, "could not be delivered to", retryable=True, link=self)
            self._end_run(entry, outcome, "interrupted")

    def _end(self, why: str) -> None:
        """End the session: every lease still held ends as an interrupted run."""
        if self._ended:
            return
        self._ended = True
        leases, self._leases = self._leases, {}
        handlers = self._parts.handlers
        for lease in leases.values():
            spec = handlers.get(lease.job.handler)
            retry = spec is None or spec.on_interrupt == "retry"
            self.totals.redispatched += 1
            outcome = _lost(lease, "was lost while running on", retryable=retry, link=self)
            self._end_run(lease, outcome, "interrupted")
        level = logger.warning if leases or why.endswith("declared dead") else logger.info
        level(
            "node %s disconnected: %s; %d run(s) interrupted",
            self.node_id,
            why,
            len(leases),
        )
        self._on_ended(self)
        self.stop()

    def _send_many(self, messages: Sequence[SchedulerMessage]) -> None:
        try:
            self._parts.send_many(self._session.node, messages)
        except Exception:  # noqa: BLE001 - the I/O thread is closing: the session ends with it
            logger.debug("node %s: could not send %d message(s)", self.node_id, len(messages))

    def _send(self, message: SchedulerMessage) -> None:
        try:
            self._parts.send(self._session.node, message)
        except Exception:  # noqa: BLE001 - the I/O thread is closing: the session ends with it
            logger.debug("node %s: could not send %s", self.node_id, type(message).__name__)


def _as_told(lease: _Lease, outcome: Outcome) -> Outcome:
    """The node's outcome, read as a local worker reads its handler's: a run told
    to stop ends as cancelled or timed out, however the handler ended."""
    reason = lease.signal.reason
    if reason is None or outcome.status == "cancelled" or outcome.timed_out:
        return outcome
    return stopped_outcome(lease.job, reason, outcome.started_at, outcome.run_time)


def _lost(lease: _Lease, what: str, *, retryable: bool, link: NodeLink) -> Outcome:
    job = lease.job
    error = ErrorInfo(
        "postroom.NodeLost",
        f"attempt {job.attempt} of job {job.id} {what} node {link.node_id}",
    )
    return Outcome(
        "failed",
        error=error,
        retryable=retryable,
        started_at=lease.started_at,
        run_time=max(0.0, time.time() - lease.started_at),
    )
