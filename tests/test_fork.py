"""Tests for schedulers across `os.fork()`.

After a fork only the forking thread lives on in the child: a scheduler the
parent started has none of its threads there. Every call of it in the child
must raise `SchedulerForked` at once (never accept a job that cannot run, never
hang), shutting it down must return at once, and the child must be able to make
a scheduler of its own.

Each test forks for real. The child runs a function, reports through a pipe as
JSON and leaves with `os._exit` (never back into pytest); the parent reads the
pipe until the child's end closes, within a limit, and asserts on the report.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import select
import signal
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from actors import JobHandle, ManualClock, Scheduler, SchedulerClosed, SchedulerForked
from tests.helpers import WAIT

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

CHILD_LIMIT = WAIT
"""Seconds a child may take from the fork to its exit, all it does included."""

AT_ONCE = 0.5
"""Seconds a call in the child may take and still count as answering at once."""


def _echo(ctx: Any, payload: Any) -> Any:
    return payload


def _fork(body: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run ``body`` in a forked child and return its report, once the child has
    exited with status 0 within `CHILD_LIMIT` (the test fails otherwise)."""
    read_end, write_end = os.pipe()
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child; it never returns into pytest
        code = 0
        try:
            os.close(read_end)
            report = body()
        except BaseException as exc:  # reported: the parent fails the test
            report, code = {"child raised": repr(exc)}, 1
        try:
            data = json.dumps(report).encode()
            while data:
                data = data[os.write(write_end, data) :]
        finally:
            os._exit(code)
    os.close(write_end)
    chunks: list[bytes] = []
    try:
        while True:
            left = started + CHILD_LIMIT - time.monotonic()
            readable, _, _ = select.select([read_end], [], [], max(0.0, left))
            if not readable:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                pytest.fail(f"the child did not exit within {CHILD_LIMIT}s")
            chunk = os.read(read_end, 1 << 16)
            if not chunk:
                break  # the child's end closed: it has exited
            chunks.append(chunk)
    finally:
        os.close(read_end)
    _, status = os.waitpid(pid, 0)
    report: dict[str, Any] = json.loads(b"".join(chunks) or b"{}")
    assert os.waitstatus_to_exitcode(status) == 0, report
    return report


def _outcome(call: Callable[[], object]) -> list[Any]:
    """What a call did: [error type, message, seconds] or ["returned", repr, seconds]."""
    started = time.monotonic()
    try:
        value = call()
    except BaseException as exc:  # the report says what it was
        return [type(exc).__name__, str(exc), time.monotonic() - started]
    return ["returned", repr(value), time.monotonic() - started]


async def _awaited(handle: JobHandle) -> Any:
    return await handle


@pytest.fixture
def registry() -> CollectorRegistry:
    """A registry of the test's own: metrics of other tests don't meet it."""
    return CollectorRegistry()


def test_every_call_of_the_parents_scheduler_raises_scheduler_forked_at_once(
    registry: CollectorRegistry,
) -> None:
    clock = ManualClock()
    sched = Scheduler(workers=1, clock=clock, name="parent", registry=registry)
    sched.register("echo", _echo)
    with sched:
        done = sched.submit("echo", 1)
        assert done.result(timeout=WAIT) == 1
        waiting = sched.submit("echo", 2, delay=60)  # unfinished at the fork
        schedule = sched.cron("echo", "0 0 1 1 *")

        def child() -> dict[str, Any]:
            calls: dict[str, Callable[[], object]] = {
                "submit": lambda: sched.submit("echo", 3),
                "cancel": lambda: sched.cancel(waiting.id),
                "job": lambda: sched.job(done.id),
                "jobs": sched.jobs,
                "stats": sched.stats,
                "resize": lambda: sched.resize(2),
                "retry": lambda: sched.retry(done.id),
                "schedules": sched.schedules,
                "every": lambda: sched.every("echo", 60),
                "schedule handle": schedule.info,
                "start": sched.start,
                "with": sched.__enter__,
                "register": lambda: sched.register("other", _echo),
                "serve_metrics": lambda: sched.serve_metrics(0),
                "result": lambda: waiting.result(timeout=WAIT),
                "result of a done job": lambda: done.result(timeout=0),
                "wait": lambda: waiting.wait(WAIT),
                "await": lambda: asyncio.run(_awaited(waiting)),
                "status": lambda: waiting.status,
                "done": waiting.done,
                "info": waiting.info,
                "handle cancel": waiting.cancel,
                "then": lambda: waiting.then("echo"),
                "add_done_callback": lambda: waiting.add_done_callback(lambda _h: None),
            }
            report: dict[str, Any] = {name: _outcome(call) for name, call in calls.items()}
            report["running"] = sched.running
            report["shutdown"] = _outcome(sched.shutdown)
            report["shutdown again"] = _outcome(lambda: sched.shutdown(graceful=False))
            report["threads"] = [t.name for t in threading.enumerate()]
            return report

        report = _fork(child)

        # The parent's scheduler did not notice the fork.
        assert sched.running
        assert sched.submit("echo", 4).result(timeout=WAIT) == 4
        clock.advance(60)
        assert waiting.result(timeout=WAIT) == 2

    assert report.pop("running") is False
    assert report.pop("threads") == ["MainThread"]  # the parent's threads are not here
    for name in ("shutdown", "shutdown again"):
        kind, _, seconds = report.pop(name)
        assert kind == "returned", name
        assert seconds < AT_ONCE, name
    assert issubclass(SchedulerForked, SchedulerClosed)
    for name, (kind, message, seconds) in report.items():
        assert kind == "SchedulerForked", (name, kind, message)
        assert f"process {os.getpid()}" in message, (name, message)
        assert "new Scheduler" in message, (name, message)
        assert seconds < AT_ONCE, (name, seconds)


def test_in_a_grandchild_the_error_names_the_process_that_started_it(
    registry: CollectorRegistry,
) -> None:
    sched = Scheduler(workers=1, registry=registry)
    sched.register("echo", _echo)
    with sched:
        waiting = sched.submit("echo", 1, delay=3600)

        def grandchild() -> dict[str, Any]:
            return {
                "submit": _outcome(lambda: sched.submit("echo", 2))[:2],
                "result": _outcome(lambda: waiting.result(timeout=0))[:2],
            }

        report = _fork(lambda: _fork(grandchild))
        waiting.cancel()
    for name, (kind, message) in report.items():
        assert kind == "SchedulerForked", (name, message)
        assert f"process {os.getpid()}," in message, (name, message)


def test_the_child_makes_a_scheduler_of_its_own_under_the_same_name(
    registry: CollectorRegistry,
) -> None:
    sched = Scheduler(workers=1, name="builds", registry=registry)
    sched.register("echo", _echo)
    with sched:
        sched.submit("echo", 1).result(timeout=WAIT)
        sched.submit("echo", 2).result(timeout=WAIT)

        def child() -> dict[str, Any]:
            own = Scheduler(workers=1, name="builds", registry=registry)
            own.register("echo", _echo)
            with own:
                result = own.submit("echo", 21).result(timeout=WAIT)
                labels = {"scheduler": "builds", "queue": "default", "handler": "echo"}
                submitted = registry.get_sample_value("postroom_jobs_submitted_total", labels)
            return {"result": result, "submitted": submitted}

        report = _fork(child)
    # The child's series are its own scheduler's: the parent's left with the fork.
    assert report == {"result": 21, "submitted": 1.0}


def test_the_child_holds_no_copy_of_the_parents_metrics_port(
    registry: CollectorRegistry,
) -> None:
    """Its listening socket's copy would keep the port bound as long as the
    child lives, after the parent stops serving (a restart could not bind it)."""
    sched = Scheduler(workers=1, registry=registry)
    with sched:
        server = sched.serve_metrics(0)
        listening = server._server.socket.fileno()  # type: ignore[union-attr]

        def child() -> dict[str, Any]:
            try:
                os.fstat(listening)
            except OSError:
                return {"listening": "closed"}
            return {"listening": "open"}

        report = _fork(child)
    assert report == {"listening": "closed"}


@pytest.mark.parametrize("held", ["job state stripes", "metrics registrations", "exit hook"])
def test_a_lock_held_at_the_fork_does_not_hang_the_childs_scheduler(held: str) -> None:
    """A lock that another thread of the parent held at the fork stays held for
    ever in the child, whose copy of that thread does not exist: postroom's
    module-wide locks must be new in the child."""
    from actors._jobs import state as _job_state
    from actors._metrics import collector as _metrics
    from actors._runtime import exit as _exit

    locks = {
        "job state stripes": list(_job_state._STRIPES),
        "metrics registrations": [_metrics._collectors_lock],
        "exit hook": [_exit._lock],
    }[held]

    def child() -> dict[str, Any]:
        own = Scheduler(workers=1, registry=CollectorRegistry())
        own.register("echo", _echo)
        with own:
            return {"result": own.submit("echo", 7).result(timeout=WAIT)}

    for lock in locks:
        lock.acquire()
    try:
        report = _fork(child)
    finally:
        for lock in locks:
            lock.release()
    assert report == {"result": 7}


def test_a_scheduler_not_started_before_the_fork_starts_in_the_child(
    registry: CollectorRegistry,
) -> None:
    """Made and given its handlers before the fork, started after it (a server
    that forks its workers after importing the application): the child's copy
    is a scheduler like any other, and so is the parent's."""
    sched = Scheduler(workers=1, registry=registry)
    sched.register("echo", _echo)

    def child() -> dict[str, Any]:
        with sched:
            return {"result": sched.submit("echo", 5).result(timeout=WAIT)}

    assert _fork(child) == {"result": 5}
    with sched:
        assert sched.submit("echo", 6).result(timeout=WAIT) == 6


def test_a_scheduler_starting_at_the_fork_is_the_parents(registry: CollectorRegistry) -> None:
    """Forked while another thread was inside `start` (its gate held): the
    child's copy is half started, so it is the parent's, not a new one."""
    sched = Scheduler(workers=1, registry=registry)
    sched.register("echo", _echo)

    def child() -> dict[str, Any]:
        return {"start": _outcome(sched.start)[:2], "running": sched.running}

    with sched._life.gate:  # what a thread inside start() holds
        report = _fork(child)
    assert report["start"][0] == "SchedulerForked"
    assert report["running"] is False
    with sched:
        assert sched.submit("echo", 8).result(timeout=WAIT) == 8


def test_a_forked_child_exits_at_once_with_the_parents_scheduler_forgotten() -> None:
    """The child leaves through the interpreter's exit, which shuts forgotten
    schedulers down (actors/_runtime/exit.py): the parent's, here, must not hold it."""
    script = textwrap.dedent(
        """
        import os, sys, time
        from actors import Scheduler

        sched = Scheduler(workers=2)
        sched.register("echo", lambda ctx, payload: payload)
        sched.start()
        sched.submit("echo", 1, delay=3600)  # unfinished work at the fork
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:
            sys.exit(0)  # the interpreter's own exit, with its at-exit hooks
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status), time.monotonic() - started)
        sched.shutdown(graceful=False)
        """
    )
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    code, seconds = done.stdout.split()
    assert int(code) == 0, done.stderr
    assert float(seconds) < CHILD_LIMIT, done.stderr


def test_the_fork_registry_keeps_no_scheduler_alive(registry: CollectorRegistry) -> None:
    made = Scheduler(workers=1, registry=registry)
    ran = Scheduler(workers=1, registry=registry)
    ran.register("echo", _echo)
    with ran:
        assert ran.submit("echo", 1).result(timeout=WAIT) == 1
    refs = [weakref.ref(made), weakref.ref(ran)]
    del made, ran
    gc.collect()
    assert [ref() for ref in refs] == [None, None]
