"""The thread that runs users' done callbacks, off the scheduler's own thread.

Jobs are resolved on the actor loop, which also runs every RepoLock: a callback
that blocked there would stall every repo, and one that asked the scheduler a
question (``stats()``, ``cancel()``) would wait on the very thread that has to
answer it. So `JobHandle.add_done_callback` callbacks are queued here and run
in order on one thread of their own, started on first use and joined at
shutdown.

A callback that raises, even `SystemExit`, is logged on the ``postroom``
logger and the next one runs.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable
from typing import Any

from actors._log import runtime_logger as logger
from actors._runtime.reaper import Reaper

__all__ = ["CallbackRunner"]

_numbers = itertools.count(1)


class CallbackRunner:
    """Runs callbacks one at a time, in the order they were queued."""

    def __init__(self, reaper: Reaper) -> None:
        self._reaper = reaper
        self._queue: queue.SimpleQueue[tuple[Callable[[Any], None], Any] | None] = (
            queue.SimpleQueue()
        )
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def call(self, callback: Callable[[Any], None], arg: Any) -> None:
        """Queue ``callback(arg)``."""
        if self._thread is None:
            self._start()
        self._queue.put((callback, arg))

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            thread = threading.Thread(
                target=self._run, name=f"postroom-Callbacks-{next(_numbers)}", daemon=False
            )
            self._reaper.add(thread, self.close)
            thread.start()
            self._thread = thread

    def close(self) -> None:
        """Let the thread end after the callbacks already queued."""
        self._queue.put(None)

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            callback, arg = item
            try:
                callback(arg)
            except BaseException:  # noqa: BLE001 - a user's callback error is logged, not fatal
                # BaseException too: a SystemExit or KeyboardInterrupt raised here
                # (no signal reaches this thread; a callback raised it) would end
                # the thread, and with it every later callback of every job.
                logger.exception("a done callback of %r raised", arg)
