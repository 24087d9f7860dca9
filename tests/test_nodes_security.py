"""Who gets a scheduler's jobs: the CURVE security matrix through `Scheduler.listen`.

tests/test_transport_security.py proves the matrix on bare sockets; here each
case goes through the whole listener, end to end: a peer says `Hello` and
must deliver nothing. For a refused peer the scheduler receives no message
at all (its I/O thread counts none, not even a malformed one), no node
joins `Scheduler.nodes`, and no `Welcome` comes back within a bounded
window, which starts once the peer's own socket has reported how its
handshake ended (an event, not a sleep). The positive controls go through
the same machinery and are welcomed, so the window is not merely too short.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from actors import Scheduler
from actors.messages import Hello, Run, Welcome
from tests.helpers import WAIT
from tests.nodes import Keys, RawPeer, ScriptedNode, make_keys
from transport.listener import Listener
from transport.protocol import PROTOCOL_VERSION
from transport.security import ClientSecurity, generate_keys

WINDOW = 0.5
"""Seconds a refused peer gets to be answered (it must not be)."""

AUTH = zmq.EVENT_HANDSHAKE_FAILED_AUTH
"""The peer was told no: the authenticator refused its key."""
NO_DETAIL = zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
"""The server hung up mid-handshake: no common mechanism, a box it cannot open,
or no authenticator to ask."""


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return make_keys(tmp_path, "good", "other")


@pytest.fixture
def sched() -> Iterator[Scheduler]:
    sched = Scheduler(workers=0, metrics=False)

    @sched.handler("echo")
    def echo(ctx: Any, payload: Any) -> Any:
        return payload

    sched.start()
    yield sched
    sched.shutdown(graceful=False, cancel_grace=2)


@pytest.fixture
def listener(sched: Scheduler, keys: Keys) -> Listener:
    return sched.listen(
        "tcp://127.0.0.1:0", keys=keys.authorized, server_key=keys.server_secret, heartbeat=30.0
    )


def knock(listener: Listener, security: ClientSecurity | None, node_id: str) -> RawPeer:
    """A peer that connects and says Hello at once; returns once its handshake ended."""
    peer = RawPeer(listener.endpoint, security)
    peer.say(Hello(node_id, ("echo",), 1, PROTOCOL_VERSION))
    return peer


def refused(peer: RawPeer, *events: int) -> None:
    """The peer's handshake failed as one of ``events`` and nothing came back to
    it within the window."""
    assert peer.handshake() in events
    assert peer.receive(WINDOW) is None


def received(listener: Listener) -> tuple[int, int]:
    """Messages the scheduler's I/O thread decoded, and frames it dropped."""
    stats = listener._io.stats()  # what reached the scheduler at all
    return stats.received, stats.malformed


def runs_a_job(sched: Scheduler, node: ScriptedNode, payload: object) -> None:
    handle = sched.submit("echo", payload)
    node.credit(1)
    run = node.expect(Run)
    node.finish(run, payload)
    assert handle.result(WAIT) == payload


def test_positive_control_an_admitted_key_is_welcomed_and_runs_a_job(
    sched: Scheduler, listener: Listener, keys: Keys
) -> None:
    peer = knock(listener, keys.client("other"), "raw")
    try:
        assert peer.handshake() == zmq.EVENT_HANDSHAKE_SUCCEEDED
        assert isinstance(peer.receive(WINDOW), Welcome)
    finally:
        peer.close()
    node = ScriptedNode(listener.endpoint, keys.client("good").apply)
    try:
        assert isinstance(node.hello("good"), Welcome)
        runs_a_job(sched, node, "ran")
    finally:
        node.close()
    assert received(listener) == (4, 0)  # two Hellos, a Credit, a NodeFinished


def test_an_unknown_client_key_delivers_nothing(
    sched: Scheduler, listener: Listener, keys: Keys, tmp_path: Path
) -> None:
    _, stranger = generate_keys(tmp_path / "stranger", "stranger")
    peer = knock(listener, ClientSecurity(secret_key=stranger, server_key=keys.server_public), "x")
    try:
        refused(peer, AUTH)
    finally:
        peer.close()
    assert sched.nodes() == []
    assert received(listener) == (0, 0)


def test_a_plaintext_client_delivers_nothing(sched: Scheduler, listener: Listener) -> None:
    peer = knock(listener, None, "plain")
    try:
        # Whichever side notices the mechanisms differ first: both are refusals.
        refused(peer, NO_DETAIL, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL)
    finally:
        peer.close()
    assert sched.nodes() == []
    assert received(listener) == (0, 0)


def test_a_wrong_server_key_delivers_nothing(
    sched: Scheduler, listener: Listener, keys: Keys, tmp_path: Path
) -> None:
    impostor, _ = generate_keys(tmp_path / "impostor", "impostor")
    peer = knock(listener, keys.client("good", server_key=impostor), "fooled")
    try:
        refused(peer, NO_DETAIL)
    finally:
        peer.close()
    assert sched.nodes() == []
    assert received(listener) == (0, 0)


def test_a_key_removed_then_reloaded_delivers_nothing_on_a_new_connection(
    sched: Scheduler, listener: Listener, keys: Keys
) -> None:
    node = ScriptedNode(listener.endpoint, keys.client("good").apply)
    try:
        assert isinstance(node.hello("good"), Welcome)
        (keys.authorized / "good.key").unlink()
        assert listener.reload_keys() == 1  # "other" is left
        before = received(listener)
        peer = knock(listener, keys.client("good"), "good-again")
        try:
            refused(peer, AUTH)
        finally:
            peer.close()
        assert received(listener) == before
        # As documented (Listener.reload_keys): ZAP is asked only at the handshake,
        # so the node already connected with the removed key stays, and is served.
        assert [info.node_id for info in sched.nodes()] == ["good"]
        runs_a_job(sched, node, "still served")
    finally:
        node.close()


def test_no_authenticator_running_delivers_nothing(
    sched: Scheduler, listener: Listener, keys: Keys
) -> None:
    # ZAP_DOMAIN with ZAP_ENFORCE_DOMAIN: without a handler to ask, libzmq
    # refuses every peer, an admitted key included (fail closed).
    listener._security.close()  # the authenticator's thread stops, as if it had died
    peer = knock(listener, keys.client("good"), "good")
    try:
        refused(peer, NO_DETAIL)
    finally:
        peer.close()
    assert sched.nodes() == []
    assert received(listener) == (0, 0)
