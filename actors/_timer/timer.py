"""The Timer actor: every future event in one priority queue, one wait.

Delays, retry backoff and job deadlines all become `After` entries. The Timer
is a `TimedActor` (``actors/_runtime/timed.py``): its thread waits on its
inbox with the earliest due time as the timeout, so a timer costs no thread
and no polling of its own; a new message or a jump of a manual clock wakes
it early, and it re-reads the clock before firing, so nothing fires before
its due time (rule 11, docs/guarantees.md). This module keeps what the
entries mean: the heap, which messages may wait, and firing.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from heapq import heapify, heappop, heappush
from typing import Any

from actors._jobs.ready import ReadyQueue
from actors._jobs.table import JobTable
from actors._runtime.actor import FailureReport
from actors._runtime.refs import ActorDead, ActorRef
from actors._runtime.timed import TimedActor, TimedInbox
from actors._timer.clock import Clock
from actors.messages import After, CancelTimer, Fire, Forget, Job

__all__ = ["Timer", "TimerGauge"]


_COMPACT_AT = 1024
"""Stale (cancelled) heap entries tolerated before a rebuild, at the least."""


class TimerGauge:
    """The Timer's entry count, readable from any thread (for metrics).

    Counted when read (`count_entries`): the entries the Timer holds, plus
    those posted to it and not yet taken, less the cancels not yet applied. A
    count the Timer kept itself would lag until it next woke, and it does not
    wake for a later entry or a cancel (see `Timer.may_wait`).
    """

    __slots__ = ("_inbox", "_live")

    def __init__(self) -> None:
        self._inbox: TimedInbox | None = None
        self._live: Mapping[int, object] = {}

    def watch(self, inbox: TimedInbox, live: Mapping[int, object]) -> None:
        """Count the Timer with this inbox and these live entries (set by the Timer)."""
        self._live = live
        self._inbox = inbox

    @property
    def entries(self) -> int:
        """Entries waiting for their due time, as soon as they are posted."""
        inbox = self._inbox
        if inbox is None:
            return 0
        live = self._live
        return inbox.queued(lambda queued: count_entries(queued, live))


def count_entries(queued: Iterator[Any], live: Mapping[int, object]) -> int:
    """The entries ``live`` (the Timer's, by token) will hold once every
    ``queued`` message is applied.

    Called under the inbox's lock (`TimedInbox.queued`), so `Timer.may_wait`
    stays as cheap as it is: nothing is counted as messages are posted, and
    the Timer is not woken to count. No message is taken meanwhile, so a
    queued entry is counted once, in the queue or in ``live``; ``len`` and
    ``in`` on the Timer's dict are each one atomic step (the GIL, or the
    dict's own lock on a free-threaded build). Only a batch the Timer is
    applying at that moment (a few dozen messages, for microseconds) may be
    counted short or long, until it is applied.
    """
    added: set[int] = set()
    cancelled: set[int] = set()
    forgotten = False
    for message in queued:
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


class Timer(TimedActor):
    """Acts on each entry at its due time, never earlier.

    An entry that carries a job (a delayed start or a retry of a job without a
    repo) is put into the ready queue at that moment, its status turned to
    pending, and nothing more: a worker takes it without any other thread
    waking up, and the Dispatcher, which finds such a job still marked as held
    by the Timer, knows it may be queued or running (see its cancel). Every
    other entry (a repo's tick, a job with a repo coming due, a deadline)
    becomes a `Fire` to the target.

    Its loop (`TimedActor`'s) handles its inbox in batches and re-arms the
    wait once per batch, not once per message: a burst of a thousand delayed
    submits is a handful of wake-ups, each a tight loop of heap pushes.
    """

    def __init__(
        self,
        clock: Clock,
        target: ActorRef[Any],
        readies: Mapping[str, ReadyQueue] | None = None,
        table: JobTable | None = None,
        on_failure: FailureReport | None = None,
        gauge: TimerGauge | None = None,
    ) -> None:
        super().__init__(clock, on_failure)
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
        self._gauge.watch(self._inbox, self._by_token)

    @property
    def pending(self) -> int:
        """Entries waiting for their due time."""
        return len(self._by_token)

    @property
    def stored(self) -> int:
        """Entries held in the heap, cancelled ones not yet dropped included."""
        return len(self._heap)

    # --- the loop's hooks (actors/_runtime/timed.py) ------------------------------------

    @staticmethod
    def may_wait(message: Any, due: float) -> bool:
        """An entry due no earlier than the one the Timer waits for, or a
        cancel, can wait in the inbox: the Timer wakes by ``due`` anyway and
        applies every queued message before it sleeps again, so nothing is
        late. Anything else (an earlier entry, a forget, an ask) wakes it."""
        kind = type(message)
        return kind is CancelTimer or (kind is After and message.due >= due)

    def on_posted(self, message: Any) -> None:
        """Entries and cancels, straight to the heap (one per delayed submit)."""
        kind = type(message)
        if kind is After:
            self._add(message)
        elif kind is CancelTimer:
            self._cancel(message.token)
        else:
            self.on_receive(message)

    def on_due(self) -> None:
        """Fire every entry due by now."""
        self._fire_due()

    def next_due(self) -> float | None:
        """The earliest live entry's due time."""
        return self._earliest()

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
            except ActorDead:
                # The dispatcher is gone (a crash): nothing is left to notify.
                self._forget()
                self.stop()
                return
