"""Tests for `transport.codec`: round trips, and every way bytes can be wrong."""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import typing
from typing import Any, Literal

import msgpack
import pytest

from actors import messages as m
from actors._errors import DecodeError, InvalidArgument, NotSerializable
from actors._policy.payloads import MAX_DEPTH, json_copy
from actors._policy.retry import RetryPolicy
from transport import VERSION, codec, decode, encode

# --- examples ------------------------------------------------------------------------


class _JSONMarker:
    """Stands in for `m.JSONValue` when the tests resolve annotations."""


def _sample(hint: Any) -> Any:
    """A deterministic, non-default value for one annotation."""
    samples: dict[Any, Any] = {
        str: "sample",
        int: 7,
        float: 2.5,
        bool: True,
        _JSONMarker: {"to": ["a@example.com"], "n": 3, "x": 1.5, "ok": False, "none": None},
    }
    if hint in samples:
        return samples[hint]
    if dataclasses.is_dataclass(hint):
        return _sample_message(hint)
    args = typing.get_args(hint)
    if typing.get_origin(hint) is Literal:
        return args[-1]
    if typing.get_origin(hint) is tuple:
        return tuple(_sample(arg) for arg in args if arg is not Ellipsis)
    return _sample(next(arg for arg in args if arg is not type(None)))  # X | None


def _sample_message(cls: Any) -> Any:
    if cls is RetryPolicy:
        return RetryPolicy.exponential(0.5, cap=60.0, jitter=0.1)
    hints = typing.get_type_hints(cls, localns={"JSONValue": _JSONMarker})
    return cls(*(_sample(hints[f.name]) for f in dataclasses.fields(cls)))


JOB = m.Job(
    id="j1",
    handler="send_mail",
    payload={"to": ["a@b.c"], "deep": [[{"k": [1, -2, 2**63]}]], "x": -0.5, "u": "é✓"},
    seq=7,
    priority=2,
    repo="acme/api",
    attempt=2,
    max_retries=3,
    timeout=30.0,
    retry=RetryPolicy.linear(1.0),
    not_before=123.5,
    idempotency_key="k-1",
    submitted_at=1.7e9,
)
OUTCOME = m.Outcome(
    "failed",
    error=m.ErrorInfo("builtins.ValueError", "bad", "Traceback ..."),
    retryable=False,
    timed_out=True,
    started_at=1.0,
    run_time=0.25,
)

EXAMPLES: list[Any] = [_sample_message(cls) for cls in m.MESSAGE_TYPES] + [
    m.Job("j2", "h", None, 0),  # every default
    JOB,
    m.Outcome("completed", result=[1, "two", {"three": [3.0, None, True]}]),
    m.Outcome("completed", result=-(2**63)),
    m.Submit(m.Job("j3", "h", "text", 1, retry=RetryPolicy(cap=math.inf))),
    m.Finished(JOB, OUTCOME, worker=3),
    m.Retry(JOB, OUTCOME, hold=False),
    m.Wake("acme/api", math.inf),
    m.Wake("acme/api", -math.inf),
    m.Wake("", 0.0),
]


def _name(msg: object) -> str:
    return type(msg).__name__


def test_examples_cover_every_message_type() -> None:
    assert {type(msg) for msg in EXAMPLES} == set(m.MESSAGE_TYPES)


@pytest.mark.parametrize("msg", EXAMPLES, ids=_name)
def test_round_trip(msg: object) -> None:
    data = encode(msg)
    assert type(data) is bytes
    back = decode(data)
    assert type(back) is type(msg)
    assert back == msg


@pytest.mark.parametrize("msg", EXAMPLES, ids=_name)
def test_envelope_is_version_class_name_and_body(msg: object) -> None:
    version, tag, body = msgpack.unpackb(encode(msg))
    assert (version, tag) == (VERSION, type(msg).__name__)
    assert len(body) == len(dataclasses.fields(msg))  # type: ignore[arg-type]


def test_float_field_takes_an_int_and_gives_a_float() -> None:
    back = decode(encode(m.Wake("r", 5)))  # an int is a float to type checkers too
    assert isinstance(back, m.Wake)
    assert back.due == 5.0
    assert type(back.due) is float
    back = decode(_pack(VERSION, "Wake", ["r", 5]))
    assert isinstance(back, m.Wake)
    assert type(back.due) is float


def test_decode_takes_bytearray_and_memoryview() -> None:
    data = encode(m.Tick("r"))
    assert decode(bytearray(data)) == m.Tick("r")
    assert decode(memoryview(data)) == m.Tick("r")


def test_smaller_than_json() -> None:
    msg = m.Finished(JOB, OUTCOME, worker=3)
    assert len(encode(msg)) < len(json.dumps(dataclasses.asdict(msg)))


# --- bytes that must not decode ---------------------------------------------------------


def _pack(*envelope: Any) -> bytes:
    return msgpack.packb(list(envelope))  # type: ignore[no-any-return]


def _body(msg: object) -> list[Any]:
    return msgpack.unpackb(encode(msg))[2]  # type: ignore[no-any-return]


def _index(cls: Any, field: str) -> int:
    return [f.name for f in dataclasses.fields(cls)].index(field)


def _job_body(**changes: Any) -> list[Any]:
    body = _body(JOB)
    for field, value in changes.items():
        body[_index(m.Job, field)] = value
    return body


def _replace(data: bytes, old: bytes, new: bytes) -> bytes:
    assert data.count(old) == 1
    return data.replace(old, new)


def _nested_list(depth: int) -> Any:
    value: Any = None
    for _ in range(depth):
        value = [value]
    return value


_WRONG_RETRY = _job_body()
_WRONG_RETRY[_index(m.Job, "retry")][_index(RetryPolicy, "jitter")] = 2.0
_BAD_STATUS = _body(OUTCOME)
_BAD_STATUS[_index(m.Outcome, "status")] = "exploded"
_SUBMIT = encode(m.Submit(JOB))

BAD_BYTES: dict[str, bytes] = {
    "empty": b"",
    "truncated": _SUBMIT[:-1],
    "trailing garbage": _SUBMIT + b"\x00",
    "two envelopes": _SUBMIT + _SUBMIT,
    "reserved byte": b"\xc1",
    "arbitrary bytes": bytes(range(255, 0, -7)),
    "not an envelope": _pack(1, 2),
    "a map": msgpack.packb({"version": VERSION, "tag": "Tick", "body": ["r"]}),
    "a bare int": msgpack.packb(VERSION),
    "envelope too long": _pack(VERSION, "Tick", ["r"], None),
    "newer version": _pack(VERSION + 1, "Tick", ["r"]),
    "older version": _pack(VERSION - 1, "Tick", ["r"]),
    "version as bool": _pack(True, "Tick", ["r"]),
    "version as float": _pack(float(VERSION), "Tick", ["r"]),
    "version as str": _pack(str(VERSION), "Tick", ["r"]),
    "unknown tag": _pack(VERSION, "Nope", []),
    "tag by index": _pack(VERSION, m.MESSAGE_TYPES.index(m.Tick), ["r"]),
    "tag as bytes": _pack(VERSION, b"Tick", ["r"]),
    "tag in wrong case": _pack(VERSION, "tick", ["r"]),
    "body not a list": _pack(VERSION, "Tick", {"repo": "r"}),
    "too few fields": _pack(VERSION, "Tick", []),
    "too many fields": _pack(VERSION, "Tick", ["r", "s"]),
    "int for str": _pack(VERSION, "Tick", [5]),
    "None for str": _pack(VERSION, "Tick", [None]),
    "bool for int": _pack(VERSION, "CancelTimer", [True]),
    "float for int": _pack(VERSION, "CancelTimer", [1.0]),
    "str for float": _pack(VERSION, "Wake", ["r", "soon"]),
    "bool for float": _pack(VERSION, "Wake", ["r", False]),
    "NaN for float": _pack(VERSION, "Wake", ["r", math.nan]),
    "int for bool": _pack(VERSION, "Retry", [_body(JOB), _body(OUTCOME), 1]),
    "bad literal": _pack(VERSION, "Done", [_body(JOB), _BAD_STATUS]),
    "retry policy invariant": _pack(VERSION, "Submit", [_WRONG_RETRY]),
    "nested not a list": _pack(VERSION, "Submit", ["j1"]),
    "nested field missing": _pack(VERSION, "Submit", [_body(JOB)[:-1]]),
    "nested None": _pack(VERSION, "Submit", [None]),
    "payload int key": _pack(VERSION, "Submit", [_job_body(payload={1: "x"})]),
    "payload bytes key": _pack(VERSION, "Submit", [_job_body(payload={b"k": 1})]),
    "payload bytes": _pack(VERSION, "Submit", [_job_body(payload=b"x")]),
    "payload ext": _pack(VERSION, "Submit", [_job_body(payload=msgpack.ExtType(5, b"x"))]),
    "payload timestamp": _pack(VERSION, "Submit", [_job_body(payload=msgpack.Timestamp(1))]),
    "payload NaN": _pack(VERSION, "Submit", [_job_body(payload=[math.nan])]),
    "payload too deep": _pack(VERSION, "Submit", [_job_body(payload=_nested_list(150))]),
    "invalid utf-8": _replace(_pack(VERSION, "Tick", ["@@"]), b"\xa2@@", b"\xa2\xff\xfe"),
    "length beyond input": _replace(
        _pack(VERSION, "Tick", ["@@"]), b"\xa2@@", b"\xdd\x7f\xff\xff\xff"
    ),
}


@pytest.mark.parametrize("data", list(BAD_BYTES.values()), ids=list(BAD_BYTES))
def test_bad_bytes_raise_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError) as caught:
        decode(data)
    assert caught.value.raw == data


def test_every_truncation_raises_decode_error() -> None:
    data = encode(m.Finished(JOB, OUTCOME, worker=3))
    for end in range(len(data)):
        with pytest.raises(DecodeError):
            decode(data[:end])


def test_version_mismatch_names_both_versions() -> None:
    with pytest.raises(DecodeError, match=rf"version {VERSION + 1}\b.*reads {VERSION}"):
        decode(_pack(VERSION + 1, "Tick", ["r"]))


def test_field_error_names_the_field() -> None:
    data = _pack(VERSION, "Submit", [_job_body(priority=True)])
    with pytest.raises(DecodeError, match=r"Submit\.job: Job\.priority: expected int, got bool"):
        decode(data)


def test_payload_depth_10_000_is_a_decode_error_not_recursion() -> None:
    marker = msgpack.packb("@@")
    deep = b"\x91" * 10_000 + b"\xc0"  # [[[...[None]...]]]
    data = _replace(encode(m.Submit(dataclasses.replace(JOB, payload="@@"))), marker, deep)
    with pytest.raises(DecodeError) as caught:
        decode(data)
    assert not isinstance(caught.value.__cause__, RecursionError)


def test_payload_at_the_depth_limit_round_trips() -> None:
    msg = m.Submit(dataclasses.replace(JOB, payload=_nested_list(MAX_DEPTH)))
    assert decode(encode(msg)) == msg
    too_deep = m.Submit(dataclasses.replace(JOB, payload=_nested_list(MAX_DEPTH + 1)))
    with pytest.raises(NotSerializable):
        encode(too_deep)


def test_the_codec_and_submit_share_one_depth_limit() -> None:
    deepest, too_deep = _nested_list(MAX_DEPTH), _nested_list(MAX_DEPTH + 1)
    assert json_copy(deepest) == deepest
    with pytest.raises(NotSerializable):
        json_copy(too_deep)
    with pytest.raises(NotSerializable):
        encode(m.Submit(dataclasses.replace(JOB, payload=too_deep)))
    with pytest.raises(DecodeError, match=f"nested deeper than {MAX_DEPTH} levels"):
        decode(_pack(VERSION, "Submit", [_job_body(payload=too_deep)]))


def test_oversized_input_is_refused_before_parsing() -> None:
    data = b"\xc0" * (codec._MAX_BYTES + 1)
    with pytest.raises(DecodeError, match="over"):
        decode(data)


@pytest.mark.parametrize("data", ["text", None, 42, [1, 2], object()], ids=repr)
def test_non_bytes_raise_decode_error(data: Any) -> None:
    with pytest.raises(DecodeError) as caught:
        decode(data)
    assert caught.value.raw == b""


# --- what encode refuses --------------------------------------------------------------


class _SubTick(m.Tick):
    pass


@pytest.mark.parametrize(
    "value",
    [object(), 42, "Tick", None, m.MESSAGE_TYPES, m.Tick, _SubTick("r")],
    ids=repr,
)
def test_encoding_a_non_message_raises(value: object) -> None:
    with pytest.raises(InvalidArgument, match="not a message type"):
        encode(value)
    with pytest.raises(TypeError):  # InvalidArgument is a TypeError too
        encode(value)


class _Three(enum.IntEnum):
    THREE = 3


NOT_ENCODABLE: dict[str, tuple[type[Exception], object]] = {
    "bool for int": (InvalidArgument, dataclasses.replace(JOB, priority=True)),
    "str for int": (InvalidArgument, dataclasses.replace(JOB, seq="1")),  # type: ignore[arg-type]
    "NaN timeout": (InvalidArgument, dataclasses.replace(JOB, timeout=math.nan)),
    "int not exact as float": (InvalidArgument, m.Wake("r", 2**53 + 1)),
    "int beyond 64 bits": (InvalidArgument, m.CancelTimer(2**64)),
    "lone surrogate": (InvalidArgument, m.Tick("\ud800")),
    "bad literal": (InvalidArgument, m.Outcome("exploded")),  # type: ignore[arg-type]
    "nested wrong type": (InvalidArgument, m.Submit("j1")),  # type: ignore[arg-type]
    "payload int key": (NotSerializable, dataclasses.replace(JOB, payload={1: "x"})),  # type: ignore[dict-item]
    "payload tuple": (NotSerializable, dataclasses.replace(JOB, payload=(1, 2))),  # type: ignore[arg-type]
    "payload set": (NotSerializable, dataclasses.replace(JOB, payload={1})),  # type: ignore[arg-type]
    "payload bytes": (NotSerializable, dataclasses.replace(JOB, payload=b"x")),  # type: ignore[arg-type]
    "payload NaN": (NotSerializable, dataclasses.replace(JOB, payload=[math.nan])),
    "payload infinity": (NotSerializable, dataclasses.replace(JOB, payload={"x": math.inf})),
    "payload int subclass": (NotSerializable, dataclasses.replace(JOB, payload=[_Three.THREE])),
    "payload 10_000 deep": (
        NotSerializable,
        dataclasses.replace(JOB, payload=_nested_list(10_000)),
    ),
    "result object": (NotSerializable, m.Outcome("completed", result=Ellipsis)),  # type: ignore[arg-type]
}


@pytest.mark.parametrize("error,msg", list(NOT_ENCODABLE.values()), ids=list(NOT_ENCODABLE))
def test_encode_refuses_what_would_not_round_trip(error: type[Exception], msg: object) -> None:
    with pytest.raises(error):
        encode(msg)


def test_payload_with_non_str_key_names_the_field() -> None:
    job = dataclasses.replace(JOB, payload={"ok": {2: "x"}})  # type: ignore[dict-item]
    with pytest.raises(NotSerializable, match=r"Job\.payload: value\['ok'\] has a key 2 of"):
        encode(m.Submit(job))


# --- tuple fields ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class _WithTuples:
    many: tuple[int, ...]
    pair: tuple[str, float]
    maybe: tuple[bool, ...] | None = None


def test_tuple_fields_come_back_as_tuples() -> None:
    value = _WithTuples((1, 2, 3), ("a", 1.5), (True,))
    wire = msgpack.unpackb(msgpack.packb(codec._dataclass(_WithTuples, True)(value)))
    back = codec._dataclass(_WithTuples, False)(wire)
    assert back == value
    assert type(back.many) is tuple
    with pytest.raises(codec._Mismatch):
        codec._dataclass(_WithTuples, False)([[1], ["a", 1.5, 2.0], None])
    with pytest.raises(codec._Mismatch):
        codec._dataclass(_WithTuples, True)(_WithTuples([1], ("a", 1.5)))  # type: ignore[arg-type]
