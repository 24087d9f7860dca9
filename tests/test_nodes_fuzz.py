"""Worker nodes under garbage: malformed frames from an authenticated peer.

A scheduler listens with CURVE keys; a raw DEALER holding an admitted node key
(so past the authenticator, the way a buggy or hostile node is) sends frames
no node should: random bytes, another envelope version, msgpack in the wrong
shape, messages a node may not send, oversize and deeply nested frames,
multi-frame and empty messages, results for leases never issued, credit and
progress out of range. Each test asserts that the scheduler lives on (no
crash, no thread lost, no callback error), that each bad frame is counted
exactly, and that a good node connected at the same time, with its own key,
is served before, during and after the garbage.

Synchronisation is by answers, not sleeps: the frames of one connection are
handled in order, so once the reply to a probe sent after the garbage has
come back, every bad frame before it has been counted.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zmq

from actors import Scheduler
from actors.messages import (
    Credit,
    Heartbeat,
    Hello,
    Job,
    NodeFinished,
    Outcome,
    Progress,
    Refused,
    Run,
    Submit,
    Welcome,
)
from tests.helpers import WAIT, wait_until
from tests.nodes import Keys, RawPeer, ScriptedNode, make_keys
from transport.codec import VERSION, encode
from transport.io import MAX_BATCH, MAX_FRAME_BYTES
from transport.listener import Listener
from transport.protocol import PROTOCOL_VERSION

QUIET = 0.3
"""Seconds a peer watches for an answer that must not come."""

JOB = Job("j1", "echo", {"x": 1}, 1)


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return make_keys(tmp_path, "good", "raw")


@pytest.fixture
def sched() -> Iterator[Scheduler]:
    sched = Scheduler(workers=0, metrics=False)

    @sched.handler("echo")
    def echo(ctx: Any, payload: Any) -> Any:
        return payload

    @sched.handler("other")
    def other(ctx: Any, payload: Any) -> Any:
        return payload

    sched.start()
    yield sched
    sched.shutdown(graceful=False, cancel_grace=2)


@pytest.fixture
def listener(sched: Scheduler, keys: Keys) -> Listener:
    # A long heartbeat: no peer here may die of silence while a test looks away.
    return sched.listen(
        "tcp://127.0.0.1:0", keys=keys.authorized, server_key=keys.server_secret, heartbeat=30.0
    )


@pytest.fixture
def good(listener: Listener, keys: Keys) -> Iterator[ScriptedNode]:
    node = ScriptedNode(listener.endpoint, keys.client("good").apply)
    assert isinstance(node.hello("good", handlers=("echo",)), Welcome)
    yield node
    node.close()


@pytest.fixture
def raw(listener: Listener, keys: Keys) -> Iterator[RawPeer]:
    peer = RawPeer(listener.endpoint, keys.client("raw"))
    assert peer.handshake() == zmq.EVENT_HANDSHAKE_SUCCEEDED
    yield peer
    peer.close()


def served(sched: Scheduler, good: ScriptedNode, payload: object) -> None:
    """The good node takes a job and its result is the job's."""
    handle = sched.submit("echo", payload)
    good.credit(1)
    run = good.expect(Run)
    assert run.job.id == handle.id
    good.finish(run, payload)
    assert handle.result(WAIT) == payload


def alive(sched: Scheduler, listener: Listener) -> None:
    """Nothing died: the scheduler runs and answers, its I/O and ZAP threads live,
    and no callback of the listener raised."""
    assert sched.running
    assert sched.stats().running >= 0
    io = listener._io  # the I/O thread: what a bad frame would kill
    assert io._thread.is_alive()
    assert io.stats().callback_errors == 0
    zap = listener._security._thread  # the authenticator's
    assert zap is not None
    assert zap.is_alive()


def frame(tag: object, body: object, version: object = VERSION) -> bytes:
    return msgpack.packb([version, tag, body])  # type: ignore[no-any-return]


def deep_arrays(depth: int) -> bytes:
    return b"\x91" * depth + b"\x01"


def deep_result(depth: int) -> bytes:
    """A NodeFinished whose outcome's result is ``depth`` lists deep (hand-packed:
    msgpack's packer itself stops far short of that)."""
    finished = msgpack.unpackb(encode(NodeFinished("j1", 1, 1, Outcome("completed", 1))))[2]
    outcome = msgpack.packb(finished[3])
    result_at = len(msgpack.packb(finished[3][:1]))  # the array header and the status
    return (
        b"\x93" + msgpack.packb(VERSION) + msgpack.packb("NodeFinished") + b"\x94"
        + msgpack.packb(finished[:3])[1:]
        + outcome[:result_at] + deep_arrays(depth) + outcome[result_at + 1 :]
    )  # fmt: skip


def nan_progress(lease: int = 1, job_id: str = "j1") -> bytes:
    # encode() refuses NaN, so the frame is packed by hand.
    return frame("Progress", [job_id, 1, lease, math.nan, ""])


RNG = random.Random(11)

# (name, the frames of one message, how many malformed it counts)
GARBAGE: list[tuple[str, list[bytes], int]] = [
    ("one zero byte", [b"\x00"], 1),
    ("random bytes", [RNG.randbytes(64)], 1),
    ("random kilobytes", [RNG.randbytes(4096)], 1),
    ("empty frame", [b""], 1),
    ("more frames than a batch holds", [encode(Heartbeat(0.0))] * (MAX_BATCH + 1), 1),
    ("three empty frames in one message", [b"", b"", b""], 3),
    ("an empty frame then a good one", [b"", encode(Heartbeat(0.0))], 1),
    ("msgpack, not an envelope", [msgpack.packb({"hello": "world"})], 1),
    ("unknown tag", [frame("Launch", [1])], 1),
    ("Credit with a str", [frame("Credit", ["1"])], 1),
    ("Credit with a bool", [frame("Credit", [True])], 1),
    ("Credit with a float", [frame("Credit", [1.0])], 1),
    ("Credit with no field", [frame("Credit", [])], 1),
    ("Hello with fields of the wrong types", [frame("Hello", [1, "echo", "2", None, 5])], 1),
    ("NodeFinished body a map", [frame("NodeFinished", {"job_id": "j1"})], 1),
    ("NodeFinished with an unknown status",
     [frame("NodeFinished", ["j1", 1, 1, ["lost", None, None, 0.0, 0.0, False, True]])], 1),
    ("Progress with a NaN fraction", [nan_progress()], 1),
    ("Run, which a node may not send", [encode(Run(JOB, 1))], 1),
    ("Welcome, which a node may not send", [encode(Welcome("raw", 1.0, 3.0))], 1),
    ("Submit, which a node may not send", [encode(Submit(JOB))], 1),
    ("bare arrays 10,000 deep", [deep_arrays(10_000)], 1),
    ("a result 10,000 lists deep", [deep_result(10_000)], 1),
    ("a frame of MAX_FRAME_BYTES (read, over the codec's limit)", [b"\x00" * MAX_FRAME_BYTES], 1),
]  # fmt: skip


@pytest.mark.parametrize(("name", "frames", "count"), GARBAGE, ids=[g[0] for g in GARBAGE])
def test_garbage_without_a_session_is_counted_and_the_good_node_is_served(
    sched: Scheduler,
    listener: Listener,
    good: ScriptedNode,
    raw: RawPeer,
    name: str,
    frames: list[bytes],
    count: int,
) -> None:
    served(sched, good, "before")
    during = sched.submit("echo", "during")
    good.credit(1)
    run = good.expect(Run)
    before = listener.malformed
    for _ in range(3):
        raw.send(*frames)
    # The probe: a session-less peer's Credit is answered, after the garbage.
    raw.say(Credit(1))
    assert raw.receive() == Refused("no session: say Hello first")
    assert listener.malformed == before + 3 * count
    good.finish(run, "during")
    assert during.result(WAIT) == "during"
    served(sched, good, "after")
    alive(sched, listener)
    assert [info.node_id for info in sched.nodes()] == ["good"]
    assert listener.totals()["good"].stale == 0


def test_another_envelope_version_is_refused_naming_both_versions(
    sched: Scheduler, listener: Listener, good: ScriptedNode, raw: RawPeer
) -> None:
    before = listener.malformed
    raw.send(frame("Credit", [1], version=VERSION + 1))
    refused = raw.receive()
    assert isinstance(refused, Refused)
    assert f"unsupported version {VERSION + 1}" in refused.reason
    assert f"this codec reads {VERSION}" in refused.reason
    # Told once per connection: a peer of another version is not answered forever.
    raw.send(frame("Hello", ["raw", ["echo"], 1, PROTOCOL_VERSION, "default"], version=0))
    raw.say(Credit(1))
    assert raw.receive() == Refused("no session: say Hello first")
    assert listener.malformed == before + 2
    served(sched, good, "after")
    alive(sched, listener)


@pytest.mark.parametrize("size", [MAX_FRAME_BYTES + 1, 4 * MAX_FRAME_BYTES])
def test_a_frame_over_the_limit_drops_its_connection_unread(
    sched: Scheduler, listener: Listener, good: ScriptedNode, raw: RawPeer, size: int
) -> None:
    """ZeroMQ refuses a frame over MAX_FRAME_BYTES (MAXMSGSIZE) before it is read:
    the peer's connection ends, nothing is decoded or counted, and the peer may
    connect again (its new connection works)."""
    served(sched, good, "before")
    before = listener._io.stats()  # what was received, not only what was dropped
    raw.send(b"\x00" * size)
    assert raw.handshake() == zmq.EVENT_DISCONNECTED
    assert raw.handshake() == zmq.EVENT_HANDSHAKE_SUCCEEDED  # ZeroMQ reconnects
    raw.say(Credit(1))
    assert raw.receive() == Refused("no session: say Hello first")
    after = listener._io.stats()
    assert (after.malformed, after.received) == (before.malformed, before.received + 1)
    served(sched, good, "after")
    alive(sched, listener)


# --- from a peer in session -------------------------------------------------------------


@pytest.fixture
def raw_node(sched: Scheduler, raw: RawPeer) -> RawPeer:
    """The raw peer, in session as node "raw", offering only the handler "other"
    (so the good node's echo jobs never go to it)."""
    raw.say(Hello("raw", ("other",), 1, PROTOCOL_VERSION))
    assert isinstance(raw.receive(), Welcome)
    return raw


def raw_runs_one(sched: Scheduler, raw: RawPeer) -> None:
    """The probe for a peer in session: Credit(1) brings exactly one Run, so every
    frame before it was handled and no earlier credit was left over or owed."""
    handle = sched.submit("other", "probe")
    raw.say(Credit(1))
    run = raw.receive()
    assert isinstance(run, Run), run
    assert run.job.id == handle.id
    raw.say(NodeFinished(run.job.id, run.job.attempt, run.lease, Outcome("completed", "ok")))
    assert handle.result(WAIT) == "ok"
    [info] = [info for info in sched.nodes() if info.node_id == "raw"]
    assert (info.credit, info.in_flight) == (0, 0)


SESSION_GARBAGE: list[tuple[str, list[bytes], int]] = [
    *GARBAGE,
    ("Credit of 0", [encode(Credit(0))], 1),
    ("Credit of -1", [encode(Credit(-1))], 1),
    ("Credit of -2**63", [encode(Credit(-(2**63)))], 1),
    ("Progress with an infinite fraction", [encode(Progress("j1", 1, 1, math.inf, ""))], 1),
    ("Progress with a fraction of -1", [encode(Progress("j1", 1, 1, -1.0, ""))], 1),
]


@pytest.mark.parametrize(
    ("name", "frames", "count"), SESSION_GARBAGE, ids=[g[0] for g in SESSION_GARBAGE]
)
def test_garbage_in_session_is_counted_and_changes_nothing(
    sched: Scheduler,
    listener: Listener,
    good: ScriptedNode,
    raw_node: RawPeer,
    name: str,
    frames: list[bytes],
    count: int,
) -> None:
    during = sched.submit("echo", "during")
    good.credit(1)
    run = good.expect(Run)
    before = listener.malformed
    for _ in range(3):
        raw_node.send(*frames)
    raw_runs_one(sched, raw_node)
    assert listener.malformed == before + 3 * count
    assert listener.totals()["raw"].stale == 0
    good.finish(run, "during")
    assert during.result(WAIT) == "during"
    served(sched, good, "after")
    alive(sched, listener)
    assert [info.node_id for info in sched.nodes()] == ["good", "raw"]


def test_progress_out_of_range_under_a_held_lease_is_counted_not_shown(
    sched: Scheduler, listener: Listener, raw_node: RawPeer
) -> None:
    handle = sched.submit("other", "x")
    raw_node.say(Credit(1))
    run = raw_node.receive()
    assert isinstance(run, Run)
    job, lease = run.job, run.lease
    raw_node.say(Progress(job.id, job.attempt, lease, 0.5, "half"))
    wait_until(lambda: sched.job(handle.id).progress is not None, "the good progress")
    before = listener.malformed
    raw_node.say(Progress(job.id, job.attempt, lease, math.inf, "inf"))
    raw_node.say(Progress(job.id, job.attempt, lease, -1.0, "minus one"))
    raw_node.send(nan_progress(lease, job.id))
    raw_node.say(Progress(job.id, job.attempt, lease, 1.0, "all"))
    wait_until(lambda: sched.job(handle.id).progress.fraction == 1.0, "the last progress")
    assert listener.malformed == before + 3
    assert sched.job(handle.id).progress.message == "all"
    raw_node.say(NodeFinished(job.id, job.attempt, lease, Outcome("completed", "x")))
    assert handle.result(WAIT) == "x"
    alive(sched, listener)


def test_a_result_for_a_lease_never_issued_is_counted_as_stale(
    sched: Scheduler, listener: Listener, good: ScriptedNode, raw_node: RawPeer
) -> None:
    handle = sched.submit("echo", "held")
    good.credit(1)
    run = good.expect(Run)
    forged = Outcome("completed", "forged")
    # The good node's real job under a lease the raw node never held, and a job
    # and lease that never were.
    raw_node.say(NodeFinished(run.job.id, run.job.attempt, run.lease, forged))
    raw_node.say(NodeFinished("no-such-job", 1, 12345, forged))
    raw_runs_one(sched, raw_node)
    assert listener.totals()["raw"].stale == 2
    good.finish(run, "held")
    assert handle.result(WAIT) == "held"
    alive(sched, listener)


def test_a_result_from_a_peer_without_a_session_is_counted_and_refused(
    sched: Scheduler, listener: Listener, good: ScriptedNode, raw: RawPeer
) -> None:
    run_handle = sched.submit("echo", "held")
    good.credit(1)
    run = good.expect(Run)
    before = listener.unknown_stale
    raw.say(NodeFinished(run.job.id, run.job.attempt, run.lease, Outcome("completed", "forged")))
    assert raw.receive() == Refused("no session: say Hello first")
    assert listener.unknown_stale == before + 1
    good.finish(run, "held")
    assert run_handle.result(WAIT) == "held"
    alive(sched, listener)


def test_a_huge_credit_sends_only_the_jobs_there_are(
    sched: Scheduler, listener: Listener, good: ScriptedNode, raw_node: RawPeer
) -> None:
    handles = [sched.submit("other", i) for i in range(2)]
    raw_node.say(Credit(2**64 - 1))
    runs = [raw_node.receive(), raw_node.receive()]
    assert raw_node.receive(QUIET) is None
    for run in runs:
        assert isinstance(run, Run)
        outcome = Outcome("completed", run.job.payload)
        raw_node.say(NodeFinished(run.job.id, run.job.attempt, run.lease, outcome))
    assert [h.result(WAIT) for h in handles] == [0, 1]
    [info] = [info for info in sched.nodes() if info.node_id == "raw"]
    assert info.credit == 2**64 - 3
    served(sched, good, "after")
    alive(sched, listener)


def hello_of_size(size: int) -> Hello:
    """A good Hello whose encoding is exactly ``size`` bytes (a long handler name)."""
    hello = Hello("big", ("echo", "x" * 70_000), 1, PROTOCOL_VERSION)
    pad = size - len(encode(hello))
    return Hello("big", ("echo", "x" * (70_000 + pad)), 1, PROTOCOL_VERSION)


def test_a_message_at_the_size_limit_is_read_under_curve(
    sched: Scheduler, listener: Listener, raw: RawPeer
) -> None:
    """CURVE makes a frame 33 bytes longer on the wire than the message in it:
    the socket's limit allows for it, so the longest message the codec writes
    gets through (and one byte more is read, refused and counted)."""
    hello = hello_of_size(MAX_FRAME_BYTES - 1)
    assert len(encode(hello)) == MAX_FRAME_BYTES - 1  # the codec's limit
    raw.say(hello)
    assert isinstance(raw.receive(), Welcome)
    assert [info.node_id for info in sched.nodes()] == ["big"]
    alive(sched, listener)
