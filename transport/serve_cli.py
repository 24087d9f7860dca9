"""The ``postroom serve`` command: run a scheduler as a process of its own.

``--app MODULE:ATTR`` names a `Scheduler` or a callable that takes no argument
and returns one, started or not (a callable that starts it can declare its
schedules, which need a running scheduler); its handlers, queues and store
are the app's. The command starts it, listens for worker nodes on ``--listen``
(CURVE with ``--keys DIR --server-key FILE``, or ``--insecure`` on loopback),
serves metrics on ``--metrics-port`` if asked, and runs until SIGINT or
SIGTERM, then shuts the scheduler down gracefully (``--timeout`` seconds for
the jobs to finish; nodes are told to drain). SIGHUP re-reads the node keys.

What submits the jobs is the app's business: a scheduler a service embeds
submits from the service; one that ``serve`` runs alone has its jobs from its
schedules (`Scheduler.cron`, `every`, `at`), which the app declares, and from
the store a previous run left.

Exit codes: 0 after a clean shutdown; 2 when it cannot start (a bad option,
app, key or endpoint, a store that cannot be opened), with one line on
stderr saying why, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from types import FrameType
from typing import Any, TextIO

from actors._errors import InvalidArgument, SchedulerError
from transport.app import load_object

__all__ = ["COMMAND", "FAILED", "add_command", "run"]

COMMAND = "serve"
"""The command this module adds and `run` runs."""

FAILED = 2
"""Exit code when the scheduler cannot start."""

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

logger = logging.getLogger("postroom")


def add_command(commands: Any) -> None:
    """Add ``serve`` to ``commands`` (the root parser's subparsers)."""
    serve = commands.add_parser(
        COMMAND,
        help="run a scheduler as a process of its own, with worker nodes",
        description="Start the Scheduler of --app, listen for worker nodes, and run "
        "until SIGINT or SIGTERM, then shut down gracefully. SIGHUP re-reads the node keys.",
    )
    serve.add_argument(
        "--app",
        required=True,
        metavar="MODULE:ATTR",
        help="a Scheduler, or a callable that returns one",
    )
    serve.add_argument(
        "--listen", metavar="ENDPOINT", help="where nodes connect, e.g. tcp://0.0.0.0:7555"
    )
    serve.add_argument("--keys", metavar="DIR", help="the directory of node public keys")
    serve.add_argument("--server-key", metavar="FILE", help="the scheduler's secret key file")
    serve.add_argument(
        "--insecure", action="store_true", help="no keys: plain TCP, on loopback only"
    )
    serve.add_argument(
        "--metrics-port", type=int, metavar="PORT", help="serve Prometheus /metrics on PORT"
    )
    serve.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds a graceful shutdown lets jobs finish (30)",
    )


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Run ``postroom serve``; returns the exit code."""
    from actors._scheduler import Scheduler

    stop = threading.Event()
    reload = threading.Event()
    try:
        _logging()
        sched = _scheduler(args.app, Scheduler)
        if not sched.running:
            sched.start()
    except SchedulerError as exc:
        err.write(f"postroom serve: {exc}\n")
        return FAILED

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        # Only flags here: the main loop below does the work.
        (reload if signum == signal.SIGHUP else stop).set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (*_STOP_SIGNALS, signal.SIGHUP)}
    try:
        try:
            listener = None
            if args.listen is not None:
                listener = sched.listen(
                    args.listen, keys=args.keys, server_key=args.server_key, insecure=args.insecure
                )
            if args.metrics_port is not None:
                sched.serve_metrics(args.metrics_port)
        except SchedulerError as exc:
            err.write(f"postroom serve: {exc}\n")
            sched.shutdown(graceful=False)
            return FAILED
        where = f", nodes on {listener.endpoint}" if listener is not None else ""
        out.write(f"postroom serve: scheduler {sched.name} running{where}\n")
        out.flush()
        while not stop.is_set():
            stop.wait(1.0)
            if reload.is_set():
                reload.clear()
                _reload(listener)
        logger.info("postroom serve: stopping (graceful, up to %ss)", args.timeout)
        sched.shutdown(timeout=args.timeout)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    out.write(f"postroom serve: stopped; {sched.stats().completed} job(s) completed\n")
    return 0


def _scheduler(spec: str, kind: type) -> Any:
    app = load_object(spec)
    if not isinstance(app, kind) and callable(app):
        try:
            app = app()
        except SchedulerError:
            raise
        except Exception as exc:  # noqa: BLE001 - the app's own error, in one line
            msg = f"--app {spec}() raised {type(exc).__name__}: {exc}"
            raise InvalidArgument(msg) from None
    if not isinstance(app, kind):
        msg = f"--app {spec} is a {type(app).__name__}, not a Scheduler (or a callable making one)"
        raise InvalidArgument(msg)
    return app


def _reload(listener: Any) -> None:
    if listener is None:
        return
    try:
        admitted = listener.reload_keys()
    except InvalidArgument as exc:
        logger.error("postroom serve: the node keys were not reloaded: %s", exc)
    else:
        logger.info("postroom serve: %d node key(s) admitted", admitted)


def _logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO,
            format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s",
        )
