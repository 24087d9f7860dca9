"""`ProcessRunner`: a node slot's handler runs in a child process it can kill.

A thread cannot be killed: a handler stuck in C code or in ``while True:
pass`` never looks at its cancel signal, and a slot that runs it on its own
thread is lost with it. A process can be killed. With ``--hard-timeout GRACE``
each slot of a node owns one child process (`transport.slot_child`) and runs
every attempt there; an attempt still running ``GRACE`` seconds past its
deadline is ended with SIGKILL, recorded ``timed_out``, and the slot starts a
new child for its next run.

The child is started with `subprocess.Popen` (``sys.executable -m
transport.slot_child``), never `multiprocessing`, which pickles. Parent and
child speak `transport.pipe_frames` frames (codec messages) over the child's
stdin and stdout; its stderr is the parent's, so its logs land where the
node's do. The child imports the app itself: it runs the same registrations
the node offers, under the same attempt code as an in-process worker.

What `run` returns when the child does not answer normally:

- killed ``grace`` seconds past the deadline: failed, ``postroom.JobTimedOut``,
  ``timed_out=True`` (retried by the job's policy, as any timeout);
- the child exited on its own (a crash, ``os._exit``, a SIGKILL from outside):
  failed, ``postroom.WorkerCrashed``, retryable;
- the child sent a frame that is no message for its parent (over the codec's
  size limit, undecodable, of the wrong type): the child is killed, and the
  run failed, ``postroom.DecodeError``, retryable (the child's answer was lost,
  not known to be the job's fault).

In each case the child is reaped and a new one started before `run` returns,
so the next run finds one (its import is awaited at that next run). A new
child that cannot load the app fails that next run (``postroom.WorkerCrashed``,
retryable, naming its error), and the run after it tries another.

`close` is for the slot's own thread, once `run` has returned: to end a run
early, fire its scope; a handler that ignores it is killed ``grace`` s past
its deadline.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import selectors
import subprocess
import sys
import time
from typing import TYPE_CHECKING

from actors._errors import (
    DecodeError,
    InvalidArgument,
    SchedulerClosed,
    SchedulerError,
    UnknownHandler,
)
from actors._policy.checks import check_int, check_seconds
from actors._policy.payloads import DEFAULT_MAX_PAYLOAD_BYTES
from actors._worker.attempt import AttemptRunner, error_info
from actors.messages import (
    CancelRun,
    ErrorInfo,
    Hello,
    NodeFinished,
    Outcome,
    Progress,
    Refused,
    Run,
)
from transport.pipe_frames import FrameBuffer, pack
from transport.protocol import PROTOCOL_VERSION

if TYPE_CHECKING:
    from actors._worker.cancel import CancelScope
    from actors._worker.context import ProgressSink
    from actors.messages import Job

__all__ = ["ProcessRunner"]

logger = logging.getLogger("postroom.node")

START_TIMEOUT = 60.0
"""Seconds a child may take to import the app and say `Hello`."""

CLOSE_TIMEOUT = 2.0
"""Seconds `ProcessRunner.close` lets a child finish before it is killed."""

_CANCEL_POLL = 0.02
"""How often a run looks at its cancel scope, whose event cannot be selected on
with the pipe: the most a cancel waits before it is relayed to the child."""

_READ_SIZE = 1 << 16

_FROM_CHILD = (Hello, Refused, Progress, NodeFinished)


class _ChildGone(Exception):
    """The child's stdout ended: it exited, or is about to."""


class _Child:
    """One child process and the parent's ends of its pipes."""

    def __init__(self, app: str, max_payload_bytes: int) -> None:
        command = [
            sys.executable,
            "-m",
            "transport.slot_child",
            "--app",
            app,
            "--max-payload-bytes",
            str(max_payload_bytes),
            "--parent",
            str(os.getpid()),
        ]
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=_child_env(),
            close_fds=True,
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self.pid = self.process.pid
        self._in = self.process.stdin.fileno()
        self._out = self.process.stdout.fileno()
        # Non-blocking both ways, so no read or write can outlast a kill deadline.
        os.set_blocking(self._in, False)
        os.set_blocking(self._out, False)
        self._frames = FrameBuffer(_FROM_CHILD)
        self._pending: list[object] = []
        self._readable = selectors.DefaultSelector()
        self._readable.register(self._out, selectors.EVENT_READ)
        self._writable = selectors.DefaultSelector()
        self._writable.register(self._in, selectors.EVENT_WRITE)
        self.hello: Hello | None = None
        """Its first frame, once read (`ready`)."""

    def ready(self, timeout: float) -> Hello:
        """Wait for the child's `Hello`.

        Raises:
            InvalidArgument: it sent `Refused`, exited, sent something else first,
                or said nothing for ``timeout`` seconds (it is killed then).
        """
        if self.hello is not None:
            return self.hello
        until = time.monotonic() + timeout
        try:
            while not self._pending:
                left = until - time.monotonic()
                if left <= 0:
                    self.kill()
                    msg = f"the slot process did not start within {timeout}s"
                    raise InvalidArgument(msg)
                self._pending.extend(self.receive(left))
        except (_ChildGone, DecodeError) as exc:
            self.kill()
            code = self.process.returncode
            msg = f"the slot process exited with code {code} before it was ready ({exc})"
            raise InvalidArgument(msg) from None
        first = self._pending.pop(0)
        if isinstance(first, Refused):
            self.kill()
            raise InvalidArgument(first.reason)
        if not isinstance(first, Hello) or first.version != PROTOCOL_VERSION:
            self.kill()
            msg = f"the slot process said {first!r:.100} where a Hello was due"
            raise InvalidArgument(msg)
        self.hello = first
        return first

    def receive(self, timeout: float | None) -> list[object]:
        """The messages that arrive within ``timeout`` seconds (None: until some do).

        Raises:
            _ChildGone: the child's stdout ended.
            DecodeError: the child sent a frame that is no message for us.
        """
        if self._pending:
            pending, self._pending = self._pending, []
            return pending
        if not self._readable.select(None if timeout is None else max(timeout, 0.0)):
            return []
        try:
            data = os.read(self._out, _READ_SIZE)
        except BlockingIOError:
            return []
        if not data:
            raise _ChildGone
        return self._frames.feed(data)

    def send(self, msg: object, until: float | None) -> bool:
        """Write one frame; False if ``until`` (monotonic) passed first.

        Raises:
            _ChildGone: the child's stdin is closed (it exited).
            InvalidArgument, NotSerializable: ``msg`` cannot be encoded.
        """
        view = memoryview(pack(msg))
        while view:
            try:
                view = view[os.write(self._in, view) :]
                continue
            except BlockingIOError:
                pass
            except BrokenPipeError:
                raise _ChildGone from None
            # The pipe is full: the child is not reading (stopped, or busy
            # with a frame), so wait for room, but not past the deadline.
            wait = None if until is None else until - time.monotonic()
            if wait is not None and wait <= 0:
                return False
            self._writable.select(wait)
        return True

    def kill(self) -> None:
        """SIGKILL the child and reap it."""
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        self.process.wait()
        self.close_pipes()

    def reap(self) -> int:
        """Reap a child whose stdout ended; its exit code (-9 if it had to be killed)."""
        # One that closed its stdout but lives on is no use to anyone: killed.
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(CLOSE_TIMEOUT)
        self.kill()
        return self.process.returncode

    def end(self, timeout: float) -> None:
        """Close its stdin (it finishes and exits), wait ``timeout``, then kill."""
        with contextlib.suppress(OSError):
            self.process.stdin.close()  # type: ignore[union-attr]
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            logger.warning("slot process %d did not exit within %ss: killed", self.pid, timeout)
        self.kill()

    def close_pipes(self) -> None:
        self._readable.close()
        self._writable.close()
        for stream in (self.process.stdin, self.process.stdout):
            with contextlib.suppress(OSError):
                stream.close()  # type: ignore[union-attr]


def _child_env() -> dict[str, str]:
    # The child imports the app as this process would: with its sys.path (an
    # app module next to a script, or found through a test's rootdir).
    env = dict(os.environ)
    paths = [p or os.getcwd() for p in sys.path if isinstance(p, str)]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


class ProcessRunner:
    """Runs a slot's attempts in a child process, killed ``grace`` s past a deadline.

    `run` is called from one slot thread at a time; `close` from that thread
    (or any, once `run` has returned).
    """

    def __init__(
        self, app: str, grace: float, max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    ) -> None:
        """Start the child and wait until it has imported ``app``.

        Args:
            app: ``module:attr`` naming a `Handlers` registry or a `Scheduler`
                (its registered handlers), importable by the child.
            grace: Seconds past an attempt's deadline before its process is killed.
            max_payload_bytes: The longest result a handler may return (encoded).

        Raises:
            InvalidArgument: a bad argument, or the child cannot load ``app``
                (the message names the child's error; its traceback, if any,
                is on stderr).
        """
        if not isinstance(app, str) or ":" not in app:
            msg = f"app must be a 'module:attr' str, not {app!r}"
            raise InvalidArgument(msg)
        check_seconds("grace", grace)
        check_int("max_payload_bytes", max_payload_bytes, 1)
        self._app = app
        self._grace = float(grace)
        self._max_payload_bytes = max_payload_bytes
        self._leases = itertools.count(1)
        self._closed = False
        self._child: _Child | None = None
        """The current child; None once closed, or while a new one cannot be started."""
        self.handlers: tuple[str, ...] = self._ready_child().handlers
        """The names of the handlers the child loaded."""

    @property
    def pid(self) -> int | None:
        """The current child's process id (None once closed)."""
        if self._closed:
            return None
        return None if self._child is None else self._child.pid

    def run(
        self,
        job: Job,
        scope: CancelScope,
        progress: ProgressSink,
        deadline: float | None,
    ) -> Outcome:
        """Run one attempt of ``job`` in the child; block until it ends.

        Args:
            job: The attempt to run.
            scope: Armed for this attempt; a fire is relayed to the child as
                `CancelRun` with its reason.
            progress: Called on this thread with ``(job_id, fraction, message)``
                for each ``ctx.progress`` report.
            deadline: `time.monotonic` time at which the attempt is due to stop,
                or None. The slot fires ``scope`` then (reason ``timeout``); if
                the handler is still running ``grace`` s later, it is killed.

        Returns:
            The attempt's outcome (see the module docstring for the ways a
            child can fail to give one).

        Raises:
            SchedulerClosed: the runner is closed.
        """
        if self._closed:
            msg = "the process runner is closed"
            raise SchedulerClosed(msg)
        started_at = time.time()
        refused = self._refuse(job, scope, progress, started_at)
        if refused is not None:
            return refused
        child = self._child
        assert child is not None  # _refuse saw it ready
        kill_at = None if deadline is None else deadline + self._grace
        t0 = time.perf_counter()
        try:
            outcome = self._exchange(child, job, scope, progress, kill_at)
        except _ChildGone:
            code = child.reap()
            self._replace()
            message = (
                f"the process running attempt {job.attempt} of job {job.id} "
                f"(pid {child.pid}) exited with code {code}"
            )
            logger.error("%s; a new one is started", message)
            return _crashed(message, started_at, time.perf_counter() - t0)
        except DecodeError as exc:
            child.kill()
            self._replace()
            message = f"the process running job {job.id} (pid {child.pid}) sent a bad frame: {exc}"
            logger.error("%s; it was killed and a new one is started", message)
            info = ErrorInfo("postroom.DecodeError", message)
            return Outcome(
                "failed", error=info, started_at=started_at, run_time=time.perf_counter() - t0
            )
        except SchedulerError as exc:  # the Run cannot be encoded: the job's fault
            info = error_info(exc)
            return Outcome("failed", error=info, retryable=False, started_at=started_at)
        if outcome is None:
            return self._kill_timed_out(child, job, started_at, time.perf_counter() - t0)
        return outcome

    def _refuse(
        self,
        job: Job,
        scope: CancelScope,
        progress: ProgressSink,
        started_at: float,
    ) -> Outcome | None:
        """The outcome of a run that cannot start, or None if it can."""
        if scope.reason is not None:
            # Told to stop before it started: the handler is never called, as
            # in process (the same code builds the outcome).
            return AttemptRunner({}, scope, progress).stopped(job, None, started_at, 0.0)
        if job.handler not in self.handlers:
            # As a thread slot says it: another node may have the handler.
            exc = UnknownHandler(f"this node has no handler named {job.handler!r}")
            return Outcome("failed", error=error_info(exc), started_at=started_at)
        try:
            self._ready_child()
        except InvalidArgument as exc:
            self._child = None  # tried again at the next run
            return _crashed(f"the slot process could not start: {exc}", started_at, 0.0)
        return None

    def _exchange(
        self,
        child: _Child,
        job: Job,
        scope: CancelScope,
        progress: ProgressSink,
        kill_at: float | None,
    ) -> Outcome | None:
        """Send the Run, relay its cancel and progress; its outcome, or None at ``kill_at``."""
        lease = next(self._leases)
        sent = child.send(Run(job, lease), kill_at)
        relayed = False
        while sent:
            if not relayed and scope.event.is_set():
                reason = scope.reason or "cancel"
                sent = child.send(CancelRun(job.id, job.attempt, lease, reason), kill_at)
                relayed = True
                continue
            # Once the cancel is relayed only the child and the kill deadline
            # are left to wait for.
            wait = None if relayed else _CANCEL_POLL
            if kill_at is not None:
                left = kill_at - time.monotonic()
                if left <= 0:
                    break
                wait = left if wait is None else min(wait, left)
            for msg in child.receive(wait):
                # A lease other than this run's is a leftover of no run: skipped.
                if isinstance(msg, NodeFinished) and msg.lease == lease:
                    return msg.outcome
                if isinstance(msg, Progress) and msg.lease == lease:
                    _relay(progress, msg, job)
        return None

    def _kill_timed_out(
        self, child: _Child, job: Job, started_at: float, run_time: float
    ) -> Outcome:
        child.kill()
        self._replace()
        message = (
            f"attempt {job.attempt} ran past its timeout of {job.timeout}s and was "
            f"killed {self._grace}s past its deadline (pid {child.pid})"
        )
        logger.warning("job %s: %s; a new process is started", job.id, message)
        info = ErrorInfo("postroom.JobTimedOut", message)
        return Outcome(
            "failed", error=info, timed_out=True, started_at=started_at, run_time=run_time
        )

    def _ready_child(self) -> Hello:
        """Start a child if there is none; wait for its Hello.

        Raises:
            InvalidArgument: it cannot be started, or cannot load the app.
        """
        child = self._child
        if child is None:
            try:
                child = self._child = _Child(self._app, self._max_payload_bytes)
            except OSError as exc:  # no memory, no descriptors left, no interpreter
                msg = f"cannot start the slot process: {exc}"
                raise InvalidArgument(msg) from None
        return child.ready(START_TIMEOUT)

    def _replace(self) -> None:
        # Started now, awaited at the next run: its import overlaps the time
        # the slot spends reporting this one.
        try:
            self._child = _Child(self._app, self._max_payload_bytes)
        except OSError:
            logger.exception("cannot start a slot process; trying again at the next run")
            self._child = None

    def close(self) -> None:
        """End the child (stdin closed, a short wait, then SIGKILL) and reap it.

        Idempotent.
        """
        self._closed = True
        child, self._child = self._child, None
        if child is not None:
            child.end(CLOSE_TIMEOUT)


def _relay(progress: ProgressSink, msg: Progress, job: Job) -> None:
    # A sink that raises must not end the run here while the child runs on:
    # its next Run would wait behind this one.
    try:
        progress(msg.job_id, msg.fraction, msg.message)
    except Exception:
        logger.exception("job %s: the progress sink raised", job.id)


def _crashed(message: str, started_at: float, run_time: float) -> Outcome:
    info = ErrorInfo("postroom.WorkerCrashed", message)
    return Outcome("failed", error=info, retryable=True, started_at=started_at, run_time=run_time)
