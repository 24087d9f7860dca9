"""The node protocol: what a scheduler and a worker node may say to each other.

A worker node is a process, on this machine or another, that runs jobs a
scheduler lends it. Both sides exchange the messages of the node section of
`actors.messages` (`Hello`, `Run`, `NodeFinished` and the rest), each frame one
`transport.codec` envelope. The codec refuses bytes that are no message; this
module also refuses a message the other side has no business sending: a node
that sends `Run`, or a `Submit` or `Close` meant for a scheduler's own actors,
is refused like corrupt bytes, with a `DecodeError`, before anything acts on it;
so is a value its field's type allows but the exchange does not (a `Credit` of
0 or fewer slots, a `Progress` fraction outside [0, 1]).

The exchange, from the node's side::

    node --Hello--> scheduler --Welcome | Refused--> node
    node --Credit(n)--> scheduler --Run (at most n)--> node
    node --Progress ... NodeFinished--> scheduler     (each naming the Run's lease)
    scheduler --CancelRun--> node                     (the node answers NodeFinished)
    Heartbeat both ways, every Welcome.heartbeat seconds
    scheduler --Drain--> node, or node --Drain--> scheduler; then node --Bye--> scheduler

Two versions guard it: the codec's `transport.codec.VERSION` (the envelope
layout: another one is a `DecodeError` naming both) and `PROTOCOL_VERSION`
(what the messages mean and the order they come in), which a node states in its
`Hello` and `check_hello` compares.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from typing import Any, TypeAlias, cast

from actors._errors import DecodeError
from actors.messages import (
    Bye,
    CancelRun,
    Credit,
    Drain,
    Heartbeat,
    Hello,
    NodeFinished,
    Progress,
    Refused,
    Run,
    Welcome,
)
from transport.codec import decode

__all__ = [
    "NODE_MESSAGES",
    "PROTOCOL_VERSION",
    "SCHEDULER_MESSAGES",
    "NodeMessage",
    "SchedulerMessage",
    "check_hello",
    "decode_from_node",
    "decode_from_scheduler",
]

PROTOCOL_VERSION = 1
"""The node protocol's version. Bump it when a node message changes meaning or
the exchange changes its rules (the codec's `VERSION` covers the layout)."""

NodeMessage: TypeAlias = Hello | Credit | Progress | NodeFinished | Heartbeat | Drain | Bye
"""A message a node may send to its scheduler."""

SchedulerMessage: TypeAlias = Welcome | Refused | Run | CancelRun | Heartbeat | Drain
"""A message a scheduler may send to a node."""

NODE_MESSAGES: tuple[type, ...] = typing.get_args(NodeMessage)
"""The message types a node may send; anything else from a node is refused."""

SCHEDULER_MESSAGES: tuple[type, ...] = typing.get_args(SchedulerMessage)
"""The message types a scheduler may send; anything else from it is refused."""

_FROM_NODE = frozenset(NODE_MESSAGES)
_FROM_SCHEDULER = frozenset(SCHEDULER_MESSAGES)


def _credit_out_of_range(msg: Credit) -> str | None:
    # Credit adds up: a negative one would silently eat the credit a node gives
    # next, and 0 means nothing a node would send.
    return None if msg.slots >= 1 else f"slots must be at least 1, got {msg.slots}"


def _progress_out_of_range(msg: Progress) -> str | None:
    fraction = msg.fraction  # NaN never decodes; inf and -1 do
    return None if 0.0 <= fraction <= 1.0 else f"fraction must be in [0, 1], got {fraction!r}"


_OUT_OF_RANGE: dict[type, Callable[[Any], str | None]] = {
    Credit: _credit_out_of_range,
    Progress: _progress_out_of_range,
}
"""Checks of the values a field's type lets through but the exchange has no use
for: refused at the boundary, counted with the malformed frames, so nothing
behind it needs to guard against them."""


def _decode_from(
    data: bytes | bytearray | memoryview, allowed: frozenset[type], side: str
) -> object:
    msg = decode(data)  # a DecodeError for anything that is no message at all
    check = _OUT_OF_RANGE.get(type(msg))
    problem = None if check is None else check(msg)
    if problem is not None:
        # Worded as the codec words a field of the wrong type: the same kind of refusal.
        raise DecodeError(f"invalid {type(msg).__name__}: {problem}", raw=bytes(data))
    if type(msg) not in allowed:
        reason = f"a {side} may not send {type(msg).__name__}"
        raise DecodeError(reason, raw=bytes(data))
    return msg


def decode_from_node(data: bytes | bytearray | memoryview) -> NodeMessage:
    """Decode a frame a node sent to its scheduler.

    Args:
        data: One codec envelope, as bytes (a bytearray or memoryview, e.g. a
            zero-copy ZeroMQ frame, is accepted too).

    Returns:
        The message: one of `NODE_MESSAGES`.

    Raises:
        DecodeError: ``data`` is not a message (see `transport.codec.decode`),
            is one a node may not send (``Run``, ``Submit``, ``Close``...; the
            error names its type), or holds a value of the right type the
            exchange has no use for: a `Credit` of fewer than 1 slot, a
            `Progress` fraction outside [0, 1]. ``raw`` holds the bytes.
    """
    return cast(NodeMessage, _decode_from(data, _FROM_NODE, "node"))


def decode_from_scheduler(data: bytes | bytearray | memoryview) -> SchedulerMessage:
    """Decode a frame a scheduler sent to a node.

    Args:
        data: One codec envelope, as `decode_from_node` takes it.

    Returns:
        The message: one of `SCHEDULER_MESSAGES`.

    Raises:
        DecodeError: ``data`` is not a message, or is one a scheduler may not
            send to a node (``Hello``, ``NodeFinished``, ``Bye``...); the error
            names its type, and ``raw`` holds the bytes.
    """
    return cast(SchedulerMessage, _decode_from(data, _FROM_SCHEDULER, "scheduler"))


def check_hello(hello: Hello, *, version: int = PROTOCOL_VERSION) -> Refused | None:
    """Decide whether a scheduler speaking ``version`` can take the node of ``hello``.

    Args:
        hello: The node's `Hello`, as decoded.
        version: The scheduler's node protocol version.

    Returns:
        None if it can; else the `Refused` to send back, whose reason names the
        node's version and the scheduler's on a mismatch, or says which field
        is unusable (an empty ``node_id``, a ``capacity`` below 1). The version
        is checked first: a node of another version may mean its fields otherwise.
    """
    if hello.version != version:
        return Refused(
            f"node {hello.node_id!r:.80} speaks node protocol version {hello.version}; "
            f"this scheduler speaks version {version}"
        )
    if not hello.node_id:
        return Refused("the node id is empty")
    if hello.capacity < 1:
        return Refused(f"node {hello.node_id!r:.80} offers capacity {hello.capacity}; at least 1")
    return None
