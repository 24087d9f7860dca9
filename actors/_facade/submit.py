"""How a job comes in: `Scheduler.submit`, and the hand-off that follows (a mixin).

The facade checks every argument at the boundary, builds the job's record,
and, holding the gate, takes a slot of the job's queue (rule 8, docs/guarantees.md), looks up its
idempotency key (rule 10) and sends it on its way: a job with a repo to the
Dispatcher, one without straight into its queue's ready queue, or to the Timer
if delayed; a child or follow-up is held until its links hand it off
(``actors/_jobs/links.py``).
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Unpack

from actors._dispatcher.dispatcher import DispatcherConfig
from actors._errors import QueueFull
from actors._facade.life import RUNNING, Life
from actors._jobs.cancel_result import CancelResult
from actors._jobs.capacity import Capacity
from actors._jobs.handle import JobHandle
from actors._jobs.links import JobLinks, Links
from actors._jobs.ready import ReadyQueue
from actors._jobs.state import PARKED, READY, TIMER, JobState, LabelCounts
from actors._jobs.status import CANCELLED, PENDING, SCHEDULED
from actors._jobs.table import JobTable
from actors._policy.checks import unknown_handler, unknown_queue
from actors._policy.handlers import HandlerSpec
from actors._policy.options import DEFAULT_PRIORITY, SubmitOptions, check_options
from actors._policy.payloads import INT_MAX, INT_MIN, SHORT_STR, json_copy
from actors._policy.queue import DEFAULT_QUEUE, Queue
from actors._policy.retry import NO_BACKOFF, RetryPolicy
from actors._runtime.actor import post
from actors._runtime.callbacks import CallbackRunner
from actors._runtime.refs import ActorDead
from actors._timer.clock import Clock
from actors.messages import After, ErrorInfo, Job, JSONValue, Submit

if TYPE_CHECKING:
    from actors._dispatcher.dispatcher import DispatcherConfig

__all__ = ["SubmitAPI", "SubmitDefaults"]


class SubmitAPI:
    """The submit half of `Scheduler` (a mixin: it uses the facade's state)."""

    _life: Life
    _handlers: dict[str, HandlerSpec]
    _queues: dict[str, Queue]
    _defaults: dict[tuple[str, str], SubmitDefaults]
    _seq: Iterator[int]
    _id_prefix: str
    _clock: Clock
    _tokens: itertools.count[int]
    _table: JobTable
    _capacities: dict[str, Capacity]
    _readies: Mapping[str, ReadyQueue]
    _on_full: str
    _full_timeout: float | None
    _config: DispatcherConfig
    _dropped: int
    _rejected: int
    _callbacks: CallbackRunner
    _links: Links
    cancel: Callable[[str], CancelResult]

    def submit(
        self,
        handler: str,
        payload: Any = None,
        *,
        _retry_of: str | None = None,
        _schedule: tuple[str, float] | None = None,
        _parent: str | None = None,
        **options: Unpack[SubmitOptions],
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
        """
        if self._life.state != RUNNING:
            raise self._life.closed_error()
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
        # submitted_at, queue. Defaults: submit > handler > queue > built-in.
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
        with self._life.gate:
            if self._life.state != RUNNING:
                raise self._life.closed_error()
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
            first_of_repo = self._table.add(state)
            if state.where == PARKED:
                pass  # held: `Links` hands it off (actors/_jobs/links.py)
            elif not direct:
                assert self._life.dispatcher is not None
                if job.not_before is None and (first_of_repo or self._mutex(job)):
                    # Its repo may well be free: it competes with every job
                    # submitted after it (rule 3; see ReadyQueue.expect).
                    self._readies[job.queue].expect(job)
                self._life.dispatcher.tell(Submit(job))
            elif state.timer is None:
                self._readies[job.queue].put(job)
            else:
                self._to_timer(state.timer, job)
        return state

    def _mutex(self, job: Job) -> bool:
        """Whether the job's repo is in ``mutex`` mode (where a repo with
        unfinished jobs can still be free: they may all wait for a time)."""
        assert job.repo is not None
        return self._config.repo_modes.get(job.repo, self._config.repo_mode) == "mutex"

    def _to_timer(self, token: int, job: Job) -> None:
        # Posted: if the Timer is gone, the scheduler crashed, which resolves every job.
        assert self._life.timer is not None and job.not_before is not None
        post(self._life.timer, After(token, job.not_before, "start", job.id, job.attempt, job))

    def _hand_off(self, state: JobState) -> None:
        """Send a held job (a child or a follow-up, see `Links`) on its way, as
        `_accept` sends the others. On the thread that releases it, without the
        gate: a put or a tell, never a wait."""
        job = state.job
        if job.repo is not None:
            assert self._life.dispatcher is not None  # set before the first submit
            if job.not_before is None:
                self._readies[job.queue].expect(job)
            try:
                self._life.dispatcher.tell(Submit(job))
            except ActorDead:
                self._readies[job.queue].settled(job)
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
