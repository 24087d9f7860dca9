"""A scripted worker node for the scheduler side's tests: real sockets, no handlers.

`ScriptedNode` speaks the node protocol through a real `NodeIO` over loopback
and does only what the test tells it, so a test can hold a run, answer with
a stale lease, fall silent or send garbage, and see exactly what the
scheduler sends back. Given ``configure`` (a `ClientSecurity`'s ``apply``) it
speaks CURVE.

For the security and fuzz tests, `make_keys` writes a scheduler keypair and
admitted node keypairs, and `RawPeer` is a bare DEALER that sends any bytes
(no encoding, so frames no node would send) and reports, from its socket
monitor, how its handshake ended.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import zmq
from zmq.utils.monitor import recv_monitor_message

from actors.messages import (
    Bye,
    Credit,
    Heartbeat,
    Hello,
    NodeFinished,
    Outcome,
    Run,
)
from transport.codec import encode
from transport.io import NodeIO
from transport.protocol import (
    PROTOCOL_VERSION,
    NodeMessage,
    SchedulerMessage,
    decode_from_scheduler,
)
from transport.security import ClientSecurity, generate_keys

WAIT = 10.0
"""Seconds a test waits for a message that should come."""

T = TypeVar("T")


class ScriptedNode:
    """A node whose every message is the test's; what it receives waits in ``inbox``."""

    def __init__(
        self,
        endpoint: str,
        configure: Callable[[zmq.Socket[bytes]], None] | None = None,
    ) -> None:
        """Connect to ``endpoint``; ``configure`` sets socket options first
        (``ClientSecurity(...).apply`` for a CURVE node)."""
        self.inbox: queue.Queue[SchedulerMessage] = queue.Queue()
        self.io = NodeIO(endpoint, self.inbox.put, configure=configure)

    def send(self, message: NodeMessage) -> None:
        self.io.send(message)

    def hello(
        self,
        node_id: str = "n1",
        handlers: tuple[str, ...] = ("echo",),
        capacity: int = 1,
        queue: str = "default",
        version: int = PROTOCOL_VERSION,
    ) -> Any:
        """Say Hello; return the answer (Welcome or Refused)."""
        self.send(Hello(node_id, handlers, capacity, version, queue))
        return self.next_not(Heartbeat)

    def credit(self, slots: int) -> None:
        self.send(Credit(slots))

    def next(self, timeout: float = WAIT) -> SchedulerMessage:
        return self.inbox.get(timeout=timeout)

    def next_not(self, *skip: type, timeout: float = WAIT) -> Any:
        """The next message of a type not in ``skip`` (heartbeats, usually)."""
        while True:
            message = self.inbox.get(timeout=timeout)
            if type(message) not in skip:
                return message

    def expect(self, kind: type[T], timeout: float = WAIT) -> T:
        """The next message but heartbeats, which must be a ``kind``."""
        message = self.next_not(Heartbeat, timeout=timeout)
        assert type(message) is kind, f"expected {kind.__name__}, got {message!r}"
        return message  # type: ignore[return-value]

    def nothing_but_heartbeats(self, seconds: float) -> None:
        """Assert that only heartbeats come for ``seconds`` (a negative check)."""
        try:
            message = self.next_not(Heartbeat, timeout=seconds)
        except queue.Empty:
            return
        raise AssertionError(f"expected nothing, got {message!r}")

    def finish(self, run: Run, result: Any = None, **outcome: Any) -> None:
        """Answer ``run`` (completed with ``result`` unless ``outcome`` says otherwise)."""
        fields = {"status": "completed", "result": result, **outcome}
        self.send(NodeFinished(run.job.id, run.job.attempt, run.lease, Outcome(**fields)))

    def bye(self, node_id: str = "n1") -> None:
        self.send(Bye(node_id))

    def close(self) -> None:
        self.io.close()


# --- CURVE keys and a raw peer, for the fuzz and security tests -----------------------


@dataclass(frozen=True)
class Keys:
    """A scheduler keypair, node keypairs, and the directory of admitted node keys."""

    server_secret: Path
    server_public: Path
    authorized: Path
    """Holds the public key of every node named to `make_keys`."""
    secrets: dict[str, Path]
    """Each node's secret key file, by name."""

    def client(self, name: str, *, server_key: Path | None = None) -> ClientSecurity:
        """CURVE for node ``name`` (against the real server key unless told another)."""
        return ClientSecurity(
            secret_key=self.secrets[name], server_key=server_key or self.server_public
        )


def make_keys(directory: Path, *names: str) -> Keys:
    """Write a scheduler keypair and a keypair per name; admit every name's key."""
    server_public, server_secret = generate_keys(directory / "scheduler", "scheduler")
    authorized = directory / "nodes"
    authorized.mkdir()
    secrets = {}
    for name in names:
        public, secret = generate_keys(directory / "node", name)
        (authorized / f"{name}.key").write_bytes(public.read_bytes())
        secrets[name] = secret
    return Keys(server_secret, server_public, authorized, secrets)


class RawPeer:
    """A bare DEALER: sends whatever frames the test gives, reads what comes back.

    Unlike `ScriptedNode` it encodes nothing, so it can send bytes no node would;
    it owns its context, and `close` destroys it.
    """

    def __init__(self, endpoint: str, security: ClientSecurity | None) -> None:
        self.context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.socket: zmq.Socket[bytes] = self.context.socket(zmq.DEALER)
        self.socket.linger = 0
        if security is not None:
            security.apply(self.socket)
        self.monitor = self.socket.get_monitor_socket(_HANDSHAKE_ENDS)
        self.socket.connect(endpoint)

    def send(self, *frames: bytes) -> None:
        self.socket.send_multipart(list(frames))

    def say(self, message: NodeMessage) -> None:
        self.send(encode(message))

    def handshake(self, timeout: float = WAIT) -> int:
        """How this peer's next handshake ended (a monitor event), waited for with a bound."""
        assert self.monitor.poll(int(timeout * 1000)), "no handshake event on the peer"
        event: int = recv_monitor_message(self.monitor)["event"]
        return event

    def receive(self, timeout: float = WAIT) -> SchedulerMessage | None:
        """The next message but heartbeats, or None if none comes within ``timeout``."""
        deadline = time.monotonic() + timeout
        while self.socket.poll(max(0, int((deadline - time.monotonic()) * 1000))):
            message = decode_from_scheduler(self.socket.recv())
            if type(message) is not Heartbeat:
                return message
        return None

    def close(self) -> None:
        self.monitor.close(linger=0)
        self.socket.close(linger=0)
        self.context.term()


_HANDSHAKE_ENDS = (
    zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_DISCONNECTED
)
"""What ends a handshake, seen from the peer: success, a failure, or the server hanging up."""
