"""transport.security: key files, and who gets through a scheduler's CURVE socket.

The security matrix runs real ROUTER (scheduler) and DEALER (node) sockets on
TCP loopback. Each refused case waits for the server's socket monitor to report
the failed handshake (no sleep as synchronisation), then counts what the ROUTER
receives in a bounded window: a refused peer must deliver 0 messages. A
positive control with the same machinery delivers, so the window is not simply
too short.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from actors import InvalidArgument
from transport.security import (
    ClientSecurity,
    ServerSecurity,
    generate_keys,
    is_loopback,
    load_public_keys,
    load_secret_key,
)

WINDOW_MS = 500
"""How long a refused peer gets to deliver anything (it must deliver nothing)."""

EVENT_TIMEOUT_MS = 10_000
"""Bound on waiting for the handshake's monitor event; only hit when broken."""

HANDSHAKE_FAILED = (
    zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
)


@dataclass
class Keys:
    server_secret: Path
    server_public: Path
    node_secret: Path
    node_public: Path
    authorized: Path
    """The scheduler's directory of admitted node public keys (holds node's)."""


@pytest.fixture
def context() -> Iterator[zmq.Context[zmq.Socket[bytes]]]:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    server_public, server_secret = generate_keys(tmp_path / "scheduler", "scheduler")
    node_public, node_secret = generate_keys(tmp_path / "node", "node1")
    authorized = tmp_path / "nodes"
    authorized.mkdir()
    (authorized / "node1.key").write_bytes(node_public.read_bytes())
    return Keys(server_secret, server_public, node_secret, node_public, authorized)


@pytest.fixture
def server(context: zmq.Context[zmq.Socket[bytes]], keys: Keys) -> Iterator[ServerSecurity]:
    security = ServerSecurity(context, secret_key=keys.server_secret, authorized=keys.authorized)
    yield security
    security.close()


class Link:
    """A ROUTER bound on loopback with a monitor, and the DEALERs that dial it."""

    def __init__(
        self,
        context: zmq.Context[zmq.Socket[bytes]],
        secure: Callable[[zmq.Socket[bytes], str], None] | None,
    ) -> None:
        self.context = context
        # Held here: a DEALER nobody references is collected, closing it.
        self.dealers: list[zmq.Socket[bytes]] = []
        self.router: zmq.Socket[bytes] = context.socket(zmq.ROUTER)
        self.router.linger = 0
        if secure is not None:
            secure(self.router, "tcp://127.0.0.1:0")
        self.monitor = self.router.get_monitor_socket(
            zmq.EVENT_HANDSHAKE_SUCCEEDED | HANDSHAKE_FAILED
        )
        port = self.router.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = f"tcp://127.0.0.1:{port}"

    def dial(self, secure: Callable[[zmq.Socket[bytes]], None] | None) -> zmq.Socket[bytes]:
        """A DEALER connected to the ROUTER that has sent one message."""
        dealer: zmq.Socket[bytes] = self.context.socket(zmq.DEALER)
        dealer.linger = 0
        if secure is not None:
            secure(dealer)
        dealer.connect(self.endpoint)
        dealer.send(b"hello")
        self.dealers.append(dealer)
        return dealer

    def handshake(self) -> int:
        """The server's next handshake outcome (a monitor event), waited for with a bound."""
        assert self.monitor.poll(EVENT_TIMEOUT_MS), "no handshake event on the server"
        event: int = recv_monitor_message(self.monitor)["event"]
        return event

    def delivered(self) -> int:
        """How many messages the ROUTER receives within WINDOW_MS."""
        count = 0
        while self.router.poll(WINDOW_MS):
            self.router.recv_multipart()
            count += 1
        return count


def node_curve(
    keys: Keys, *, secret: Path | None = None, server_key: Path | None = None
) -> Callable[[zmq.Socket[bytes]], None]:
    security = ClientSecurity(
        secret_key=secret or keys.node_secret, server_key=server_key or keys.server_public
    )
    return security.apply


# ---------------------------------------------------------------- the security matrix


def test_positive_control_an_authorized_node_delivers(
    context: zmq.Context[zmq.Socket[bytes]], keys: Keys, server: ServerSecurity
) -> None:
    link = Link(context, server.apply)
    link.dial(node_curve(keys))
    assert link.handshake() == zmq.EVENT_HANDSHAKE_SUCCEEDED
    assert link.delivered() == 1


def test_unknown_client_key_delivers_nothing(
    context: zmq.Context[zmq.Socket[bytes]], keys: Keys, server: ServerSecurity, tmp_path: Path
) -> None:
    _, stranger = generate_keys(tmp_path / "stranger", "stranger")
    link = Link(context, server.apply)
    link.dial(node_curve(keys, secret=stranger))
    assert link.handshake() == zmq.EVENT_HANDSHAKE_FAILED_AUTH
    assert link.delivered() == 0


def test_plaintext_client_delivers_nothing(
    context: zmq.Context[zmq.Socket[bytes]], server: ServerSecurity
) -> None:
    link = Link(context, server.apply)
    link.dial(None)
    assert link.handshake() == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    assert link.delivered() == 0


def test_wrong_server_key_delivers_nothing(
    context: zmq.Context[zmq.Socket[bytes]], keys: Keys, server: ServerSecurity, tmp_path: Path
) -> None:
    impostor, _ = generate_keys(tmp_path / "impostor", "impostor")
    link = Link(context, server.apply)
    link.dial(node_curve(keys, server_key=impostor))
    assert link.handshake() == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    assert link.delivered() == 0


def test_removed_key_after_reload_delivers_nothing_on_a_new_connection(
    context: zmq.Context[zmq.Socket[bytes]], keys: Keys, server: ServerSecurity
) -> None:
    link = Link(context, server.apply)
    connected = link.dial(node_curve(keys))
    assert link.handshake() == zmq.EVENT_HANDSHAKE_SUCCEEDED
    assert link.delivered() == 1

    (keys.authorized / "node1.key").unlink()
    assert server.reload() == frozenset()

    link.dial(node_curve(keys))
    assert link.handshake() == zmq.EVENT_HANDSHAKE_FAILED_AUTH
    assert link.delivered() == 0
    # As documented: ZAP is asked only at the handshake, so the peer that was
    # already connected stays connected; cutting it off is the protocol's job.
    connected.send(b"still here")
    assert link.delivered() == 1


def test_reload_admits_a_key_added_later(
    context: zmq.Context[zmq.Socket[bytes]], keys: Keys, server: ServerSecurity, tmp_path: Path
) -> None:
    public, secret = generate_keys(tmp_path / "node2", "node2")
    link = Link(context, server.apply)
    link.dial(node_curve(keys, secret=secret))
    assert link.handshake() == zmq.EVENT_HANDSHAKE_FAILED_AUTH

    (keys.authorized / "node2.key").write_bytes(public.read_bytes())
    server.reload()
    link.dial(node_curve(keys, secret=secret))
    # The first DEALER keeps retrying too: wait for a success, whoever it is.
    while (event := link.handshake()) != zmq.EVENT_HANDSHAKE_SUCCEEDED:
        assert event == zmq.EVENT_HANDSHAKE_FAILED_AUTH
    assert link.delivered() >= 1


def test_stopped_authenticator_rejects_everyone(
    context: zmq.Context[zmq.Socket[bytes]], keys: Keys, server: ServerSecurity
) -> None:
    link = Link(context, server.apply)
    server.close()
    # The key is authorized: only the missing authenticator can refuse it.
    link.dial(node_curve(keys))
    assert link.handshake() == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    assert link.delivered() == 0


def test_no_authenticator_ever_rejects_everyone(
    context: zmq.Context[zmq.Socket[bytes]], keys: Keys, tmp_path: Path
) -> None:
    """The libzmq behaviour the design rests on: ZAP_DOMAIN + ZAP_ENFORCE_DOMAIN and
    no ZAP handler in the context refuses even an authorized key."""
    other: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        with ServerSecurity(
            other, secret_key=keys.server_secret, authorized=keys.authorized
        ) as elsewhere:
            # Options applied from an authenticator running in *another* context.
            link = Link(context, elsewhere.apply)
            link.dial(node_curve(keys))
            assert link.handshake() == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
            assert link.delivered() == 0
    finally:
        other.destroy(linger=0)


# ---------------------------------------------------------------- insecure mode


def test_insecure_on_a_non_loopback_address_is_refused(
    context: zmq.Context[zmq.Socket[bytes]],
) -> None:
    security = ServerSecurity(context, insecure=True)
    socket: zmq.Socket[bytes] = context.socket(zmq.ROUTER)
    for endpoint in ("tcp://0.0.0.0:7555", "tcp://*:7555", "tcp://10.1.2.3:7555"):
        with pytest.raises(InvalidArgument, match="not a loopback"):
            security.apply(socket, endpoint)
    socket.close(linger=0)


def test_insecure_on_loopback_works_and_warns(
    context: zmq.Context[zmq.Socket[bytes]], caplog: pytest.LogCaptureFixture
) -> None:
    security = ServerSecurity(context, insecure=True)
    with caplog.at_level(logging.WARNING, logger="postroom"):
        link = Link(context, security.apply)
    assert any("WITHOUT authentication" in r.getMessage() for r in caplog.records)
    link.dial(None)
    assert link.handshake() == zmq.EVENT_HANDSHAKE_SUCCEEDED
    assert link.delivered() == 1


def test_no_keys_without_insecure_is_refused(
    context: zmq.Context[zmq.Socket[bytes]], keys: Keys
) -> None:
    with pytest.raises(InvalidArgument, match="insecure=True"):
        ServerSecurity(context)
    with pytest.raises(InvalidArgument, match="insecure=True"):
        ServerSecurity(context, secret_key=keys.server_secret)
    with pytest.raises(InvalidArgument, match="takes no keys"):
        ServerSecurity(context, insecure=True, authorized=keys.authorized)


def test_a_second_authenticator_in_one_context_is_refused(
    context: zmq.Context[zmq.Socket[bytes]], keys: Keys, server: ServerSecurity
) -> None:
    with pytest.raises(InvalidArgument, match="another one already runs"):
        ServerSecurity(context, secret_key=keys.server_secret, authorized=keys.authorized)


def test_apply_after_close_is_refused(
    context: zmq.Context[zmq.Socket[bytes]], server: ServerSecurity
) -> None:
    server.close()
    server.close()  # idempotent
    socket: zmq.Socket[bytes] = context.socket(zmq.ROUTER)
    with pytest.raises(InvalidArgument, match="closed"):
        server.apply(socket, "tcp://127.0.0.1:0")
    socket.close(linger=0)


@pytest.mark.parametrize(
    ("endpoint", "loopback"),
    [
        ("tcp://127.0.0.1:7555", True),
        ("tcp://127.9.9.9:7555", True),
        ("tcp://localhost:7555", True),
        ("tcp://[::1]:7555", True),
        ("ipc:///tmp/postroom.sock", True),
        ("inproc://nodes", True),
        ("tcp://0.0.0.0:7555", False),
        ("tcp://*:7555", False),
        ("tcp://[::]:7555", False),
        ("tcp://eth0:7555", False),
        ("tcp://192.168.1.5:7555", False),
        ("tcp://127.0.0.1:0;10.0.0.1:7555", False),
        ("pgm://127.0.0.1;239.192.1.1:5555", False),
        ("127.0.0.1:7555", False),
    ],
)
def test_is_loopback(endpoint: str, loopback: bool) -> None:
    assert is_loopback(endpoint) is loopback


# ---------------------------------------------------------------- key files


def test_secret_file_is_0600_and_directory_0700_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)  # the most permissive umask: the modes must not come from it
    try:
        public, secret = generate_keys(tmp_path / "new" / "keys", "node")
    finally:
        os.umask(old)
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(secret.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(public.stat().st_mode) == 0o644
    pub, sec = load_secret_key(secret)
    assert load_public_keys(public.parent) == {pub}
    assert zmq.curve_public(sec) == pub


def test_existing_keys_are_not_overwritten_unless_asked(tmp_path: Path) -> None:
    public, secret = generate_keys(tmp_path, "node")
    before = load_secret_key(secret)
    with pytest.raises(InvalidArgument, match="exists"):
        generate_keys(tmp_path, "node")
    assert load_secret_key(secret) == before

    secret.chmod(0o644)  # a loosened old file must not pass its mode on
    assert generate_keys(tmp_path, "node", overwrite=True) == (public, secret)
    assert load_secret_key(secret) != before
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node.key", "node.key_secret"]


@pytest.mark.parametrize("name", ["", "..", "a/b", "nul\0"])
def test_a_key_name_must_be_a_plain_file_name(tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidArgument, match="key name"):
        generate_keys(tmp_path, name)


def test_key_errors_are_invalid_argument_naming_the_file(tmp_path: Path) -> None:
    public, secret = generate_keys(tmp_path, "node")
    with pytest.raises(InvalidArgument, match=r"node\.key holds no secret-key"):
        load_secret_key(public)
    with pytest.raises(InvalidArgument, match=r"cannot read key file .*missing"):
        load_secret_key(tmp_path / "missing")
    with pytest.raises(InvalidArgument, match="cannot read key directory"):
        load_public_keys(tmp_path / "nowhere")

    broken = tmp_path / "broken.key"
    broken.write_text('curve\n    public-key = "not a key"\n')
    with pytest.raises(InvalidArgument, match=r"broken\.key: public-key is not"):
        load_public_keys(tmp_path)
    broken.write_bytes(os.urandom(64))
    with pytest.raises(InvalidArgument, match=r"broken\.key"):
        load_public_keys(tmp_path)
    with pytest.raises(InvalidArgument, match=r"broken\.key"):
        ClientSecurity(secret_key=secret, server_key=broken)


def test_a_bad_key_file_on_reload_keeps_the_old_keys(
    context: zmq.Context[zmq.Socket[bytes]], keys: Keys, server: ServerSecurity
) -> None:
    before = server.authorized_keys
    (keys.authorized / "typo.key").write_text("nonsense\n")
    with pytest.raises(InvalidArgument, match=r"typo\.key"):
        server.reload()
    assert server.authorized_keys == before
    assert len(before) == 1


def test_the_authenticator_answers_only_an_authorized_curve_key_in_its_domain(
    context: zmq.Context[zmq.Socket[bytes]], keys: Keys, server: ServerSecurity
) -> None:
    """ZAP requests (RFC 27) straight to the handler, including ones libzmq never sends."""
    node_key = zmq.utils.z85.decode(load_secret_key(keys.node_secret)[0])
    stranger = zmq.utils.z85.decode(zmq.curve_keypair()[0])
    zap: zmq.Socket[bytes] = context.socket(zmq.REQ)
    zap.linger = 0
    zap.connect("inproc://zeromq.zap.01")

    def ask(*frames: bytes) -> tuple[bytes, bytes]:
        zap.send_multipart(list(frames))
        assert zap.poll(EVENT_TIMEOUT_MS), "the authenticator did not answer"
        reply = zap.recv_multipart()
        return reply[2], reply[4]

    head = (b"1.0", b"7")
    # The user id is the key's name: how the scheduler names the node.
    name = keys.node_secret.name.removesuffix(".key_secret").encode()
    assert ask(*head, b"postroom", b"127.0.0.1", b"", b"CURVE", node_key) == (b"200", name)
    assert ask(*head, b"postroom", b"127.0.0.1", b"", b"CURVE", stranger)[0] == b"400"
    assert ask(*head, b"other", b"127.0.0.1", b"", b"CURVE", node_key)[0] == b"400"
    assert ask(*head, b"postroom", b"127.0.0.1", b"", b"NULL")[0] == b"400"
    assert ask(*head, b"postroom", b"127.0.0.1", b"", b"CURVE", b"short")[0] == b"400"
    assert ask(b"1.0")[0] == b"400"
    assert ask(b"2.0", b"7", b"postroom", b"", b"", b"CURVE", node_key)[0] == b"400"
    # Still serving after all that.
    assert ask(*head, b"postroom", b"127.0.0.1", b"", b"CURVE", node_key)[0] == b"200"
    zap.close()
