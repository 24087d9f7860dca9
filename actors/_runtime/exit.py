"""Shutting down the schedulers a program forgot, before the interpreter exits.

Actor threads are not daemons (a daemon would be killed mid-job), so without
this an unclosed scheduler would keep the process alive forever.
`threading._register_atexit` runs its callbacks before the interpreter joins
non-daemon threads; it is what `concurrent.futures` uses for the same reason.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Protocol

__all__ = ["shut_down_at_exit"]


class _Stoppable(Protocol):
    def shutdown(
        self, graceful: bool = True, timeout: float = 30.0, *, cancel_grace: float = 5.0
    ) -> None: ...


# Only schedulers still referenced: a dropped scheduler leaves the set by itself.
_live: weakref.WeakSet[_Stoppable] = weakref.WeakSet()
_lock = threading.Lock()
_hooked = False


def _new_lock_in_child() -> None:
    # A thread of the parent may have held it at os.fork(); none frees it here.
    global _lock  # noqa: PLW0603 - rebuilt once per fork, in the child
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_lock_in_child)


def shut_down_at_exit(scheduler: _Stoppable) -> None:
    """Shut ``scheduler`` down forcefully at exit if it is still running then."""
    global _hooked  # noqa: PLW0603 - one hook per process, registered once
    _live.add(scheduler)
    with _lock:
        if _hooked:
            return
        register = getattr(threading, "_register_atexit", None)
        if register is not None:
            register(_shutdown_all)
            _hooked = True


def _shutdown_all() -> None:
    for scheduler in list(_live):
        scheduler.shutdown(graceful=False, cancel_grace=1.0)
