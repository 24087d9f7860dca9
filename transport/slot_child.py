"""The child process of a `transport.process_runner.ProcessRunner`: runs one attempt at a time.

Started as ``python -m transport.slot_child --app MODULE:ATTR
--max-payload-bytes N`` with its stdin and stdout as pipes to the parent, which
speaks `transport.pipe_frames` frames on them:

- child -> parent, first: `Hello` (it loaded the app; ``handlers`` names what
  it registers) or `Refused` (the app cannot be loaded; the reason names the
  error), then exit code 2. Nothing else is ever first.
- parent -> child: `Run(job, lease)`, one at a time; `CancelRun` for the run
  in progress (any other lease is ignored).
- child -> parent: `Progress` while the run goes on, then its `NodeFinished`.
- The parent closes the child's stdin to end it: the run in progress, if any,
  is told to stop (reason ``shutdown``), its `NodeFinished` is sent, and the
  child exits 0.

The frames use private copies of descriptors 0 and 1; descriptor 0 then reads
``/dev/null`` and descriptor 1 writes to stderr, so a handler that prints, or
a C library that writes to stdout, cannot corrupt a frame, and one that reads
stdin cannot swallow one. SIGINT is ignored: a Ctrl-C in a terminal reaches
the whole process group, and what a slot does about it is its parent's call.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Mapping
from typing import BinaryIO

from actors._errors import DecodeError, SchedulerError, UnknownHandler
from actors._policy.handlers import HandlerSpec
from actors._policy.payloads import DEFAULT_MAX_PAYLOAD_BYTES
from actors._worker.attempt import AttemptRunner, error_info
from actors._worker.cancel import CancelReason, CancelScope
from actors.messages import (
    CancelRun,
    Hello,
    Job,
    NodeFinished,
    Outcome,
    Progress,
    Refused,
    Run,
)
from transport.app import load_handlers
from transport.pipe_frames import pack, read_frame, write_all
from transport.protocol import PROTOCOL_VERSION

__all__ = ["main"]

logger = logging.getLogger("postroom.slot")

REFUSED_EXIT = 2
"""Exit code after a `Refused` first frame: the app could not be loaded."""

BAD_FRAME_EXIT = 3
"""Exit code when the parent sent a frame that is no message for a child."""

frames_out: int | None = None
"""The descriptor frames to the parent go out on, once `main` has taken it."""

_REASONS: frozenset[str] = frozenset(("cancel", "timeout", "shutdown", "parent"))


class _Writer:
    """Frames to the parent, from the handler's thread and the main loop alike."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._lock = threading.Lock()

    def send(self, msg: object) -> bool:
        """Send one message; False if the parent is gone (its end is closed)."""
        frame = pack(msg)
        with self._lock:
            try:
                write_all(self._fd, frame)
            except OSError:
                return False
        return True


class _Slot:
    """Runs the parent's `Run` messages on the main thread, one at a time."""

    def __init__(
        self, handlers: Mapping[str, HandlerSpec], writer: _Writer, max_result_bytes: int
    ) -> None:
        self._handlers = handlers
        self._writer = writer
        self._scope = CancelScope()
        self._lock = threading.Lock()
        self._current: tuple[str, int, int] | None = None
        """(job id, attempt, lease) of the run in progress, or None."""
        self._runs: queue.SimpleQueue[Run | None] = queue.SimpleQueue()
        # The very attempt code an in-process worker runs; ctx.submit raises
        # NotSupportedOnNode, as on any node (this process has no job table).
        self._attempts = AttemptRunner(
            handlers,
            self._scope,
            self._progress,
            on_node=True,
            max_result_bytes=max_result_bytes,
        )

    def _progress(self, job_id: str, fraction: float, message: str) -> None:
        current = self._current
        if current is not None and current[0] == job_id:
            self._writer.send(Progress(job_id, current[1], current[2], fraction, message))

    def read(self, stream: BinaryIO) -> None:
        """The reader thread: queue each `Run`, fire the scope on its `CancelRun`."""
        try:
            while (msg := read_frame(stream, (Run, CancelRun))) is not None:
                if isinstance(msg, Run):
                    job = msg.job
                    # Armed here, not when the main thread starts the run, so a
                    # CancelRun right behind its Run cannot miss it.
                    with self._lock:
                        self._scope.arm(job.id, job.attempt)
                        self._current = (job.id, job.attempt, msg.lease)
                    self._runs.put(msg)
                else:
                    assert isinstance(msg, CancelRun)
                    self._cancel(msg.job_id, msg.attempt, msg.lease, msg.reason)
        except DecodeError as exc:
            # The parent never sends such a frame: it is a bug, and nothing that
            # follows on this pipe can be trusted. The parent sees an exit.
            logger.error("slot %d: bad frame from the parent: %s", os.getpid(), exc)
            os._exit(BAD_FRAME_EXIT)
        with self._lock:
            current = self._current
        if current is not None:
            self._cancel(*current, "shutdown")
        self._runs.put(None)

    def _cancel(self, job_id: str, attempt: int, lease: int, reason: str) -> None:
        with self._lock:
            if self._current != (job_id, attempt, lease):
                return  # a run that ended already, or never was
            why: CancelReason = reason if reason in _REASONS else "cancel"  # type: ignore[assignment]
            self._scope.fire(job_id, attempt, why)

    def serve(self) -> None:
        """Run each queued `Run` until the parent closes the pipe."""
        try:
            while (run := self._runs.get()) is not None:
                outcome = self._attempt(run.job)
                with self._lock:
                    self._current = None
                self._writer.send(NodeFinished(run.job.id, run.job.attempt, run.lease, outcome))
        finally:
            self._attempts.close()

    def _attempt(self, job: Job) -> Outcome:
        started_at = time.time()
        if job.handler not in self._handlers:
            # The parent checks against our Hello first; this is a last guard.
            exc = UnknownHandler(f"this node has no handler named {job.handler!r}")
            return Outcome("failed", error=error_info(exc), started_at=started_at)
        # ctx.deadline on this process's monotonic clock, as the parent's; the
        # parent relays the timeout itself (CancelRun, reason "timeout").
        deadline = None if job.timeout is None else time.monotonic() + job.timeout
        return self._attempts.run(job, deadline, started_at)


def _take_pipes() -> tuple[BinaryIO, int]:
    """Keep the frame pipes for ourselves; point descriptors 0 and 1 elsewhere."""
    sys.stdout.flush()
    frames_in = os.fdopen(os.dup(0), "rb")
    frames_out = os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    return frames_in, frames_out


_PR_SET_PDEATHSIG = 1
"""prctl(2): the signal the kernel sends this process when its parent dies."""

def _die_with(parent: int) -> None:
    """Be killed when the node that started this child dies, however it dies.

    A child stuck in C code never reads the end of its stdin: without this,
    a node killed with SIGKILL would leave it running, an orphan, for ever.
    Linux only (``prctl(PR_SET_PDEATHSIG)``); elsewhere a stuck child outlives
    a killed node.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(REFUSED_EXIT)  # the node died before the line above took effect


def main(argv: list[str] | None = None) -> int:
    """Load the app, say `Hello` (or `Refused`), then serve runs until stdin ends."""
    parser = argparse.ArgumentParser(prog="python -m transport.slot_child")
    parser.add_argument("--app", required=True)
    parser.add_argument("--max-payload-bytes", type=int, default=DEFAULT_MAX_PAYLOAD_BYTES)
    parser.add_argument("--parent", type=int, default=None)
    args = parser.parse_args(argv)
    if args.parent is not None:
        _die_with(args.parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    global frames_out  # one child, one pipe
    frames_in, frames_out = _take_pipes()
    writer = _Writer(frames_out)
    try:
        handlers = load_handlers(args.app)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - any import failure is reported
        reason = str(exc) if isinstance(exc, SchedulerError) else f"{type(exc).__name__}: {exc}"
        writer.send(Refused(f"cannot load {args.app!r}: {reason}"))
        return REFUSED_EXIT
    writer.send(Hello(f"slot-{os.getpid()}", tuple(sorted(handlers)), 1, PROTOCOL_VERSION))
    slot = _Slot(handlers, writer, args.max_payload_bytes)
    # A daemon: once the main loop is done (stdin ended) nothing is left for it.
    reader = threading.Thread(
        target=slot.read, args=(frames_in,), name="postroom-slot-reader", daemon=True
    )
    reader.start()
    slot.serve()
    return 0


if __name__ == "__main__":
    # Run the module under its own name, not as ``__main__``, so there is one
    # copy of it (and of `frames_out`) whichever way a handler imports it.
    from transport.slot_child import main as _main

    sys.exit(_main())
