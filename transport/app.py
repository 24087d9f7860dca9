"""``--app module:attr``: the handlers a worker node (or its slot's child) runs.

A node loads the very registrations its scheduler uses, from an import path,
so one module declares them for both sides: a `Handlers` registry, or a
`Scheduler` (its registered handlers). ``attr`` may be dotted
(``module:obj.handlers``).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from actors._errors import InvalidArgument
from actors._policy.handlers import HandlerSpec
from actors._policy.registry import Handlers, handler_specs
from actors._scheduler import Scheduler

__all__ = ["app_path", "load_handlers", "load_object"]


def load_object(spec: str) -> Any:
    """The object ``MODULE:ATTR`` names, imported as ``python`` would from here.

    ``ATTR`` may be dotted (``module:obj.handlers``). Returns whatever the
    attribute is; the caller checks its type.

    Raises:
        InvalidArgument: ``spec`` is not ``MODULE:ATTR``, the module cannot be
            imported (or raised while importing: the message names the error's
            type), or it has no such attribute.
    """
    if not isinstance(spec, str):
        msg = f"an app is a 'MODULE:ATTR' str, not {spec!r}"
        raise InvalidArgument(msg)
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        msg = f"an app is MODULE:ATTR (e.g. myapp.jobs:handlers), not {spec!r}"
        raise InvalidArgument(msg)
    # As `python -m` does: the current directory is on the path, so an app
    # next to where the command runs is found without installing it.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        msg = f"cannot import module {module_name!r} ({type(exc).__name__}: {exc})"
        raise InvalidArgument(msg) from None
    except Exception as exc:  # noqa: BLE001 - the app's own error, shown in one line
        msg = f"importing {module_name!r} raised {type(exc).__name__}: {exc}"
        raise InvalidArgument(msg) from None
    value: Any = module
    for part in attr.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            msg = f"module {module_name!r} has no attribute {attr!r} (AttributeError)"
            raise InvalidArgument(msg) from None
    return value


def load_handlers(app: str) -> Mapping[str, HandlerSpec]:
    """The handlers registered on the object ``app`` (``MODULE:ATTR``) names.

    Returns:
        The registrations, by name (read-only).

    Raises:
        InvalidArgument: as `load_object`, or ``app`` names neither a
            `Handlers` nor a `Scheduler`.
    """
    obj = load_object(app)
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
