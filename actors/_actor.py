"""The base of postroom's threaded actors: a fast inbox and failure reporting.

Pykka's `ThreadingActor` runs each actor on its own thread with a `queue.Queue`
inbox. For the actors that need a thread of their own (a Worker blocks in its
handler; the Timer blocks until the next due time) postroom keeps that model
but swaps the inbox for the C-coded `queue.SimpleQueue` (the same put/get/empty
contract, several times cheaper per message). `ReportingMixin` routes an
actor's unexpected failure to its supervisor instead of only logging it; the
actors that share a thread are in ``_actor_loop.py``.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple

import pykka

if TYPE_CHECKING:
    from pykka._actor import ActorInbox

__all__ = ["FailureReport", "PostroomActor", "ReportingMixin", "Spawned"]

_thread_numbers = itertools.count(1)

FailureReport = Callable[
    [pykka.Actor, type[BaseException] | None, BaseException | None, TracebackType | None],
    None,
]
"""Called on the failing actor's thread when it dies of an unexpected error."""


class Spawned(NamedTuple):
    """A started actor: the ref to talk to it and the thread to join at shutdown."""

    ref: pykka.ActorRef[Any]
    thread: threading.Thread


class ReportingMixin:
    """Routes an actor's unexpected failure to its supervisor's callback."""

    def __init__(self, on_failure: FailureReport | None = None) -> None:
        super().__init__()
        self._report_failure = on_failure

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Pykka has logged the traceback and stopped us: tell the supervisor."""
        if self._report_failure is not None:
            assert isinstance(self, pykka.Actor)
            self._report_failure(self, exception_type, exception_value, traceback)


class PostroomActor(ReportingMixin, pykka.ThreadingActor):
    """A Pykka threading actor with a `SimpleQueue` inbox and a failure callback.

    Start it with `spawn`, not Pykka's ``start``: the actor stays out of Pykka's
    process-wide registry (several schedulers share a process, and the host
    application's ``ActorRegistry.stop_all()`` must not reach into ours), and the
    caller gets the thread, so it can join it.
    """

    def __init__(self, on_failure: FailureReport | None = None) -> None:
        super().__init__(on_failure)
        self._thread: threading.Thread | None = None

    @classmethod
    def spawn(cls, *args: Any, **kwargs: Any) -> Spawned:
        """Create the actor and start its thread."""
        actor = cls(*args, **kwargs)
        actor._start_actor_loop()
        assert actor._thread is not None
        return Spawned(actor.actor_ref, actor._thread)

    def _start_actor_loop(self) -> None:
        thread = threading.Thread(
            target=self._actor_loop,
            name=f"postroom-{type(self).__name__}-{next(_thread_numbers)}",
            daemon=False,
        )
        self._thread = thread
        thread.start()

    @staticmethod
    def _create_actor_inbox() -> ActorInbox:
        inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        return inbox
