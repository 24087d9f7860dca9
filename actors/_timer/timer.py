"""The Timer actor: every future event in one priority queue, one wait.

Delays, retry backoff and job deadlines all become `After` entries. The Timer's
inbox blocks on a single `threading.Condition` whose timeout is the earliest due
time, so a timer costs no thread and no polling of its own; a new message or a
jump of a manual clock wakes it early, and it re-reads the clock before firing,
so nothing fires before its due time (rule 11, docs/guarantees.md).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping
from heapq import heapify, heappop, heappush
from typing import Any

import pykka
from pykka._envelope import Envelope  # the Timer's loop is a Pykka runtime: it unpacks them

from actors._jobs.ready import ReadyQueue
from actors._jobs.table import JobTable
from actors._runtime.actor import FailureReport, PostroomActor, drain_inbox, fail, handle_item
from actors._timer.clock import Clock, wait_seconds
from actors.messages import After, CancelTimer, Fire, Forget, Job

__all__ = ["Timer", "TimerGauge"]


class _Due:
    """What `_DueInbox.take` returns when the earliest entry is due."""

    __slots__ = ()


_DUE = _Due()


_BACKLOG = 256
"""Messages the Timer may leave queued while it sleeps (see `_DueInbox.put`)."""
_TAKE = 64
"""Messages the Timer handles between two looks at the clock."""


class _DueInbox:
    """An actor inbox that also says when the earliest entry is due.

    It holds Pykka envelopes (``tell``, ``ask``) and bare messages (`post`).
    The Timer's loop calls `take`, which returns `_DUE` once the earliest
    entry is due, or else a batch of queued messages (at most `_TAKE`, so a
    long queue never keeps a due entry waiting long), or sleeps until one of
    the two.

    `put` wakes the Timer only when it must: for an entry due before the one it
    waits for, for anything that is not an entry, or when `_BACKLOG` messages
    wait. An entry due no earlier than ``due``, or a cancel, can wait in the
    inbox: the Timer wakes by ``due`` anyway, and handles every queued message
    before it sleeps again, so nothing is late. A burst of delayed submits then
    costs the submitting thread no thread switch per job (it was one each: the
    woken Timer took the GIL from the caller).
    """

    takes_bare = True
    """`post` may put messages here without an envelope."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._items: deque[Any] = deque()
        self.clock: Clock | None = None
        self.due: float | None = None
        """The earliest live entry's due time; written by the Timer only."""

    def put(self, item: Any, /) -> None:
        message = item.message if type(item) is Envelope else item
        # The lock itself, not the Condition's Python-level __enter__: this
        # runs once per delayed submit. The append and the check share it with
        # `take`'s look-then-wait, so a message can't slip in between the two.
        with self._lock:
            items = self._items
            items.append(item)
            due = self.due
            kind = type(message)
            if (
                due is None
                or len(items) >= _BACKLOG
                or not (kind is CancelTimer or (kind is After and message.due >= due))
            ):
                self._cond.notify()

    def take(self) -> Any:
        """`_DUE`, or a list of queued items; blocks until there is one or the other."""
        with self._lock:
            items = self._items
            while True:
                # Due entries go first, so a busy inbox cannot make a timer late.
                hint = None
                if self.due is not None and self.clock is not None:
                    hint = self.clock.wait_hint(self.due)
                    if hint == 0.0:
                        return _DUE
                if items:
                    if len(items) <= _TAKE:
                        batch = list(items)
                        items.clear()
                        return batch
                    return [items.popleft() for _ in range(_TAKE)]
                self._cond.wait(wait_seconds(hint))

    def put_back(self, batch: list[Any]) -> None:
        """Return unhandled items to the front, in order (the Timer stopped mid-batch)."""
        with self._lock:
            self._items.extendleft(reversed(batch))

    def get(self) -> Any:
        """The next queued item, without waiting (teardown only)."""
        with self._lock:
            return self._items.popleft()

    def empty(self) -> bool:
        return not self._items

    def entries(self, live: Mapping[int, object]) -> int:
        """The entries ``live`` (the Timer's, by token) will hold once every
        queued message is applied: for the gauge, from any thread.

        The count is made here, at the read, so `put` stays as cheap as it is:
        it counts nothing, and does not wake the Timer to have it count. Under
        the lock no message is taken meanwhile, so a queued entry is counted
        once, in the queue or in ``live``; ``len`` and ``in`` on the Timer's
        dict are each one atomic step (the GIL, or the dict's own lock on a
        free-threaded build). Only a batch the Timer is applying at that moment
        (at most `_TAKE` messages, for microseconds) may be counted short or
        long, until it is applied.
        """
        added: set[int] = set()
        cancelled: set[int] = set()
        forgotten = False
        with self._lock:
            for item in self._items:
                message = item.message if type(item) is Envelope else item
                kind = type(message)
                if kind is After:
                    added.add(message.token)
                elif kind is CancelTimer:
                    token = message.token
                    if token in added:
                        added.discard(token)
                    elif not forgotten and token in live:
                        cancelled.add(token)  # a set: a token cancelled twice counts once
                elif kind is Forget:
                    forgotten = True
                    added.clear()
            kept = 0 if forgotten else len(live) - len(cancelled)
        return max(kept, 0) + len(added)

    def wake(self) -> None:
        with self._cond:
            self._cond.notify()


_COMPACT_AT = 1024
"""Stale (cancelled) heap entries tolerated before a rebuild, at the least."""


class TimerGauge:
    """The Timer's entry count, readable from any thread (for metrics).

    Counted when read (`_DueInbox.entries`): the entries the Timer holds, plus
    those posted to it and not yet taken, less the cancels not yet applied. A
    count the Timer kept itself would lag until it next woke, and it does not
    wake for a later entry or a cancel (see `_DueInbox.put`).
    """

    __slots__ = ("_inbox", "_live")

    def __init__(self) -> None:
        self._inbox: _DueInbox | None = None
        self._live: Mapping[int, object] = {}

    def watch(self, inbox: _DueInbox, live: Mapping[int, object]) -> None:
        """Count the Timer with this inbox and these live entries (set by the Timer)."""
        self._live = live
        self._inbox = inbox

    @property
    def entries(self) -> int:
        """Entries waiting for their due time, as soon as they are posted."""
        inbox = self._inbox
        return 0 if inbox is None else inbox.entries(self._live)


class Timer(PostroomActor):
    """Acts on each entry at its due time, never earlier.

    An entry that carries a job (a delayed start or a retry of a job without a
    repo) is put into the ready queue at that moment, its status turned to
    pending, and nothing more: a worker takes it without any other thread
    waking up, and the Dispatcher, which finds such a job still marked as held
    by the Timer, knows it may be queued or running (see its cancel). Every
    other entry (a repo's tick, a job with a repo coming due, a deadline)
    becomes a `Fire` to the target.

    Its loop handles its inbox in batches (`_DueInbox.take`) and re-arms the
    wait once per batch, not once per message: a burst of a thousand delayed
    submits is a handful of wake-ups, each a tight loop of heap pushes.
    """

    def __init__(
        self,
        clock: Clock,
        target: pykka.ActorRef[Any],
        readies: Mapping[str, ReadyQueue] | None = None,
        table: JobTable | None = None,
        on_failure: FailureReport | None = None,
        gauge: TimerGauge | None = None,
    ) -> None:
        super().__init__(on_failure)
        self._gauge = gauge or TimerGauge()
        self._clock = clock
        self._target = target
        self._readies = readies
        """Per named queue, where a due job goes."""
        self._table = table
        # A heap of (due, token), earliest first (tokens are unique: no ties),
        # and the live entries by token. A cancelled entry leaves the dict at
        # once and the heap when it surfaces, or when stale ones outnumber the
        # live (a rebuild, O(n), so amortised O(1) per cancel). A heap push is
        # about 35x cheaper than a sorted-list insert at a million entries
        # (measured, bench/timers_scale.py): the Timer keeps only the order of
        # the earliest entry, which is all it ever needs.
        self._heap: list[tuple[float, int]] = []
        # An entry that hands a job to the ready queue is kept as the job
        # itself (its `After` is dropped): one object fewer per pending job
        # for memory and for the cyclic GC to walk, a million times over.
        self._by_token: dict[int, After | Job] = {}
        self._hands_jobs = readies is not None and table is not None
        self._stale = 0
        inbox = self.actor_inbox
        assert isinstance(inbox, _DueInbox)
        inbox.clock = clock
        self._inbox = inbox
        self._gauge.watch(inbox, self._by_token)
        self._unsubscribe = clock.subscribe(inbox.wake)

    @staticmethod
    def _create_actor_inbox() -> Any:
        return _DueInbox()

    @property
    def pending(self) -> int:
        """Entries waiting for their due time."""
        return len(self._by_token)

    @property
    def stored(self) -> int:
        """Entries held in the heap, cancelled ones not yet dropped included."""
        return len(self._heap)

    def _actor_loop_running(self) -> None:
        """Pykka's loop, by the batch: see the class docstring."""
        stopped = self.actor_stopped
        inbox = self._inbox
        take = inbox.take
        while not stopped.is_set():
            batch: Any = None
            handled = 0
            try:
                # Inside the try: a failure to wait (a clock that raises, a
                # bug) is the Timer's failure, reported, so the scheduler
                # crashes loudly instead of losing every timer in silence.
                batch = take()
                if batch is _DUE:
                    self._fire_due()
                else:
                    for item in batch:
                        handled += 1
                        kind = type(item)
                        if kind is After:
                            self._add(item)
                        elif kind is CancelTimer:
                            self._cancel(item.token)
                        else:
                            handle_item(self, item)  # an envelope, or a posted Forget
                            if stopped.is_set():
                                break
                inbox.due = self._earliest()
            except BaseException:  # noqa: BLE001 - a bug here is the Timer's failure, reported
                fail(self)
            if stopped.is_set() and batch is not None and batch is not _DUE:
                inbox.put_back(batch[handled:])  # for the teardown: asks get an answer

    def _actor_loop_teardown(self) -> None:
        drain_inbox(self)

    def on_receive(self, message: Any) -> Any:
        """Add, cancel or forget entries (the same messages, told or asked)."""
        if isinstance(message, After):
            self._add(message)
        elif isinstance(message, CancelTimer):
            self._cancel(message.token)
        elif isinstance(message, Forget):
            self._forget()
        else:
            return super().on_receive(message)
        return None

    def _add(self, entry: After) -> None:
        job = entry.job
        token = entry.token
        self._by_token[token] = job if job is not None and self._hands_jobs else entry
        heappush(self._heap, (entry.due, token))

    def _cancel(self, token: int) -> None:
        if self._by_token.pop(token, None) is not None:
            self._stale += 1
            if self._stale > max(_COMPACT_AT, len(self._by_token)):
                self._compact()

    def _earliest(self) -> float | None:
        """The earliest live due time, dropping cancelled entries on top."""
        heap, live = self._heap, self._by_token
        while heap and heap[0][1] not in live:
            heappop(heap)
            self._stale -= 1
        return heap[0][0] if heap else None

    def _compact(self) -> None:
        live = self._by_token
        self._heap = [entry for entry in self._heap if entry[1] in live]
        heapify(self._heap)
        self._stale = 0

    def _forget(self) -> None:
        self._heap.clear()
        self._by_token.clear()
        self._stale = 0

    def _fire_due(self) -> None:
        now = self._clock.now()
        heap = self._heap
        live = self._by_token
        while heap and heap[0][0] <= now:
            _, token = heappop(heap)
            entry = live.pop(token, None)
            if entry is None:
                self._stale -= 1  # cancelled: never acted on
                continue
            if type(entry) is Job:
                assert self._readies is not None and self._table is not None
                state = self._table.active.get(entry.id)
                if state is not None:  # not cancelled meanwhile
                    state.waiting_to_pending()
                    self._readies[entry.queue].put(entry)
                continue
            assert isinstance(entry, After)
            try:
                self._target.tell(Fire(token, entry.kind, entry.key, entry.attempt))
            except pykka.ActorDeadError:
                # The dispatcher is gone (a crash): nothing is left to notify.
                self._forget()
                self.stop()
                return

    def on_stop(self) -> None:
        """Stop listening to the clock."""
        self._unsubscribe()
