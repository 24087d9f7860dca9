"""The ``postroom worker`` command: run a worker node, or N of them as processes.

``postroom worker --app pkg.mod:handlers --connect tcp://host:7555 --key FILE
--server-key FILE`` runs one `transport.Node` in this process until SIGINT or
SIGTERM, which drain it (the runs it holds finish, their results and ``Bye``
are sent), then exits 0. ``--app`` names a `Handlers` or a `Scheduler` (its
handlers), imported from this directory or the Python path, so one module
declares the handlers for the scheduler's process and its nodes.

``--processes N`` supervises N such processes instead (``python -m
actors.cli worker ...``, ids ``ID-1`` .. ``ID-N``), for CPU-bound handlers
that one process's GIL would serialise: SIGINT and SIGTERM are forwarded to
each; a child that dies unexpectedly (a signal, or an exit status other than
0 and 2) is started again after a short backoff; the supervisor exits once
every child has exited.

Exit codes: 0 drained; 1 the node's I/O failed; 2 the command line, the app,
a key file or the scheduler (`NodeRefused`) says no: one line on stderr says
why, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from types import FrameType
from typing import Any, TextIO

from actors._errors import InvalidArgument, NodeRefused, SchedulerError
from actors._policy.registry import Handlers
from transport.app import load_object

__all__ = ["COMMAND", "FAILED", "add_command", "run"]

COMMAND = "worker"
"""The command this module adds and `run` runs."""

FAILED = 2
"""Exit code when the node cannot start: a bad option, app or key, or refused."""

IO_FAILED = 1
"""Exit code when the node's connection failed while it ran."""

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_BACKOFF_FIRST = 0.5
"""Seconds before a child that died unexpectedly is started again; doubled at
each death in a row, up to `_BACKOFF_MOST`."""
_BACKOFF_MOST = 10.0
_STABLE = 30.0
"""A child that ran this long before dying starts again after `_BACKOFF_FIRST`."""
_POLL = 0.1
"""Seconds between the supervisor's looks at its children and its signals."""


def add_command(commands: Any) -> None:
    """Add ``worker`` to ``commands`` (the root parser's subparsers)."""
    worker = commands.add_parser(
        COMMAND,
        help="run a worker node that serves a scheduler's jobs",
        description="Connect to a scheduler (sched.listen(...) or 'postroom serve') and "
        "run the jobs it lends this node, with the handlers of --app. SIGINT or SIGTERM "
        "drains the node: what runs finishes and is reported, then it exits 0.",
    )
    worker.add_argument(
        "--app",
        required=True,
        metavar="MODULE:ATTR",
        help="the Handlers (or Scheduler) whose handlers the node runs",
    )
    worker.add_argument(
        "--connect", required=True, metavar="ENDPOINT", help="the scheduler, e.g. tcp://host:7555"
    )
    worker.add_argument("--key", metavar="FILE", help="this node's secret key file")
    worker.add_argument("--server-key", metavar="FILE", help="the scheduler's public key file")
    worker.add_argument(
        "--insecure",
        action="store_true",
        help="no keys: plain TCP, to a loopback endpoint only",
    )
    worker.add_argument(
        "--capacity", type=int, default=1, metavar="N", help="jobs run at once (1)"
    )
    worker.add_argument(
        "--queue", default="default", metavar="Q", help="the scheduler's queue to serve (default)"
    )
    worker.add_argument("--node-id", metavar="ID", help="the node's id (HOSTNAME-PID)")
    worker.add_argument(
        "--prefetch", type=int, default=0, metavar="K", help="runs queued beyond capacity (0)"
    )
    worker.add_argument(
        "--processes",
        type=int,
        metavar="N",
        help="run N node processes (ids ID-1..ID-N) and supervise them",
    )
    worker.add_argument(
        "--hard-timeout",
        type=float,
        metavar="GRACE",
        help="run handlers in child processes, killed GRACE s past their deadline",
    )


def _handlers(spec: str) -> Any:
    from actors._scheduler import Scheduler

    app = load_object(spec)
    if not isinstance(app, Handlers | Scheduler):
        msg = f"--app {spec} is a {type(app).__name__}, not a Handlers or a Scheduler"
        raise InvalidArgument(msg)
    return app


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Run ``postroom worker``; returns the exit code."""
    try:
        app = _handlers(args.app)
        if args.processes is not None:
            if args.processes < 1:
                msg = f"--processes must be >= 1, not {args.processes}"
                raise InvalidArgument(msg)
            return _supervise(args, err)
        return _serve(args, app, err)
    except NodeRefused as exc:
        err.write(f"postroom worker: {exc}\n")
        return FAILED
    except InvalidArgument as exc:
        err.write(f"postroom worker: {exc}\n")
        return FAILED
    except SchedulerError as exc:
        err.write(f"postroom worker: {exc}\n")
        return IO_FAILED


def _logging() -> None:
    # The node says what it does (welcomed, draining, lost the scheduler) on
    # postroom.nodes; without a handler of the app's own, show it on stderr.
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO,
            format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s",
        )


def _serve(args: argparse.Namespace, app: Any, err: TextIO) -> int:
    from transport.node import Node

    _logging()
    node = Node(
        args.connect,
        app,
        node_id=args.node_id,
        capacity=args.capacity,
        queue=args.queue,
        prefetch=args.prefetch,
        key=args.key,
        server_key=args.server_key,
        insecure=args.insecure,
        hard_timeout=args.hard_timeout,
    )

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        # Runs on this (run()'s) thread: Node.stop only sets a flag here.
        node.stop()

    previous = {sig: signal.signal(sig, on_signal) for sig in _STOP_SIGNALS}
    try:
        node.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        node.close()
    return 0


def _child_argv(args: argparse.Namespace, node_id: str) -> list[str]:
    argv = [sys.executable, "-m", "actors.cli", COMMAND, "--app", args.app]
    argv += ["--connect", args.connect, "--node-id", node_id]
    argv += ["--capacity", str(args.capacity), "--queue", args.queue]
    argv += ["--prefetch", str(args.prefetch)]
    if args.key is not None:
        argv += ["--key", args.key]
    if args.server_key is not None:
        argv += ["--server-key", args.server_key]
    if args.insecure:
        argv.append("--insecure")
    if args.hard_timeout is not None:
        argv += ["--hard-timeout", repr(args.hard_timeout)]
    return argv


class _Child:
    """One supervised node process."""

    def __init__(self, node_id: str, argv: list[str]) -> None:
        self.node_id = node_id
        self.argv = argv
        self.process: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.backoff = _BACKOFF_FIRST
        self.restart_at: float | None = None
        self.done = False

    def start(self) -> None:
        self.process = subprocess.Popen(self.argv)
        self.started = time.monotonic()
        self.restart_at = None


def _supervise(args: argparse.Namespace, err: TextIO) -> int:
    _logging()
    log = logging.getLogger("postroom.nodes")
    base = args.node_id or f"{socket.gethostname()}-{os.getpid()}"
    children = [
        _Child(f"{base}-{n}", _child_argv(args, f"{base}-{n}"))
        for n in range(1, args.processes + 1)
    ]
    received: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)  # the loop forwards it: no work in a handler

    previous = {sig: signal.signal(sig, on_signal) for sig in _STOP_SIGNALS}
    status = 0
    try:
        for child in children:
            child.start()
        names = ", ".join(child.node_id for child in children)
        log.info("supervising %d node processes: %s", len(children), names)
        stopping = False
        while not all(child.done for child in children):
            while received:
                signum = received.pop(0)
                stopping = True
                for child in children:
                    if child.process is not None and child.process.poll() is None:
                        with contextlib.suppress(ProcessLookupError):
                            child.process.send_signal(signum)
            now = time.monotonic()
            for child in children:
                status = max(status, _look_after(child, now, stopping, log))
            time.sleep(_POLL)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for child in children:
            if child.process is not None and child.process.poll() is None:
                child.process.terminate()
                child.process.wait()
    return status


def _look_after(child: _Child, now: float, stopping: bool, log: logging.Logger) -> int:
    """Reap, or restart, one child; returns the status it adds to the exit code."""
    if child.done:
        return 0
    if child.process is None:
        if stopping:
            child.done = True
        elif child.restart_at is not None and now >= child.restart_at:
            log.info("starting node %s again", child.node_id)
            child.start()
        return 0
    code = child.process.poll()
    if code is None:
        return 0
    child.process = None
    if stopping or code == 0:
        child.done = True
        return 0
    if code == FAILED:
        # Its command line, app, keys or the scheduler said no: a restart
        # would say no again.
        log.error("node %s cannot start (exit %d); not restarting it", child.node_id, code)
        child.done = True
        return FAILED
    if now - child.started >= _STABLE:
        child.backoff = _BACKOFF_FIRST
    log.warning(
        "node %s died (%s); starting it again in %.1f s",
        child.node_id,
        f"signal {-code}" if code < 0 else f"exit {code}",
        child.backoff,
    )
    child.restart_at = now + child.backoff
    child.backoff = min(child.backoff * 2, _BACKOFF_MOST)
    return 0
