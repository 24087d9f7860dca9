"""Tests for retiring idle RepoLocks: idle repos cost nothing, and no message is lost."""

from __future__ import annotations

import threading
import time
from collections import defaultdict

import pytest

from actors import CancelResult, JobHandle, ManualClock, RetryPolicy, Scheduler


def _wait_for_no_repo_locks(sched: Scheduler, deadline: float = 10.0) -> int:
    """The number of live repo locks once it reaches 0, or when ``deadline`` passes.

    Retiring is asynchronous (the lock reports idle, the Dispatcher stops it),
    so this is a bounded poll of `stats`, never a fixed sleep.
    """
    end = time.monotonic() + deadline
    while True:
        count = sched.stats().repo_locks
        if count == 0 or time.monotonic() > end:
            return count
        threading.Event().wait(0.005)


def _ordered_scheduler(workers: int = 4) -> tuple[Scheduler, dict[str, list[int]]]:
    sched = Scheduler(workers=workers)
    seen: dict[str, list[int]] = defaultdict(list)
    lock = threading.Lock()

    @sched.handler("log")
    def log(ctx, payload):
        with lock:
            seen[ctx.repo].append(payload)
        return payload

    @sched.handler("noop")
    def noop(ctx, payload):
        return None

    return sched, seen


def test_idle_repo_locks_are_retired() -> None:
    sched, seen = _ordered_scheduler()
    with sched:
        handles = [sched.submit("log", i, repo=f"repo-{i % 50}") for i in range(500)]
        assert sched.stats().repo_locks > 0
        assert all(h.wait(10) for h in handles)
        # A job with no repo passes through the Dispatcher after the locks' last
        # reports were sent; then their retirement is at most a poll away.
        sched.submit("noop").result(timeout=10)
        assert _wait_for_no_repo_locks(sched) == 0
    assert len(seen) == 50
    for repo, values in seen.items():
        k = int(repo.removeprefix("repo-"))
        assert values == list(range(k, 500, 50))


def test_a_retired_repo_comes_back_for_new_jobs() -> None:
    sched, seen = _ordered_scheduler()
    with sched:
        assert sched.submit("log", 0, repo="r").result(timeout=10) == 0
        assert _wait_for_no_repo_locks(sched) == 0
        handles = [sched.submit("log", i, repo="r") for i in range(1, 20)]
        assert [h.result(timeout=10) for h in handles] == list(range(1, 20))
        assert _wait_for_no_repo_locks(sched) == 0
    assert seen["r"] == list(range(20))


@pytest.mark.parametrize("mode", ["ordered", "mutex"])
def test_bursts_on_one_repo_lose_no_message(mode: str) -> None:
    """Bursts race the lock's retirement: each burst starts as the last one ends."""
    sched = Scheduler(workers=3, repo_mode=mode)  # type: ignore[arg-type]
    seen: list[int] = []
    running = 0
    overlap = False
    lock = threading.Lock()

    @sched.handler("log")
    def log(ctx, payload):
        nonlocal running, overlap
        with lock:
            running += 1
            overlap = overlap or running > 1
            seen.append(payload)
        with lock:
            running -= 1
        return payload

    total = 0
    with sched:
        for burst in range(150):
            size = 1 + burst % 25
            handles = [sched.submit("log", total + i, repo="hot") for i in range(size)]
            total += size
            # Wait for the last one only: the next burst lands while the lock
            # may be reporting idle or stopping.
            assert handles[-1].result(timeout=10) == total - 1
            assert all(h.done() for h in handles)
    assert total > 1500
    assert seen == list(range(total))
    assert not overlap
    assert sched.stats().completed == total


def test_many_threads_hammer_a_few_repos() -> None:
    sched, seen = _ordered_scheduler(workers=4)
    per_thread = 300
    repos = ["a", "b", "c"]
    handles: list[JobHandle] = []
    lock = threading.Lock()

    def producer(t: int) -> None:
        for i in range(per_thread):
            h = sched.submit("log", (t, i), repo=repos[(t + i) % 3])
            with lock:
                handles.append(h)
            if i % 37 == 0:
                h.wait(10)  # let the repo go idle now and then

    with sched:
        threads = [threading.Thread(target=producer, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert all(h.wait(10) for h in handles)
        sched.submit("noop").result(timeout=10)
        assert _wait_for_no_repo_locks(sched) == 0
    assert len(handles) == 4 * per_thread
    assert sum(len(v) for v in seen.values()) == 4 * per_thread
    # Per producer and repo, jobs ran in submission order.
    for repo, values in seen.items():
        for t in range(4):
            mine = [i for (tt, i) in values if tt == t]
            assert mine == sorted(mine), (repo, t)
            assert all(repos[(t + i) % 3] == repo for i in mine)


def test_a_repo_held_by_a_retry_or_a_delay_is_not_retired() -> None:
    clock = ManualClock()
    sched = Scheduler(workers=2, clock=clock)
    order: list[str] = []
    failed_once = threading.Event()

    @sched.handler("flaky", max_retries=1, retry=RetryPolicy.fixed(50))
    def flaky(ctx, payload):
        order.append(f"flaky{ctx.attempt}")
        if ctx.attempt == 1:
            failed_once.set()
            raise RuntimeError("again")
        return "ok"

    @sched.handler("log")
    def log(ctx, payload):
        order.append(payload)
        return payload

    with sched:
        delayed = sched.submit("log", "delayed", repo="d", delay=30)
        flaky_h = sched.submit("flaky", repo="f")
        behind = sched.submit("log", "behind", repo="f")
        assert failed_once.wait(10)
        # Both repos are held: one for its delayed head, one for a retry.
        assert not behind.wait(0.05)
        assert sched.stats().repo_locks == 2
        clock.advance(60)
        assert delayed.result(timeout=10) == "delayed"
        assert flaky_h.result(timeout=10) == "ok"
        assert behind.result(timeout=10) == "behind"
        assert behind.cancel() is CancelResult.ALREADY_FINISHED
        sched.submit("log", "last").result(timeout=10)
        assert _wait_for_no_repo_locks(sched) == 0
    assert order.index("flaky2") < order.index("behind")
