"""Many actors on one thread: the execution model of the Dispatcher and RepoLocks.

Pykka's `ThreadingActor` gives every actor an OS thread. That is right for a
worker, which blocks in a handler, but wrong for a RepoLock, which only ever
moves a few records between queues: 10,000 busy repos would be 10,000 threads,
and every Dispatcher -> RepoLock -> Dispatcher hop would be two thread wake-ups.

An `ActorLoop` is one thread with a run queue of actors that have mail. An
`LoopActor` is a Pykka `Actor` (the base class is the seam Pykka provides for
other execution models) whose inbox, when it receives a message while idle,
puts its actor on the loop's run queue. The loop runs each scheduled actor for a
batch of messages and puts it back if more arrived. Each actor still sees one
message at a time, in order: the actor model is unchanged, only the threads
are shared (as in a dispatcher that runs many actors on a small pool).

A loop actor's inbox takes posted messages as well as envelopes
(`actors._runtime.actor.post`): the Dispatcher and its RepoLocks tell each other
several things per job.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from typing import Any

import pykka

from actors._runtime.actor import FailureReport, ReportingMixin, Spawned, drain_inbox, handle_item

__all__ = ["ActorLoop", "LoopActor"]

_BATCH = 64
"""Messages an actor handles before the loop turns to the next actor (fairness)."""


class ActorLoop:
    """One thread that runs the mailboxes of many `LoopActor`s."""

    def __init__(self, name: str) -> None:
        self._runq: queue.SimpleQueue[LoopActor | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name=name, daemon=False)
        self.thread.start()

    def schedule(self, actor: LoopActor) -> None:
        """Run ``actor`` soon: it has mail."""
        self._runq.put(actor)

    def close(self) -> None:
        """End the thread once the actors scheduled before this call have run."""
        self._runq.put(None)

    def _run(self) -> None:
        get = self._runq.get
        while (actor := get()) is not None:
            actor._run_batch()  # noqa: SLF001 - the loop is the actor's runtime


class _Inbox:
    """A deque that schedules its owner on the loop when mail arrives while idle.

    "Scheduled" is a lock taken without blocking: whoever takes it schedules the
    actor, and only the loop releases it. Nobody ever waits on it, so a thread
    preempted at the wrong moment cannot make others queue behind it (a plain
    lock around the flag did exactly that, costing milliseconds per message).
    """

    __slots__ = ("items", "loop", "owner", "scheduled")

    takes_bare = True
    """`post` may put messages here without an envelope."""

    def __init__(self) -> None:
        self.items: deque[Any] = deque()
        self.scheduled = threading.Lock()
        self.loop: ActorLoop | None = None
        self.owner: LoopActor | None = None

    def put(self, envelope: Any, /) -> None:
        self.items.append(envelope)
        if self.scheduled.acquire(blocking=False):
            assert self.loop is not None and self.owner is not None
            self.loop.schedule(self.owner)

    def get(self) -> Any:
        return self.items.popleft()

    def empty(self) -> bool:
        return not self.items

    def idle_or_reschedule(self) -> None:
        """After a batch: go idle; then, if mail came meanwhile, schedule again.

        A message appended before the release is seen by the check after it; one
        appended after the release finds the flag free and schedules itself.
        """
        self.scheduled.release()
        if self.items and self.scheduled.acquire(blocking=False):
            assert self.loop is not None and self.owner is not None
            self.loop.schedule(self.owner)


class LoopActor(ReportingMixin, pykka.Actor):
    """A Pykka actor that runs on a shared `ActorLoop` instead of its own thread."""

    def __init__(self, loop: ActorLoop, on_failure: FailureReport | None = None) -> None:
        super().__init__(on_failure)
        inbox = self.actor_inbox
        assert isinstance(inbox, _Inbox)
        inbox.loop = loop
        inbox.owner = self
        self._inbox = inbox
        self._started = False

    @classmethod
    def spawn(cls, loop: ActorLoop, *args: Any, **kwargs: Any) -> Spawned:
        """Create the actor on ``loop``; its first message runs ``on_start``."""
        actor = cls(loop, *args, **kwargs)
        return Spawned(actor.actor_ref, loop.thread)

    @staticmethod
    def _create_actor_inbox() -> Any:
        return _Inbox()

    @staticmethod
    def _create_future() -> pykka.Future[Any]:
        return pykka.ThreadingFuture()

    def _start_actor_loop(self) -> None:  # pragma: no cover - spawn never calls it
        msg = "a LoopActor is started with spawn(loop, ...)"
        raise TypeError(msg)

    def _run_batch(self) -> None:
        """Handle up to a batch of messages; called on the loop's thread only."""
        if not self._started:
            self._started = True
            self._actor_loop_setup()
        items = self._inbox.items
        stopped = self.actor_stopped
        for _ in range(_BATCH):
            if stopped.is_set() or not items:
                break
            handle_item(self, items.popleft())
        if stopped.is_set():
            # Asks still queued get ActorDeadError, posted messages are dropped.
            # The inbox stays marked scheduled, so nothing schedules a dead actor.
            drain_inbox(self)
            return
        self._inbox.idle_or_reschedule()
