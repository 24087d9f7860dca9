"""Handlers that ``tests/test_process_runner.py`` runs in `ProcessRunner` children.

Imported by the child process (``--app tests.slot_apps:...``), never run directly.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from actors import Fatal, Handlers, JobContext, Scheduler

if os.environ.get("POSTROOM_TEST_BREAK_SLOT_APPS"):
    # A test sets this to make the next child fail its import.
    raise RuntimeError("slot_apps broken on purpose")


def echo(ctx: JobContext, payload: Any) -> Any:
    return {"payload": payload, "pid": os.getpid(), "attempt": ctx.attempt}


def boom(ctx: JobContext, payload: Any) -> Any:
    raise ValueError(f"boom {payload}")


def fatal(ctx: JobContext, payload: Any) -> Any:
    raise Fatal(ValueError("no use retrying"))


def wait_cancel(ctx: JobContext, payload: Any) -> Any:
    # Reports that it runs, then waits for its cancel: a test fires the scope
    # once the progress arrives, so the cancel reaches a running handler.
    ctx.progress(0.0, "waiting")
    while not ctx.wait(10.0):
        pass
    return "stopped"


def progress(ctx: JobContext, payload: Any) -> Any:
    for step in range(3):
        ctx.progress((step + 1) / 3, f"step {step + 1}")
    return "done"


async def async_echo(ctx: JobContext, payload: Any) -> Any:
    await asyncio.sleep(0)
    return {"async": payload}


async def async_wait_cancel(ctx: JobContext, payload: Any) -> Any:
    ctx.progress(0.0, "waiting")
    await asyncio.sleep(60)
    return "not cancelled"


def submit_child(ctx: JobContext, payload: Any) -> Any:
    return ctx.submit("echo", 1)


def stuck_sleep(ctx: JobContext, payload: Any) -> Any:
    ctx.progress(0.0, "sleeping")
    time.sleep(3600)  # ignores its cancel: only a kill ends it


def stuck_spin(ctx: JobContext, payload: Any) -> Any:
    ctx.progress(0.0, "spinning")
    while True:
        pass


def stuck_in_c(ctx: JobContext, payload: Any) -> Any:
    ctx.progress(0.0, "summing")
    # One C call that holds the GIL for hours: no other thread of the process
    # runs, so not even the end of its stdin can make it leave.
    return sum(range(10**14))


def exit_now(ctx: JobContext, payload: Any) -> Any:
    os._exit(7)


def prints(ctx: JobContext, payload: Any) -> Any:
    print("a handler that prints must not corrupt a frame")
    os.write(1, b"\x00\x00\x00\x05hello")
    return "printed"


def bad_frame(ctx: JobContext, payload: Any) -> Any:
    # Writes to the pipe frames go on, as a bug in the child would: the payload
    # says what (a header claiming 4 GiB, or a short frame that is no message).
    from transport import slot_child

    assert slot_child.frames_out is not None
    data = b"\xff\xff\xff\xff" if payload == "huge" else b"\x00\x00\x00\x03abc"
    os.write(slot_child.frames_out, data)
    time.sleep(3600)  # the parent kills it


def pid(ctx: JobContext, payload: Any) -> Any:
    return os.getpid()


handlers = Handlers()
for _name, _func in list(globals().items()):
    if callable(_func) and getattr(_func, "__module__", None) == __name__:
        handlers.register(_name, _func)
"""Every handler above, under its function's name."""

as_dict = {"echo": echo}
"""A dict of handlers is neither a Handlers nor a Scheduler: refused."""

scheduler = Scheduler(workers=1)
scheduler.register("echo", echo)
scheduler.register("boom", boom)


not_handlers = 42
"""Neither a Handlers nor a Scheduler: the runner refuses it."""
