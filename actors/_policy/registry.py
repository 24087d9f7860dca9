"""`Handlers`: handler registrations made apart from any scheduler.

One module declares its handlers once, in a `Handlers`; the service that owns
the scheduler includes them (``Scheduler(handlers=...)`` or `Scheduler.include`)
and a worker node loads the same object from its import path (``postroom
worker --app module:handlers``), so both sides agree on names and options.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import TypeVar

from actors._errors import InvalidArgument
from actors._policy.handlers import HandlerFunc, HandlerSpec, OnInterrupt, make_spec
from actors._policy.retry import RetryPolicy

__all__ = ["Handlers", "handler_specs"]

F = TypeVar("F", bound=HandlerFunc)


class Handlers:
    """A set of handler registrations, with the options `Scheduler.handler` takes.

    Checked as `Scheduler.register` checks them, except the queue, which only a
    scheduler knows: `Scheduler.include` (and ``Scheduler(handlers=...)``)
    raises `UnknownQueue` for a queue it lacks.
    """

    def __init__(self) -> None:
        self._specs: dict[str, HandlerSpec] = {}

    def handler(
        self,
        name: str,
        *,
        max_retries: int | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        throws: type[BaseException] | tuple[type[BaseException], ...] = (),
        queue: str | None = None,
        on_interrupt: OnInterrupt = "retry",
    ) -> Callable[[F], F]:
        """Register the decorated function as the handler called ``name``.

        The options are `Scheduler.handler`'s, with the same defaults.

        Raises:
            InvalidArgument: a bad option, ``name`` is already registered here,
                or the function cannot be called as ``func(ctx, payload)``.
        """

        def register(func: F) -> F:
            self.register(
                name,
                func,
                max_retries=max_retries,
                timeout=timeout,
                retry=retry,
                throws=throws,
                queue=queue,
                on_interrupt=on_interrupt,
            )
            return func

        return register

    def register(
        self,
        name: str,
        func: HandlerFunc,
        *,
        max_retries: int | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        throws: type[BaseException] | tuple[type[BaseException], ...] = (),
        queue: str | None = None,
        on_interrupt: OnInterrupt = "retry",
    ) -> None:
        """Register ``func`` as the handler called ``name`` (`handler` without the decorator).

        Raises:
            InvalidArgument: a bad option, ``name`` is already registered here,
                ``queue`` is not a non-empty str, or ``func`` cannot be called
                as ``func(ctx, payload)``.
        """
        spec = make_spec(
            name,
            func,
            max_retries=max_retries,
            timeout=timeout,
            retry=retry,
            throws=throws,
            on_interrupt=on_interrupt,
        )
        if queue is not None:
            if not isinstance(queue, str) or not queue:
                msg = f"a queue name must be a non-empty str, not {queue!r}"
                raise InvalidArgument(msg)
            spec = replace(spec, queue=queue)
        if name in self._specs:
            msg = f"a handler named {name!r} is already registered"
            raise InvalidArgument(msg)
        self._specs[name] = spec

    def names(self) -> list[str]:
        """The registered handler names, sorted."""
        return sorted(self._specs)

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __len__(self) -> int:
        return len(self._specs)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._specs))

    def __repr__(self) -> str:
        return f"Handlers({self.names()!r})"


def handler_specs(source: Handlers) -> Mapping[str, HandlerSpec]:
    """A read-only view of ``source``'s registrations, for a scheduler or a node."""
    return MappingProxyType(source._specs)  # noqa: SLF001 - the registry's own module
