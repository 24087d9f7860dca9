"""Whether the GIL is on: the job store's one switch for free-threaded builds.

The store relies on the GIL where ``actors/_jobs/__init__.py`` says. A
free-threaded CPython (3.13t and later) runs without it unless told otherwise
(``PYTHON_GIL=1``, ``-X gil=1``, or an extension module that needs it), and
then those steps would race. Taking real locks on every one of them is not
done yet; so a scheduler is not built there at all (`require_gil`), rather
than run and lose or duplicate a job now and then.
"""

from __future__ import annotations

import sys

from actors._errors import GILRequired

__all__ = ["gil_enabled", "require_gil"]


def gil_enabled() -> bool:
    """Whether this interpreter runs with the GIL now.

    Read at each call, not at import: tests force the switch, and an
    extension module imported later may turn the GIL on (never off).
    Before 3.13 there is no ``sys._is_gil_enabled``, and every build has one.
    """
    is_gil_enabled = getattr(sys, "_is_gil_enabled", None)
    return True if is_gil_enabled is None else bool(is_gil_enabled())


def require_gil() -> None:
    """Refuse to build a job store without the GIL.

    Raises:
        GILRequired: the interpreter is a free-threaded build running without it.
    """
    if not gil_enabled():
        msg = (
            "postroom needs the GIL: this free-threaded Python runs without it, and "
            "the job store relies on it (actors/_jobs). Run with PYTHON_GIL=1 in the "
            "environment (or python -X gil=1), or on a standard build"
        )
        raise GILRequired(msg)
