"""The JSON check that payloads (at submit) and results (at return) go through."""

from __future__ import annotations

import math
from typing import Any

from actors._errors import NotSerializable
from actors.messages import JSONValue

__all__ = ["MAX_DEPTH", "json_copy"]

MAX_DEPTH = 64
"""Deepest nesting of lists and dicts accepted; deeper is refused, not recursed into."""

_SCALARS = (str, int, bool, type(None))


def json_copy(value: Any, what: str = "payload") -> JSONValue:
    """Return a private deep copy of ``value`` as JSON would carry it.

    Tuples become lists. Anything else JSON cannot carry exactly (sets, bytes,
    objects, dict keys that are not str, NaN or infinite floats, nesting deeper
    than `MAX_DEPTH`) raises `NotSerializable`, naming where it sits. The copy
    means a caller that mutates its object after submit cannot change the job.
    """
    if isinstance(value, _SCALARS):
        return value
    return _copy(value, what, 0)


def _copy(value: Any, path: str, depth: int) -> JSONValue:
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        msg = f"{path} is {value!r}: JSON has no NaN or infinity"
        raise NotSerializable(msg)
    if depth >= MAX_DEPTH:
        msg = f"{path} is nested deeper than {MAX_DEPTH} levels"
        raise NotSerializable(msg)
    if isinstance(value, dict):
        out: dict[str, JSONValue] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                msg = f"{path} has a key {key!r} of type {type(key).__name__}: JSON keys are str"
                raise NotSerializable(msg)
            out[key] = _copy(item, f"{path}[{key!r}]", depth + 1)
        return out
    if isinstance(value, list | tuple):
        return [_copy(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value)]
    msg = f"{path} is a {type(value).__name__}, which is not JSON-able"
    raise NotSerializable(msg)
