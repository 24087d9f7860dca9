"""Hypothesis against a running scheduler: whatever an authenticated peer sends,
the scheduler lives on, counts each bad frame exactly, and serves a good node.

One scheduler listens with CURVE for the whole test; one raw DEALER with an
admitted key sends each example's frames (random bytes, msgpack of recursive
JSON-like values, envelopes with a real tag and a random body). The count
expected is what `decode_from_node` makes of the same bytes: each frame it
refuses must add exactly one to `Listener.malformed`. A probe sent after the
frames (a session-less Credit, answered with Refused) says when they have all
been handled; then a good node, connected with its own key all along, runs
one job to the end.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zmq
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from actors import Scheduler
from actors._errors import DecodeError
from actors.messages import (
    MESSAGE_TYPES,
    Bye,
    Credit,
    Drain,
    Heartbeat,
    Hello,
    NodeFinished,
    Outcome,
    Progress,
    Refused,
    Run,
    Welcome,
)
from tests.helpers import WAIT
from tests.nodes import RawPeer, ScriptedNode, make_keys
from transport.codec import VERSION, encode
from transport.listener import Listener
from transport.protocol import decode_from_node

# The autouse thread check wraps the whole test, not each example: that is intended.
_SETTINGS = settings(
    max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

ints = st.integers(min_value=-(2**63), max_value=2**64 - 1)  # what msgpack carries
json_like: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | ints | st.floats() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=25,
)
tags = st.sampled_from([cls.__name__ for cls in MESSAGE_TYPES])

# Messages a node may send, with any values their fields' types allow (a Credit
# of -5, a Progress of inf, a result for a lease never issued).
node_messages = st.one_of(
    st.builds(Credit, ints),
    st.builds(Progress, st.text(max_size=5), ints, ints, st.floats(allow_nan=False), st.text()),
    st.builds(NodeFinished, st.text(max_size=5), ints, ints, st.just(Outcome("completed", 1))),
    st.builds(Heartbeat, st.floats(allow_nan=False)),
    st.just(Drain()),
)

frames: st.SearchStrategy[bytes] = st.one_of(
    st.binary(max_size=300),
    node_messages.map(encode),
    json_like.map(msgpack.packb),
    st.builds(lambda tag, body: msgpack.packb([VERSION, tag, body]), tags, json_like),
    # Bodies shaped like a message's: a list, of about the right length.
    st.builds(
        lambda tag, body: msgpack.packb([VERSION, tag, body]), tags, st.lists(json_like, max_size=8)
    ),
)


class World:
    """The scheduler, its listener, the good node and the raw peer, for the whole test."""

    def __init__(self, sched: Scheduler, listener: Listener, good: ScriptedNode, raw: RawPeer):
        self.sched, self.listener, self.good, self.raw = sched, listener, good, raw
        self.served = 0


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    keys = make_keys(tmp_path, "good", "raw")
    sched = Scheduler(workers=0, metrics=False)

    @sched.handler("echo")
    def echo(ctx: Any, payload: Any) -> Any:
        return payload

    sched.start()
    try:
        listener = sched.listen(
            "tcp://127.0.0.1:0",
            keys=keys.authorized,
            server_key=keys.server_secret,
            heartbeat=30.0,
        )
        good = ScriptedNode(listener.endpoint, keys.client("good").apply)
        raw = RawPeer(listener.endpoint, keys.client("raw"))
        try:
            assert isinstance(good.hello("good"), Welcome)
            assert raw.handshake() == zmq.EVENT_HANDSHAKE_SUCCEEDED
            yield World(sched, listener, good, raw)
        finally:
            raw.close()
            good.close()
    finally:
        sched.shutdown(graceful=False, cancel_grace=2)


def _read(data: bytes) -> object:
    """What the scheduler's side makes of ``data``: a message, or the DecodeError."""
    try:
        return decode_from_node(data)
    except DecodeError as exc:
        return exc


def _probe(raw: RawPeer, answered: int) -> None:
    """Once the answer to a Credit sent now is back, every earlier frame was handled.

    ``answered`` frames before it are messages a session-less peer is told
    ``Refused("no session ...")`` for, so the probe's is the one after those;
    other answers (a refused Hello, another version) are skipped.
    """
    raw.say(Credit(1))
    no_session = Refused("no session: say Hello first")
    for _ in range(answered + 1):
        while True:
            answer = raw.receive()
            assert answer is not None, "the probe was not answered"
            assert isinstance(answer, Refused), answer  # no example is a good Hello
            if answer == no_session:
                break


@_SETTINGS
@given(batch=st.lists(frames, min_size=1, max_size=5))
def test_whatever_a_peer_sends_the_scheduler_lives_counts_and_serves(
    world: World, batch: list[bytes]
) -> None:
    listener, raw, good, sched = world.listener, world.raw, world.good, world.sched
    before, stale = listener.malformed, listener.unknown_stale
    for data in batch:
        raw.send(data)
    read = [_read(data) for data in batch]
    for msg in read:
        event(type(msg).__name__)  # which kinds the examples reach (--hypothesis-show-statistics)
    _probe(raw, sum(type(msg) not in (DecodeError, Hello, Bye) for msg in read))
    assert listener.malformed == before + sum(type(msg) is DecodeError for msg in read)
    assert listener.unknown_stale == stale + sum(type(msg) is NodeFinished for msg in read)
    # The good node is still served, and the scheduler and its threads live.
    world.served += 1
    handle = sched.submit("echo", world.served)
    good.credit(1)
    run = good.expect(Run)
    good.finish(run, world.served)
    assert handle.result(WAIT) == world.served
    assert sched.running
    io = listener._io  # the I/O thread: what a bad frame would kill
    assert io._thread.is_alive()
    assert io.stats().callback_errors == 0
    assert [info.node_id for info in sched.nodes()] == ["good"]
