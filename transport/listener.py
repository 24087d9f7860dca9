"""The listener: where a scheduler takes worker nodes in (`Scheduler.listen`).

It owns the ZeroMQ side of a scheduler: a context, its `ServerSecurity`
(CURVE keys and the ZAP authenticator, or plain loopback when asked), the
`SchedulerIO` thread with its ROUTER, and one `NodeLink` actor per node in
session. On the I/O thread it reads who is talking:

- a `Hello` is checked (protocol version, id, capacity, queue, handlers) and
  answered with `Refused`, or starts a session: a new link, which welcomes the
  node. A second Hello on the same connection ends the first session; a node
  id already in session on another connection is refused;
- anything else goes to the link of its connection; a connection without a
  session is told ``Refused("no session ...")`` (a node that was declared
  dead and wakes up says Hello again), and a result it sends is counted as
  stale and never applied;
- a frame of another codec version is answered with a `Refused` naming both
  versions, once per connection; other malformed frames are only counted.

Per-node figures (`NodeTotals`) are kept by the node's label for the
listener's life, so a node that reconnects continues its counts. Under CURVE
the label is the name of the node's key (the key file's name, which the
authenticator hands on with each connection), so the labels an operator's
metrics carry are bounded by the keys handed out, whatever ids nodes give;
on plain loopback it is the node id.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import zmq

from actors._errors import DecodeError
from actors._jobs.info import NodeInfo
from actors._jobs.ready import ReadyQueue
from actors._jobs.table import JobTable
from actors._log import nodes_logger as logger
from actors._policy.handlers import HandlerSpec
from actors._runtime.actor import post
from actors._runtime.reaper import Reaper
from actors._runtime.refs import ActorRef
from actors._timer.clock import Clock
from actors.messages import Bye, Hello, NodeFinished, Refused, Run
from transport.io import SchedulerIO, Undeliverable
from transport.link import DRAIN, LinkParts, NodeLink, NodeTotals, Session, _End, _Undelivered
from transport.protocol import NodeMessage, SchedulerMessage, check_hello
from transport.security import ServerSecurity

__all__ = ["DEFAULT_HEARTBEAT", "DEFAULT_MISSES", "Listener"]

DEFAULT_HEARTBEAT = 1.0
"""Seconds between heartbeats, both ways."""
DEFAULT_MISSES = 3
"""Heartbeat intervals of silence after which a node counts as dead."""
_REMEMBERED = 1024
"""Ended connections remembered, to count their late results against their node."""


class Listener:
    """A scheduler's endpoint for worker nodes; made by `Scheduler.listen`.

    Use `endpoint` for the address it bound, `nodes` for who is connected,
    `reload_keys` after adding or removing a node's key file, and `close`
    (the scheduler's shutdown calls it) to end every session.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        readies: Mapping[str, ReadyQueue],
        table: JobTable,
        handlers: Mapping[str, HandlerSpec],
        clock: Clock,
        tokens: Iterator[int],
        dispatcher: ActorRef[Any],
        timer: ActorRef[Any],
        reaper: Reaper,
        crash: Callable[[str], None],
        keys: str | os.PathLike[str] | None = None,
        server_key: str | os.PathLike[str] | None = None,
        insecure: bool = False,
        heartbeat: float = DEFAULT_HEARTBEAT,
        misses: int = DEFAULT_MISSES,
    ) -> None:
        """Bind ``endpoint`` and start taking nodes in (see `Scheduler.listen`)."""
        self._lock = threading.Lock()
        self._sessions: dict[bytes, NodeLink] = {}
        self._by_id: dict[str, NodeLink] = {}
        self._totals: dict[str, NodeTotals] = {}
        self._ended: OrderedDict[bytes, NodeTotals] = OrderedDict()
        self._told_version: set[bytes] = set()
        self._closed = False
        self._released = False
        self._reaper = reaper
        self._crash = crash
        self._readies = readies
        self._handlers = handlers
        self.unknown_stale = 0
        """Results from connections never in session (not attributable to a node)."""
        context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self._context = context
        try:
            self._security = ServerSecurity(
                context, secret_key=server_key, authorized=keys, insecure=insecure
            )
        except BaseException:
            context.term()
            raise
        try:
            self._io = SchedulerIO(
                endpoint,
                self._on_message,
                on_undeliverable=self._on_undeliverable,
                on_malformed=self._on_malformed,
                configure=lambda socket: self._security.apply(socket, endpoint),
                context=context,
            )
        except BaseException:
            self._security.close()
            context.term()
            raise
        # A crash stops what the reaper knows, with nobody to close in order.
        reaper.add(self._io._thread, self.abort)  # noqa: SLF001 - the I/O thread, for joining
        self._parts = LinkParts(
            readies=readies,
            table=table,
            handlers=handlers,
            clock=clock,
            tokens=tokens,
            leases=_leases(),
            dispatcher=dispatcher,
            timer=timer,
            send=self._io.send,
            send_many=self._io.send_many,
            heartbeat=heartbeat,
            misses=misses,
        )
        logger.info("listening for worker nodes on %s", self._io.endpoint)

    @property
    def endpoint(self) -> str:
        """The endpoint bound (with the port the system chose, for port 0 or ``*``)."""
        return self._io.endpoint

    @property
    def public_key(self) -> bytes:
        """The scheduler's Z85 public key (``b""`` when insecure)."""
        return self._security.public_key

    def reload_keys(self) -> int:
        """Re-read the node key directory; returns how many keys are admitted.

        A removed key keeps no *new* connection from opening; a node already
        connected with it stays until it disconnects (docs/nodes.md).

        Raises:
            InvalidArgument: the directory or a key file in it is unusable
                (the keys admitted before stay in force).
        """
        return len(self._security.reload())

    def nodes(self) -> list[NodeInfo]:
        """The nodes in session now, by node id."""
        with self._lock:
            links = list(self._sessions.values())
        return sorted((link.info() for link in links), key=lambda info: info.node_id)

    def totals(self) -> dict[str, NodeTotals]:
        """Per node label, its counters over all its sessions (a copy). The
        label is the name of the node's key under CURVE, else its node id."""
        with self._lock:
            return {node_id: _copy(t) for node_id, t in self._totals.items()}

    @property
    def malformed(self) -> int:
        """Frames dropped as no message a node may send."""
        return self._io.stats().malformed

    # --- the I/O thread -------------------------------------------------------------

    def _on_message(self, peer: bytes, message: NodeMessage) -> None:
        if type(message) is Hello:
            self._hello(peer, message)
            return
        link = self._sessions.get(peer)
        if link is not None:
            post(link.actor_ref, message)
            return
        if type(message) is NodeFinished:
            self._count_stale(peer, message)
        if type(message) is not Bye and not self._closed:
            self._io.send(peer, Refused("no session: say Hello first"))

    def _count_stale(self, peer: bytes, message: NodeFinished) -> None:
        with self._lock:
            totals = self._ended.get(peer)
            if totals is not None:
                totals.stale += 1
            else:
                self.unknown_stale += 1
        logger.warning(
            "rejected a result for job %s under lease %d from a connection without a session",
            message.job_id,
            message.lease,
        )

    def _hello(self, peer: bytes, hello: Hello) -> None:
        refused = check_hello(hello) or self._check(hello)
        if refused is None:
            # Under CURVE the authenticator named the node's key: the figures
            # go by that name, so their labels are bounded by the keys handed out.
            key = self._io.user
            with self._lock:
                refused = self._open(peer, hello, key)
        if refused is not None:
            logger.warning("refused node %r: %s", hello.node_id[:80], refused.reason)
            self._io.send(peer, refused)

    def _check(self, hello: Hello) -> Refused | None:
        if self._closed:
            return Refused("the scheduler is shutting down")
        if hello.queue not in self._readies:
            queues = ", ".join(sorted(self._readies))
            return Refused(f"no queue named {hello.queue!r:.80} here (queues: {queues})")
        if not set(hello.handlers) & self._handlers.keys():
            return Refused(
                f"node {hello.node_id!r:.80} offers none of this scheduler's handlers"
            )
        return None

    def _open(self, peer: bytes, hello: Hello, key: str | None) -> Refused | None:
        """Start a session (under the lock)."""
        old = self._sessions.pop(peer, None)
        if old is not None:
            self._by_id.pop(old.node_id, None)
            post(old.actor_ref, _End("said Hello again"))
        other = self._by_id.get(hello.node_id)
        if other is not None:
            return Refused(f"node id {hello.node_id!r:.80} is in session on another connection")
        label = key or hello.node_id
        totals = self._totals.setdefault(label, NodeTotals())
        session = Session(
            node=peer,
            node_id=hello.node_id,
            queue=hello.queue,
            accepts=frozenset(hello.handlers) & self._handlers.keys(),
            capacity=hello.capacity,
            label=label,
            key=key,
        )
        link, thread = NodeLink.open(self._parts, session, totals, self._ended_link, self._failed)
        ref = link.actor_ref
        self._reaper.add(thread, lambda: post(ref, _End("the scheduler stopped")))
        self._sessions[peer] = link
        self._by_id[hello.node_id] = link
        return None

    def _ended_link(self, link: NodeLink) -> None:
        """A link's session ended (on the link's thread)."""
        with self._lock:
            if self._sessions.get(link.node) is link:
                del self._sessions[link.node]
            if self._by_id.get(link.node_id) is link:
                del self._by_id[link.node_id]
            self._ended[link.node] = link.totals
            while len(self._ended) > _REMEMBERED:
                self._ended.popitem(last=False)

    def _failed(self, _actor: Any, _type: Any, exc: BaseException | None, _tb: Any) -> None:
        # A link failed of a bug: its leases are in doubt, so the scheduler stops loudly.
        self._crash(f"a node link failed: {exc!r}")

    def _on_undeliverable(
        self, peer: bytes, message: SchedulerMessage, reason: Undeliverable
    ) -> None:
        link = self._sessions.get(peer)
        if link is None:
            return
        if reason == "unreachable":
            post(link.actor_ref, _End("its connection is gone"))
        elif type(message) is Run:
            post(link.actor_ref, _Undelivered(message.lease))

    def _on_malformed(self, peer: bytes, error: DecodeError) -> None:
        if "unsupported version" in str(error) and peer not in self._told_version:
            if len(self._told_version) < _REMEMBERED:
                self._told_version.add(peer)
            self._io.send(peer, Refused(f"the node's messages are not readable here: {error}"))

    # --- the end ----------------------------------------------------------------------

    def close(self, timeout: float = 5.0) -> None:
        """End every session, stop the I/O thread and the authenticator.

        Nodes are told `Drain` and given up to ``timeout`` seconds to say
        `Bye`; runs they still hold then end as interrupted. Idempotent.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            links = list(self._sessions.values())
        for link in links:
            post(link.actor_ref, DRAIN)
        deadline = time.monotonic() + timeout
        for link in links:
            link.actor_stopped.wait(max(0.0, deadline - time.monotonic()))
        for link in links:
            post(link.actor_ref, _End("the scheduler stopped"))
        for link in links:
            link.actor_stopped.wait(max(0.1, deadline - time.monotonic()))
        self._release()

    def abort(self) -> None:
        """End every session at once and close (a crash). Idempotent."""
        with self._lock:
            self._closed = True
            links = list(self._sessions.values())
        for link in links:
            post(link.actor_ref, _End("the scheduler stopped"))
        self._release()

    def _release(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
        self._io.close()
        self._security.close()
        self._context.term()


def _leases() -> Iterator[int]:
    # Unique for the listener's life; a node names them back, so they start
    # where a restarted scheduler's could not be confused with them.
    start = int(time.time() * 1000) << 20
    return iter(range(start, start + (1 << 62)))


def _copy(totals: NodeTotals) -> NodeTotals:
    return dataclasses.replace(totals)

