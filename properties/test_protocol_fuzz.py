"""Fuzz of the node protocol's decoding: whatever bytes a peer sends, each side
gets a message that side may send, or a `DecodeError`; never another exception,
a crash or a hang, and the next good frame still decodes.

The cases are the malformed frames an authenticated but broken (or hostile)
peer can send: random bytes, another envelope version, well-formed msgpack in
the wrong shape for each tag, input over the size limit, and nesting past the
payload depth limit or 100,000 levels deep in raw msgpack.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors import messages as m
from actors._errors import DecodeError
from actors._policy.payloads import MAX_DEPTH, MAX_MESSAGE_BYTES
from transport import VERSION, encode
from transport.protocol import (
    NODE_MESSAGES,
    PROTOCOL_VERSION,
    SCHEDULER_MESSAGES,
    decode_from_node,
    decode_from_scheduler,
)

# The autouse thread check wraps the whole test, not each example: that is intended.
_SETTINGS = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

Decoder = Callable[[bytes], object]

SIDES: list[tuple[str, Decoder, tuple[type, ...]]] = [
    ("from_node", decode_from_node, NODE_MESSAGES),
    ("from_scheduler", decode_from_scheduler, SCHEDULER_MESSAGES),
]

JOB = m.Job("j1", "send_mail", {"to": ["a@b.c"]}, 7, repo="acme/api", attempt=2, timeout=30.0)
OUTCOME = m.Outcome("failed", error=m.ErrorInfo("builtins.ValueError", "bad"), run_time=0.5)
GOOD: dict[type, object] = {
    m.Hello: m.Hello("node-1", ("send_mail", "resize"), 4, PROTOCOL_VERSION),
    m.Welcome: m.Welcome("node-1", 1.0, 3.0),
    m.Refused: m.Refused("version 2; this scheduler speaks version 1"),
    m.Credit: m.Credit(4),
    m.Run: m.Run(JOB, 17),
    m.Progress: m.Progress("j1", 2, 17, 0.5, "half"),
    m.NodeFinished: m.NodeFinished("j1", 2, 17, OUTCOME),
    m.CancelRun: m.CancelRun("j1", 2, 17),
    m.Heartbeat: m.Heartbeat(1.7e9),
    m.Drain: m.Drain(),
    m.Bye: m.Bye("node-1"),
}
"""One good message of each node protocol type."""

TAGS = [cls.__name__ for cls in GOOD]


def _body(msg: object) -> list[Any]:
    """The body the codec writes for ``msg``, to break on purpose."""
    version, tag, body = msgpack.unpackb(encode(msg))
    assert (version, tag) == (VERSION, type(msg).__name__)
    return body  # type: ignore[no-any-return]


def _frame(tag: object, body: object, version: object = VERSION) -> bytes:
    return msgpack.packb([version, tag, body])  # type: ignore[no-any-return]


def _still_served(decode: Decoder, allowed: tuple[type, ...]) -> None:
    """A good frame right after a bad one decodes: nothing was left broken."""
    for cls in allowed:
        assert decode(encode(GOOD[cls])) == GOOD[cls]


def _refused(
    decode: Decoder, allowed: tuple[type, ...], data: bytes, match: str | None = None
) -> None:
    """``data`` is a `DecodeError` (and nothing else) on this side."""
    with pytest.raises(DecodeError, match=match) as exc:
        decode(data)
    assert exc.value.raw == data
    _still_served(decode, allowed)


def _decodes_or_refuses(decode: Decoder, allowed: tuple[type, ...], data: bytes) -> None:
    """The contract for any bytes: a message this side may send, equal to itself
    after a round trip, or a `DecodeError` holding the bytes."""
    try:
        msg = decode(data)
    except DecodeError as exc:
        assert exc.raw == data
    else:
        assert type(msg) in allowed
        assert decode(encode(msg)) == msg
    _still_served(decode, allowed)


def test_every_message_has_a_good_example() -> None:
    assert set(GOOD) == set(NODE_MESSAGES) | set(SCHEDULER_MESSAGES)


# --- random bytes ---------------------------------------------------------------------


@pytest.mark.parametrize(("side", "decode", "allowed"), SIDES, ids=[s[0] for s in SIDES])
@settings(_SETTINGS, max_examples=400)
@given(data=st.binary(max_size=400))
def test_random_bytes(side: str, decode: Decoder, allowed: tuple[type, ...], data: bytes) -> None:
    _decodes_or_refuses(decode, allowed, data)


@pytest.mark.parametrize(("side", "decode", "allowed"), SIDES, ids=[s[0] for s in SIDES])
@settings(_SETTINGS, max_examples=200)
@given(
    msg=st.sampled_from(list(GOOD.values())),
    flips=st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), max_size=3),
    cut=st.integers(min_value=0),
)
def test_corrupted_and_truncated_frames(
    side: str,
    decode: Decoder,
    allowed: tuple[type, ...],
    msg: object,
    flips: list[tuple[int, int]],
    cut: int,
) -> None:
    data = bytearray(encode(msg))
    for position, byte in flips:
        data[position % len(data)] = byte
    _decodes_or_refuses(decode, allowed, bytes(data))
    _decodes_or_refuses(decode, allowed, bytes(data[: cut % len(data)]))


# --- another envelope version -------------------------------------------------------------

other_versions = (
    st.integers(min_value=-(2**63), max_value=2**64 - 1).filter(lambda v: v != VERSION)
    | st.sampled_from([True, False, None, float(VERSION), str(VERSION), [VERSION]])
)


@pytest.mark.parametrize(("side", "decode", "allowed"), SIDES, ids=[s[0] for s in SIDES])
@_SETTINGS
@given(version=other_versions, cls=st.sampled_from(list(GOOD)))
def test_another_envelope_version(
    side: str, decode: Decoder, allowed: tuple[type, ...], version: object, cls: type
) -> None:
    data = _frame(cls.__name__, _body(GOOD[cls]), version)
    _refused(decode, allowed, data, match="unsupported version")


# --- well-formed msgpack, wrong shape ---------------------------------------------------------

WRONG_FIELD_VALUES: list[object] = [None, {"wrong": 1}, True, "text", 1.5, -1, [1, 2], []]
"""Values to put in place of one field; each is wrong for at least some field of
every type, and `test_each_field_of_each_tag_in_the_wrong_shape` keeps those."""


def _fits(cls: type, index: int, value: object) -> bool:
    """Whether ``value`` in field ``index`` of ``cls`` makes a valid message anyway
    (a str where a str belongs): those cases are no wrong shape, and are skipped."""
    body = _body(GOOD[cls])
    body[index] = value
    try:
        decode_from_node(_frame(cls.__name__, body))
    except DecodeError as exc:
        return "may not send" in str(exc)  # valid, but the scheduler's to send
    return True


def _wrong_shapes() -> list[tuple[str, bytes]]:
    cases = []
    for cls, msg in GOOD.items():
        tag = cls.__name__
        body = _body(msg)
        cases += [
            (f"{tag}: body a map", _frame(tag, {"fields": body})),
            (f"{tag}: body a str", _frame(tag, "body")),
            (f"{tag}: body None", _frame(tag, None)),
            (f"{tag}: a field too many", _frame(tag, [*body, 1])),
        ]
        if body:
            cases.append((f"{tag}: a field short", _frame(tag, body[:-1])))
        for index, field in enumerate(dataclasses.fields(cls)):
            for value in WRONG_FIELD_VALUES:
                if not _fits(cls, index, value):
                    wrong = list(body)
                    wrong[index] = value
                    cases.append((f"{tag}.{field.name} = {value!r}", _frame(tag, wrong)))
    # Inside the nested messages: the job of a Run, the outcome of a NodeFinished.
    run, finished = _body(GOOD[m.Run]), _body(GOOD[m.NodeFinished])
    cases += [
        ("Run.job.attempt a str", _frame("Run", [[*run[0][:6], "2", *run[0][7:]], run[1]])),
        ("Run.job a field short", _frame("Run", [run[0][:-1], run[1]])),
        ("Run.job.payload bytes", _frame("Run", [[*run[0][:2], b"x", *run[0][3:]], run[1]])),
        ("Run.job.payload int key", _frame("Run", [[*run[0][:2], {1: 2}, *run[0][3:]], run[1]])),
        ("Run.job.retry broken", _frame("Run", [[*run[0][:9], ["fixed", -1.0], *run[0][10:]],
                                                 run[1]])),
        ("NodeFinished.outcome.status unknown",
         _frame("NodeFinished", [*finished[:3], ["lost", *finished[3][1:]]])),
        ("NodeFinished.outcome.result NaN",
         _frame("NodeFinished", [*finished[:3], [finished[3][0], [math.nan], *finished[3][2:]]])),
    ]  # fmt: skip
    return cases


WRONG_SHAPES = _wrong_shapes()


def test_every_tag_and_field_has_wrong_shapes() -> None:
    for cls in GOOD:
        for field in dataclasses.fields(cls):
            assert any(name.startswith(f"{cls.__name__}.{field.name} =")
                       for name, _ in WRONG_SHAPES), (cls, field.name)  # fmt: skip


@pytest.mark.parametrize(("side", "decode", "allowed"), SIDES, ids=[s[0] for s in SIDES])
@pytest.mark.parametrize(("name", "data"), WRONG_SHAPES, ids=[c[0] for c in WRONG_SHAPES])
def test_each_field_of_each_tag_in_the_wrong_shape(
    side: str, decode: Decoder, allowed: tuple[type, ...], name: str, data: bytes
) -> None:
    # Bin never occurs in a message: msgpack itself refuses it, before the schema.
    _refused(decode, allowed, data, match=r"^(invalid \w+|not one msgpack value): ")


# Any msgpack value (what corrupt but well-formed bytes turn into), under a real tag.
ints = st.integers(min_value=-(2**63), max_value=2**64 - 1)  # what msgpack carries
msgpack_values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | ints
    | st.floats()
    | st.text(max_size=10)
    | st.binary(max_size=10),
    lambda children: (
        st.lists(children, max_size=8)
        | st.dictionaries(st.text(max_size=5) | ints, children, max_size=4)
    ),
    max_leaves=30,
)


@pytest.mark.parametrize(("side", "decode", "allowed"), SIDES, ids=[s[0] for s in SIDES])
@settings(_SETTINGS, max_examples=300)
@given(tag=st.sampled_from(TAGS), body=msgpack_values)
def test_any_body_under_each_tag(
    side: str, decode: Decoder, allowed: tuple[type, ...], tag: str, body: object
) -> None:
    _decodes_or_refuses(decode, allowed, _frame(tag, body))


# --- oversize ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("side", "decode", "allowed"), SIDES, ids=[s[0] for s in SIDES])
def test_over_the_size_limit(side: str, decode: Decoder, allowed: tuple[type, ...]) -> None:
    # Well-formed, and a message each side may send, but one byte too long.
    progress = _body(GOOD[m.Progress])
    welcome = _body(GOOD[m.Welcome])
    for tag, body, at in (("Progress", progress, 4), ("Welcome", welcome, 0)):
        body[at] = ""
        room = MAX_MESSAGE_BYTES - len(_frame(tag, body)) - 4  # str32 header
        body[at] = "x" * (room + 1)
        data = _frame(tag, body)
        assert len(data) == MAX_MESSAGE_BYTES + 1
        _refused(decode, allowed, data, match=rf"^{MAX_MESSAGE_BYTES + 1} bytes, over the ")
    _refused(decode, allowed, b"\x00" * (MAX_MESSAGE_BYTES + 1), match="bytes, over the ")
    _refused(decode, allowed, b"\xff" * (3 * MAX_MESSAGE_BYTES), match="bytes, over the ")


# --- deep nesting --------------------------------------------------------------------------------


def _nested(depth: int, leaf: object = 1, as_map: bool = False) -> object:
    value = leaf
    for _ in range(depth):
        value = {"k": value} if as_map else [value]
    return value


DEEP = 100_000


def _deep_cases() -> list[tuple[str, bytes]]:
    run, finished = _body(GOOD[m.Run]), _body(GOOD[m.NodeFinished])
    head = msgpack.packb(VERSION)
    cases = []
    # Within msgpack's own stack limit but past the payload depth limit: the codec's
    # JSON check refuses it (no RecursionError).
    for depth in (MAX_DEPTH + 1, 1000):
        for as_map in (False, True):
            deep = _nested(depth, as_map=as_map)
            kind = "maps" if as_map else "lists"
            job = [*run[0][:2], deep, *run[0][3:]]
            cases.append((f"Run.job.payload {depth} {kind} deep", _frame("Run", [job, run[1]])))
            outcome = [finished[3][0], deep, *finished[3][2:]]
            cases.append((f"NodeFinished.outcome.result {depth} {kind} deep",
                          _frame("NodeFinished", [*finished[:3], outcome])))  # fmt: skip
    # Raw msgpack 100,000 levels deep: past any stack, anywhere in the frame.
    arrays = b"\x91" * DEEP + b"\x01"
    maps = b"\x81\xa1k" * DEEP + b"\x01"
    cases += [
        ("bare arrays", arrays),
        ("bare maps", maps),
        ("as the envelope's body", b"\x93" + head + msgpack.packb("Credit") + arrays),
        ("as a Run's job", b"\x93" + head + msgpack.packb("Run") + b"\x92" + arrays + b"\x01"),
        ("as a Run's payload",
         b"\x93" + head + msgpack.packb("Run") + b"\x92"
         + msgpack.packb(run[0])[:1] + msgpack.packb(run[0][:2])[1:]  # the first two fields
         + arrays + msgpack.packb(run[0][3:])[1:] + msgpack.packb(run[1])),
        ("as a NodeFinished's result in maps",
         b"\x93" + head + msgpack.packb("NodeFinished") + b"\x94"
         + msgpack.packb(finished[:3])[1:] + msgpack.packb(finished[3])[:1]
         + msgpack.packb(finished[3][0]) + maps + msgpack.packb(finished[3][2:])[1:]),
        ("truncated deep arrays", b"\x91" * DEEP),
    ]  # fmt: skip
    return cases


DEEP_CASES = _deep_cases()


def test_the_deep_payload_frames_are_right_but_for_the_depth() -> None:
    # The hand-built frames are the real layout with one value swapped: the same
    # frames with a shallow value decode (so the depth is what each case tests).
    run, finished = _body(GOOD[m.Run]), _body(GOOD[m.NodeFinished])
    head = msgpack.packb(VERSION)
    shallow = msgpack.packb(_nested(3))
    frame = (b"\x93" + head + msgpack.packb("Run") + b"\x92"
             + msgpack.packb(run[0])[:1] + msgpack.packb(run[0][:2])[1:]
             + shallow + msgpack.packb(run[0][3:])[1:] + msgpack.packb(run[1]))  # fmt: skip
    assert decode_from_scheduler(frame) == m.Run(dataclasses.replace(JOB, payload=_nested(3)), 17)
    frame = (b"\x93" + head + msgpack.packb("NodeFinished") + b"\x94"
             + msgpack.packb(finished[:3])[1:] + msgpack.packb(finished[3])[:1]
             + msgpack.packb(finished[3][0]) + shallow
             + msgpack.packb(finished[3][2:])[1:])  # fmt: skip
    back = decode_from_node(frame)
    assert back == dataclasses.replace(
        GOOD[m.NodeFinished],  # type: ignore[type-var]
        outcome=dataclasses.replace(OUTCOME, result=_nested(3)),
    )
    for name, data in DEEP_CASES:
        assert len(data) <= MAX_MESSAGE_BYTES, name  # refused for depth, not size


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("side", "decode", "allowed"), SIDES, ids=[s[0] for s in SIDES])
@pytest.mark.parametrize(("name", "data"), DEEP_CASES, ids=[c[0] for c in DEEP_CASES])
def test_deep_nesting(
    side: str, decode: Decoder, allowed: tuple[type, ...], name: str, data: bytes
) -> None:
    _refused(decode, allowed, data)
