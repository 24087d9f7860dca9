"""The one JSON check: payloads at submit, results at the worker, and every JSON
value the codec (``transport/codec.py``) encodes or decodes.

One function (`json_copy`) and one set of limits, so that whatever a submit
accepts can also be journaled and sent to a node: the same nesting limit, the
same refusals (NaN and infinity, non-str keys), and a size limit that keeps a
payload and a result together inside one encoded message.
"""

from __future__ import annotations

import math
import threading
from typing import Any, NoReturn

import msgpack

from actors._errors import InvalidArgument, NotSerializable, PayloadTooLarge
from actors.messages import JSONValue

__all__ = [
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "INT_MAX",
    "INT_MIN",
    "MAX_DEPTH",
    "MAX_MESSAGE_BYTES",
    "MAX_PAYLOAD_BYTES",
    "MIN_PAYLOAD_BYTES",
    "SHORT_STR",
    "check_max_payload_bytes",
    "json_copy",
]

MAX_DEPTH = 64
"""Deepest nesting of lists and dicts accepted; deeper is refused, not recursed
into (hostile input cannot exhaust the stack)."""

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
"""The longest encoded message the codec writes or reads."""

MAX_PAYLOAD_BYTES = 7 * 1024 * 1024
"""The highest ``max_payload_bytes`` a scheduler takes. A message carries at most
one payload and one result (`Finished`: the job and its outcome), so two of them
leave 2 MiB of `MAX_MESSAGE_BYTES` for the rest (ids, names, an error's traceback)."""

DEFAULT_MAX_PAYLOAD_BYTES = 4 * 1024 * 1024
"""``max_payload_bytes`` unless the scheduler is told otherwise."""

MIN_PAYLOAD_BYTES = 1024
"""The lowest ``max_payload_bytes`` a scheduler takes. Any int, float, bool or
None encodes in at most 9 bytes, so such a payload is within every limit and
never measured."""

INT_MIN = -(2**63)
INT_MAX = 2**64 - 1
"""The ints msgpack carries (JSON has no bound; the wire format has)."""

SHORT_STR = MIN_PAYLOAD_BYTES - 5
"""An ASCII str shorter than this is within every limit (msgpack adds at most 5
bytes to a str's UTF-8)."""


def check_max_payload_bytes(value: object) -> int:
    """``value``, if it is an int from `MIN_PAYLOAD_BYTES` to `MAX_PAYLOAD_BYTES`;
    else `InvalidArgument`."""
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or not MIN_PAYLOAD_BYTES <= value <= MAX_PAYLOAD_BYTES
    ):
        msg = (
            f"max_payload_bytes must be an int from {MIN_PAYLOAD_BYTES} to {MAX_PAYLOAD_BYTES} "
            f"(7 MiB: a message carries a payload and a result within "
            f"{MAX_MESSAGE_BYTES // 2**20} MiB), not {value!r}"
        )
        raise InvalidArgument(msg)
    return value


class _Refused(Exception):
    """Internal: a value is not JSON. Unwinds the walk, collecting the path."""

    def __init__(self, reason: str, *, at_parent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path: list[str | int] = []
        """Keys and indexes, innermost first (each frame adds its own on the way out)."""
        self.at_parent = at_parent
        """The fault is the dict's own (a key), so its frame adds no key to the path."""


def json_copy(
    value: Any,
    what: str = "payload",
    *,
    exact: bool = False,
    max_bytes: int | None = None,
) -> JSONValue:
    """Return a private deep copy of ``value`` as JSON would carry it, or refuse it.

    A JSON value is a dict with str keys, a list, a str, an int within 64 bits
    (what the wire format carries), a finite float, a bool or None, nested at
    most `MAX_DEPTH` levels. The copy means a caller that changes its object
    after submit cannot change the job. Two faults only encoding finds (an int
    past 64 bits inside a list or dict, a str with a lone surrogate) are found
    here when ``max_bytes`` is given, and by the codec when it encodes.

    Args:
        value: the value to check and copy.
        what: how error messages name it (``"payload"``, ``"result of ..."``).
        exact: take only those exact types (the codec's rule: what it decodes
            is exactly that, and what it encodes must come back equal). Else
            tuples become lists, and subclasses (an `IntEnum`, an
            `OrderedDict`) become the base type.
        max_bytes: refuse a value whose encoding (msgpack, as the journal and
            the wire carry it) is longer; None: no size limit. Ints, floats,
            bools, None and short ASCII strs are not measured.

    Raises:
        NotSerializable: ``value`` is not a JSON value; the message names where
            the fault sits (a path such as ``payload['items'][3]``).
        PayloadTooLarge: its encoding is over ``max_bytes``.
    """
    kind = type(value)
    if kind is str:
        if max_bytes is not None and (len(value) + 5 > max_bytes or not value.isascii()):
            _check_size(value, what, max_bytes)
        return value  # type: ignore[no-any-return]
    if kind is int:
        if not INT_MIN <= value <= INT_MAX:
            _refuse(what, [], _too_wide(value))
        return value  # type: ignore[no-any-return]
    if kind is bool or value is None:
        return value  # type: ignore[no-any-return]
    try:
        copied = _walk(value, 0, exact)
    except _Refused as refused:
        _refuse(what, refused.path, refused.reason)
    if max_bytes is not None:
        _check_size(copied, what, max_bytes)
    return copied


_PLAIN = frozenset((str, int, bool, type(None)))
"""Exact types taken as they are in the walk. An int past 64 bits is refused by
the packer that measures the value (or, in the codec, encodes it): checking each
int here would double the cost of a list of ints."""


def _walk(value: Any, depth: int, exact: bool) -> JSONValue:
    kind = type(value)
    if kind in _PLAIN:
        return value  # type: ignore[no-any-return]
    if kind is float:
        if math.isfinite(value):
            return value  # type: ignore[no-any-return]
        msg = f"is {value!r}: JSON has no NaN or infinity"
        raise _Refused(msg)
    if kind is list or kind is dict or (not exact and isinstance(value, (dict, list, tuple))):
        if depth >= MAX_DEPTH:
            msg = f"is nested deeper than {MAX_DEPTH} levels"
            raise _Refused(msg)
        if isinstance(value, dict):
            return _walk_dict(value, depth + 1, exact)
        out: list[JSONValue] = []
        append = out.append
        try:
            for item in value:
                # Inline for the commonest items: a call per item is most of the cost.
                append(item if type(item) in _PLAIN else _walk(item, depth + 1, exact))
        except _Refused as refused:
            refused.path.append(len(out))  # the index of the item refused
            raise
        return out
    return _plain_value(value, exact)


def _plain_value(value: Any, exact: bool) -> JSONValue:
    """A subclass of a scalar (an IntEnum, a numpy float64) as its plain value,
    unless ``exact``; anything else is refused."""
    if not exact:
        if isinstance(value, str):
            return str.__str__(value)
        if isinstance(value, int):
            return int.__int__(value)
        if isinstance(value, float):
            return _walk(float.__float__(value), 0, exact)
    msg = f"is a {type(value).__name__}, which is not a JSON value"
    raise _Refused(msg)


def _walk_dict(value: dict[Any, Any], depth: int, exact: bool) -> dict[str, JSONValue]:
    """A dict's items, ``depth`` being theirs."""
    out: dict[str, JSONValue] = {}
    key: Any = None
    try:
        for key, item in value.items():
            out[key if type(key) is str else _key(key, exact)] = (
                item if type(item) in _PLAIN else _walk(item, depth, exact)
            )
    except _Refused as refused:
        if refused.at_parent:
            refused.at_parent = False
        else:
            refused.path.append(key)
        raise
    return out


def _key(key: Any, exact: bool) -> str:
    if exact or not isinstance(key, str):
        msg = f"has a key {key!r:.50} of type {type(key).__name__}: JSON keys are str"
        raise _Refused(msg, at_parent=True)
    return str.__str__(key)  # a subclass of str (a StrEnum): its plain value


_SHOWN = 4
"""Path segments a message shows before it shortens the path (a value nested too
deep has MAX_DEPTH of them)."""


def _refuse(what: str, path: list[str | int], reason: str) -> NoReturn:
    segments = [f"[{key!r}]" for key in reversed(path)]
    if len(segments) > _SHOWN + 1:
        segments[_SHOWN:] = [f"[... {len(segments) - _SHOWN} more]"]
    msg = f"{what}{''.join(segments)} {reason}"
    raise NotSerializable(msg) from None


def _too_wide(value: int) -> str:
    # Not the value itself: an int of thousands of digits has no str (Python
    # refuses to convert it) and would swamp the message.
    return f"is an int of {value.bit_length()} bits, beyond the 64 the wire format carries"


def _check_size(value: JSONValue, what: str, max_bytes: int) -> None:
    """Measure ``value`` as msgpack encodes it; refuse what the wire cannot carry."""
    try:
        if type(value) is str:
            # Without packing: an ASCII str is one byte a character.
            n = len(value) if value.isascii() else len(value.encode())
            size = n + (1 if n < 32 else 2 if n < 256 else 3 if n < 65536 else 5)
        else:
            size = _packed_size(value)
    except UnicodeEncodeError:
        msg = f"{what} holds a str with a lone surrogate, which UTF-8 cannot encode"
        raise NotSerializable(msg) from None
    except OverflowError:
        msg = f"{what} holds an int beyond the 64 bits the wire format carries"
        raise NotSerializable(msg) from None
    if size > max_bytes:
        raise PayloadTooLarge(what, size, max_bytes)


_packers = threading.local()
"""One msgpack `Packer` per thread: ``packb`` builds a new one per call, with a
256 KiB buffer, which costs twice the packing of a small payload."""

_KEEP_BUFFER = 64 * 1024
"""A packer whose buffer grew past this (it never shrinks) is dropped after use."""


def _packed_size(value: JSONValue) -> int:
    packer: msgpack.Packer | None = getattr(_packers, "packer", None)
    if packer is None:
        packer = _packers.packer = msgpack.Packer(buf_size=4096)
    size = len(packer.pack(value))
    if size > _KEEP_BUFFER:
        _packers.packer = None  # free its grown buffer, up to twice the limit
    return size
