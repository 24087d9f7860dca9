"""Tests for `transport.io`: the I/O threads of the node protocol, on real
sockets over tcp loopback.

Every wait is on a queue or an event with a bound (`helpers.WAIT`); order on one
connection is ZeroMQ's guarantee, so a good message sent after bad ones is the
marker that the bad ones were handled.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import msgpack
import pytest
import zmq

from actors._errors import InvalidArgument, SchedulerClosed
from actors._policy.payloads import MAX_MESSAGE_BYTES
from actors.messages import (
    Credit,
    Heartbeat,
    Hello,
    Job,
    Run,
    Welcome,
)
from tests.helpers import WAIT, wait_until
from transport import VERSION, encode
from transport.io import MAX_BATCH, IOStats, NodeIO, SchedulerIO
from transport.protocol import PROTOCOL_VERSION, NodeMessage, SchedulerMessage

LOOPBACK = "tcp://127.0.0.1:*"


def _hello(node_id: str) -> Hello:
    return Hello(node_id=node_id, handlers=("add",), capacity=2, version=PROTOCOL_VERSION)


def _welcome(node_id: str) -> Welcome:
    return Welcome(node_id=node_id, heartbeat=1.0, lease=5.0)


@dataclass
class Inbox:
    """What a scheduler's I/O delivered, and what it could not send."""

    got: queue.Queue[tuple[bytes, NodeMessage]] = field(default_factory=queue.Queue)
    lost: queue.Queue[tuple[bytes, SchedulerMessage, str]] = field(default_factory=queue.Queue)

    def on_message(self, node: bytes, msg: NodeMessage) -> None:
        self.got.put((node, msg))

    def on_undeliverable(self, node: bytes, msg: SchedulerMessage, reason: str) -> None:
        self.lost.put((node, msg, reason))

    def next(self) -> tuple[bytes, NodeMessage]:
        return self.got.get(timeout=WAIT)


@pytest.fixture
def inbox() -> Inbox:
    return Inbox()


@pytest.fixture
def sched(inbox: Inbox) -> Iterator[SchedulerIO]:
    io = SchedulerIO(LOOPBACK, inbox.on_message, on_undeliverable=inbox.on_undeliverable)
    yield io
    io.close()


@pytest.fixture
def nodes(sched: SchedulerIO) -> Iterator[_Nodes]:
    made = _Nodes(sched.endpoint)
    yield made
    for node in made.all:
        node.close()


class _Nodes:
    """Makes `NodeIO`s connected to the scheduler; each has a queue of what it got."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.all: list[NodeIO] = []
        self.inbox: dict[bytes, queue.Queue[SchedulerMessage]] = {}

    def __call__(self, identity: bytes) -> NodeIO:
        got: queue.Queue[SchedulerMessage] = queue.Queue()
        node = NodeIO(self.endpoint, got.put, identity=identity)
        self.all.append(node)
        self.inbox[identity] = got
        return node

    def next(self, identity: bytes) -> SchedulerMessage:
        return self.inbox[identity].get(timeout=WAIT)


def _greet(inbox: Inbox, sched: SchedulerIO, nodes: _Nodes, identity: bytes) -> NodeIO:
    """A node that said Hello and got its Welcome."""
    node = nodes(identity)
    node.send(_hello(identity.decode()))
    assert inbox.next() == (identity, _hello(identity.decode()))
    sched.send(identity, _welcome(identity.decode()))
    assert nodes.next(identity) == _welcome(identity.decode())
    return node


# --- the exchange ---------------------------------------------------------------------


def test_endpoint_reports_the_port_chosen_for_star_and_zero(inbox: Inbox) -> None:
    for asked in ("tcp://127.0.0.1:*", "tcp://127.0.0.1:0"):
        with SchedulerIO(asked, inbox.on_message) as io:
            host, port = io.endpoint.rsplit(":", 1)
            assert host == "tcp://127.0.0.1"
            assert int(port) > 0


def test_hello_reaches_the_scheduler_with_the_node_identity_and_welcome_goes_back(
    inbox: Inbox, sched: SchedulerIO, nodes: _Nodes
) -> None:
    node = nodes(b"node-a")
    node.send(_hello("node-a"))
    assert inbox.next() == (b"node-a", _hello("node-a"))
    sched.send(b"node-a", _welcome("node-a"))
    assert nodes.next(b"node-a") == _welcome("node-a")
    # The send is counted just after ZeroMQ takes it: maybe a moment after
    # the node has it.
    expected = IOStats(received=1, sent=1, malformed=0, undeliverable=0, callback_errors=0)
    wait_until(lambda: sched.stats() == expected, "the Welcome counted")
    assert node.stats().received == 1
    assert node.stats().sent == 1


def test_many_messages_keep_their_order_both_ways(
    inbox: Inbox, sched: SchedulerIO, nodes: _Nodes
) -> None:
    count = 500  # within ZeroMQ's queue of 1,000 a peer: a burst past it is "full"
    node = _greet(inbox, sched, nodes, b"node-a")

    def talk() -> None:  # from another thread than the test's, as an actor would
        for i in range(count):
            node.send(Credit(slots=i + 1))

    sender = threading.Thread(target=talk)
    sender.start()
    for i in range(count):
        sched.send(b"node-a", Heartbeat(sent_at=float(i)))
    sender.join()
    assert [inbox.next() for _ in range(count)] == [
        (b"node-a", Credit(slots=i + 1)) for i in range(count)
    ]
    assert [nodes.next(b"node-a") for _ in range(count)] == [
        Heartbeat(sent_at=float(i)) for i in range(count)
    ]


def test_a_batch_is_one_network_message_of_many_arriving_in_order(
    inbox: Inbox, sched: SchedulerIO, nodes: _Nodes
) -> None:
    node = _greet(inbox, sched, nodes, b"node-a")
    node_sent, sched_sent = node.stats().sent, sched.stats().sent
    node.send_many([Credit(slots=i + 1) for i in range(MAX_BATCH)])
    sched.send_many(b"node-a", [Heartbeat(sent_at=float(i)) for i in range(MAX_BATCH)])
    assert [inbox.next() for _ in range(MAX_BATCH)] == [
        (b"node-a", Credit(slots=i + 1)) for i in range(MAX_BATCH)
    ]
    assert [nodes.next(b"node-a") for _ in range(MAX_BATCH)] == [
        Heartbeat(sent_at=float(i)) for i in range(MAX_BATCH)
    ]
    # One send each way, not MAX_BATCH (counted just after the send, so maybe
    # a moment after the peer has the messages).
    wait_until(
        lambda: (node.stats().sent, sched.stats().sent) == (node_sent + 1, sched_sent + 1),
        "one send each way",
    )
    for bad in ([], [Credit(slots=1)] * (MAX_BATCH + 1)):
        with pytest.raises(InvalidArgument):
            node.send_many(bad)
    with pytest.raises(InvalidArgument):
        sched.send_many(b"node-a", [Credit(slots=1)])  # a node's message, not the scheduler's


def test_two_nodes_are_addressed_separately(
    inbox: Inbox, sched: SchedulerIO, nodes: _Nodes
) -> None:
    a = nodes(b"node-a")
    b = nodes(b"node-b")
    a.send(_hello("node-a"))
    b.send(_hello("node-b"))
    assert {inbox.next(), inbox.next()} == {
        (b"node-a", _hello("node-a")),
        (b"node-b", _hello("node-b")),
    }
    sched.send(b"node-b", _welcome("node-b"))
    sched.send(b"node-a", _welcome("node-a"))
    sched.send(b"node-a", Heartbeat(sent_at=1.0))
    sched.send(b"node-b", Heartbeat(sent_at=2.0))
    # Each node's next two messages are its own: neither got the other's Welcome.
    assert [nodes.next(b"node-a"), nodes.next(b"node-a")] == [
        _welcome("node-a"),
        Heartbeat(sent_at=1.0),
    ]
    assert [nodes.next(b"node-b"), nodes.next(b"node-b")] == [
        _welcome("node-b"),
        Heartbeat(sent_at=2.0),
    ]


# --- what goes wrong is reported, not raised --------------------------------------------


def test_a_send_to_a_node_that_never_connected_is_reported_and_the_loop_goes_on(
    inbox: Inbox, sched: SchedulerIO, nodes: _Nodes
) -> None:
    sched.send(b"nobody", _welcome("nobody"))  # returns: the I/O thread reports it
    assert inbox.lost.get(timeout=WAIT) == (b"nobody", _welcome("nobody"), "unreachable")
    assert sched.stats().undeliverable == 1
    assert sched.stats().sent == 0
    _greet(inbox, sched, nodes, b"node-a")
    assert sched.stats().undeliverable == 1


def test_a_send_to_a_node_that_left_is_reported(
    inbox: Inbox, sched: SchedulerIO, nodes: _Nodes
) -> None:
    node = _greet(inbox, sched, nodes, b"node-a")
    node.close()
    # ZeroMQ forgets the peer when it sees the disconnect, a moment after close.
    for _ in range(int(WAIT / 0.01)):
        sched.send(b"node-a", Heartbeat(sent_at=0.0))
        try:
            lost = inbox.lost.get(timeout=0.01)
        except queue.Empty:
            continue
        assert lost == (b"node-a", Heartbeat(sent_at=0.0), "unreachable")
        break
    else:
        pytest.fail("a send to a node that left was never reported")


def test_a_message_the_connection_cannot_queue_is_reported_as_full() -> None:
    lost: queue.Queue[tuple[NodeMessage, str]] = queue.Queue()

    def small_queue(socket: zmq.Socket[bytes]) -> None:
        socket.setsockopt(zmq.SNDHWM, 5)

    # Nobody listens on the port: the messages wait in the connection's queue.
    context = zmq.Context()
    probe = context.socket(zmq.ROUTER)
    port = probe.bind_to_random_port("tcp://127.0.0.1")
    probe.close(linger=0)
    context.term()
    node = NodeIO(
        f"tcp://127.0.0.1:{port}",
        print,
        on_undeliverable=lambda msg, reason: lost.put((msg, reason)),
        configure=small_queue,
    )
    try:
        for i in range(50):
            node.send(Credit(slots=i + 1))
        assert lost.get(timeout=WAIT)[1] == "full"
    finally:
        node.close()  # the 50 hand-offs are handled before the stop behind them
    stats = node.stats()
    assert 0 < stats.sent <= 10
    assert stats.sent + stats.undeliverable == 50
    assert stats.undeliverable == lost.qsize() + 1


def test_a_callback_that_raises_is_counted_and_the_loop_goes_on(inbox: Inbox) -> None:
    calls: list[NodeMessage] = []

    def flaky(node: bytes, msg: NodeMessage) -> None:
        calls.append(msg)
        if len(calls) == 1:
            raise RuntimeError("the owner's bug")
        inbox.on_message(node, msg)

    with SchedulerIO(LOOPBACK, flaky) as sched, NodeIO(sched.endpoint, print) as node:
        node.send(_hello("node-a"))
        node.send(Credit(slots=1))
        assert inbox.next()[1] == Credit(slots=1)
        assert sched.stats().callback_errors == 1
        assert sched.stats().received == 2


def _garbage() -> list[list[bytes]]:
    """Multipart messages a hostile or broken peer might send, none a node message."""
    rng = random.Random(11)
    run = Run(job=Job(id="j", handler="add", payload=None, seq=1), lease=1)
    frames = [[rng.randbytes(rng.randrange(1, 300))] for _ in range(20)]
    frames += [
        [b""],  # empty
        [encode(run)],  # valid, but only a scheduler sends Run
        [encode(_welcome("x"))],  # likewise
        [msgpack.packb([VERSION + 1, "Hello", ["x", ["add"], 1, 1]])],  # another version
        [msgpack.packb([VERSION, "Hello", ["x", "add", "one", 1]])],  # wrong schema
        [b"\x91" * 100_000 + b"\xc0"],  # nested 100,000 deep
        [b"\x00" * (MAX_MESSAGE_BYTES + 1)],  # over the size limit
        [encode(Heartbeat(0.0))] * (MAX_BATCH + 1),  # more frames than a batch holds
    ]
    return frames


def test_malformed_frames_are_counted_and_dropped_while_a_good_node_is_served(
    inbox: Inbox, sched: SchedulerIO, nodes: _Nodes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="postroom.nodes")
    garbage = _garbage()
    context = zmq.Context()
    raw = context.socket(zmq.DEALER)
    raw.setsockopt(zmq.IDENTITY, b"raw")
    raw.setsockopt(zmq.LINGER, 0)
    try:
        raw.connect(sched.endpoint)
        for frames in garbage:
            raw.send_multipart(frames)
        good = _greet(inbox, sched, nodes, b"node-a")  # served while the garbage arrives
        raw.send(encode(_hello("raw")))  # after all of it on the same connection
        assert inbox.next() == (b"raw", _hello("raw"))
    finally:
        raw.close()
        context.term()
    assert sched.stats().malformed == len(garbage)
    assert sched.stats().received == 2
    good.send(Credit(slots=1))
    assert inbox.next() == (b"node-a", Credit(slots=1))
    warnings = [r for r in caplog.records if r.name == "postroom.nodes"]
    assert len(warnings) == 1  # one per peer per log_interval, not one per frame
    assert b"raw".hex() in warnings[0].getMessage()


def test_a_node_drops_malformed_frames_from_the_scheduler_side() -> None:
    context = zmq.Context()
    raw = context.socket(zmq.ROUTER)
    raw.setsockopt(zmq.LINGER, 0)
    got: queue.Queue[SchedulerMessage] = queue.Queue()
    try:
        port = raw.bind_to_random_port("tcp://127.0.0.1")
        with NodeIO(f"tcp://127.0.0.1:{port}", got.put, identity=b"n") as node:
            node.send(_hello("n"))  # so the raw ROUTER learns the node's id
            assert raw.recv_multipart() == [b"n", encode(_hello("n"))]
            raw.send_multipart([b"n", encode(_hello("n"))])  # only a node sends Hello
            raw.send_multipart([b"n", b"\xff\x00"])
            raw.send_multipart([b"n", encode(_welcome("n"))])
            assert got.get(timeout=WAIT) == _welcome("n")
            assert node.stats().malformed == 2
            assert node.stats().received == 1
    finally:
        raw.close()
        context.term()


# --- errors at the boundary, configure, close --------------------------------------------


@pytest.mark.parametrize(
    "endpoint",
    ["nonsense", "tcp://127.0.0.1:notaport", "bogus://x", "tcp://256.1.1.1:7555", 7555],
)
def test_a_bad_endpoint_is_invalid_argument_and_leaves_no_thread(
    inbox: Inbox, endpoint: object
) -> None:
    with pytest.raises(InvalidArgument):
        SchedulerIO(endpoint, inbox.on_message)  # type: ignore[arg-type]


def test_an_address_in_use_is_invalid_argument(inbox: Inbox, sched: SchedulerIO) -> None:
    with pytest.raises(InvalidArgument, match="in use"):
        SchedulerIO(sched.endpoint, inbox.on_message)


def test_a_node_cannot_connect_to_a_bad_endpoint() -> None:
    with pytest.raises(InvalidArgument):
        NodeIO("tcp://127.0.0.1:notaport", print)
    with pytest.raises(InvalidArgument):
        NodeIO("tcp://127.0.0.1:1", print, identity=b"")


def test_configure_gets_the_socket_on_the_io_thread_before_it_binds(inbox: Inbox) -> None:
    seen: list[tuple[int, str, str]] = []

    def configure(socket: zmq.Socket[bytes]) -> None:
        bound = socket.getsockopt_string(zmq.LAST_ENDPOINT)
        seen.append((socket.type, bound, threading.current_thread().name))

    with SchedulerIO(LOOPBACK, inbox.on_message, configure=configure):
        pass
    assert seen == [(zmq.ROUTER, "", "postroom-scheduler-io")]


def test_configure_refused_by_zeromq_is_invalid_argument(inbox: Inbox) -> None:
    def configure(socket: zmq.Socket[bytes]) -> None:
        socket.setsockopt(zmq.SNDHWM, -5)

    with pytest.raises(InvalidArgument, match="configure set an option ZeroMQ refused"):
        SchedulerIO(LOOPBACK, inbox.on_message, configure=configure)


def test_close_joins_the_threads_and_twice_is_harmless(inbox: Inbox) -> None:
    def io_threads() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name.endswith("-io")]

    sched = SchedulerIO(LOOPBACK, inbox.on_message)
    node = NodeIO(sched.endpoint, print)
    assert len(io_threads()) == 2
    node.close()
    sched.close()
    assert io_threads() == []
    node.close()
    sched.close()
    with pytest.raises(SchedulerClosed):
        sched.send(b"node-a", _welcome("node-a"))
    with pytest.raises(SchedulerClosed):
        node.send(_hello("node-a"))


def test_a_message_that_cannot_be_encoded_raises_on_the_callers_thread(
    sched: SchedulerIO,
) -> None:
    with pytest.raises(InvalidArgument):
        sched.send(b"node-a", Heartbeat(sent_at=float("nan")))
    with pytest.raises(InvalidArgument):
        sched.send("node-a", _welcome("node-a"))  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="a scheduler may not send Hello"):
        sched.send(b"node-a", _hello("node-a"))  # type: ignore[arg-type]
    with NodeIO(sched.endpoint, print) as node, pytest.raises(InvalidArgument, match="Welcome"):
        node.send(_welcome("node-a"))  # type: ignore[arg-type]
    assert sched.stats().sent == 0


def test_close_from_the_owners_callback_stops_the_thread(inbox: Inbox) -> None:
    closed = threading.Event()
    ios: list[SchedulerIO] = []

    def on_message(node: bytes, msg: NodeMessage) -> None:
        ios[0].close()  # on the I/O thread itself: must not join itself
        closed.set()

    ios.append(SchedulerIO(LOOPBACK, on_message))
    with NodeIO(ios[0].endpoint, print) as node:
        node.send(_hello("node-a"))
        assert closed.wait(WAIT)
    # The autouse guard checks that the thread ends; close again is harmless.
    ios[0].close()
    with pytest.raises(SchedulerClosed):
        ios[0].send(b"node-a", _welcome("node-a"))
