"""The Timer actor: every future event in one priority queue, one wait.

Delays, retry backoff and job deadlines all become `After` entries. The Timer's
inbox blocks on a single `threading.Condition` whose timeout is the earliest due
time, so a timer costs no thread and no polling of its own; a new message or a
jump of a manual clock wakes it early, and it re-reads the clock before firing,
so nothing fires before its due time (rule 11).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping
from heapq import heapify, heappop, heappush
from typing import Any

import pykka

from actors._actor import FailureReport, PostroomActor
from actors._clock import Clock
from actors._jobs import JobTable
from actors._ready import ReadyQueue
from actors.messages import After, CancelTimer, Fire, Forget

__all__ = ["Timer", "TimerGauge"]


class _Due:
    """The message the inbox makes up when the earliest entry is due."""

    __slots__ = ()


class _Envelope:
    """Duck-typed stand-in for Pykka's envelope: a message nobody waits on."""

    __slots__ = ("message", "reply_to")

    def __init__(self, message: Any) -> None:
        self.message = message
        self.reply_to = None


_DUE = _Envelope(_Due())


_BACKLOG = 256
"""Messages the Timer may leave queued while it sleeps (see `_DueInbox.put`)."""


class _DueInbox:
    """An actor inbox whose `get` also returns when the earliest entry is due.

    `put` wakes the Timer only when it must: for an entry due before the one it
    waits for, for anything that is not an entry, or when `_BACKLOG` messages
    wait. An entry due no earlier than ``due``, or a cancel, can wait in the
    inbox: the Timer wakes by ``due`` anyway, and handles every queued message
    before it sleeps again, so nothing is late. A burst of delayed submits then
    costs the submitting thread no thread switch per job (it was one each: the
    woken Timer took the GIL from the caller).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._items: deque[Any] = deque()
        self.clock: Clock | None = None
        self.due: float | None = None

    def put(self, envelope: Any, /) -> None:
        message = envelope.message
        with self._cond:
            items = self._items
            items.append(envelope)
            due = self.due
            kind = type(message)
            if (
                due is None
                or len(items) >= _BACKLOG
                or not (kind is CancelTimer or (kind is After and message.due >= due))
            ):
                self._cond.notify()

    def get(self) -> Any:
        with self._cond:
            while True:
                # Due entries go first, so a busy inbox cannot make a timer late.
                hint = None
                if self.due is not None and self.clock is not None:
                    hint = self.clock.wait_hint(self.due)
                    if hint == 0.0:
                        return _DUE
                if self._items:
                    return self._items.popleft()
                self._cond.wait(hint)

    def empty(self) -> bool:
        return not self._items

    def wake(self) -> None:
        with self._cond:
            self._cond.notify()


_COMPACT_AT = 1024
"""Stale (cancelled) heap entries tolerated before a rebuild, at the least."""


class TimerGauge:
    """The Timer's entry count, readable from any thread (for metrics)."""

    __slots__ = ("entries",)

    def __init__(self) -> None:
        self.entries = 0


class Timer(PostroomActor):
    """Acts on each entry at its due time, never earlier.

    An entry that carries a job (a delayed start or a retry of a job without a
    repo) is put into the ready queue at that moment, its status turned to
    pending, and nothing more: a worker takes it without any other thread
    waking up, and the Dispatcher, which finds such a job still marked as held
    by the Timer, knows it may be queued or running (see its cancel). Every
    other entry (a repo's tick, a job with a repo coming due, a deadline)
    becomes a `Fire` to the target.
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
        self._by_token: dict[int, After] = {}
        self._stale = 0
        inbox = self.actor_inbox
        assert isinstance(inbox, _DueInbox)
        inbox.clock = clock
        self._inbox = inbox
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

    def on_receive(self, message: Any) -> Any:
        """Add, cancel or fire entries, then arm the wait for the earliest one."""
        if isinstance(message, After):
            self._by_token[message.token] = message
            heappush(self._heap, (message.due, message.token))
        elif isinstance(message, CancelTimer):
            if self._by_token.pop(message.token, None) is not None:
                self._stale += 1
                if self._stale > max(_COMPACT_AT, len(self._by_token)):
                    self._compact()
        elif isinstance(message, _Due):
            self._fire_due()
        elif isinstance(message, Forget):
            self._forget()
        else:
            return super().on_receive(message)
        self._inbox.due = self._earliest()
        self._gauge.entries = len(self._by_token)
        return None

    def _earliest(self) -> float | None:
        """The earliest live due time, dropping cancelled entries on top."""
        heap, live = self._heap, self._by_token
        while heap and heap[0][1] not in live:
            heappop(heap)
            self._stale -= 1
        return heap[0][0] if heap else None

    def _compact(self) -> None:
        self._heap = [(entry.due, token) for token, entry in self._by_token.items()]
        heapify(self._heap)
        self._stale = 0

    def _forget(self) -> None:
        self._heap.clear()
        self._by_token.clear()
        self._stale = 0

    def _fire_due(self) -> None:
        now = self._clock.now()
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, token = heappop(heap)
            entry = self._by_token.pop(token, None)
            if entry is None:
                self._stale -= 1  # cancelled: never acted on
                continue
            job = entry.job
            if job is not None and self._readies is not None and self._table is not None:
                state = self._table.active.get(job.id)
                if state is not None:  # not cancelled meanwhile
                    state.waiting_to_pending()
                    self._readies[job.queue].put(job)
                continue
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
