"""The I/O threads of the node protocol: the only code that touches ZeroMQ sockets.

ZeroMQ sockets are not thread-safe, so each side has one thread that owns its
network socket and does nothing else:

- `SchedulerIO`: a ROUTER bound to an endpoint, which every node connects to;
  a message is addressed by the node's routing id (bytes).
- `NodeIO`: a DEALER connected to the scheduler's endpoint.

Other threads (actors) never touch that socket. ``send`` encodes the message on
the caller's thread, so a message that cannot be encoded raises there, and
hands the bytes to the I/O thread over an ``inproc://`` PUSH/PULL pair; the I/O
thread sends them with ``DONTWAIT``. What arrives is decoded on the I/O thread
with `transport.protocol.decode_from_node` (or ``decode_from_scheduler``) and
handed to the owner's ``on_message`` callback, on the I/O thread: it must be
quick and must not block (``queue.put_nowait``, or ``tell`` to an actor).

``send_many`` sends up to `MAX_BATCH` messages as one multipart message, a
frame each: one hand-off and one network send for a batch of runs or of
results. Each frame is read and checked on its own, so a bad frame in a batch
is dropped and counted while the others are delivered; a multipart message of
more than `MAX_BATCH` frames is dropped whole, counted once.

Nothing a peer sends or fails to take reaches the I/O loop as an exception:

- A frame that is no message the peer may send (random bytes, the wrong
  direction's message, too long) is dropped and counted in
  `IOStats.malformed`; one warning per peer per ``log_interval`` says so on
  ``postroom.nodes``. A frame longer than `MAX_FRAME_BYTES` ends the peer's
  connection (ZeroMQ's ``MAXMSGSIZE``) without being read at all.
- The ROUTER has ``ROUTER_MANDATORY`` set, so a message to a node id that is
  not connected (never was, or is gone) is not silently dropped: like a message
  to a peer whose queue is full, it is counted in `IOStats.undeliverable`,
  logged, and given to the owner's ``on_undeliverable`` callback with the
  reason (``"unreachable"`` or ``"full"``). ZeroMQ queues up to 1,000 messages
  a peer (``SNDHWM``, which ``configure`` may change); the node protocol's
  credit keeps the traffic far below that.

The ``configure`` parameter is called with the network socket, on the I/O
thread, before it binds or connects: where security options (CURVE keys, the
ZAP domain) are set. ``MAXMSGSIZE`` is set after it, from `MAX_FRAME_BYTES` and
the mechanism ``configure`` chose (CURVE makes each frame longer on the wire).
``context`` shares a ZeroMQ context (a ZAP authenticator listens on its
context); by default each object makes its own and terms it on
`close`. ``close`` stops and joins the thread, closes the sockets with linger 0,
and may be called any number of times.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, Literal, Self

import zmq

from actors._errors import (
    DecodeError,
    InvalidArgument,
    SchedulerClosed,
    SchedulerUnresponsive,
)
from actors._log import nodes_logger
from actors._policy.payloads import MAX_MESSAGE_BYTES
from actors.messages import Hello
from transport.codec import encode
from transport.protocol import (
    NODE_MESSAGES,
    SCHEDULER_MESSAGES,
    NodeMessage,
    SchedulerMessage,
    decode_from_node,
    decode_from_scheduler,
)

__all__ = [
    "MAX_BATCH",
    "MAX_FRAME_BYTES",
    "IOStats",
    "NodeIO",
    "SchedulerIO",
    "Undeliverable",
]

MAX_BATCH = 256
"""Messages one multipart message may carry (`send_many`), a frame each; a
peer's message with more frames is dropped as malformed."""

MAX_FRAME_BYTES = MAX_MESSAGE_BYTES + 1
"""The longest message ZeroMQ reads at all; a longer one drops the connection
(with or without CURVE: the limit set allows for its wire overhead).

One byte over the codec's limit, so a frame just too long is still read, refused
by the decoder and counted, while a huge one costs no memory."""

Undeliverable = Literal["unreachable", "full"]
"""Why a message did not leave: no such peer is connected, or its queue is full."""

Configure = Callable[[zmq.Socket[bytes]], None]
"""Sets options on the network socket before it binds or connects."""

_START_TIMEOUT = 10.0
"""Seconds the constructor waits for the I/O thread to bind or connect."""
_HANDOFF_TIMEOUT_MS = 10_000
"""How long a ``send`` may wait for room in the hand-off queue to the I/O thread."""
_BATCH = 256
"""Messages read from one socket before the other gets its turn."""
_LOGGED_PEERS = 1024
"""Peers whose last warning time is remembered; a peer that reconnects gets a
new routing id, so the table must not grow without bound."""
_CURVE_OVERHEAD = 33
"""Bytes CURVE adds to a message on the wire: the command name (8), the nonce
(8), the MAC (16) and the flags (1); measured against libzmq, see
tests/test_nodes_fuzz.py."""
_SEND, _STOP = b"s", b"x"
"""The commands on the hand-off queue: send these frames, or stop the loop."""
_names = itertools.count(1)


@dataclasses.dataclass(frozen=True, slots=True)
class IOStats:
    """A snapshot of one I/O thread's counters."""

    received: int
    """Messages decoded and handed to ``on_message``."""
    sent: int
    """Messages handed to ZeroMQ for a peer."""
    malformed: int
    """Frames dropped because they were no message the peer may send."""
    undeliverable: int
    """Messages a peer could not take (unreachable or full)."""
    callback_errors: int
    """Times ``on_message`` or ``on_undeliverable`` raised (logged, then ignored)."""


class _IOThread:
    """What both sides share: the thread, the hand-off queue, counters, close."""

    _kind: str
    _socket_type: int
    _copy = True
    """Whether the loop reads bytes (True) or zmq.Frame objects."""

    def __init__(
        self,
        endpoint: str,
        *,
        configure: Configure | None,
        context: zmq.Context[zmq.Socket[bytes]] | None,
        log_interval: float,
    ) -> None:
        if not isinstance(endpoint, str) or "://" not in endpoint:
            reason = f"a ZeroMQ endpoint such as 'tcp://127.0.0.1:7555', not {endpoint!r:.100}"
            raise InvalidArgument(reason)
        if not log_interval >= 0:
            reason = f"log_interval must be >= 0 seconds, not {log_interval!r}"
            raise InvalidArgument(reason)
        self._configure = configure
        self._log_interval = float(log_interval)
        self._owns_context = context is None
        try:
            self._context = zmq.Context() if context is None else context
        except zmq.ZMQError as exc:  # out of file descriptors, say
            reason = f"cannot make a ZeroMQ context: {exc}"
            raise SchedulerClosed(reason) from None
        self._handoff = f"inproc://postroom-{self._kind}-io-{next(_names)}"
        self._received = self._sent = self._malformed = 0
        self._undeliverable = self._callback_errors = 0
        self._last_logged: OrderedDict[bytes, float] = OrderedDict()
        self._lock = threading.Lock()  # guards the PUSH end and the closed flag
        self._closed = False
        self._term_on_exit = False
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self._endpoint = endpoint
        self._push: zmq.Socket[bytes] | None = None
        self._net: zmq.Socket[bytes]  # set by the I/O thread, used by it alone
        self._thread = threading.Thread(
            target=self._run, args=(endpoint,), name=f"postroom-{self._kind}-io", daemon=True
        )
        self._thread.start()
        if not self._started.wait(_START_TIMEOUT):
            self.close()
            reason = f"the {self._kind} I/O thread did not start within {_START_TIMEOUT} s"
            raise SchedulerUnresponsive(reason)
        if self._start_error is not None:
            self.close()
            raise self._start_error
        try:
            push = self._context.socket(zmq.PUSH)
            push.setsockopt(zmq.LINGER, 0)
            push.setsockopt(zmq.SNDTIMEO, _HANDOFF_TIMEOUT_MS)
            push.connect(self._handoff)
        except zmq.ZMQError as exc:
            self.close()
            reason = f"cannot reach the {self._kind} I/O thread: {exc}"
            raise SchedulerClosed(reason) from None
        self._push = push

    # --- the public surface ---------------------------------------------------

    @property
    def endpoint(self) -> str:
        """The endpoint bound or connected to; for a bind to port ``*`` (or 0),
        the one ZeroMQ chose, e.g. ``tcp://127.0.0.1:49731``."""
        return self._endpoint

    def stats(self) -> IOStats:
        """A snapshot of the counters (see `IOStats`)."""
        return IOStats(
            received=self._received,
            sent=self._sent,
            malformed=self._malformed,
            undeliverable=self._undeliverable,
            callback_errors=self._callback_errors,
        )

    def close(self) -> None:
        """Stop the I/O thread, join it, close the sockets (linger 0), and term
        the context if this object made it. Messages not yet sent are dropped.
        Calling it again does nothing."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            push, self._push = self._push, None
            if push is not None:
                if self._thread.is_alive():  # a dead one takes nothing: send would wait
                    with contextlib.suppress(zmq.ZMQError):
                        push.send(_STOP)
                push.close(linger=0)
        if self._thread.ident == threading.get_ident():
            # Called from a callback: the loop stops after it, and the thread
            # terms the context once its sockets are closed (term waits for them).
            self._term_on_exit = True
            return
        self._thread.join()
        if self._owns_context:
            self._context.term()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- the caller's side ----------------------------------------------------

    def _hand_off(self, frames: list[bytes]) -> None:
        with self._lock:
            if self._closed or self._push is None or not self._thread.is_alive():
                reason = f"the {self._kind} I/O is closed"
                raise SchedulerClosed(reason)
            try:
                self._push.send_multipart([_SEND, *frames])
            except zmq.Again:
                reason = f"the {self._kind} I/O thread took no message for {_HANDOFF_TIMEOUT_MS} ms"
                raise SchedulerUnresponsive(reason) from None
            except zmq.ZMQError as exc:
                reason = f"the {self._kind} I/O is closed: {exc}"
                raise SchedulerClosed(reason) from None

    # --- the I/O thread -------------------------------------------------------

    def _open(self, socket: zmq.Socket[bytes], endpoint: str) -> str:
        """Bind or connect ``socket``; return the endpoint to report."""
        raise NotImplementedError

    def _on_frames(self, frames: list[Any]) -> None:
        """Handle one multipart message from the network socket."""
        raise NotImplementedError

    def _send_frames(self, frames: list[bytes]) -> None:
        """Send one hand-off's frames on the network socket."""
        raise NotImplementedError

    def _run(self, endpoint: str) -> None:
        try:
            pull = self._context.socket(zmq.PULL)
        except zmq.ZMQError as exc:
            self._start_error = SchedulerClosed(f"cannot open a ZeroMQ socket: {exc}")
            self._started.set()
            return
        try:
            net = self._context.socket(self._socket_type)
        except zmq.ZMQError as exc:
            pull.close(linger=0)
            self._start_error = SchedulerClosed(f"cannot open a ZeroMQ socket: {exc}")
            self._started.set()
            return
        self._net = net
        try:
            try:
                pull.bind(self._handoff)
                net.setsockopt(zmq.LINGER, 0)
                if self._configure is not None:
                    try:
                        self._configure(net)
                    except zmq.ZMQError as exc:
                        reason = f"configure set an option ZeroMQ refused: {exc}"
                        raise InvalidArgument(reason) from None
                net.setsockopt(zmq.MAXMSGSIZE, _max_wire_frame(net))
                self._endpoint = self._open(net, endpoint)
            except zmq.ZMQError as exc:
                self._start_error = InvalidArgument(f"cannot use endpoint {endpoint!r}: {exc}")
                return
            except BaseException as exc:  # noqa: BLE001 - the caller's thread raises it
                self._start_error = exc
                return
            finally:
                self._started.set()
            self._loop(pull, net)
        except BaseException:  # noqa: BLE001 - a bug here must not pass unseen
            nodes_logger.exception("the %s I/O thread failed; it stops", self._kind)
        finally:
            pull.close(linger=0)
            net.close(linger=0)
            if self._term_on_exit and self._owns_context:
                self._context.term()

    def _loop(self, pull: zmq.Socket[bytes], net: zmq.Socket[bytes]) -> None:
        poller = zmq.Poller()
        poller.register(pull, zmq.POLLIN)
        poller.register(net, zmq.POLLIN)
        while True:
            ready = dict(poller.poll())
            if net in ready:
                for _ in range(_BATCH):
                    try:
                        frames = net.recv_multipart(zmq.DONTWAIT, copy=self._copy)
                    except zmq.Again:
                        break
                    self._on_frames(frames)
            if pull in ready:
                for _ in range(_BATCH):
                    try:
                        command, *frames = pull.recv_multipart(zmq.DONTWAIT)
                    except zmq.Again:
                        break
                    if command == _STOP:
                        return
                    self._send_frames(frames)

    def _drop(self, peer: bytes, error: str) -> None:
        """Count a malformed frame from ``peer``; warn at most once per interval."""
        self._malformed += 1
        now = time.monotonic()
        last = self._last_logged.get(peer)
        if last is not None and now - last < self._log_interval:
            return
        self._last_logged[peer] = now
        self._last_logged.move_to_end(peer)
        while len(self._last_logged) > _LOGGED_PEERS:
            self._last_logged.popitem(last=False)
        nodes_logger.warning(
            "%s I/O: dropped a malformed frame from peer %s (%d so far): %s",
            self._kind,
            peer.hex()[:32] or "-",
            self._malformed,
            error[:200],
        )

    def _call(self, callback: Callable[..., object], *args: object) -> None:
        try:
            callback(*args)
        except BaseException:  # noqa: BLE001 - the owner's bug must not stop the loop
            self._callback_errors += 1
            nodes_logger.exception("%s I/O: the owner's callback raised", self._kind)


def _max_wire_frame(socket: zmq.Socket[bytes]) -> int:
    """The ``MAXMSGSIZE`` that lets a message of `MAX_FRAME_BYTES` in, and no longer.

    ZeroMQ applies the limit to the frame on the wire: under CURVE that is the
    encrypted box, `_CURVE_OVERHEAD` bytes longer than the message, so a limit of
    `MAX_FRAME_BYTES` would drop the connection of a peer sending a message the
    codec accepts (and read none just over its limit, to count).
    """
    if socket.getsockopt(zmq.MECHANISM) == zmq.CURVE:
        return MAX_FRAME_BYTES + _CURVE_OVERHEAD
    return MAX_FRAME_BYTES


def _encode_all(msgs: Sequence[object], allowed: tuple[type, ...], side: str) -> list[bytes]:
    if not 1 <= len(msgs) <= MAX_BATCH:
        reason = f"a batch holds 1 to {MAX_BATCH} messages, not {len(msgs)}"
        raise InvalidArgument(reason)
    for msg in msgs:
        _check_side(msg, allowed, side)
    return [encode(msg) for msg in msgs]


def _check_side(msg: object, allowed: tuple[type, ...], side: str) -> None:
    # The peer would drop it as malformed: better to say so to the sender.
    if type(msg) not in allowed:
        reason = f"a {side} may not send {type(msg).__name__}"
        raise InvalidArgument(reason)


def _user_of(frame: zmq.Frame) -> str | None:
    try:
        user = frame.get("User-Id")
    except zmq.ZMQError:  # no authenticator named it (plain TCP)
        return None
    return user if isinstance(user, str) and user else None


def _endpoint_of(socket: zmq.Socket[bytes]) -> str:
    value = socket.getsockopt(zmq.LAST_ENDPOINT)
    return value.decode() if isinstance(value, bytes) else str(value)


class SchedulerIO(_IOThread):
    """The scheduler's side: a ROUTER every node connects to, owned by one thread.

    Args:
        endpoint: Where to bind, e.g. ``"tcp://0.0.0.0:7555"``; port ``*`` or 0
            lets the system choose (read it back from `endpoint`).
        on_message: Called on the I/O thread with the node's routing id and
            each message it sent (one of `transport.protocol.NODE_MESSAGES`).
            Must not block. If it raises, the error is logged and counted.
        on_undeliverable: Called on the I/O thread with the routing id, the
            message and the reason, for a message the node could not take.
        on_malformed: Called on the I/O thread with the routing id and the
            `DecodeError` of each frame dropped as malformed (after it is
            counted): a node of another codec version gets an answer so.
        configure: Called with the ROUTER before it binds (security options).
        context: A ZeroMQ context to use (and leave open); else one is made.
        log_interval: Seconds between two warnings about one peer's
            malformed frames.

    Raises:
        InvalidArgument: ``endpoint`` is not an endpoint, or cannot be bound
            (malformed, address in use, unknown interface), or ``configure``
            set an option ZeroMQ refused.
        SchedulerUnresponsive: The I/O thread did not start in time.
    """

    _kind = "scheduler"
    _socket_type = zmq.ROUTER
    _copy = False
    """Frames, not bytes: a Hello's frame tells who holds the node's key."""

    def __init__(
        self,
        endpoint: str,
        on_message: Callable[[bytes, NodeMessage], object],
        *,
        on_undeliverable: Callable[[bytes, SchedulerMessage, Undeliverable], object]
        | None = None,
        on_malformed: Callable[[bytes, DecodeError], object] | None = None,
        configure: Configure | None = None,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
        log_interval: float = 60.0,
    ) -> None:
        self._on_message = on_message
        self._on_undeliverable = on_undeliverable
        self._on_malformed = on_malformed
        self.user: str | None = None
        """While ``on_message`` handles a `Hello`: the name the authenticator
        gave the node's key (``User-Id``; the key file's name under
        `transport.security.ServerSecurity`), or None without CURVE."""
        super().__init__(endpoint, configure=configure, context=context, log_interval=log_interval)

    def send(self, node: bytes, msg: SchedulerMessage) -> None:
        """Send ``msg`` to the node with routing id ``node``, from any thread.

        Returns once the I/O thread has the message; whether the node could
        take it is reported to ``on_undeliverable``, never raised.

        Raises:
            InvalidArgument: ``node`` is not bytes, ``msg`` is no message a
                scheduler sends (`transport.protocol.SCHEDULER_MESSAGES`), or
                it cannot be encoded.
            NotSerializable: A payload in ``msg`` is not a JSON value.
            SchedulerClosed: `close` was called (or the I/O thread failed).
            SchedulerUnresponsive: The I/O thread took nothing for 10 s.
        """
        if not isinstance(node, bytes) or not node:
            reason = f"a node's routing id is non-empty bytes, not {node!r:.60}"
            raise InvalidArgument(reason)
        _check_side(msg, SCHEDULER_MESSAGES, "scheduler")
        self._hand_off([node, encode(msg)])

    def send_many(self, node: bytes, msgs: Sequence[SchedulerMessage]) -> None:
        """Send ``msgs`` to one node as one multipart message: a frame each.

        One hand-off and one network send for them all (what a batch of runs
        costs is then mostly their encoding). At most `MAX_BATCH` at once;
        errors as `send`.
        """
        if not isinstance(node, bytes) or not node:
            reason = f"a node's routing id is non-empty bytes, not {node!r:.60}"
            raise InvalidArgument(reason)
        self._hand_off([node, *_encode_all(msgs, SCHEDULER_MESSAGES, "scheduler")])

    def _open(self, socket: zmq.Socket[bytes], endpoint: str) -> str:
        # Without it a message to a gone node vanishes without a trace.
        socket.setsockopt(zmq.ROUTER_MANDATORY, 1)
        socket.bind(endpoint)
        return _endpoint_of(socket)

    def _on_frames(self, frames: list[Any]) -> None:
        peer: bytes = frames[0].bytes
        if not 2 <= len(frames) <= MAX_BATCH + 1:
            self._drop(peer, f"{len(frames) - 1} frames, not 1 to {MAX_BATCH}")
            return
        for frame in frames[1:]:
            try:
                msg = decode_from_node(frame.buffer)
            except DecodeError as exc:
                self._drop(peer, str(exc))
                if self._on_malformed is not None:
                    self._call(self._on_malformed, peer, exc)
                continue
            self._received += 1
            if type(msg) is Hello:
                self.user = _user_of(frame)
            try:
                self._call(self._on_message, peer, msg)
            finally:
                self.user = None

    def _send_frames(self, frames: list[bytes]) -> None:
        node, *datas = frames
        reason: Undeliverable
        try:
            self._net.send_multipart(frames, zmq.DONTWAIT)
        except zmq.Again:
            reason = "full"
        except zmq.ZMQError:  # EHOSTUNREACH: ROUTER_MANDATORY and no such peer
            reason = "unreachable"
        else:
            self._sent += 1
            return
        for data in datas:
            self._undeliverable += 1
            msg = decode_from_scheduler(data)  # encoded by send(), so it decodes
            nodes_logger.warning(
                "scheduler I/O: node %s could not take %s (%s)",
                node.hex()[:32],
                type(msg).__name__,
                reason,
            )
            if self._on_undeliverable is not None:
                self._call(self._on_undeliverable, node, msg, reason)


class NodeIO(_IOThread):
    """A node's side: a DEALER connected to the scheduler, owned by one thread.

    Args:
        endpoint: The scheduler's endpoint, e.g. ``"tcp://sched.example:7555"``.
            ZeroMQ connects (and reconnects) in the background: messages sent
            before the connection is up wait in its queue.
        on_message: Called on the I/O thread with each message the scheduler
            sent (one of `transport.protocol.SCHEDULER_MESSAGES`). Must not
            block. If it raises, the error is logged and counted.
        on_undeliverable: Called on the I/O thread with a message the
            scheduler's connection could not take (its queue is full).
        identity: The routing id the scheduler sees (bytes); ZeroMQ picks one
            if None.
        configure: Called with the DEALER before it connects (security options).
        context: A ZeroMQ context to use (and leave open); else one is made.
        log_interval: Seconds between two warnings about malformed frames.

    Raises:
        InvalidArgument: ``endpoint`` is not an endpoint ZeroMQ can connect to,
            or ``identity`` or an option set by ``configure`` is refused.
        SchedulerUnresponsive: The I/O thread did not start in time.
    """

    _kind = "node"
    _socket_type = zmq.DEALER
    _PEER = b"scheduler"
    """The name the malformed-frame log gives the one peer."""

    def __init__(
        self,
        endpoint: str,
        on_message: Callable[[SchedulerMessage], object],
        *,
        on_undeliverable: Callable[[NodeMessage, Undeliverable], object] | None = None,
        identity: bytes | None = None,
        configure: Configure | None = None,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
        log_interval: float = 60.0,
    ) -> None:
        if identity is not None and not (isinstance(identity, bytes) and 0 < len(identity) <= 255):
            reason = f"identity must be 1 to 255 bytes, not {identity!r:.60}"
            raise InvalidArgument(reason)
        self._on_message = on_message
        self._on_undeliverable = on_undeliverable
        self._identity = identity
        super().__init__(endpoint, configure=configure, context=context, log_interval=log_interval)

    def send(self, msg: NodeMessage) -> None:
        """Send ``msg`` to the scheduler, from any thread.

        Returns once the I/O thread has the message; a message the connection
        could not take is reported to ``on_undeliverable``, never raised.

        Raises:
            InvalidArgument: ``msg`` is no message a node sends
                (`transport.protocol.NODE_MESSAGES`), or it cannot be encoded.
            NotSerializable: A result in ``msg`` is not a JSON value.
            SchedulerClosed: `close` was called (or the I/O thread failed).
            SchedulerUnresponsive: The I/O thread took nothing for 10 s.
        """
        _check_side(msg, NODE_MESSAGES, "node")
        self._hand_off([encode(msg)])

    def send_many(self, msgs: Sequence[NodeMessage]) -> None:
        """Send ``msgs`` to the scheduler as one multipart message: a frame each.

        At most `MAX_BATCH` at once; errors as `send`.
        """
        self._hand_off(_encode_all(msgs, NODE_MESSAGES, "node"))

    def _open(self, socket: zmq.Socket[bytes], endpoint: str) -> str:
        if self._identity is not None:
            socket.setsockopt(zmq.IDENTITY, self._identity)
        socket.connect(endpoint)
        return endpoint

    def _on_frames(self, frames: list[bytes]) -> None:
        if not 1 <= len(frames) <= MAX_BATCH:
            self._drop(self._PEER, f"{len(frames)} frames, not 1 to {MAX_BATCH}")
            return
        for frame in frames:
            try:
                msg = decode_from_scheduler(frame)
            except DecodeError as exc:
                self._drop(self._PEER, str(exc))
                continue
            self._received += 1
            self._call(self._on_message, msg)

    def _send_frames(self, frames: list[bytes]) -> None:
        try:
            self._net.send_multipart(frames, zmq.DONTWAIT)
        except zmq.Again:
            pass
        else:
            self._sent += 1
            return
        for frame in frames:
            self._undeliverable += 1
            msg = decode_from_node(frame)  # encoded by send(), so it decodes
            nodes_logger.warning(
                "node I/O: the scheduler could not take %s (full)", type(msg).__name__
            )
            if self._on_undeliverable is not None:
                self._call(self._on_undeliverable, msg, "full")

