"""``--app module:attr``: the handlers a worker node (or its slot's child) runs.

A node loads the very registrations its scheduler uses, from an import path,
so one module declares them for both sides: a `Handlers` registry, or a
`Scheduler` (its registered handlers). ``attr`` may be dotted
(``module:obj.handlers``).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from actors._errors import InvalidArgument
from actors._policy.handlers import HandlerSpec
from actors._policy.registry import Handlers, handler_specs
from actors._scheduler import Scheduler

__all__ = ["app_path", "load_handlers"]


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


def app_path(registry: object) -> str:
    """The ``module:attr`` by which another process can import ``registry``.

    A node with a hard time limit (`transport.process_runner.ProcessRunner`)
    runs handlers in child processes, which import the registrations
    themselves: nothing is pickled. So the `Handlers` or `Scheduler` a node is
    given must be bound to a module-level name; this finds it by identity
    among the loaded modules.

    A registry found only in ``__main__`` is named by the module ``__main__``
    was run as (``python -m pkg.mod``), or by its script's file name
    (``python serve.py``: ``serve``, found on the child's path); the child
    imports it again under that name, so its top level must not start a node
    or a scheduler unguarded (keep that under ``if __name__ == "__main__":``).

    Raises:
        InvalidArgument: no loaded module has ``registry`` as a global.
    """
    found_in_main: str | None = None
    for name, module in list(sys.modules.items()):
        attrs = getattr(module, "__dict__", None)
        if not isinstance(attrs, dict):
            continue
        for attr, value in list(attrs.items()):
            if value is not registry:
                continue
            if name != "__main__":
                return f"{name}:{attr}"
            found_in_main = attr
    if found_in_main is not None:
        main = sys.modules["__main__"]
        spec = getattr(main, "__spec__", None)
        path = getattr(main, "__file__", None)
        if spec is not None and spec.name != "__main__":
            return f"{spec.name}:{found_in_main}"
        if isinstance(path, str):
            return f"{Path(path).stem}:{found_in_main}"
    msg = (
        f"a hard time limit runs handlers in child processes, which import them: "
        f"bind the {type(registry).__name__} to a module-level name (not found in "
        "any loaded module)"
    )
    raise InvalidArgument(msg)
