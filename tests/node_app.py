"""An app for ``postroom worker`` tests: handlers a node process loads by import path.

``record`` appends a start and an end line to a side file named in its payload,
each one ``O_APPEND`` write, so lines of concurrent writers (several node
processes) never interleave: the file's order is the order of the events, and
each line carries the time as well. ``hold`` runs for a while, its result naming
the process that ran it.
"""

from __future__ import annotations

import os
import time
from typing import Any

from actors import Handlers, Scheduler

handlers = Handlers()


@handlers.handler("echo")
def echo(ctx: Any, payload: Any) -> Any:
    return payload


def _append(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


@handlers.handler("record")
def record(ctx: Any, payload: Any) -> int:
    """Write ``start`` and ``end`` lines (repo, seq, job id, pid, monotonic ns)."""
    path, repo, seq = payload["file"], payload["repo"], payload["seq"]
    pid = os.getpid()
    _append(path, f"start {repo} {seq} {ctx.job_id} {pid} {time.monotonic_ns()}\n")
    work = payload.get("work", 0.0)
    if work:
        time.sleep(work)
    _append(path, f"end {repo} {seq} {ctx.job_id} {pid} {time.monotonic_ns()}\n")
    return pid


@handlers.handler("hold", max_retries=5)
def hold(ctx: Any, payload: Any) -> dict[str, Any]:
    """Run ``payload["seconds"]`` (waking early if told to stop); say who ran it."""
    seconds = payload.get("seconds", 0.0)
    if payload.get("started"):
        _append(payload["started"], f"{ctx.job_id} {ctx.attempt} {os.getpid()}\n")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.005)  # not ctx.wait: a stopped process must finish its sleep late
    return {"pid": os.getpid(), "attempt": ctx.attempt}


scheduler = Scheduler(workers=1, metrics=False, handlers=handlers)
"""A scheduler made (never started) with the same handlers: --app takes it too."""

not_an_app = 42
