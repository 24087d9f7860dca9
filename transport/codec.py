"""Every message type in `actors.messages.MESSAGE_TYPES` to bytes and back.

Why msgpack: it is binary and compact (an envelope is ~210 B where JSON takes
~264 B), it carries every float exactly, ``inf`` included (a `RetryPolicy` cap
often is ``inf``; JSON has no infinity), it is bytes-safe, and decoding it runs no
code, unlike pickle.

The envelope is the msgpack array ``[VERSION, tag, body]``:

- ``VERSION`` is the layout version, an int; any other version is refused.
- ``tag`` is the class name (``"Submit"``), never an index into `MESSAGE_TYPES`, so
  reordering that tuple cannot break stored data.
- ``body`` is the list of the field values in declaration order. A nested message
  (the `Job` in `Submit`, the `RetryPolicy` in `Job`) is written as its own body,
  untagged: the field annotation names its type. Tuples travel as lists.

msgpack turns many random byte strings into *some* value, so decoding trusts
nothing: each field is checked against its annotation (``int`` excludes ``bool``,
``float`` also takes an ``int``, literals, optionals). A JSON value (a payload, a
result) goes through the very check `submit` and the worker apply
(`actors._policy.payloads.json_copy`, in its exact mode: str keys, finite floats, at most
`MAX_DEPTH` levels, no tuples or subclasses). Every failure is a `DecodeError`
holding the raw bytes. `encode` applies the same checks, and refuses NaN, so
whatever it accepts comes back equal: ``decode(encode(msg)) == msg``. The checks are built once, at
import, from `dataclasses.fields` and `typing.get_type_hints`: a message type the
codec cannot carry fails the import, not the first message.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Callable
from typing import Any, Literal, Union

import msgpack

from actors._errors import DecodeError, InvalidArgument, NotSerializable
from actors._policy.payloads import MAX_MESSAGE_BYTES, json_copy
from actors.messages import MESSAGE_TYPES

__all__ = ["VERSION", "decode", "encode"]

VERSION = 4
"""The envelope layout version. Bump it whenever a message type's fields change.

4: `Job` gained ``trace`` (the submitter's trace context), so a job's body has
one field more, and a peer on 3 would refuse it as the wrong length anyway."""

_MAX_BYTES = MAX_MESSAGE_BYTES
"""Longest encoded message; longer input is refused before it is parsed. A
scheduler's ``max_payload_bytes`` keeps a payload and a result well inside it."""

_Convert = Callable[[Any], Any]
"""Checks one value against an annotation and returns it in the other form."""


class _Mismatch(Exception):
    """A value does not fit its annotation; becomes a `DecodeError` or `InvalidArgument`."""


class _NotJSON(_Mismatch):
    """A payload or result is not a JSON value; becomes `NotSerializable` on encode."""


class _JSON:
    """Stands in for `actors.messages.JSONValue` when annotations are resolved."""


def _exact(kind: type) -> _Convert:
    def convert(value: Any) -> Any:
        if type(value) is kind:
            return value
        msg = f"expected {kind.__name__}, got {type(value).__name__}"
        raise _Mismatch(msg)

    return convert


def _float(value: Any) -> float:
    kind = type(value)
    if kind is float and not math.isnan(value):  # NaN != NaN: it could not round trip
        return value  # type: ignore[no-any-return]
    if kind is int and -(2**53) <= value <= 2**53:  # wider ints may not convert exactly
        return float(value)
    msg = f"expected a float that round trips (not NaN, no int past 2**53), got {value!r:.30}"
    raise _Mismatch(msg)


def _json(value: Any) -> Any:
    # On decode, msgpack built the value and its copy is as good; on encode, the
    # copy is what gets packed, equal to the original (exact mode changes nothing).
    try:
        return json_copy(value, "value", exact=True)
    except NotSerializable as exc:
        raise _NotJSON(str(exc)) from None


def _literal(values: tuple[Any, ...]) -> _Convert:
    allowed = frozenset((type(value), value) for value in values)  # so True is not 1

    def convert(value: Any) -> Any:
        try:
            if (type(value), value) in allowed:
                return value
        except TypeError:  # unhashable, so not one of the values
            pass
        msg = f"expected one of {values!r}, got {value!r:.50}"
        raise _Mismatch(msg)

    return convert


def _sequence(args: tuple[Any, ...], encoding: bool) -> _Convert:
    # A tuple field travels as a list and must come back a tuple, or the decoded
    # dataclass would not equal the original.
    source, target = (tuple, list) if encoding else (list, tuple)
    each: _Convert | None = None
    items: list[_Convert] = []
    if len(args) == 2 and args[1] is Ellipsis:
        each = _compile(args[0], encoding)
    else:
        items = [_compile(arg, encoding) for arg in args]

    def convert(value: Any) -> Any:
        if type(value) is not source:
            msg = f"expected {source.__name__}, got {type(value).__name__}"
            raise _Mismatch(msg)
        if each is not None:
            return target(map(each, value))
        if len(value) != len(items):
            msg = f"expected {len(items)} items, got {len(value)}"
            raise _Mismatch(msg)
        return target(check(item) for check, item in zip(items, value, strict=True))

    return convert


@functools.cache
def _dataclass(cls: type, encoding: bool) -> _Convert:
    """The converter between instances of ``cls`` and their bodies (lists of fields)."""
    if not all(f.init for f in dataclasses.fields(cls)):
        msg = f"the codec cannot carry {cls.__name__}: a field is not in __init__"
        raise TypeError(msg)
    hints = typing.get_type_hints(cls, localns={"JSONValue": _JSON})
    fields = [(f.name, _compile(hints[f.name], encoding)) for f in dataclasses.fields(cls)]
    name = cls.__name__
    count = len(fields)

    def to_body(value: Any) -> list[Any]:
        if type(value) is not cls:
            msg = f"expected {name}, got {type(value).__name__}"
            raise _Mismatch(msg)
        body = []
        for field, convert in fields:
            try:
                body.append(convert(getattr(value, field)))
            except _Mismatch as exc:
                raise type(exc)(f"{name}.{field}: {exc}") from None
        return body

    def from_body(body: Any) -> Any:
        if type(body) is not list or len(body) != count:
            msg = f"{name} must be a list of {count} fields"
            raise _Mismatch(msg)
        values = []
        for (field, convert), item in zip(fields, body, strict=True):
            try:
                values.append(convert(item))
            except _Mismatch as exc:
                raise type(exc)(f"{name}.{field}: {exc}") from None
        try:
            return cls(*values)
        except (TypeError, ValueError) as exc:  # the class's own checks (__post_init__)
            msg = f"{name}: {exc}"
            raise _Mismatch(msg) from None

    return to_body if encoding else from_body


_SIMPLE: dict[Any, _Convert] = {
    str: _exact(str),
    int: _exact(int),
    bool: _exact(bool),
    type(None): _exact(type(None)),
    float: _float,
    _JSON: _json,
}
"""Converters that are the same for every field and both directions."""


def _compile(hint: Any, encoding: bool) -> _Convert:
    """The converter for one resolved annotation, in one direction."""
    simple = _SIMPLE.get(hint)
    if simple is not None:
        return simple
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _dataclass(hint, encoding)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return _literal(args)
    if origin is tuple:
        return _sequence(args, encoding)
    # Of unions only ``X | None``: nested bodies are untagged, so a wider union
    # could be ambiguous, and no message needs one.
    if origin in (Union, types.UnionType) and len(args) == 2 and type(None) in args:
        inner = _compile(args[0] if args[1] is type(None) else args[1], encoding)
        return lambda value: None if value is None else inner(value)
    msg = f"the codec cannot carry the annotation {hint!r}"
    raise TypeError(msg)


_ENCODERS: dict[type, tuple[str, _Convert]] = {
    cls: (cls.__name__, _dataclass(cls, True)) for cls in MESSAGE_TYPES
}
_DECODERS: dict[str, _Convert] = {cls.__name__: _dataclass(cls, False) for cls in MESSAGE_TYPES}
if len(_DECODERS) != len(MESSAGE_TYPES):
    _msg = "two message types share a class name, so a tag"
    raise TypeError(_msg)


def encode(msg: object) -> bytes:
    """Encode a message for the wire or the journal.

    Args:
        msg: An instance of one of `MESSAGE_TYPES` (exactly; not a subclass).

    Returns:
        The msgpack envelope ``[VERSION, tag, body]``.

    Raises:
        NotSerializable: A payload or result is not a JSON value (a tuple, a set, a
            non-str key, NaN or infinity, nesting deeper than `MAX_DEPTH` levels).
        InvalidArgument: ``msg`` is not a message, a field does not fit its
            annotation, or a value cannot round trip (NaN, an int beyond 64 bits,
            a lone surrogate in a str, an encoding over 16 MiB). Nothing is written.
    """
    entry = _ENCODERS.get(type(msg))
    if entry is None:
        reason = f"cannot encode a {type(msg).__qualname__}: not a message type"
        raise InvalidArgument(reason)
    tag, to_body = entry
    try:
        data: bytes = msgpack.packb([VERSION, tag, to_body(msg)])
    except _Mismatch as exc:
        error = NotSerializable if isinstance(exc, _NotJSON) else InvalidArgument
        raise error(f"cannot encode {tag}: {exc}") from None
    except (OverflowError, ValueError, TypeError) as exc:  # int range, surrogates
        reason = f"cannot encode {tag}: {exc}"
        raise InvalidArgument(reason) from exc
    if len(data) > _MAX_BYTES:
        reason = f"cannot encode {tag}: {len(data)} bytes, over {_MAX_BYTES}"
        raise InvalidArgument(reason)
    return data


def decode(data: bytes | bytearray | memoryview) -> object:
    """Decode bytes made by `encode` back into the message.

    Args:
        data: The envelope, as bytes (a bytearray or memoryview, e.g. a zero-copy
            ZeroMQ frame, is accepted too).

    Returns:
        The message, equal to the one encoded.

    Raises:
        DecodeError: ``data`` is not bytes, is too long, is not one msgpack value
            (corrupt, truncated, trailing bytes), has another version or an
            unknown tag, or a field does not fit its annotation. ``raw`` holds
            the bytes (empty when ``data`` was not bytes at all).
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        msg = f"cannot decode a {type(data).__name__}: expected bytes"
        raise DecodeError(msg)
    raw = bytes(data)
    if len(raw) > _MAX_BYTES:
        msg = f"{len(raw)} bytes, over the {_MAX_BYTES} a message may take"
        raise DecodeError(msg, raw=raw)
    try:
        # unpackb bounds every str/array/map length by len(raw), so a short input
        # cannot make it allocate much. Bin and ext never occur in a message.
        envelope = msgpack.unpackb(
            raw, raw=False, strict_map_key=True, max_bin_len=0, max_ext_len=0
        )
    except (ValueError, TypeError, RecursionError, msgpack.UnpackException) as exc:
        msg = f"not one msgpack value: {str(exc) or type(exc).__name__}"
        raise DecodeError(msg, raw=raw) from exc
    if type(envelope) is not list or len(envelope) != 3:
        raise DecodeError("not a [version, tag, body] envelope", raw=raw)
    version, tag, body = envelope
    if type(version) is not int or version != VERSION:
        msg = f"unsupported version {version!r:.20}; this codec reads {VERSION}"
        raise DecodeError(msg, raw=raw)
    from_body = _DECODERS.get(tag) if type(tag) is str else None
    if from_body is None:
        msg = f"unknown message tag {tag!r:.50}"
        raise DecodeError(msg, raw=raw)
    try:
        return from_body(body)
    except _Mismatch as exc:
        msg = f"invalid {tag}: {exc}"
        raise DecodeError(msg, raw=raw) from None
