"""An actor that wakes at a due time as well as for mail: the Timer's execution model.

A `TimedActor` has a thread of its own and one wait: on its inbox's
`threading.Condition`, with the earliest due time (`next_due`, read from the
actor's clock) as the timeout. A new message or a jump of a manual clock wakes
it early; it re-reads the clock before `on_due`, so nothing is acted on
before its due time.

The loop takes the inbox by the batch, not by the message: a burst of a
thousand posted messages is a handful of wake-ups, each a tight loop of hook
calls, and the due time is re-read once per batch. The actor says what its
messages mean through four hooks: `on_due`, `on_posted`, `next_due` and
`may_wait`; asks and tells (Pykka envelopes) go through `on_receive` as for
any actor.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from pykka._envelope import Envelope  # this loop is a Pykka runtime: it unpacks them

from actors._runtime.actor import FailureReport, PostroomActor, drain_inbox, fail, handle_item
from actors._timer.clock import Clock, wait_seconds

__all__ = ["TimedActor", "TimedInbox"]

T = TypeVar("T")


class _Due:
    """What `TimedInbox.take` returns when the earliest due time has come."""

    __slots__ = ()


_DUE = _Due()


_BACKLOG = 256
"""Messages the actor may leave queued while it sleeps (see `TimedInbox.put`)."""
_TAKE = 64
"""Messages the actor handles between two looks at the clock."""


def _never_waits(_message: Any, _due: float, /) -> bool:
    return False


class TimedInbox:
    """An actor inbox that also says when the earliest due time has come.

    It holds Pykka envelopes (``tell``, ``ask``) and bare messages (`post`).
    The actor's loop calls `take`, which returns `_DUE` once ``due`` has
    come, or else a batch of queued messages (at most `_TAKE`, so a long
    queue never keeps a due time waiting long), or sleeps until one of the two.

    `put` wakes the actor only when it must: when nothing is due, for a
    message the actor's ``may_wait`` says cannot wait until ``due``, or when
    `_BACKLOG` messages wait. A message that can wait sits in the inbox: the
    actor wakes by ``due`` anyway and handles every queued message before it
    sleeps again, so nothing is late. A burst of posts then costs the posting
    thread no thread switch per message (it was one each: the woken actor
    took the GIL from the caller).
    """

    takes_bare = True
    """`post` may put messages here without an envelope."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._items: deque[Any] = deque()
        self.clock: Clock | None = None
        self.due: float | None = None
        """The earliest due time the actor waits for; written by the actor only."""
        self.may_wait: Callable[[Any, float], bool] = _never_waits
        """The actor's `TimedActor.may_wait`."""
        self.posted = 0
        """Items put so far: `put` numbers each, in the order `take` hands them out."""
        self.taken = 0
        """Items taken so far (by the actor's thread, which alone reads it):
        every item numbered up to it has been handed to the actor."""

    def put(self, item: Any, /) -> int:
        """Queue ``item`` (an envelope or a bare message); its number (see ``posted``)."""
        message = item.message if type(item) is Envelope else item
        # The lock itself, not the Condition's Python-level __enter__: this
        # runs once per message. The append and the check share it with
        # `take`'s look-then-wait, so a message can't slip in between the two.
        with self._lock:
            items = self._items
            items.append(item)
            self.posted += 1
            number = self.posted
            due = self.due
            if due is None or len(items) >= _BACKLOG or not self.may_wait(message, due):
                self._cond.notify()
        return number

    def take(self) -> Any:
        """`_DUE`, or a list of queued items; blocks until there is one or the other."""
        with self._lock:
            items = self._items
            while True:
                # Due time first, so a busy inbox cannot make the actor late.
                hint = None
                if self.due is not None and self.clock is not None:
                    hint = self.clock.wait_hint(self.due)
                    if hint == 0.0:
                        return _DUE
                if items:
                    if len(items) <= _TAKE:
                        batch = list(items)
                        items.clear()
                    else:
                        batch = [items.popleft() for _ in range(_TAKE)]
                    self.taken += len(batch)
                    return batch
                self._cond.wait(wait_seconds(hint))

    def put_back(self, batch: list[Any]) -> None:
        """Return unhandled items to the front, in order (the actor stopped mid-batch)."""
        with self._lock:
            self._items.extendleft(reversed(batch))
            self.taken -= len(batch)

    def get(self) -> Any:
        """The next queued item, without waiting (teardown only)."""
        with self._lock:
            self.taken += 1
            return self._items.popleft()

    def empty(self) -> bool:
        return not self._items

    def queued(self, read: Callable[[Iterator[Any]], T]) -> T:
        """``read`` the queued messages (envelopes opened), from any thread.

        Under the inbox's lock: the actor takes no message meanwhile, so what
        ``read`` sees is either still queued or already taken, never both.
        """
        with self._lock:
            return read(item.message if type(item) is Envelope else item for item in self._items)

    def wake(self) -> None:
        """Have the actor look at its clock again (a manual clock moved)."""
        with self._cond:
            self._cond.notify()


class TimedActor(PostroomActor):
    """A threaded actor that acts at due times it keeps itself (see the module docstring).

    Subclasses implement `on_due` and `next_due`, and may override
    `on_posted` (a fast path for posted messages) and `may_wait`.
    """

    def __init__(self, clock: Clock, on_failure: FailureReport | None = None) -> None:
        super().__init__(on_failure)
        inbox = self.actor_inbox
        assert isinstance(inbox, TimedInbox)
        inbox.clock = clock
        inbox.may_wait = type(self).may_wait
        self._inbox: TimedInbox = inbox
        self._unsubscribe: Callable[[], None] = clock.subscribe(inbox.wake)

    @staticmethod
    def _create_actor_inbox() -> Any:
        return TimedInbox()

    # --- hooks -----------------------------------------------------------------------

    def on_due(self) -> None:
        """The due time `next_due` gave has come, by the clock: act on what is due."""

    def next_due(self) -> float | None:
        """The earliest time to be woken at (None: only mail wakes the actor).

        Read after each batch of messages and after `on_due`.
        """
        return None

    def on_posted(self, message: Any) -> None:
        """Handle a bare message (put by `post`); by default as a told one."""
        self.on_receive(message)

    @staticmethod
    def may_wait(message: Any, due: float) -> bool:
        """Whether ``message`` may stay queued, unhandled, until ``due``.

        Called on the sender's thread, under the inbox's lock, for every
        message while the actor waits for ``due``: keep it cheap. By default
        every message wakes the actor.
        """
        return False

    # --- the loop --------------------------------------------------------------------

    def _actor_loop_running(self) -> None:
        """Pykka's loop, by the batch: see the module docstring."""
        stopped = self.actor_stopped
        inbox = self._inbox
        take = inbox.take
        posted = self.on_posted
        while not stopped.is_set():
            batch: Any = None
            handled = 0
            try:
                # Inside the try: a failure to wait (a clock that raises, a
                # bug) is the actor's failure, reported, so the scheduler
                # crashes loudly instead of losing every due time in silence.
                batch = take()
                if batch is _DUE:
                    self.on_due()
                else:
                    for item in batch:
                        handled += 1
                        if type(item) is Envelope:
                            handle_item(self, item)
                            if stopped.is_set():
                                break
                        else:
                            posted(item)
                inbox.due = self.next_due()
            except BaseException:  # noqa: BLE001 - a bug here is the actor's failure, reported
                fail(self)
            if stopped.is_set() and batch is not None and batch is not _DUE:
                inbox.put_back(batch[handled:])  # for the teardown: asks get an answer

    def _actor_loop_teardown(self) -> None:
        drain_inbox(self)

    def on_stop(self) -> None:
        """Stop listening to the clock."""
        self._unsubscribe()
