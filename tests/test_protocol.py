"""Tests for `transport.protocol`: the node messages round trip, each side may
send only its own, and a node of another version is refused by name."""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors import messages as m
from actors._errors import DecodeError
from actors._policy.retry import RetryPolicy
from transport import VERSION, decode, encode
from transport.protocol import (
    NODE_MESSAGES,
    PROTOCOL_VERSION,
    SCHEDULER_MESSAGES,
    check_hello,
    decode_from_node,
    decode_from_scheduler,
)

_SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

NODE_SECTION = (
    m.Hello,
    m.Welcome,
    m.Refused,
    m.Credit,
    m.Run,
    m.Progress,
    m.NodeFinished,
    m.CancelRun,
    m.Heartbeat,
    m.Drain,
    m.Bye,
)
"""The node protocol's messages, as the brief of actors/messages.py lists them."""

# --- strategies for the fields -------------------------------------------------------

ids = st.text(max_size=30)
ints = st.integers(min_value=-(2**63), max_value=2**64 - 1)  # what msgpack carries
leases = st.integers(min_value=0, max_value=2**64 - 1)
attempts = st.integers(min_value=1, max_value=2**31)
seconds = st.floats(min_value=0.0, allow_nan=False)  # infinity included
json_values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | ints
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)
jobs = st.builds(
    m.Job,
    id=ids,
    handler=ids,
    payload=json_values,
    seq=ints,
    priority=st.integers(1, 10),
    repo=st.none() | ids,
    attempt=attempts,
    max_retries=st.integers(0, 100),
    timeout=st.none() | seconds,
    retry=st.sampled_from([RetryPolicy(), RetryPolicy.linear(1.0), RetryPolicy(cap=math.inf)]),
    not_before=st.none() | st.floats(allow_nan=False),
    idempotency_key=st.none() | ids,
    submitted_at=st.floats(allow_nan=False),
    queue=ids,
)
errors = st.builds(m.ErrorInfo, type=ids, message=st.text(), traceback=st.text(max_size=200))
outcomes = st.builds(
    m.Outcome,
    status=st.sampled_from(["completed", "failed", "cancelled"]),
    result=json_values,
    error=st.none() | errors,
    retryable=st.booleans(),
    timed_out=st.booleans(),
    started_at=st.floats(allow_nan=False),
    run_time=seconds,
)

STRATEGIES: dict[type, st.SearchStrategy[Any]] = {
    m.Hello: st.builds(
        m.Hello,
        node_id=ids,
        handlers=st.lists(ids, max_size=6).map(tuple),
        capacity=ints,
        version=ints,
    ),
    m.Welcome: st.builds(m.Welcome, node_id=ids, heartbeat=seconds, lease=seconds),
    m.Refused: st.builds(m.Refused, reason=st.text()),
    m.Credit: st.builds(m.Credit, slots=st.integers(1, 2**64 - 1)),  # fewer is refused
    m.Run: st.builds(m.Run, job=jobs, lease=leases),
    m.Progress: st.builds(
        m.Progress,
        job_id=ids,
        attempt=attempts,
        lease=leases,
        fraction=st.floats(0.0, 1.0),
        message=st.text(max_size=50),
    ),
    m.NodeFinished: st.builds(
        m.NodeFinished, job_id=ids, attempt=attempts, lease=leases, outcome=outcomes
    ),
    m.CancelRun: st.builds(m.CancelRun, job_id=ids, attempt=attempts, lease=leases),
    m.Heartbeat: st.builds(m.Heartbeat, sent_at=st.floats(allow_nan=False)),
    m.Drain: st.just(m.Drain()),
    m.Bye: st.builds(m.Bye, node_id=ids),
}


# --- the messages ------------------------------------------------------------------


def test_the_node_messages_are_wire_messages_of_plain_data() -> None:
    assert set(STRATEGIES) == set(NODE_SECTION)
    assert set(NODE_SECTION) <= set(m.MESSAGE_TYPES)
    assert not set(NODE_SECTION) & set(m.LOCAL_MESSAGE_TYPES)
    for cls in NODE_SECTION:
        assert cls.__doc__, cls
        assert cls.__name__ in m.__all__, cls


def test_every_node_message_is_sent_by_some_side_and_only_those() -> None:
    assert set(NODE_MESSAGES) | set(SCHEDULER_MESSAGES) == set(NODE_SECTION)
    # Only the liveness and the graceful-exit messages go both ways.
    assert set(NODE_MESSAGES) & set(SCHEDULER_MESSAGES) == {m.Heartbeat, m.Drain}


def test_finished_keeps_its_name_apart_from_the_workers() -> None:
    # The codec tags by class name: a clash would fail its import, and a node's
    # report must not be mistaken for a local worker's.
    assert m.NodeFinished.__name__ != m.Finished.__name__
    assert [f.name for f in dataclasses.fields(m.NodeFinished)] == [
        "job_id",
        "attempt",
        "lease",
        "outcome",
    ]


@pytest.mark.parametrize("cls", NODE_SECTION, ids=lambda cls: cls.__name__)
@_SETTINGS
@given(data=st.data())
def test_every_node_message_round_trips(cls: type, data: st.DataObject) -> None:
    msg = data.draw(STRATEGIES[cls])
    wire = encode(msg)
    assert decode(wire) == msg
    if cls in NODE_MESSAGES:
        back: object = decode_from_node(wire)
        assert type(back) is cls
        assert back == msg
    if cls in SCHEDULER_MESSAGES:
        back = decode_from_scheduler(wire)
        assert type(back) is cls
        assert back == msg


def test_a_zero_copy_frame_decodes_too() -> None:
    wire = encode(m.Credit(3))
    assert decode_from_node(memoryview(wire)) == m.Credit(3)
    assert decode_from_node(bytearray(wire)) == m.Credit(3)


# --- who may send what -----------------------------------------------------------------


class _JSONMarker:
    """Stands in for `m.JSONValue` when annotations are resolved."""


def _sample(hint: Any) -> Any:
    # 0.5: a float every field takes (a Progress fraction out of [0, 1] is refused
    # as invalid whoever reads it, before the side is checked).
    samples = {str: "s", int: 3, float: 0.5, bool: True, _JSONMarker: {"k": [1]}}
    if hint in samples:
        return samples[hint]
    if dataclasses.is_dataclass(hint):
        return _sample_message(hint)
    args = typing.get_args(hint)
    if typing.get_origin(hint) is typing.Literal:
        return args[0]
    if typing.get_origin(hint) is tuple:
        return tuple(_sample(arg) for arg in args if arg is not Ellipsis)
    return _sample(next(arg for arg in args if arg is not type(None)))  # X | None


def _sample_message(cls: Any) -> Any:
    if cls is RetryPolicy:
        return RetryPolicy()
    hints = typing.get_type_hints(cls, localns={"JSONValue": _JSONMarker})
    return cls(*(_sample(hints[f.name]) for f in dataclasses.fields(cls)))


def _not_from(allowed: tuple[type, ...]) -> list[object]:
    return [_sample_message(cls) for cls in m.MESSAGE_TYPES if cls not in allowed]


@pytest.mark.parametrize("msg", _not_from(NODE_MESSAGES), ids=lambda msg: type(msg).__name__)
def test_a_node_may_send_only_node_messages(msg: object) -> None:
    # A Run, a Submit or a Close from a node is refused before anything acts on it.
    wire = encode(msg)
    with pytest.raises(DecodeError, match=rf"a node may not send {type(msg).__name__}$") as exc:
        decode_from_node(wire)
    assert exc.value.raw == wire


@pytest.mark.parametrize(
    "msg", _not_from(SCHEDULER_MESSAGES), ids=lambda msg: type(msg).__name__
)
def test_a_scheduler_may_send_only_scheduler_messages(msg: object) -> None:
    wire = encode(msg)
    with pytest.raises(
        DecodeError, match=rf"a scheduler may not send {type(msg).__name__}$"
    ) as exc:
        decode_from_scheduler(wire)
    assert exc.value.raw == wire


def test_the_codec_errors_come_through_unchanged() -> None:
    with pytest.raises(DecodeError, match=rf"version {VERSION + 1}\b.*reads {VERSION}"):
        decode_from_node(msgpack.packb([VERSION + 1, "Credit", [1]]))
    with pytest.raises(DecodeError, match="unknown message tag"):
        decode_from_scheduler(msgpack.packb([VERSION, "Nope", []]))
    with pytest.raises(DecodeError, match="expected bytes"):
        decode_from_node("not bytes")  # type: ignore[arg-type]


# --- joining ---------------------------------------------------------------------------


def _hello(**changes: Any) -> m.Hello:
    hello = m.Hello("node-1", ("send_mail", "resize"), 4, PROTOCOL_VERSION)
    return dataclasses.replace(hello, **changes)


def test_a_hello_of_this_version_is_accepted() -> None:
    assert check_hello(_hello()) is None
    assert check_hello(_hello(version=7), version=7) is None


@pytest.mark.parametrize("theirs", [PROTOCOL_VERSION + 1, PROTOCOL_VERSION - 1, 0, -1, 2**40])
def test_another_version_is_refused_naming_both(theirs: int) -> None:
    refused = check_hello(_hello(version=theirs))
    assert type(refused) is m.Refused
    assert f"version {theirs};" in refused.reason
    assert refused.reason.endswith(f"version {PROTOCOL_VERSION}")
    assert "'node-1'" in refused.reason
    # The refusal reaches the node intact.
    assert decode_from_scheduler(encode(refused)) == refused


def test_the_scheduler_names_its_own_version() -> None:
    refused = check_hello(_hello(version=PROTOCOL_VERSION), version=PROTOCOL_VERSION + 5)
    assert refused is not None
    assert f"version {PROTOCOL_VERSION};" in refused.reason
    assert refused.reason.endswith(f"version {PROTOCOL_VERSION + 5}")


def test_the_version_is_checked_before_the_other_fields() -> None:
    refused = check_hello(_hello(version=PROTOCOL_VERSION + 1, capacity=0))
    assert refused is not None
    assert "version" in refused.reason


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"node_id": ""}, "node id is empty"),
        ({"capacity": 0}, "capacity 0"),
        ({"capacity": -3}, "capacity -3"),
    ],
)
def test_an_unusable_hello_is_refused(changes: dict[str, Any], words: str) -> None:
    refused = check_hello(_hello(**changes))
    assert refused is not None
    assert words in refused.reason


def test_a_long_node_id_is_cut_in_the_reason() -> None:
    # The reason goes to logs on both sides: a node cannot make it huge.
    refused = check_hello(_hello(node_id="n" * 100_000, version=PROTOCOL_VERSION + 1))
    assert refused is not None
    assert len(refused.reason) < 300


@pytest.mark.parametrize(
    ("msg", "problem"),
    [
        (m.Credit(0), "slots must be at least 1, got 0"),
        (m.Credit(-1), "slots must be at least 1, got -1"),
        (m.Credit(-(2**63)), "slots must be at least 1"),
        (m.Progress("j1", 1, 7, math.inf, ""), "fraction must be in [0, 1], got inf"),
        (m.Progress("j1", 1, 7, -1.0, ""), "fraction must be in [0, 1], got -1.0"),
        (m.Progress("j1", 1, 7, 1.0000001, ""), "fraction must be in [0, 1]"),
    ],
    ids=repr,
)
def test_values_a_field_takes_but_the_exchange_does_not_are_refused(
    msg: object, problem: str
) -> None:
    # Encodable, so a node could send them: the boundary refuses them, and the
    # I/O thread counts them with the malformed frames.
    wire = encode(msg)
    for decode_from in (decode_from_node, decode_from_scheduler):
        with pytest.raises(DecodeError, match=re.escape(problem)) as exc:
            decode_from(wire)
        assert str(exc.value).startswith(f"invalid {type(msg).__name__}: ")
        assert exc.value.raw == wire
    for edge in (m.Credit(1), m.Progress("j1", 1, 7, 0.0, ""), m.Progress("j1", 1, 7, 1.0, "")):
        assert decode_from_node(encode(edge)) == edge
