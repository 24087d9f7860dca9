"""The journal end to end: a scheduler with a store keeps its jobs across a
shutdown and a restart, records every attempt, and recovers what a stop cut short.

Each test uses a real SQLite file in ``tmp_path`` and real schedulers, one
after the other on the same file, as a service restarting would.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from actors import (
    JobStatus,
    ManualClock,
    RunOutcome,
    Scheduler,
    StoreError,
    StoreLocked,
)
from actors.testing import wait_idle

WAIT = 10.0


def rows(path: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def scheduler(path: Path, register: Callable[[Scheduler], None], **options: Any) -> Scheduler:
    options.setdefault("workers", 2)
    sched = Scheduler(store=path, **options)
    register(sched)
    return sched.start()


def test_commit_durability_has_the_row_committed_before_submit_returns(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    release = threading.Event()

    def register(sched: Scheduler) -> None:
        sched.register("wait", lambda ctx, p: release.wait(WAIT))

    sched = scheduler(path, register)
    try:
        handle = sched.submit("wait", {"n": 1}, repo="r", idempotency_key="k-1")
        # Another connection sees it at once: the commit happened before submit returned.
        found = rows(path, "SELECT id, payload, repo, idempotency_key FROM jobs")
        assert found == [(handle.id, '{"n":1}', "r", "k-1")]
        assert rows(path, "SELECT key, job_id FROM idempotency_keys") == [("k-1", handle.id)]
    finally:
        release.set()
        sched.shutdown()


def test_a_restart_brings_back_waiting_jobs_in_their_order(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    release = threading.Event()
    started = threading.Event()

    def first(sched: Scheduler) -> None:
        def block(ctx: Any, payload: Any) -> None:
            started.set()
            release.wait(WAIT)

        sched.register("step", block, max_retries=2)

    sched = scheduler(path, first, workers=1)
    handles = [sched.submit("step", i, repo="repo-a") for i in range(6)]
    handles += [sched.submit("step", 100 + i) for i in range(4)]
    assert started.wait(WAIT)
    # The first job runs (and is cut short); the rest wait: all stay in the store.
    sched.shutdown(timeout=0.0, cancel_grace=0.1)
    release.set()
    assert all(h.done() for h in handles)  # every handle resolved (rule 9, docs/guarantees.md)
    ran: list[Any] = []

    def second(sched: Scheduler) -> None:
        sched.register("step", lambda ctx, p: ran.append(p), max_retries=2)

    sched = scheduler(path, second, workers=1)
    try:
        wait_idle(sched, timeout=WAIT)
        assert sorted(ran) == sorted([*range(6), *range(100, 104)])
        assert [p for p in ran if p < 100] == list(range(6))  # the repo's order held
        first_job = handles[0].id
        runs = sched.runs(first_job)
        assert [(r.attempt, r.outcome) for r in runs] == [
            (1, RunOutcome.INTERRUPTED),
            (2, RunOutcome.COMPLETED),
        ]
        assert runs[0].error is not None and runs[0].error.type == "postroom.JobInterrupted"
        for handle in handles:
            assert sched.job(handle.id).status is JobStatus.COMPLETED
    finally:
        sched.shutdown()


def test_an_interrupted_attempt_fails_the_job_when_the_handler_says_so(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    release = threading.Event()
    started = threading.Event()

    def first(sched: Scheduler) -> None:
        def block(ctx: Any, payload: Any) -> None:
            started.set()
            release.wait(WAIT)

        sched.register("once", block, max_retries=3, on_interrupt="fail")

    sched = scheduler(path, first)
    handle = sched.submit("once")
    assert started.wait(WAIT)
    sched.shutdown(timeout=0.0, cancel_grace=0.1)
    release.set()
    sched = scheduler(path, lambda s: s.register("once", lambda ctx, p: None, on_interrupt="fail"))
    try:
        info = sched.job(handle.id)
        assert info.status is JobStatus.FAILED
        assert info.error is not None and info.error.type == "postroom.JobInterrupted"
        assert "on_interrupt='fail'" in info.error.message
        assert [r.outcome for r in sched.runs(handle.id)] == [RunOutcome.INTERRUPTED]
    finally:
        sched.shutdown()


def test_a_recovered_job_whose_handler_is_gone_fails_with_unknown_handler(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "jobs.db"
    sched = scheduler(path, lambda s: s.register("old", lambda ctx, p: None))
    handle = sched.submit("old", delay=3600)
    sched.shutdown()
    sched = scheduler(path, lambda s: s.register("new", lambda ctx, p: None))
    try:
        info = sched.job(handle.id)
        assert info.status is JobStatus.FAILED
        assert info.error is not None and info.error.type == "postroom.UnknownHandler"
        runs = sched.runs(handle.id)
        assert [r.outcome for r in runs] == [RunOutcome.FAILED]
        assert runs[0].error is not None and runs[0].error.type == "postroom.UnknownHandler"
        assert any("no handler named 'old'" in r.getMessage() for r in caplog.records)
    finally:
        sched.shutdown()


def test_delayed_jobs_keep_their_due_time_across_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    sched = scheduler(path, lambda s: s.register("later", lambda ctx, p: p), clock=ManualClock())
    handle = sched.submit("later", "x", delay=100)
    sched.shutdown()
    clock = ManualClock()  # the same wall time as the first: no time passed
    sched = scheduler(path, lambda s: s.register("later", lambda ctx, p: p), clock=clock)
    try:
        clock.advance(99)
        wait_idle(sched, timeout=WAIT)
        assert sched.job(handle.id).status is JobStatus.SCHEDULED
        clock.advance(1)
        wait_idle(sched, timeout=WAIT)
        assert sched.job(handle.id).status is JobStatus.COMPLETED
    finally:
        sched.shutdown()


def test_an_idempotency_key_of_a_completed_job_still_dedupes_after_a_restart(
    tmp_path: Path,
) -> None:
    path = tmp_path / "jobs.db"
    calls: list[Any] = []

    def pay(ctx: Any, payload: Any) -> dict[str, Any]:
        calls.append(payload)
        return {"paid": payload}

    def register(sched: Scheduler) -> None:
        sched.register("pay", pay)

    sched = scheduler(path, register)
    first = sched.submit("pay", 10, idempotency_key="order-7")
    assert first.result(timeout=WAIT) == {"paid": 10}
    sched.shutdown()
    sched = scheduler(path, register)
    try:
        again = sched.submit("pay", 10, idempotency_key="order-7")
        assert again.id == first.id
        assert again.result(timeout=WAIT) == {"paid": 10}
        wait_idle(sched, timeout=WAIT)
        assert calls == [10]  # the handler ran once
    finally:
        sched.shutdown()


def test_a_follow_up_waits_for_its_parent_across_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    release = threading.Event()
    started = threading.Event()

    def first(sched: Scheduler) -> None:
        def fetch(ctx: Any, payload: Any) -> int:
            started.set()
            release.wait(WAIT)
            return 1

        sched.register("fetch", fetch, max_retries=1)
        sched.register("store", lambda ctx, p: p + 1)

    sched = scheduler(path, first)
    parent = sched.submit("fetch")
    followup = parent.then("store")
    assert started.wait(WAIT)
    sched.shutdown(timeout=0.0, cancel_grace=0.1)
    release.set()

    def second(sched: Scheduler) -> None:
        sched.register("fetch", lambda ctx, p: 41, max_retries=1)
        sched.register("store", lambda ctx, p: p + 1)

    sched = scheduler(path, second)
    try:
        wait_idle(sched, timeout=WAIT)
        assert sched.job(followup.id).status is JobStatus.COMPLETED
        assert sched.job(followup.id).result == 42  # ran on its parent's result
        assert sched.job(parent.id).followups == (followup.id,)
        assert sched.job(followup.id).parent == parent.id
    finally:
        sched.shutdown()


def test_batch_durability_returns_at_once_and_commits_within_the_interval(
    tmp_path: Path,
) -> None:
    path = tmp_path / "jobs.db"
    release = threading.Event()
    sched = scheduler(
        path,
        lambda s: s.register("wait", lambda ctx, p: release.wait(WAIT)),
        durability="batch",
        batch_interval=0.05,
    )
    try:
        handles = [sched.submit("wait", i) for i in range(50)]
        ids = {h.id for h in handles}
        deadline = threading.Event()
        for _ in range(200):  # committed within the interval: poll the file, ~2 s at most
            if {r[0] for r in rows(path, "SELECT id FROM jobs")} == ids:
                break
            deadline.wait(0.01)
        assert {r[0] for r in rows(path, "SELECT id FROM jobs")} == ids
    finally:
        release.set()
        sched.shutdown()


def test_a_second_scheduler_on_a_store_in_use_gets_store_locked(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    sched = scheduler(path, lambda s: s.register("x", lambda ctx, p: None))
    other = Scheduler(store=path)
    try:
        with pytest.raises(StoreLocked, match="in use by another scheduler"):
            other.start()
        assert not other.running
    finally:
        sched.shutdown()
        other.shutdown()
    again = scheduler(path, lambda s: s.register("x", lambda ctx, p: None))  # free again
    again.shutdown()


def test_a_failed_commit_refuses_the_job_and_keeps_what_was_accepted(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    release = threading.Event()

    def register(sched: Scheduler) -> None:
        sched.register("wait", lambda ctx, p: release.wait(WAIT))

    sched = scheduler(path, register)
    try:
        kept = sched.submit("wait", "kept")
        durable = sched._durable
        assert durable is not None

        def full() -> None:
            raise sqlite3.OperationalError("database or disk is full")

        durable.store.before_commit = full
        before = sched.stats().submitted
        with pytest.raises(StoreError, match="disk is full"):
            sched.submit("wait", "refused")
        assert sched.stats().submitted == before  # not half accepted
        assert [s.job.payload for s in sched._table.states()] == ["kept"]
        durable.store.before_commit = None
        later = sched.submit("wait", "later")
        stored = {r[0] for r in rows(path, "SELECT payload FROM jobs")}
        assert stored == {'"kept"', '"later"'}
        assert not kept.done() and not later.done()
    finally:
        release.set()
        sched.shutdown()


def test_runs_without_a_store_come_from_memory() -> None:
    failures = iter([True, True, False])

    def flaky(ctx: Any, payload: Any) -> str:
        if next(failures):
            raise ValueError("not yet")
        return "ok"

    with Scheduler(workers=1) as sched:
        sched.register("flaky", flaky, max_retries=3)
        handle = sched.submit("flaky")
        assert handle.result(timeout=WAIT) == "ok"
        runs = sched.runs(handle.id)
    assert [(r.attempt, r.outcome) for r in runs] == [
        (1, RunOutcome.FAILED),
        (2, RunOutcome.FAILED),
        (3, RunOutcome.COMPLETED),
    ]
    assert runs[0].error is not None and runs[0].error.type == "ValueError"
    assert runs[2].error is None
    assert all(r.worker == "worker-1" for r in runs)
    assert all(r.finished_at is not None and r.finished_at >= r.started_at for r in runs)


def test_finished_jobs_stay_findable_in_the_store_beyond_history(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    sched = scheduler(path, lambda s: s.register("echo", lambda ctx, p: p), history=2)
    try:
        handles = [sched.submit("echo", i) for i in range(6)]
        assert [h.result(timeout=WAIT) for h in handles] == list(range(6))
        oldest = sched.job(handles[0].id)  # long gone from the in-memory history
        assert (oldest.status, oldest.result) == (JobStatus.COMPLETED, 0)
        assert [r.outcome for r in sched.runs(handles[0].id)] == [RunOutcome.COMPLETED]
        listed = sched.jobs(status="completed", limit=10)
        assert [info.id for info in listed] == [h.id for h in reversed(handles)]
    finally:
        sched.shutdown()
