"""The Journal's commits: shared by concurrent submitters, retried after a
failure without losing what was acknowledged, and a shutdown that leaves
waiting jobs in the store."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from actors import JobStatus, Scheduler
from actors._journal.store import Store

WAIT = 10.0


def stored(path: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def count_commits(store: Store) -> list[int]:
    """Count the store's transactions from here on (a list of one int)."""
    counted = [0]
    original = store.transaction

    def transaction(work: Any, doing: str) -> Any:
        counted[0] += 1
        return original(work, doing)

    store.transaction = transaction  # type: ignore[method-assign]
    return counted


def test_concurrent_submitters_share_commits(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    release = threading.Event()
    sched = Scheduler(workers=1, store=path, max_pending=100_000)
    sched.register("hold", lambda ctx, p: release.wait(WAIT))
    sched.start()
    try:
        durable = sched._durable
        assert durable is not None
        commits = count_commits(durable.store)
        threads, per_thread = 16, 40
        go = threading.Barrier(threads)

        def submit_many() -> None:
            go.wait()
            for i in range(per_thread):
                sched.submit("hold", i)

        workers = [threading.Thread(target=submit_many) for _ in range(threads)]
        for t in workers:
            t.start()
        for t in workers:
            t.join()
        submits = threads * per_thread
        assert len(stored(path, "SELECT id FROM jobs")) == submits
        # Each submit waited for a commit of its own row; far fewer commits ran.
        assert commits[0] < submits / 2, (commits[0], submits)
    finally:
        release.set()
        sched.shutdown()


def test_a_failing_store_keeps_acknowledged_records_and_writes_them_later(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "jobs.db"
    sched = Scheduler(workers=2, store=path, durability="batch", batch_interval=0.01)
    sched.register("echo", lambda ctx, p: p)
    sched.start()
    try:
        durable = sched._durable
        assert durable is not None
        failing = threading.Event()
        failing.set()

        def fault() -> None:
            if failing.is_set():
                raise sqlite3.OperationalError("disk I/O error")

        durable.store.before_commit = fault
        handles = [sched.submit("echo", i) for i in range(20)]
        assert [h.result(timeout=WAIT) for h in handles] == list(range(20))  # still runs
        deadline = time.monotonic() + WAIT
        while not any("cannot be written" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, "the failed commit was never logged"
            time.sleep(0.01)
        assert stored(path, "SELECT count(*) FROM jobs") == [(0,)]
        failing.clear()  # the store works again: the kept records are written
        deadline = time.monotonic() + WAIT
        while stored(path, "SELECT count(*) FROM jobs WHERE status = 'completed'") != [(20,)]:
            assert time.monotonic() < deadline, "the kept records were never written"
            time.sleep(0.05)
        assert stored(path, "SELECT count(*) FROM runs WHERE outcome = 'completed'") == [(20,)]
    finally:
        sched.shutdown()
    assert any("written again" in r.getMessage() for r in caplog.records)


def test_graceful_shutdown_lets_running_jobs_finish_and_leaves_the_rest_stored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "jobs.db"
    started, release = threading.Event(), threading.Event()
    ran: list[Any] = []

    def step(ctx: Any, payload: Any) -> Any:
        ran.append(payload)
        if payload == "first":
            started.set()
            release.wait(WAIT)
        return payload

    sched = Scheduler(workers=1, store=path)
    sched.register("step", step)
    sched.start()
    first = sched.submit("step", "first")
    rest = [sched.submit("step", i) for i in range(5)]
    assert started.wait(WAIT)
    closer = threading.Thread(target=sched.shutdown, kwargs={"timeout": WAIT})
    with caplog.at_level(logging.WARNING, logger="postroom"):
        closer.start()
        # The waiting jobs are cancelled here (left in the store) at once...
        for handle in rest:
            assert handle.wait(WAIT)
            assert handle.info().status is JobStatus.CANCELLED
        release.set()  # ...and the running one may finish.
        closer.join()
    assert first.result(timeout=0) == "first"
    assert ran == ["first"]
    statuses = dict(stored(path, "SELECT payload, status FROM jobs"))
    assert statuses == {'"first"': "completed", **{str(i): "pending" for i in range(5)}}
    assert any("5 unfinished job(s) left in the store" in r.getMessage() for r in caplog.records)
