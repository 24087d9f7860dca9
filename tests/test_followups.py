"""Tests for follow-ups (`JobHandle.then`): a job that runs on another's result."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from typing import Any

import pytest

from actors import (
    CancelResult,
    InvalidArgument,
    JobCancelled,
    JobHandle,
    JobStatus,
    ManualClock,
    QueueFull,
    Scheduler,
    SchedulerClosed,
    UnknownHandler,
    UnknownQueue,
)
from tests.helpers import WAIT, Gate, quiet


class Boom(Exception):
    """A handler error the tests raise on purpose."""


class Recorder:
    """Handlers that count their calls and keep the payloads they got."""

    def __init__(self, sched: Scheduler) -> None:
        self.calls = Counter[str]()
        self.payloads: dict[str, list[Any]] = {}
        self.gate = Gate()
        self._lock = threading.Lock()
        self.ran = {name: threading.Event() for name in ("add", "record", "boom", "block")}

        @sched.handler("add")
        def add(ctx: Any, payload: Any) -> Any:
            self._seen("add", payload)
            return payload + 1

        @sched.handler("record")
        def record(ctx: Any, payload: Any) -> Any:
            self._seen("record", payload)
            return payload

        @sched.handler("boom")
        def boom(ctx: Any, payload: Any) -> Any:
            self._seen("boom", payload)
            raise Boom("parent broke")

        @sched.handler("block")
        def block(ctx: Any, payload: Any) -> Any:
            self._seen("block", payload)
            self.gate.started.set()
            # Returns early if cancelled: the attempt then ends cancelled.
            while not self.gate.release.wait(0.01):
                if ctx.cancelled:
                    return None
            return payload

    def _seen(self, name: str, payload: Any) -> None:
        with self._lock:
            self.calls[name] += 1
            self.payloads.setdefault(name, []).append(payload)
        self.ran[name].set()


def _cancelled_error(handle: JobHandle) -> str:
    with pytest.raises(JobCancelled) as caught:
        handle.result(timeout=WAIT)
    assert caught.value.error is not None
    assert caught.value.error.type == "postroom.JobCancelled"
    return caught.value.error.message


# --- running on completion -------------------------------------------------------------


def test_followup_waits_scheduled_and_runs_on_the_result_once_its_parent_completes() -> None:
    sched = Scheduler(workers=2)
    rec = Recorder(sched)

    with sched:
        parent = sched.submit("block", {"n": 41})
        assert rec.gate.started.wait(WAIT)
        follow = parent.then("record")

        info = sched.job(follow.id)
        assert info.status is JobStatus.SCHEDULED
        assert info.payload is None
        assert info.parent == parent.id
        assert info.attempts == 0
        assert sched.job(parent.id).followups == (follow.id,)
        assert sched.job(parent.id).parent is None
        # A free worker, and still it does not start.
        assert quiet(rec.ran["record"])

        rec.gate.release.set()
        assert follow.result(timeout=WAIT) == {"n": 41}

    assert rec.calls["record"] == 1
    assert follow.info().status is JobStatus.COMPLETED
    assert follow.info().payload == {"n": 41}


def test_followup_payload_is_a_copy_of_the_parents_result() -> None:
    sched = Scheduler(workers=1)

    @sched.handler("make")
    def make(ctx: Any, payload: Any) -> Any:
        return {"items": [1, 2]}

    @sched.handler("mutate")
    def mutate(ctx: Any, payload: Any) -> Any:
        payload["items"].append(3)
        return payload

    with sched:
        parent = sched.submit("make")
        follow = parent.then("mutate")
        assert follow.result(timeout=WAIT) == {"items": [1, 2, 3]}
        assert parent.result(timeout=WAIT) == {"items": [1, 2]}
        assert sched.job(parent.id).result == {"items": [1, 2]}


def test_then_on_a_completed_job_runs_at_once() -> None:
    sched = Scheduler(workers=1)
    Recorder(sched)

    with sched:
        parent = sched.submit("add", 1)
        assert parent.result(timeout=WAIT) == 2
        follow = parent.then("add")
        assert follow.result(timeout=WAIT) == 3
        assert follow.info().parent == parent.id
        assert sched.job(parent.id).followups == (follow.id,)


def test_several_followups_of_one_job_each_get_the_result_in_order_listed() -> None:
    sched = Scheduler(workers=2)
    rec = Recorder(sched)

    with sched:
        parent = sched.submit("block", 7)
        assert rec.gate.started.wait(WAIT)
        followups = [parent.then("add") for _ in range(3)]
        assert sched.job(parent.id).followups == tuple(f.id for f in followups)
        rec.gate.release.set()
        assert [f.result(timeout=WAIT) for f in followups] == [8, 8, 8]
    assert rec.payloads["add"] == [7, 7, 7]


def test_followup_options_apply_as_in_submit() -> None:
    sched = Scheduler(workers=1)
    seen: dict[str, Any] = {}

    @sched.handler("make")
    def make(ctx: Any, payload: Any) -> Any:
        return "x"

    @sched.handler("flaky")
    def flaky(ctx: Any, payload: Any) -> Any:
        seen["repo"] = ctx.repo
        seen["attempt"] = ctx.attempt
        if ctx.attempt == 1:
            raise Boom("first attempt")
        return payload * 2

    with sched:
        follow = sched.submit("make").then("flaky", repo="r1", priority=2, max_retries=1)
        assert follow.result(timeout=WAIT) == "xx"
        info = follow.info()
    assert seen == {"repo": "r1", "attempt": 2}
    assert (info.repo, info.priority, info.max_retries, info.attempts) == ("r1", 2, 1, 2)


def test_a_followup_in_its_parents_repo_runs_after_it() -> None:
    sched = Scheduler(workers=2)
    rec = Recorder(sched)

    with sched:
        parent = sched.submit("add", 1, repo="r")
        follow = parent.then("add", repo="r")
        behind = sched.submit("add", 10, repo="r")
        assert follow.result(timeout=WAIT) == 3
        assert behind.result(timeout=WAIT) == 11
    assert rec.payloads["add"][0] == 1


def test_followups_chain() -> None:
    sched = Scheduler(workers=2)
    rec = Recorder(sched)

    with sched:
        first = sched.submit("add", 0)
        last = first.then("add").then("add").then("add")
        assert last.result(timeout=WAIT) == 4
        chain = [last.id]
        while (parent := sched.job(chain[-1]).parent) is not None:
            chain.append(parent)
    assert chain[-1] == first.id
    assert len(chain) == 4
    assert rec.payloads["add"] == [0, 1, 2, 3]


# --- a parent that does not complete ---------------------------------------------------


def test_followup_of_a_failed_job_is_cancelled_and_never_runs() -> None:
    sched = Scheduler(workers=2)
    rec = Recorder(sched)

    with sched:
        parent = sched.submit("boom")
        follow = parent.then("record")
        message = _cancelled_error(follow)
        stats = sched.stats()

    assert parent.status is JobStatus.FAILED
    assert parent.id in message
    assert "failed" in message
    assert "Boom" in message
    assert rec.calls["record"] == 0
    info = follow.info()
    assert info.status is JobStatus.CANCELLED
    assert info.attempts == 0
    assert info.started_at is None
    assert (stats.failed, stats.cancelled) == (1, 1)


def test_followup_of_a_cancelled_waiting_job_is_cancelled_and_never_runs() -> None:
    clock = ManualClock()
    sched = Scheduler(workers=1, clock=clock)
    rec = Recorder(sched)

    with sched:
        parent = sched.submit("add", 1, delay=60)
        follow = parent.then("record")
        assert parent.cancel() is CancelResult.CANCELLED
        message = _cancelled_error(follow)

    assert parent.id in message
    assert "was cancelled" in message
    assert rec.calls == Counter()


def test_followup_of_a_cancelled_running_job_is_cancelled_and_never_runs() -> None:
    sched = Scheduler(workers=2)
    rec = Recorder(sched)

    with sched:
        parent = sched.submit("block", 1)
        assert rec.gate.started.wait(WAIT)
        follow = parent.then("record")
        assert parent.cancel() is CancelResult.SIGNALLED
        message = _cancelled_error(follow)

    assert parent.status is JobStatus.CANCELLED
    assert parent.id in message
    assert rec.calls["record"] == 0


def test_a_broken_chain_cancels_everything_after_the_break() -> None:
    sched = Scheduler(workers=2)
    rec = Recorder(sched)

    with sched:
        first = sched.submit("add", 0)
        second = first.then("boom")
        third = second.then("add")
        fourth = third.then("add")
        assert first.result(timeout=WAIT) == 1
        assert second.wait(WAIT)
        assert second.status is JobStatus.FAILED
        assert second.id in _cancelled_error(third)
        assert third.id in _cancelled_error(fourth)

    assert rec.calls == Counter({"add": 1, "boom": 1})


def test_a_long_chain_cancelled_at_its_head_resolves_every_link() -> None:
    # Each link is cancelled as the one before it ends: no recursion per link.
    clock = ManualClock()
    sched = Scheduler(workers=1, clock=clock, max_pending=2000)
    rec = Recorder(sched)

    with sched:
        head = sched.submit("add", 0, delay=60)
        links = [head]
        for _ in range(1500):
            links.append(links[-1].then("add"))
        head.cancel()
        assert all(link.wait(WAIT) for link in links)
        assert {link.status for link in links} == {JobStatus.CANCELLED}
    assert rec.calls == Counter()


def test_cancelling_a_waiting_followup_leaves_its_parent_alone() -> None:
    sched = Scheduler(workers=2)
    rec = Recorder(sched)

    with sched:
        parent = sched.submit("block", 1)
        assert rec.gate.started.wait(WAIT)
        follow = parent.then("record")
        assert follow.cancel() is CancelResult.CANCELLED
        assert follow.status is JobStatus.CANCELLED
        rec.gate.release.set()
        assert parent.result(timeout=WAIT) == 1
    assert rec.calls["record"] == 0


# --- validation, back-pressure, shutdown -----------------------------------------------


def test_bad_input_raises_at_then_and_nothing_is_accepted() -> None:
    sched = Scheduler(workers=1)
    rec = Recorder(sched)

    with sched:
        parent = sched.submit("block", 1)
        with pytest.raises(UnknownHandler, match="nope"):
            parent.then("nope")
        with pytest.raises(UnknownQueue, match="elsewhere"):
            parent.then("add", queue="elsewhere")
        with pytest.raises(InvalidArgument, match="priority"):
            parent.then("add", priority=0)
        with pytest.raises(InvalidArgument, match="max_retries"):
            parent.then("add", max_retries=-1)
        with pytest.raises(InvalidArgument, match="timeout"):
            parent.then("add", timeout=0)
        with pytest.raises(InvalidArgument, match="repo"):
            parent.then("add", repo="")
        assert sched.job(parent.id).followups == ()
        assert sched.stats().submitted == 1
        rec.gate.release.set()
        parent.result(timeout=WAIT)

    with pytest.raises(SchedulerClosed):
        parent.then("add")


def test_a_followup_takes_its_slot_when_then_is_called() -> None:
    sched = Scheduler(workers=1, max_pending=2, on_full="reject")
    rec = Recorder(sched)

    with sched:
        parent = sched.submit("block", 5)
        assert rec.gate.started.wait(WAIT)
        follow = parent.then("add")
        stats = sched.stats()
        assert (stats.running, stats.pending) == (1, 1)
        with pytest.raises(QueueFull):
            sched.submit("add", 1)
        with pytest.raises(QueueFull):
            parent.then("add")
        rec.gate.release.set()
        assert follow.result(timeout=WAIT) == 6
        assert sched.submit("add", 1).result(timeout=WAIT) == 2
    assert sched.job(parent.id).followups == (follow.id,)


def test_then_under_drop_when_full_returns_a_dropped_handle() -> None:
    sched = Scheduler(workers=1, max_pending=1, on_full="drop")
    rec = Recorder(sched)

    with sched:
        parent = sched.submit("block", 5)
        dropped = parent.then("add")
        assert dropped.status is JobStatus.CANCELLED
        assert dropped.info().error is not None
        assert dropped.info().error.type == "postroom.Dropped"
        rec.gate.release.set()
        assert parent.result(timeout=WAIT) == 5
        assert sched.job(parent.id).followups == ()
        # With room again, a follow-up of the dropped (so cancelled) job is
        # accepted, and cancelled without running.
        after = dropped.then("add")
        assert dropped.id in _cancelled_error(after)
        assert after.info().parent == dropped.id
    assert rec.calls["add"] == 0


def test_forceful_shutdown_resolves_waiting_followups() -> None:
    sched = Scheduler(workers=1)
    rec = Recorder(sched)

    sched.start()
    parent = sched.submit("block", 1)
    assert rec.gate.started.wait(WAIT)
    chain = [parent.then("add")]
    chain.append(chain[-1].then("add"))
    sched.shutdown(graceful=False)

    assert all(h.done() for h in [parent, *chain])
    assert {h.status for h in chain} == {JobStatus.CANCELLED}
    assert rec.calls["add"] == 0


def test_graceful_shutdown_runs_a_followup_whose_parent_completes_meanwhile() -> None:
    sched = Scheduler(workers=1)
    rec = Recorder(sched)

    sched.start()
    parent = sched.submit("block", 1)
    assert rec.gate.started.wait(WAIT)
    follow = parent.then("add")
    # Released from another thread while shutdown waits for the queued work.
    releaser = threading.Thread(target=rec.gate.release.set)
    releaser.start()
    sched.shutdown(graceful=True)
    releaser.join(WAIT)

    assert follow.result(timeout=0) == 2


def test_await_a_followup() -> None:
    sched = Scheduler(workers=1)
    Recorder(sched)

    async def main(handle: JobHandle) -> Any:
        return await asyncio.wait_for(handle, WAIT)

    with sched:
        follow = sched.submit("add", 1).then("add")
        assert asyncio.run(main(follow)) == 3
