"""``postroom dashboard --store PATH``: the admin API and page, read-only, over a store file.

For a post-mortem: no scheduler runs, the store is read through
`connect_readonly` (so it works beside a scheduler still writing it too), and
every mutation is refused (403). It prints the URL and serves until SIGINT or
SIGTERM, then stops its server and joins its threads. Exit codes: 0 stopped by
a signal; 2 the store cannot be read, or the address cannot be bound.
"""

from __future__ import annotations

import argparse
import signal
import threading
from types import FrameType
from typing import Any, TextIO

from actors._admin.api import AdminApp
from actors._admin.server import AdminServer
from actors._admin.source import StoreSource
from actors._errors import SchedulerError

__all__ = ["COMMAND", "DEFAULT_PORT", "FAILED", "add_command", "run"]

COMMAND = "dashboard"
"""The command this module adds and `run` runs."""

DEFAULT_PORT = 7580
"""The port ``postroom dashboard`` serves on when not told."""

FAILED = 2
"""Exit code when the store cannot be read or the address bound."""

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def add_command(commands: Any) -> None:
    """Add ``dashboard`` to ``commands`` (the root parser's subparsers)."""
    dashboard = commands.add_parser(
        COMMAND,
        help="serve the admin API and dashboard read-only over a store file",
        description="Serve the admin API (and the dashboard page) over a store file, with "
        "no scheduler running: for a post-mortem. Read-only: every change is refused. "
        "Runs until SIGINT or SIGTERM.",
    )
    dashboard.add_argument(
        "--store", metavar="PATH", required=True, help="the store file (read only)"
    )
    dashboard.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        metavar="P",
        help=f"the port to serve on ({DEFAULT_PORT}; 0 picks a free one)",
    )
    dashboard.add_argument(
        "--addr",
        default="127.0.0.1",
        metavar="A",
        help="the address to bind (127.0.0.1: this machine only)",
    )


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Run ``postroom dashboard``; returns the exit code."""
    source = StoreSource(args.store)
    reason = source.not_ready()
    if reason is not None:
        err.write(f"postroom dashboard: {reason}\n")
        return FAILED
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()  # only a flag here: the loop below stops the server

    previous = {sig: signal.signal(sig, on_signal) for sig in _STOP_SIGNALS}
    try:
        try:
            server = AdminServer(
                args.port,
                app=AdminApp(source, token=None, read_only=True),
                addr=args.addr,
                metrics=False,
            )
            server.start()
        except SchedulerError as exc:
            err.write(f"postroom dashboard: {exc}\n")
            return FAILED
        try:
            out.write(f"postroom dashboard: {args.store} (read-only) at {server.url}\n")
            out.flush()
            while not stop.is_set():
                stop.wait(0.25)
        finally:
            server.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    out.write("postroom dashboard: stopped\n")
    return 0
