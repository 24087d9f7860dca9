"""Registered handlers and the defaults each one brings to its jobs."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from actors._retry import RetryPolicy

__all__ = ["HandlerFunc", "HandlerSpec"]

HandlerFunc = Callable[..., Any]
"""``def handler(ctx, payload)`` or ``async def handler(ctx, payload)``."""


@dataclass(frozen=True, slots=True)
class HandlerSpec:
    """A handler function with its per-handler job defaults."""

    name: str
    func: HandlerFunc
    max_retries: int
    timeout: float | None
    retry: RetryPolicy
    throws: tuple[type[BaseException], ...]
    """Exception types that fail the job at once, never retried."""

    @property
    def is_async(self) -> bool:
        """Whether the handler is a coroutine function, run on the worker's loop."""
        return inspect.iscoroutinefunction(self.func)
