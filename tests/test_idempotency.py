"""Tests for idempotency keys (rule 10, docs/guarantees.md): one key, one run, one handle."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from actors import (
    CancelResult,
    JobCancelled,
    JobFailed,
    JobHandle,
    JobNotFound,
    JobStatus,
    ManualClock,
    Scheduler,
)


class Probe:
    """A counting handler, a gated one and a failing one."""

    def __init__(self, sched: Scheduler) -> None:
        self.calls = Counter[str]()
        self.started = threading.Event()
        self.release = threading.Event()
        self.fail = True
        lock = threading.Lock()

        @sched.handler("work")
        def work(ctx, payload):
            with lock:
                self.calls[str(payload)] += 1
            return payload

        @sched.handler("block")
        def block(ctx, payload):
            with lock:
                self.calls[str(payload)] += 1
            self.started.set()
            assert self.release.wait(10)
            return payload

        @sched.handler("flaky")
        def flaky(ctx, payload):
            with lock:
                self.calls[str(payload)] += 1
            if self.fail:
                raise RuntimeError("failing on purpose")
            return payload


def test_same_key_while_unfinished_returns_the_same_handle() -> None:
    sched = Scheduler(workers=2)
    probe = Probe(sched)
    with sched:
        first = sched.submit("block", "a", idempotency_key="k")
        assert probe.started.wait(10)
        again = sched.submit("block", "a", idempotency_key="k")
        # Even with another payload or repo: the key decides.
        other_payload = sched.submit("block", "b", idempotency_key="k", repo="r")
        assert again == first
        assert other_payload == first
        assert again.id == first.id == other_payload.id
        assert sched.stats().submitted == 1
        probe.release.set()
        assert again.result(timeout=10) == "a"
        assert first.result(timeout=10) == "a"
    assert probe.calls == Counter({"a": 1})


def test_same_key_while_waiting_returns_the_same_handle() -> None:
    clock = ManualClock()
    sched = Scheduler(workers=1, clock=clock)
    probe = Probe(sched)
    with sched:
        first = sched.submit("work", "w", idempotency_key="k", delay=10)
        again = sched.submit("work", "w", idempotency_key="k")
        assert again == first
        assert again.status is JobStatus.SCHEDULED
        clock.advance(10)
        assert again.result(timeout=10) == "w"
    assert probe.calls == Counter({"w": 1})


def test_same_key_after_completion_returns_the_completed_handle() -> None:
    sched = Scheduler(workers=1)
    probe = Probe(sched)
    with sched:
        first = sched.submit("work", "x", idempotency_key="k")
        assert first.result(timeout=10) == "x"
        again = sched.submit("work", "x", idempotency_key="k")
        assert again == first
        assert again.id == first.id
        assert again.done()
        assert again.result(timeout=0) == "x"
        # A different key is a different job.
        fresh = sched.submit("work", "x", idempotency_key="k2")
        assert fresh != first
        assert fresh.result(timeout=10) == "x"
    assert probe.calls == Counter({"x": 2})
    stats = sched.stats()
    assert stats.submitted == 2
    assert stats.completed == 2


def test_key_runs_again_after_the_job_failed() -> None:
    sched = Scheduler(workers=1)
    probe = Probe(sched)
    with sched:
        first = sched.submit("flaky", "f", idempotency_key="k")
        with pytest.raises(JobFailed):
            first.result(timeout=10)
        probe.fail = False
        again = sched.submit("flaky", "f", idempotency_key="k")
        assert again != first
        assert again.id != first.id
        assert again.result(timeout=10) == "f"
        # Now completed: the key sticks.
        third = sched.submit("flaky", "f", idempotency_key="k")
        assert third == again
    assert probe.calls == Counter({"f": 2})
    assert first.status is JobStatus.FAILED


def test_key_runs_again_after_the_job_was_cancelled() -> None:
    clock = ManualClock()
    sched = Scheduler(workers=1, clock=clock)
    probe = Probe(sched)
    with sched:
        first = sched.submit("work", "c", idempotency_key="k", delay=100)
        assert first.cancel() is CancelResult.CANCELLED
        with pytest.raises(JobCancelled):
            first.result(timeout=0)
        again = sched.submit("work", "c", idempotency_key="k")
        assert again != first
        assert again.id != first.id
        assert again.result(timeout=10) == "c"
    assert probe.calls == Counter({"c": 1})


def test_concurrent_submitters_with_one_key_get_one_job() -> None:
    sched = Scheduler(workers=4)
    probe = Probe(sched)
    handles: list[JobHandle] = []
    lock = threading.Lock()
    go = threading.Barrier(8, timeout=10)

    def submitter() -> None:
        go.wait()
        for i in range(20):
            h = sched.submit("work", f"key{i}", idempotency_key=f"key{i}")
            with lock:
                handles.append(h)

    with sched:
        threads = [threading.Thread(target=submitter) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert all(h.wait(10) for h in handles)
    assert len(handles) == 160
    assert len({h.id for h in handles}) == 20
    assert probe.calls == Counter({f"key{i}": 1 for i in range(20)})
    assert sched.stats().submitted == 20


def test_keys_of_different_schedulers_do_not_clash() -> None:
    one, two = Scheduler(workers=1), Scheduler(workers=1)
    p1, p2 = Probe(one), Probe(two)
    with one, two:
        h1 = one.submit("work", "s", idempotency_key="shared")
        h2 = two.submit("work", "s", idempotency_key="shared")
        assert h1 != h2
        assert h1.result(timeout=10) == h2.result(timeout=10) == "s"
    assert p1.calls == p2.calls == Counter({"s": 1})


def test_resubmission_needs_no_room_when_the_scheduler_is_full() -> None:
    sched = Scheduler(workers=1, max_pending=1, on_full="reject")
    probe = Probe(sched)
    with sched:
        first = sched.submit("block", "held", idempotency_key="k")
        assert probe.started.wait(10)
        # Full: a new job is refused, but the key's own job is simply returned.
        again = sched.submit("block", "held", idempotency_key="k")
        assert again == first
        assert sched.stats().rejected == 0
        probe.release.set()
        assert again.result(timeout=10) == "held"
    assert probe.calls == Counter({"held": 1})


def test_a_key_is_held_only_while_its_job_is_in_the_history() -> None:
    sched = Scheduler(workers=1, history=2)
    probe = Probe(sched)
    with sched:
        first = sched.submit("work", "first", idempotency_key="k")
        assert first.result(timeout=10) == "first"
        assert sched.submit("work", "first", idempotency_key="k") == first
        for i in range(3):  # push the first job out of a history of 2
            sched.submit("work", i).result(timeout=10)
        with pytest.raises(JobNotFound):
            sched.job(first.id)
        again = sched.submit("work", "first", idempotency_key="k")
        assert again != first
        assert again.result(timeout=10) == "first"
    assert probe.calls["first"] == 2
