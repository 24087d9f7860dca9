"""Registered handlers and the defaults each one brings to its jobs."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from actors._errors import InvalidArgument
from actors._policy.checks import check_int, check_retry, check_seconds
from actors._policy.retry import RetryPolicy

__all__ = ["HandlerFunc", "HandlerSpec", "make_spec"]

HandlerFunc = Callable[..., Any]
"""``def handler(ctx, payload)`` or ``async def handler(ctx, payload)``."""


OnInterrupt = Literal["retry", "fail"]


@dataclass(frozen=True, slots=True)
class HandlerSpec:
    """A handler function with its per-handler job defaults."""

    name: str
    func: HandlerFunc
    max_retries: int | None
    """None: not set here (the queue's, else 0)."""
    timeout: float | None
    """None: not set here (the queue's, else none)."""
    retry: RetryPolicy | None
    """None: not set here (the queue's, else retry at once)."""
    throws: tuple[type[BaseException], ...]
    """Exception types that fail the job at once, never retried."""
    queue: str | None = None
    """The queue its jobs go to unless submit names one; None: ``default``."""
    on_interrupt: OnInterrupt = "retry"
    """What follows an attempt a crash cut short (with a store): ``"retry"``
    (if it has retries left) or ``"fail"``."""

    @property
    def is_async(self) -> bool:
        """Whether the handler is a coroutine function, run on the worker's loop."""
        return inspect.iscoroutinefunction(self.func)


def make_spec(
    name: object,
    func: object,
    *,
    max_retries: object,
    timeout: object,
    retry: object,
    throws: object,
    on_interrupt: object = "retry",
) -> HandlerSpec:
    """Check a registration's arguments and build its spec.

    Raises:
        InvalidArgument: naming the argument that is wrong.
    """
    if not isinstance(name, str) or not name:
        msg = f"a handler name must be a non-empty str, not {name!r}"
        raise InvalidArgument(msg)
    if not callable(func):
        msg = f"handler {name!r} must be callable, not {func!r}"
        raise InvalidArgument(msg)
    _check_signature(name, func)
    if max_retries is not None:
        check_int("max_retries", max_retries, 0)
    if timeout is not None:
        check_seconds("timeout", timeout)
    check_retry(retry)
    kinds = throws if isinstance(throws, tuple) else (throws,)
    if not all(isinstance(k, type) and issubclass(k, BaseException) for k in kinds):
        msg = f"throws must be exception classes, not {throws!r}"
        raise InvalidArgument(msg)
    if on_interrupt not in ("retry", "fail"):
        msg = f"on_interrupt must be 'retry' or 'fail', not {on_interrupt!r}"
        raise InvalidArgument(msg)
    assert max_retries is None or isinstance(max_retries, int)
    assert timeout is None or isinstance(timeout, int | float)
    assert retry is None or isinstance(retry, RetryPolicy)
    return HandlerSpec(name, func, max_retries, timeout, retry, kinds, on_interrupt=on_interrupt)


def _check_signature(name: str, func: Callable[..., Any]) -> None:
    """Refuse, at registration, a handler that cannot be called as ``func(ctx, payload)``:
    otherwise it is accepted and every job of it fails at its first run."""
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return  # a builtin or extension callable that does not say: taken on trust
    try:
        signature.bind(None, None)
    except TypeError as exc:
        shown = getattr(func, "__qualname__", None) or repr(func)
        msg = (
            f"handler {name!r} is called as func(ctx, payload), but "
            f"{shown}{signature} cannot take that: {exc}"
        )
        raise InvalidArgument(msg) from None
