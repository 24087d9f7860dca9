"""A quicker ``__init__`` for the frozen, slotted dataclasses that travel as messages.

A frozen dataclass sets each field in ``__init__`` through
``object.__setattr__(self, name, value)``: a global lookup, an attribute lookup
and a generic call per field. A job is built on every submit and has fourteen
fields, so that alone was a fifth of the submit path. Calling each slot's own
descriptor (``Job.__dict__["id"].__set__``) stores the same value in the same
slot without going through ``__setattr__``, at about a third of the cost
(measured on `Job`: 4.4 µs down to 1.6 µs). The class stays what it was — frozen,
slotted, compared and hashed by value, `dataclasses.replace`-able.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

__all__ = ["fast_init"]

T = TypeVar("T")


def fast_init(cls: type[T]) -> type[T]:
    """Give a frozen, slotted dataclass an ``__init__`` that sets slots directly.

    Only plain fields are supported (no ``default_factory``, ``init=False``,
    keyword-only fields or ``__post_init__``); anything else raises TypeError
    when the class is defined, not when it is used.
    """
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen or "__slots__" not in cls.__dict__:
        msg = f"fast_init needs a frozen, slotted dataclass, not {cls.__qualname__}"
        raise TypeError(msg)
    if hasattr(cls, "__post_init__"):
        msg = f"fast_init does not run __post_init__ ({cls.__qualname__})"
        raise TypeError(msg)
    namespace: dict[str, Any] = {}
    params_src: list[str] = []
    body: list[str] = []
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        name = field.name
        if not field.init or field.kw_only or field.default_factory is not dataclasses.MISSING:
            msg = f"fast_init supports plain fields only ({cls.__qualname__}.{name})"
            raise TypeError(msg)
        namespace[f"_set_{name}"] = cls.__dict__[name].__set__
        if field.default is dataclasses.MISSING:
            params_src.append(name)
        else:
            namespace[f"_default_{name}"] = field.default
            params_src.append(f"{name}=_default_{name}")
        body.append(f"    _set_{name}(self, {name})")
    source = f"def __init__(self, {', '.join(params_src)}):\n" + "\n".join(body or ["    pass"])
    local: dict[str, Any] = {}
    exec(source, namespace, local)  # the source is built above from field names only
    init = local["__init__"]
    original = cls.__init__
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__doc__ = original.__doc__
    init.__annotations__ = dict(original.__annotations__)
    setattr(cls, "__init__", init)  # noqa: B010 - mypy refuses a plain method assignment
    return cls
