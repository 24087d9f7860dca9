"""Tests for `Scheduler.stats`: a frozen snapshot whose counts match what happened."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest

from actors import (
    CancelResult,
    JobCancelled,
    JobFailed,
    ManualClock,
    QueueFull,
    Scheduler,
    Stats,
)


def _scheduler(**options: object) -> tuple[Scheduler, threading.Event, threading.Event]:
    sched = Scheduler(**options)  # type: ignore[arg-type]
    started, release = threading.Event(), threading.Event()

    @sched.handler("ok")
    def ok(ctx, payload):
        time.sleep(0.002)  # simulated work, so run times are measurable
        return payload

    @sched.handler("bad", max_retries=1)
    def bad(ctx, payload):
        raise RuntimeError("bad")

    @sched.handler("block")
    def block(ctx, payload):
        started.set()
        assert release.wait(10)
        return payload

    return sched, started, release


def test_fresh_scheduler_stats_are_zero() -> None:
    sched, _started, _release = _scheduler(workers=3)
    before = sched.stats()  # not started: answers anyway
    assert isinstance(before, Stats)
    with sched:
        stats = sched.stats()
    for s in (before, stats):
        assert (s.submitted, s.completed, s.failed, s.cancelled, s.retried) == (0, 0, 0, 0, 0)
        assert (s.dropped, s.rejected, s.running, s.pending) == (0, 0, 0, 0)
        assert s.workers == 3
        assert s.avg_run_time == 0.0
        assert s.finished == 0


def test_counts_match_what_happened() -> None:
    clock = ManualClock()
    sched, _started, _release = _scheduler(workers=2, clock=clock)
    with sched:
        ok = [sched.submit("ok", i, repo=f"r{i % 2}") for i in range(7)]
        bad = [sched.submit("bad", i) for i in range(3)]
        later = [sched.submit("ok", i, delay=100) for i in range(4)]
        for h in later:
            assert h.cancel() is CancelResult.CANCELLED
        for h in ok:
            h.result(timeout=10)
        for h in bad:
            with pytest.raises(JobFailed):
                h.result(timeout=10)
        stats = sched.stats()
    assert stats.submitted == 14
    assert stats.completed == 7
    assert stats.failed == 3
    assert stats.cancelled == 4
    assert stats.retried == 3  # one retry for each bad job
    assert stats.finished == 14
    assert stats.running == 0
    assert stats.pending == 0
    assert stats.dropped == 0
    assert stats.rejected == 0
    assert stats.avg_run_time > 0
    assert sched.stats() == stats  # final figures after shutdown


def test_running_and_pending_while_busy() -> None:
    clock = ManualClock()
    sched, started, release = _scheduler(workers=1, clock=clock)
    with sched:
        blocker = sched.submit("block", "b")
        assert started.wait(10)
        queued = [sched.submit("ok", i) for i in range(3)]
        in_repo = [sched.submit("ok", i, repo="r") for i in range(2)]
        scheduled = sched.submit("ok", "later", delay=50)
        stats = sched.stats()
        assert stats.running == 1
        assert stats.pending == 6
        assert stats.submitted == 7
        release.set()
        for h in [blocker, *queued, *in_repo]:
            h.result(timeout=10)
        clock.advance(50)
        scheduled.result(timeout=10)
        stats = sched.stats()
        assert stats.running == 0
        assert stats.pending == 0
        assert stats.completed == 7


def test_avg_run_time_reflects_the_handlers() -> None:
    sched = Scheduler(workers=1)

    @sched.handler("nap")
    def nap(ctx, payload):
        time.sleep(0.02)  # simulated work of a known length

    with sched:
        for _ in range(3):
            sched.submit("nap").result(timeout=10)
        avg = sched.stats().avg_run_time
    assert 0.015 <= avg < 5.0


def test_rejected_and_dropped_are_counted() -> None:
    sched, started, release = _scheduler(workers=1, max_pending=1, on_full="reject")
    with sched:
        blocker = sched.submit("block", 1)
        assert started.wait(10)
        for _ in range(4):
            with pytest.raises(QueueFull):
                sched.submit("ok", 2)
        assert sched.stats().rejected == 4
        assert sched.stats().submitted == 1
        release.set()
        blocker.result(timeout=10)

    dropping, started2, release2 = _scheduler(workers=1, max_pending=1, on_full="drop")
    with dropping:
        blocker = dropping.submit("block", 1)
        assert started2.wait(10)
        for _ in range(3):
            with pytest.raises(JobCancelled):
                dropping.submit("ok", 2).result(timeout=0)
        assert dropping.stats().dropped == 3
        release2.set()
        blocker.result(timeout=10)
    stats = dropping.stats()
    assert (stats.dropped, stats.submitted, stats.completed, stats.cancelled) == (3, 1, 1, 0)


def test_idempotent_resubmission_is_not_counted() -> None:
    sched, _started, _release = _scheduler(workers=1)
    with sched:
        first = sched.submit("ok", 1, idempotency_key="k")
        first.result(timeout=10)
        assert sched.submit("ok", 1, idempotency_key="k") == first
        assert sched.stats().submitted == 1


def test_workers_follows_resize() -> None:
    sched, _started, _release = _scheduler(workers=2)
    with sched:
        assert sched.stats().workers == 2
        sched.resize(5)
        assert sched.stats().workers == 5
        sched.resize(1)
        assert sched.stats().workers == 1
        assert sched.submit("ok", 1).result(timeout=10) == 1


def test_stats_are_frozen() -> None:
    sched, _started, _release = _scheduler(workers=1)
    with sched:
        sched.submit("ok", 1).result(timeout=10)
        stats = sched.stats()
        with pytest.raises(dataclasses.FrozenInstanceError):
            stats.completed = 99  # type: ignore[misc]
        with pytest.raises((AttributeError, TypeError)):
            stats.extra = 1  # type: ignore[attr-defined]
        later = sched.stats()
    assert stats.completed == 1
    assert later == stats
    assert hash(stats) == hash(later)


def test_snapshots_do_not_change_after_the_fact() -> None:
    sched, _started, _release = _scheduler(workers=1)
    with sched:
        sched.submit("ok", 1).result(timeout=10)
        first = sched.stats()
        sched.submit("ok", 2).result(timeout=10)
        second = sched.stats()
    assert first.completed == 1
    assert second.completed == 2
