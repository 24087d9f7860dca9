"""A finished job's records are freed by reference counting alone, however it ended.

docs/capacity.md tells services holding a large backlog to `gc.freeze()` it. That
is safe only if no job record (`JobState`) ever becomes part of a reference cycle:
a frozen object in a cycle is never collected. These tests run jobs through every
way of ending with the cyclic collector off, let the history evict them, and count
the records still alive.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest

from actors import Fatal, JobHandle, RetryPolicy, Scheduler
from actors._jobs.state import JobState
from tests.helpers import WAIT

HISTORY = 5


@pytest.fixture
def no_cyclic_gc() -> Iterator[None]:
    gc.collect()  # what earlier tests left
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _records_alive(prefix: str) -> int:
    return sum(1 for o in gc.get_objects() if type(o) is JobState and o.job.id.startswith(prefix))


def _boom(ctx: object, payload: int) -> None:
    raise ValueError(f"boom {payload}")


async def _async_boom(ctx: object, payload: int) -> None:
    raise RuntimeError(f"async boom {payload}")


def _fatal(ctx: object, payload: int) -> None:
    raise Fatal(KeyError(payload))


def test_finished_jobs_leave_no_record_behind(no_cyclic_gc: None) -> None:
    sched = Scheduler(workers=2, history=HISTORY, metrics=False)
    release = threading.Event()
    sched.register("ok", lambda ctx, payload: payload)
    sched.register("boom", _boom, max_retries=1, retry=RetryPolicy.fixed(0.001))
    sched.register("async_boom", _async_boom)
    sched.register("fatal", _fatal)
    sched.register("slow", lambda ctx, payload: ctx.wait(WAIT), timeout=0.05)
    sched.register("hold", lambda ctx, payload: release.wait(WAIT))

    children: list[JobHandle] = []

    @sched.handler("parent")
    def parent(ctx: object, payload: int) -> int:
        children.append(ctx.submit("ok", payload))  # type: ignore[attr-defined]
        return payload

    with sched:
        handles: list[JobHandle] = []
        for repo in (None, "r"):
            handles += [sched.submit("ok", i, repo=repo) for i in range(20)]
            handles += [sched.submit("boom", i, repo=repo) for i in range(20)]
            handles += [sched.submit("async_boom", i, repo=repo) for i in range(10)]
            handles += [sched.submit("fatal", i, repo=repo) for i in range(10)]
            handles += [sched.submit("slow", i, repo=repo) for i in range(3)]  # timed out
            handles += [sched.submit("parent", i, repo=repo) for i in range(5)]
            delayed = [sched.submit("ok", i, repo=repo, delay=60) for i in range(10)]
            for handle in delayed:
                handle.cancel()
            handles += delayed
        running = sched.submit("hold")
        handles += [running.then("ok"), running]
        running.cancel()
        release.set()
        for handle in handles:
            assert handle.wait(WAIT), handle.info()
        handles += children  # every parent has run: its child is in the list
        for handle in children:
            assert handle.wait(WAIT), handle.info()
        prefix = handles[0].id.rsplit("-", 1)[0]
        # Push every one of them out of the history.
        for i in range(HISTORY):
            sched.submit("ok", i).result(timeout=WAIT)
        statuses = {h.status.value for h in handles}
        children.clear()  # the handler closes over the list: empty it, do not delete it
        del handles, delayed, running, handle
        alive = _records_alive(prefix)
    assert statuses == {"completed", "failed", "cancelled"}
    assert alive == HISTORY, f"{alive - HISTORY} finished job record(s) held by a cycle"
