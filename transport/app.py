"""``--app module:attr``: the handlers a worker node (or its slot's child) runs.

A node loads the very registrations its scheduler uses, from an import path,
so one module declares them for both sides: a `Handlers` registry, or a
`Scheduler` (its registered handlers). ``attr`` may be dotted
(``module:obj.handlers``).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from actors._errors import InvalidArgument
from actors._policy.handlers import HandlerSpec
from actors._policy.registry import Handlers, handler_specs
from actors._scheduler import Scheduler

__all__ = ["load_handlers"]


def load_handlers(app: str) -> Mapping[str, HandlerSpec]:
    """The handlers registered on the object ``app`` names.

    Args:
        app: ``module:attr``; the module is imported (and runs its top level).

    Returns:
        The registrations, by name (read-only).

    Raises:
        InvalidArgument: ``app`` is not ``module:attr``, or names neither a
            `Handlers` nor a `Scheduler`.
        Exception: whatever importing the module or reading ``attr`` raised
            (`ModuleNotFoundError`, `AttributeError`, the module's own errors).
    """
    if not isinstance(app, str):
        msg = f"app must be a 'module:attr' str, not {app!r}"
        raise InvalidArgument(msg)
    module_name, _, attr = app.partition(":")
    if not module_name or not attr:
        msg = f"app must be 'module:attr', not {app!r}"
        raise InvalidArgument(msg)
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if isinstance(obj, Handlers):
        return handler_specs(obj)
    if isinstance(obj, Scheduler):
        # A read-only view of what `Scheduler.register` (or `include`) took.
        return MappingProxyType(obj._handlers)  # noqa: SLF001
    msg = f"{app!r} is a {type(obj).__name__}, not a Handlers or a Scheduler"
    raise InvalidArgument(msg)
