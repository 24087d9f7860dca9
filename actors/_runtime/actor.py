"""The base of postroom's threaded actors: a fast inbox and failure reporting.

Pykka's `ThreadingActor` runs each actor on its own thread with a `queue.Queue`
inbox. For the actors that need a thread of their own (a Worker blocks in its
handler; the Timer blocks until the next due time) postroom keeps that model
but swaps the inbox for the C-coded `queue.SimpleQueue` (the same put/get/empty
contract, several times cheaper per message). `ReportingMixin` routes an
actor's unexpected failure to its supervisor instead of only logging it; the
actors that share a thread are in ``actors/_runtime/loop.py``.

Two of postroom's inboxes (a `LoopActor`'s and a `TimedActor`'s, the Timer's) also take *bare*
messages, put there by `post`: no envelope, no reply, no liveness check.
Pykka's ``tell`` checks the actor is alive (a call on a `threading.Event`)
and wraps the message in an envelope; on paths that send a message per job
(the Dispatcher and its RepoLocks telling each other, every delayed submit
telling the Timer) that was a fifth of the time. Such an actor's own run loop
takes both kinds (`handle_item`), and its teardown too (`drain_inbox`).
"""

from __future__ import annotations

import itertools
import queue
import sys
import threading
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple

import pykka
from pykka import ActorDeadError
from pykka._envelope import Envelope  # postroom's run loops unpack Pykka's envelopes
from pykka.messages import _ActorStop

from actors._log import runtime_logger as logger

if TYPE_CHECKING:
    from pykka._actor import ActorInbox

__all__ = [
    "FailureReport",
    "PostroomActor",
    "ReportingMixin",
    "Spawned",
    "drain_inbox",
    "fail",
    "handle_item",
    "post",
]

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

    def _handle_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Log the failure on postroom's logger and mark the actor stopped.

        Pykka's own version logs on the ``pykka`` logger, where an application
        that listens to ``postroom`` never sees a crashed actor's traceback.
        postroom's actors are never in Pykka's registry, so there is nothing
        to unregister.
        """
        logger.error(
            "postroom actor %s failed",
            self,
            exc_info=(exception_type, exception_value, traceback),  # type: ignore[arg-type]
        )
        assert isinstance(self, pykka.Actor)
        self.actor_stopped.set()

    def _actor_loop_setup(self) -> None:
        """Run ``on_start``; a failure there is the actor's failure, reported.

        Pykka's own setup only logs it (no ``on_failure``): the supervisor
        would never hear that its child died before its first message.
        """
        assert isinstance(self, pykka.Actor)
        try:
            self.on_start()
        except BaseException:  # noqa: BLE001 - every error is reported, none escapes the loop
            fail(self)

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """The failure is logged and we are stopped: tell the supervisor."""
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

    def _actor_loop_running(self) -> None:
        """Pykka's loop, through `handle_item`.

        Pykka's own stops the actor without ``on_failure`` on a BaseException
        and then stops every actor in Pykka's registry, the host
        application's included; here any failure is this actor's, reported.
        """
        stopped = self.actor_stopped
        get = self.actor_inbox.get
        while not stopped.is_set():
            handle_item(self, get())

    def _actor_loop_teardown(self) -> None:
        drain_inbox(self)


def post(ref: pykka.ActorRef[Any], message: Any) -> None:
    """Put ``message`` as it is into the inbox of the actor behind ``ref`` (any thread).

    For actors whose inbox takes bare messages (its class says
    ``takes_bare = True``); any other actor (a test's stand-in, say) is told as
    usual. A message posted to an actor that has stopped is never handled, as
    a told one would not be either, but nothing is raised: the senders that
    post either know the receiver outlives them or have nothing to do about it.
    """
    inbox = ref.actor_inbox
    if getattr(inbox, "takes_bare", False):
        inbox.put(message)
    else:
        ref.tell(message)


def post_numbered(ref: pykka.ActorRef[Any], message: Any) -> int:
    """`post` to an actor whose inbox numbers what it is given (a
    `TimedInbox`); the message's number (see ``TimedInbox.posted``)."""
    inbox: Any = ref.actor_inbox  # a TimedInbox: its put returns the number
    number: int = inbox.put(message)
    return number


def handle_item(actor: pykka.Actor, item: Any) -> None:
    """Handle one inbox item (an envelope or a posted message), as Pykka's loop would.

    postroom's own messages go straight to ``on_receive``; Pykka's (stop, proxy
    calls) through Pykka's own dispatch. An exception answers an ask; otherwise
    it is the actor's failure: reported (``on_failure``) and the actor stopped.
    Unlike Pykka's threads, a BaseException is this actor's failure too, never
    a reason to stop every actor in the process.
    """
    if type(item) is Envelope:
        message, reply_to = item.message, item.reply_to
    else:
        message, reply_to = item, None
    try:
        if type(message).__module__.startswith("pykka"):
            response = actor._handle_receive(message)  # noqa: SLF001 - a Pykka runtime's job
        else:
            response = actor.on_receive(message)
        if reply_to is not None:
            reply_to.set(response)
    except BaseException:  # noqa: BLE001 - every error is reported, none escapes the loop
        if reply_to is not None and isinstance(sys.exc_info()[1], Exception):
            reply_to.set_exception()
            return
        if reply_to is not None:
            reply_to.set_exception((ActorDeadError, ActorDeadError(f"{actor} failed"), None))
        fail(actor)


def fail(actor: pykka.Actor) -> None:
    """The actor dies of the exception being handled: log it, stop, tell ``on_failure``."""
    exc_info = sys.exc_info()
    actor._handle_failure(*exc_info)  # noqa: SLF001 - a Pykka runtime's job
    try:
        actor.on_failure(*exc_info)
    except Exception:  # noqa: BLE001
        actor._handle_failure(*sys.exc_info())  # noqa: SLF001


def drain_inbox(actor: pykka.Actor) -> None:
    """Pykka's teardown, for inboxes that hold posted messages too.

    Asks still queued get `ActorDeadError` (a stop's own ask gets its answer);
    tells and posted messages are dropped, as Pykka drops tells.
    """
    inbox = actor.actor_inbox
    while not inbox.empty():
        item = inbox.get()
        if type(item) is not Envelope or item.reply_to is None:
            continue
        if isinstance(item.message, _ActorStop):
            item.reply_to.set(None)
        else:
            error = ActorDeadError(f"{actor.actor_ref} stopped before handling the message")
            item.reply_to.set_exception(exc_info=(ActorDeadError, error, None))
