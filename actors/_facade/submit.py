"""How a job comes in: `Scheduler.submit`, and the hand-off that follows.

`Submitter` checks every argument at the boundary, builds the job's record,
and, holding the gate, takes a slot of the job's queue (rule 8, docs/guarantees.md), looks up its
idempotency key (rule 10) and sends it on its way: a job with a repo to the
Dispatcher, one without straight into its queue's ready queue, or to the Timer
if delayed; a child or follow-up is held until its links hand it off
(``actors/_jobs/links.py``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from actors._dispatcher.config import DispatcherConfig
from actors._errors import QueueFull, StoreError
from actors._facade.life import RUNNING, Life
from actors._jobs.cancel_result import CancelResult
from actors._jobs.capacity import Capacity
from actors._jobs.handle import JobHandle
from actors._jobs.links import JobLinks, Links
from actors._jobs.ready import SEQ_BITS, ReadyQueue
from actors._jobs.state import PARKED, READY, TIMER, JobState, LabelCounts
from actors._jobs.status import CANCELLED, PENDING, RETRYING, SCHEDULED
from actors._jobs.table import JobTable
from actors._policy.checks import unknown_handler
from actors._policy.handlers import HandlerSpec
from actors._policy.options import DEFAULT_PRIORITY, SubmitOptions, check_options
from actors._policy.payloads import INT_MAX, INT_MIN, SHORT_STR, json_copy
from actors._policy.queue import DEFAULT_QUEUE, Queue
from actors._policy.retry import NO_BACKOFF, RetryPolicy
from actors._runtime.actor import post
from actors._runtime.callbacks import CallbackRunner
from actors._runtime.refs import ActorDead, ActorRef
from actors._timer.clock import Clock
from actors.messages import After, ErrorInfo, Job, JSONValue, Submit

if TYPE_CHECKING:
    from actors._facade.restore import Restorer
    from actors._journal.link import JournalLink
    from actors._journal.recovery import Recovered

__all__ = ["SubmitDefaults", "Submitter"]


class Submitter:
    """Takes jobs in: every submit, and the jobs a retry, a schedule or a parent make."""

    def __init__(
        self,
        life: Life,
        handlers: Mapping[str, HandlerSpec],
        queues: Mapping[str, Queue],
        config: DispatcherConfig,
        table: JobTable,
        capacities: Mapping[str, Capacity],
        readies: Mapping[str, ReadyQueue],
        clock: Clock,
        tokens: Iterator[int],
        callbacks: CallbackRunner,
        cancel: Callable[[str], CancelResult],
        on_full: str,
        full_timeout: float | None,
    ) -> None:
        """Take in the jobs of one scheduler.

        Args:
            life: the scheduler's life (jobs come in only while it runs; its
                gate covers each job's acceptance).
            handlers: the registered handlers.
            queues: the scheduler's queues, with their job defaults.
            config: the payload limit and the repo modes.
            table: where accepted jobs are kept.
            capacities: each queue's bound on unfinished jobs.
            readies: each queue's ready queue (a job without a repo goes there).
            clock: the scheduler's clock (a delay is counted on it).
            tokens: Timer tokens, shared with the actors.
            callbacks: runs the handles' done callbacks.
            cancel: `Scheduler.cancel`, for the handles.
            on_full: what a submit does when its queue is full.
            full_timeout: how long ``on_full="wait"`` waits.
        """
        self._life = life
        self._gate = life.gate  # the submit path takes it per job: bound here
        self._handlers = handlers
        self._queues = queues
        self._config = config
        self._table = table
        self._capacities = capacities
        self._readies = readies
        self._clock = clock
        self._tokens = tokens
        self._callbacks = callbacks
        self._cancel = cancel
        self._on_full = on_full
        self._full_timeout = full_timeout
        self.links: Links | None = None
        """Children and follow-ups (set once made: they submit through this)."""
        self.restorer: Restorer | None = None
        """Brings jobs back from the store (with a store, set before start)."""
        self._dispatcher: ActorRef[Any] | None = None
        self._timer: ActorRef[Any] | None = None
        self._defaults: dict[tuple[str, str], SubmitDefaults] = {}
        self._seq = iter(range(1, 2**SEQ_BITS))
        # Job ids: a random prefix per scheduler and a counter. As unique as a
        # uuid4 per job, without a system call per submit.
        self._id_prefix = uuid.uuid4().hex[:16]
        self._dropped = 0
        self._rejected = 0
        self._tracing = table.tracing
        """Captures the submitter's trace context (None: the scheduler does not trace)."""

    def attach_links(self, links: Links) -> None:
        """The scheduler's job links, once they are built (they need this
        submitter's `submit` and `hand_off` first)."""
        self.links = links

    def connect(self, dispatcher: ActorRef[Any], timer: ActorRef[Any]) -> None:
        """The actors jobs are sent to, once started (bound here, not read from
        the `Life`: the submit path needs them per job)."""
        self._dispatcher = dispatcher
        self._timer = timer

    def rejections(self) -> tuple[int, int]:
        """How many submits were dropped and rejected for want of room."""
        return self._dropped, self._rejected

    def handle_of(self, job_id: str) -> JobHandle:
        """A handle of the job with this id (`JobNotFound` if there is none)."""
        return JobHandle(self._table.get(job_id), self._cancel, self._callbacks, self.links)

    def submit(
        self,
        handler: str,
        payload: Any,
        options: SubmitOptions,
        *,
        retry_of: str | None = None,
        schedule: tuple[str, float] | None = None,
        parent: str | None = None,
        link: str | None = None,
    ) -> JobHandle:
        """Submit a job: `Scheduler.submit`, or a job the facade makes.

        Args:
            handler, payload, options: as `Scheduler.submit` takes them.
            retry_of: the job this one retries (`Scheduler.retry`).
            schedule: the schedule and the fire time it is the job of; a
                fire never waits for room.
            parent: the job this one follows or is a child of: accepted, then
                held until its `Links` hand it off.
            link: ``"followup"`` or ``"child"``, with ``parent`` (for the store).

        Raises:
            StoreError: (with a store, ``durability="commit"``) the job's row
                could not be committed: the job is not accepted.
        """
        life = self._life
        if life.state != RUNNING:
            raise life.closed_error()
        spec = self._handlers.get(handler) if isinstance(handler, str) else None
        if spec is None:
            raise unknown_handler(handler, self._handlers)
        if options:
            check_options(options, self._queues)
            repo, queue = options.get("repo"), options.get("queue")
            priority = int(options.get("priority", DEFAULT_PRIORITY))
            delay = options.get("delay", 0.0)
            idempotency_key = options.get("idempotency_key")
            max_retries, timeout = options.get("max_retries"), options.get("timeout")
            retry = options.get("retry")
        else:  # the hot path: nothing to check, nothing to look up
            repo = queue = idempotency_key = max_retries = timeout = retry = None
            priority, delay = DEFAULT_PRIORITY, 0.0
        # What is JSON as it is and within every limit needs no copy and no
        # measure: None, a bool, an int of 64 bits, a short ASCII str (the hot path).
        kind = type(payload)
        body = (
            payload
            if payload is None
            or kind is bool
            or (kind is int and INT_MIN <= payload <= INT_MAX)
            or (kind is str and len(payload) < SHORT_STR and payload.isascii())
            else json_copy(payload, max_bytes=self._config.max_payload_bytes)
        )
        name = queue or spec.queue or DEFAULT_QUEUE
        defaults = self._defaults.get((handler, name)) or self._resolve_defaults(spec, name)
        seq = next(self._seq)
        # Positional (the hot path): id, handler, payload, seq, priority, repo,
        # attempt, max_retries, timeout, retry, not_before, idempotency_key,
        # submitted_at, queue, trace. Defaults: submit > handler > queue > built-in.
        tracing = self._tracing
        job = Job(
            f"{self._id_prefix}-{seq}",
            handler,
            body,
            seq,
            priority,
            repo,
            1,
            defaults.max_retries if max_retries is None else max_retries,
            defaults.timeout if timeout is None else timeout,
            retry or defaults.retry,
            self._clock.now() + delay if delay else None,
            idempotency_key,
            time.time(),
            name,
            None if tracing is None else tracing.capture(),
        )
        # A job without a repo needs no routing: it goes straight to the ready
        # queue (or, delayed, to the Timer, which puts it there when due), and
        # the Dispatcher learns of it only if it must decide something (a
        # cancel, a failure, a retry).
        direct = repo is None
        if not direct:
            state = JobState(job, SCHEDULED if delay else PENDING, defaults.counts)
        elif delay:
            state = JobState(job, SCHEDULED, defaults.counts, TIMER, next(self._tokens))
        else:
            state = JobState(job, PENDING, defaults.counts, READY)
        if retry_of is not None:
            state.as_retry_of(retry_of)  # `retry`: linked before anyone can see it
        if schedule is not None:
            state.from_schedule(*schedule)
        if parent is not None:
            # A child or a follow-up: accepted, then held until its links hand it off.
            state.park(JobLinks(parent, link))
        try:
            # A schedule's fire (on the actor loop) must never wait for room.
            holder = self._accept(state, direct=direct, wait=schedule is None)
        except _Dropped as dropped:
            return self._dropped_handle(handler, body, str(dropped))
        return JobHandle(holder, self._cancel, self._callbacks, self.links)

    def _accept(self, state: JobState, *, direct: bool, wait: bool = True) -> JobState:
        """Take the job in and send it on its way; or return the job that holds
        its idempotency key.

        The gate (shared with the table and the capacity, taken by submitters
        only) covers the state check, the idempotency lookup, the slot, the
        table entry and the hand-off.
        """
        job = state.job
        journal = self._table.journal
        # With durability="commit", the job goes on only once its row is
        # committed (a schedule's fire, on the actor loop, never waits).
        deferred = journal is not None and journal.waits and wait
        with self._gate:
            life = self._life
            if life.state != RUNNING:
                raise life.closed_error()
            if job.idempotency_key is not None:
                # A resubmission needs no room: it returns the job already accepted.
                held = self._holder(job.idempotency_key)
                if held is not None:
                    return held
            capacity = self._capacities[job.queue]
            if not capacity.try_take():
                self._wait_for_room(capacity, job.queue, wait=wait)
            first_of_repo = self._table.add(state)
            number = 0 if journal is None else self._record(journal, state, waited=deferred)
            if deferred:
                pass  # sent on its way below, once its row is committed
            elif state.where == PARKED:
                pass  # held: `Links` hands it off (actors/_jobs/links.py)
            elif not direct:
                # Its repo may well be free: it competes with every job
                # submitted after it (rule 3; see ReadyQueue.expect). Dead, its
                # failure not yet reported (the report waits for this gate):
                # the crash that follows resolves the job.
                self._send(state, expect=self._expected(job, first_of_repo), gated=True)
            elif state.timer is None:
                self._readies[job.queue].put(job)
            else:
                self._to_timer(state.timer, job)
        if deferred:
            assert journal is not None
            self._commit_then_send(journal, state, number, first_of_repo)
        return state

    def _holder(self, key: str) -> JobState | None:
        """The job holding idempotency key ``key``, here or (with a store) in the store."""
        held = self._table.holder(key)
        if held is None and self.restorer is not None:
            held = self.restorer.adopt(key)
        return held

    @staticmethod
    def _record(journal: JournalLink, state: JobState, *, waited: bool) -> int:
        """Post the job's row to the store; the record's number (the gate held)."""
        links = state.links
        return journal.accepted(
            state.job,
            state.status.value,
            retry_of=state.retry_of,
            schedule_id=state.schedule_id,
            fire_time=state.fire_time,
            parent=links.parent if links is not None else None,
            link=links.kind if links is not None else None,
            waited=waited,
        )

    def _commit_then_send(
        self, journal: JournalLink, state: JobState, number: int, first_of_repo: bool
    ) -> None:
        """``durability="commit"``: wait for the job's row to be committed, then
        send it on its way; if the commit failed, the job was never accepted.

        Raises:
            StoreError: the commit failed (the job is withdrawn).
        """
        job = state.job
        try:
            journal.wait(number, job.id)
        except StoreError as exc:
            self._table.withdraw(state, ErrorInfo(f"postroom.{type(exc).__name__}", str(exc)))
            raise
        if state.where != PARKED:
            self._send(state, expect=self._expected(job, first_of_repo))

    def resume_seq(self, after: int) -> None:
        """Number new jobs after ``after`` (the largest the store holds), so a
        recovered job keeps its place before them. Before the first submit."""
        self._seq = iter(range(after + 1, 2**SEQ_BITS))

    def restore(self, row: Recovered) -> JobState:
        """Bring back a job recovered from the store and send it on its way,
        as `_accept` does, but never refused for want of room (it was
        accepted before). The caller holds the gate; the job's row is in the
        store already, so nothing is recorded.
        """
        clock = self._clock
        not_before = None
        if row.due_at is not None:
            not_before = clock.now() + max(0.0, row.due_at - clock.wall())
        job = Job(
            row.id,
            row.handler,
            row.payload,
            row.seq,
            row.priority,
            row.repo,
            row.attempts + 1,
            row.max_retries,
            row.timeout,
            row.retry,
            not_before,
            row.idempotency_key,
            row.submitted_at,
            row.queue,
            row.trace,
        )
        status = _RESTORED_STATUS[row.status]
        counts = self._table.label_counts(row.queue, row.handler)
        if row.repo is not None:
            state = JobState(job, status, counts)
        elif not_before is not None:
            state = JobState(job, status, counts, TIMER, next(self._tokens))
        else:
            state = JobState(job, status, counts, READY)
        held = row.link == "followup" and row.status == "scheduled"
        links = None if row.parent is None or held else JobLinks(row.parent, row.link)
        state.recovered(row.attempts, row.started_at, row.error, links)
        if row.retry_of is not None:
            state.as_retry_of(row.retry_of)
        if row.schedule_id is not None:
            state.from_schedule(row.schedule_id, row.fire_time or 0.0)
        if held:
            state.park(JobLinks(row.parent, "followup"))
        self._capacities[row.queue].force_take()
        first_of_repo = self._table.add(state)
        if not held:
            self._send(state, expect=self._expected(job, first_of_repo), gated=True)
        return state

    def _expected(self, job: Job, first_of_repo: bool) -> bool:
        """Whether the ready queue should expect a job with a repo as it is sent
        (rule 3, docs/guarantees.md): due now, and its repo may be free (no other
        unfinished job, or a mutex repo, whose jobs may all wait for a time)."""
        return (
            job.repo is not None and job.not_before is None and (first_of_repo or self._mutex(job))
        )

    def _mutex(self, job: Job) -> bool:
        """Whether the job's repo is in ``mutex`` mode (where a repo with
        unfinished jobs can still be free: they may all wait for a time)."""
        assert job.repo is not None
        return self._config.mode(job.repo) == "mutex"

    def _to_timer(self, token: int, job: Job) -> None:
        # Posted: if the Timer is gone, the scheduler crashed, which resolves every job.
        assert self._timer is not None and job.not_before is not None
        post(self._timer, After(token, job.not_before, "start", job.id, job.attempt, job))

    def hand_off(self, state: JobState) -> None:
        """Send a held job (a child or a follow-up, see `Links`) on its way, as
        `_accept` sends the others. On the thread that releases it, without the
        gate: a put or a tell, never a wait."""
        journal = self._table.journal
        if journal is not None:
            journal.released(state.job.id, state.job.payload)
        self._send(state, expect=state.job.not_before is None)

    def _send(self, state: JobState, *, expect: bool, gated: bool = False) -> None:
        """Send an accepted job on its way: to the Dispatcher (a repo), the ready
        queue or the Timer. ``expect``: a repo job the ready queue waits for
        (rule 3, see `ReadyQueue.expect`). ``gated``: the caller holds the
        gate, under which a dead Dispatcher's crash report waits to resolve
        every job (this one too)."""
        job = state.job
        if job.repo is not None:
            assert self._dispatcher is not None  # set before the first submit
            if expect:
                self._readies[job.queue].expect(job)
            try:
                self._dispatcher.tell(Submit(job))
            except ActorDead:
                self._readies[job.queue].settled(job)
                if gated:
                    return
                # Shut down or crashed: that path resolves every job; this makes sure.
                error = ErrorInfo("postroom.JobCancelled", "cancelled: the scheduler stopped")
                self._table.finish(state, CANCELLED, error=error)
        elif state.timer is None:
            state.make_ready(job)
            self._readies[job.queue].put(job)
        else:
            state.to_timer(state.timer)
            self._to_timer(state.timer, job)

    def _wait_for_room(self, capacity: Capacity, queue: str, *, wait: bool = True) -> None:
        """Apply ``on_full``, the gate held: return once a slot is taken, or raise.
        Without ``wait`` (a schedule's fire), `QueueFull` at once."""
        if not wait:
            msg = f"queue {queue!r} holds max_pending={capacity.limit} jobs"
            raise QueueFull(msg)
        where = "the scheduler" if queue == DEFAULT_QUEUE else f"queue {queue!r}"
        if self._on_full == "wait":
            if capacity.take(self._full_timeout):
                return
            if self._life.state != RUNNING:
                raise self._life.closed_error()
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

    def _resolve_defaults(self, spec: HandlerSpec, queue: str) -> SubmitDefaults:
        """A job's defaults for this handler on this queue: handler > queue >
        built-in (the submit's own arguments go over these). Kept per pair."""
        lane = self._queues[queue]
        defaults = SubmitDefaults(
            spec.max_retries if spec.max_retries is not None else lane.max_retries or 0,
            spec.timeout if spec.timeout is not None else lane.timeout,
            spec.retry or lane.retry or NO_BACKOFF,
            self._table.label_counts(queue, spec.name),
        )
        self._defaults[(spec.name, queue)] = defaults
        return defaults

    def _dropped_handle(self, handler: str, payload: JSONValue, why: str) -> JobHandle:
        # Dropped jobs are counted, never silent: the caller gets a handle that is
        # already cancelled and says why. It is not kept in the job table.
        job = Job(uuid.uuid4().hex, handler, payload, seq=0, submitted_at=time.time())
        state = JobState(job, CANCELLED)
        state.resolve(CANCELLED, error=ErrorInfo("postroom.Dropped", f"dropped: {why}"))
        return JobHandle(state, _already_finished, links=self.links)


_RESTORED_STATUS = {"pending": PENDING, "scheduled": SCHEDULED, "retrying": RETRYING}


def _already_finished(_job_id: str) -> CancelResult:
    return CancelResult.ALREADY_FINISHED


@dataclass(frozen=True, slots=True)
class SubmitDefaults:
    """What a job gets when its submit does not say."""

    max_retries: int
    timeout: float | None
    retry: RetryPolicy
    counts: LabelCounts
    """The (queue, handler) counters its jobs count in."""


class _Dropped(QueueFull):
    """Internal: the job was dropped under ``on_full="drop"`` (never escapes submit)."""
