"""How the rest of postroom talks to an actor: refs, asks and the two ways they fail.

Pykka is used in ``actors/_runtime`` only. Everything outside it names an
actor's ref as `ActorRef`, asks through `ask` (which turns Pykka's own
``Timeout`` into `NoReply`, so no caller needs to know Pykka), and catches
`ActorDead` when an actor is gone. The facade turns both into public errors
(`SchedulerClosed`, `SchedulerUnresponsive`) at its boundary.
"""

from __future__ import annotations

from typing import Any

import pykka

__all__ = ["ActorDead", "ActorRef", "NoReply", "ask", "stop"]

ActorRef = pykka.ActorRef
"""A reference to a running actor: ``tell``, ``ask``, ``stop``, ``is_alive``."""

ActorDead = pykka.ActorDeadError
"""Raised when a message is sent to, or an answer awaited from, an actor that stopped."""


class NoReply(Exception):
    """An ask was not answered within its timeout (the actor is alive but stuck,
    or its reply was lost: every ask between actors has a timeout for this)."""


def ask(ref: pykka.ActorRef[Any], message: Any, *, timeout: float) -> Any:
    """Ask ``ref`` and wait up to ``timeout`` seconds for the answer.

    Raises:
        ActorDead: the actor has stopped (or stops before answering).
        NoReply: no answer within ``timeout``.
        Exception: whatever the actor raised while handling ``message``.
    """
    try:
        return ref.ask(message, block=True, timeout=timeout)
    except pykka.Timeout:
        msg = f"{ref} did not answer {type(message).__name__} within {timeout}s"
        raise NoReply(msg) from None


def stop(ref: pykka.ActorRef[Any], *, timeout: float) -> None:
    """Stop the actor behind ``ref`` and wait up to ``timeout`` seconds for it.

    Raises:
        NoReply: it had not stopped within ``timeout``.
    """
    try:
        ref.stop(block=True, timeout=timeout)
    except pykka.Timeout:
        msg = f"{ref} did not stop within {timeout}s"
        raise NoReply(msg) from None
