"""Properties of `transport.codec`: every message round trips, and no bytes at all
make `decode` raise anything but `DecodeError`."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Literal

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors import messages as m
from actors._errors import DecodeError
from actors._policy.retry import RetryPolicy
from transport import VERSION, decode, encode

# The autouse thread check wraps the whole test, not each example: that is intended.
_SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# msgpack carries 64-bit ints, signed or unsigned.
ints = st.integers(min_value=-(2**63), max_value=2**64 - 1)

json_values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | ints
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=12,
)

retry_policies = st.builds(
    RetryPolicy,
    kind=st.sampled_from(["fixed", "linear", "exponential"]),
    base=st.floats(min_value=0.0),  # unbounded above: infinity included
    cap=st.floats(min_value=0.0),
    jitter=st.floats(min_value=0.0, max_value=1.0),
    factor=st.floats(min_value=1.0),
)


class _JSONMarker:
    """Stands in for `m.JSONValue` when annotations are resolved."""


def strategy_for(hint: Any) -> st.SearchStrategy[Any]:
    """Values of one annotation, derived the way the codec derives its checks."""
    simple: dict[Any, st.SearchStrategy[Any]] = {
        str: st.text(max_size=30),
        int: ints,
        float: st.floats(allow_nan=False),  # infinity included: a cap often is inf
        bool: st.booleans(),
        _JSONMarker: json_values,
    }
    if hint in simple:
        return simple[hint]
    if hint is RetryPolicy:
        return retry_policies
    if dataclasses.is_dataclass(hint):
        return messages_of(hint)
    args = typing.get_args(hint)
    if typing.get_origin(hint) is Literal:
        return st.sampled_from(args)
    if typing.get_origin(hint) is tuple:
        return _tuples(args)
    return st.one_of(*[st.none() if a is type(None) else strategy_for(a) for a in args])


def _tuples(args: tuple[Any, ...]) -> st.SearchStrategy[Any]:
    if len(args) == 2 and args[1] is Ellipsis:  # tuple[X, ...]: any length
        return st.lists(strategy_for(args[0]), max_size=5).map(tuple)
    return st.tuples(*map(strategy_for, args))


def messages_of(cls: Any) -> st.SearchStrategy[Any]:
    if cls is RetryPolicy:
        return retry_policies
    hints = typing.get_type_hints(cls, localns={"JSONValue": _JSONMarker})
    return st.builds(cls, **{f.name: strategy_for(hints[f.name]) for f in dataclasses.fields(cls)})


any_message = st.one_of(*map(messages_of, m.MESSAGE_TYPES))


@pytest.mark.parametrize("cls", m.MESSAGE_TYPES, ids=lambda cls: cls.__name__)
@_SETTINGS
@given(data=st.data())
def test_every_message_round_trips(cls: type, data: st.DataObject) -> None:
    msg = data.draw(messages_of(cls))
    back = decode(encode(msg))
    assert type(back) is cls
    assert back == msg


def _decodes_or_refuses(data: bytes) -> None:
    """The contract for any bytes: a message that round trips, or `DecodeError`."""
    try:
        msg = decode(data)
    except DecodeError as exc:
        assert exc.raw == data
        return
    assert type(msg) in m.MESSAGE_TYPES
    assert decode(encode(msg)) == msg


@settings(_SETTINGS, max_examples=300)
@given(st.binary(max_size=300))
def test_random_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    _decodes_or_refuses(data)


@settings(_SETTINGS, max_examples=60)
@given(
    any_message,
    st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), min_size=1, max_size=3),
    st.integers(min_value=0),
)
def test_corrupted_messages_decode_or_raise_decode_error(
    msg: object, flips: list[tuple[int, int]], cut: int
) -> None:
    data = bytearray(encode(msg))
    for position, byte in flips:
        data[position % len(data)] = byte
    _decodes_or_refuses(bytes(data))
    _decodes_or_refuses(bytes(data[: cut % len(data)]))


# Any msgpack value (what corrupt but well-formed bytes turn into), under a real tag.
msgpack_values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | ints | st.floats() | st.text(max_size=10) | st.binary(max_size=10),
    lambda children: (
        st.lists(children, max_size=14)
        | st.dictionaries(st.text(max_size=5) | ints, children, max_size=4)
    ),
    max_leaves=30,
)


@settings(_SETTINGS, max_examples=150)
@given(
    st.sampled_from([VERSION, VERSION + 1, True]),
    st.sampled_from([cls.__name__ for cls in m.MESSAGE_TYPES]),
    msgpack_values,
)
def test_well_formed_envelopes_of_any_shape_decode_or_raise(
    version: object, tag: str, body: object
) -> None:
    _decodes_or_refuses(msgpack.packb([version, tag, body]))
