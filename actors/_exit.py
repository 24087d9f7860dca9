"""Shutting down the schedulers a program forgot, before the interpreter exits.

Actor threads are not daemons (a daemon would be killed mid-job), so without
this an unclosed scheduler would keep the process alive forever.
`threading._register_atexit` runs its callbacks before the interpreter joins
non-daemon threads; it is what `concurrent.futures` uses for the same reason.
"""

from __future__ import annotations

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
