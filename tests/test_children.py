"""Tests for child jobs (`JobContext.submit`): linked both ways, cancelled with their parent."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest

from actors import (
    CancelResult,
    JobCancelled,
    JobContext,
    JobFailed,
    JobHandle,
    JobStatus,
    ManualClock,
    Scheduler,
    SchedulerClosed,
    UnknownHandler,
)
from actors._worker.cancel import CancelScope
from actors.messages import Job
from tests.helpers import WAIT


class Boom(Exception):
    """A handler error the tests raise on purpose."""


@dataclass
class Family:
    """What a test's handlers share: the handles their ctx.submit returned, and events."""

    handles: dict[str, JobHandle] = field(default_factory=dict)
    events: dict[str, threading.Event] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def event(self, name: str) -> threading.Event:
        with self.lock:
            return self.events.setdefault(name, threading.Event())

    def keep(self, name: str, handle: JobHandle) -> None:
        with self.lock:
            self.handles[name] = handle

    def count(self, name: str) -> None:
        with self.lock:
            self.calls[name] += 1


_NOT_OPTIONS = frozenset({"name", "handler", "payload", "await"})
"""Keys of a child spec that are not `JobContext.submit` options."""


def _family_scheduler(**options: Any) -> tuple[Scheduler, Family]:
    """Handlers: ``echo`` returns its payload; ``hold`` runs until cancelled or
    ``release-<payload>`` is set; ``spawn`` submits the children its payload
    lists (``{"name", "handler", "payload", "await"?, **options}``; ``await``: wait
    for the child's result), then holds like ``hold``."""
    sched = Scheduler(**options)
    fam = Family()

    @sched.handler("echo")
    def echo(ctx: JobContext, payload: Any) -> Any:
        fam.count("echo")
        return payload

    @sched.handler("hold")
    def hold(ctx: JobContext, payload: Any) -> Any:
        fam.count(f"hold-{payload}")
        fam.event(f"started-{payload}").set()
        release = fam.event(f"release-{payload}")
        while not release.wait(0.005):
            if ctx.cancelled:
                return "stopped"
        return payload

    @sched.handler("spawn")
    def spawn(ctx: JobContext, payload: Any) -> Any:
        for spec in payload["children"]:
            options = {k: v for k, v in spec.items() if k not in _NOT_OPTIONS}
            child = ctx.submit(spec["handler"], spec.get("payload"), **options)
            fam.keep(spec["name"], child)
            if spec.get("await"):
                child.result(timeout=WAIT)
        fam.event(f"spawned-{payload['name']}").set()
        release = fam.event(f"release-{payload['name']}")
        while not release.wait(0.005):
            if ctx.cancelled:
                return "stopped"
        return payload["name"]

    return sched, fam


def _spec(name: str, handler: str, payload: Any = None, **options: Any) -> dict[str, Any]:
    return {"name": name, "handler": handler, "payload": payload, **options}


# --- linking ---------------------------------------------------------------------------


def test_children_are_linked_both_ways_and_run_as_normal_jobs() -> None:
    sched, fam = _family_scheduler(workers=3)

    with sched:
        parent = sched.submit(
            "spawn",
            {
                "name": "p",
                "children": [
                    _spec("a", "echo", {"x": 1}),
                    _spec("b", "echo", "two", repo="r1", priority=2),
                ],
            },
        )
        assert fam.event("spawned-p").wait(WAIT)
        a, b = fam.handles["a"], fam.handles["b"]
        assert a.result(timeout=WAIT) == {"x": 1}
        assert b.result(timeout=WAIT) == "two"
        assert sched.job(parent.id).children == (a.id, b.id)
        assert sched.job(parent.id).parent is None
        assert a.info().parent == parent.id
        assert b.info().parent == parent.id
        assert (b.info().repo, b.info().priority) == ("r1", 2)
        assert a.info().children == ()
        fam.event("release-p").set()
        assert parent.result(timeout=WAIT) == "p"
    assert sched.stats().submitted == 3


def test_a_delayed_child_waits_for_its_time() -> None:
    clock = ManualClock()
    sched, fam = _family_scheduler(workers=2, clock=clock)

    with sched:
        parent = sched.submit(
            "spawn", {"name": "p", "children": [_spec("later", "echo", "later", delay=30)]}
        )
        assert fam.event("spawned-p").wait(WAIT)
        later = fam.handles["later"]
        assert later.status is JobStatus.SCHEDULED
        assert later.info().parent == parent.id
        clock.advance(30)
        assert later.result(timeout=WAIT) == "later"
        fam.event("release-p").set()
        assert parent.result(timeout=WAIT) == "p"


def test_bad_input_to_ctx_submit_raises_in_the_handler() -> None:
    sched = Scheduler(workers=1)
    raised: list[BaseException] = []

    @sched.handler("parent")
    def parent(ctx: JobContext, payload: Any) -> None:
        try:
            ctx.submit("nope")
        except UnknownHandler as exc:
            raised.append(exc)
            raise

    with sched:
        handle = sched.submit("parent")
        with pytest.raises(JobFailed):
            handle.result(timeout=WAIT)
        assert handle.info().children == ()
        assert sched.stats().submitted == 1
    assert len(raised) == 1
    assert "nope" in str(raised[0])


def test_an_idempotent_child_is_listed_once() -> None:
    sched, fam = _family_scheduler(workers=2)

    with sched:
        parent = sched.submit(
            "spawn",
            {
                "name": "p",
                "children": [
                    _spec("a", "hold", "a", idempotency_key="k"),
                    _spec("b", "hold", "b", idempotency_key="k"),
                ],
            },
        )
        assert fam.event("spawned-p").wait(WAIT)
        assert fam.handles["a"] == fam.handles["b"]
        assert sched.job(parent.id).children == (fam.handles["a"].id,)
        fam.event("release-a").set()
        fam.event("release-p").set()
        assert fam.handles["b"].result(timeout=WAIT) == "a"
        parent.result(timeout=WAIT)
    assert fam.calls["hold-b"] == 0


def test_async_handlers_submit_children_too() -> None:
    sched = Scheduler(workers=2)

    @sched.handler("echo")
    def echo(ctx: JobContext, payload: Any) -> Any:
        return payload

    @sched.handler("parent")
    async def parent(ctx: JobContext, payload: Any) -> Any:
        child = ctx.submit("echo", "from async")
        return [child.id, await child]

    with sched:
        handle = sched.submit("parent")
        child_id, value = handle.result(timeout=WAIT)
        assert value == "from async"
        assert sched.job(child_id).parent == handle.id
        assert handle.info().children == (child_id,)


# --- cancellation ----------------------------------------------------------------------


def test_cancelling_a_parent_cancels_its_running_and_waiting_children_not_finished_ones() -> None:
    clock = ManualClock()
    sched, fam = _family_scheduler(workers=3, clock=clock)

    with sched:
        # "queued" will wait behind this job of its repo.
        blocker = sched.submit("hold", "blocker", repo="busy")
        assert fam.event("started-blocker").wait(WAIT)
        parent = sched.submit(
            "spawn",
            {
                "name": "p",
                "children": [
                    _spec("done", "echo", "done", **{"await": True}),
                    _spec("running", "hold", "running"),
                    _spec("delayed", "echo", "never", delay=60),
                    _spec("queued", "echo", "never", repo="busy"),
                ],
            },
        )
        assert fam.event("spawned-p").wait(WAIT)
        assert fam.event("started-running").wait(WAIT)
        handles = fam.handles
        assert handles["queued"].status is JobStatus.PENDING
        assert handles["delayed"].status is JobStatus.SCHEDULED

        assert parent.cancel() is CancelResult.SIGNALLED
        # Waiting children are gone before cancel returns; the running one is told.
        assert handles["delayed"].status is JobStatus.CANCELLED
        assert handles["done"].status is JobStatus.COMPLETED
        with pytest.raises(JobCancelled):
            handles["running"].result(timeout=WAIT)
        with pytest.raises(JobCancelled):
            parent.result(timeout=WAIT)
        assert handles["queued"].wait(WAIT)
        assert handles["queued"].status is JobStatus.CANCELLED
        assert handles["done"].info().status is JobStatus.COMPLETED
        # Each says why: its parent's cancel, naming the parent where it waited.
        errors = {name: handles[name].info().error for name in ("delayed", "queued", "running")}
        messages = {name: error.message for name, error in errors.items() if error is not None}
        expected = f"cancelled: its parent job {parent.id} was cancelled"
        assert messages == {
            "delayed": expected,
            "queued": expected,
            "running": "attempt 1 was cancelled (its parent job was cancelled)",
        }
        fam.event("release-blocker").set()
        assert blocker.result(timeout=WAIT) == "blocker"

    assert fam.calls["echo"] == 1  # only "done" ran
    assert sched.job(parent.id).children == tuple(
        handles[name].id for name in ("done", "running", "delayed", "queued")
    )


def test_cancelling_a_parent_reaches_its_grandchildren() -> None:
    sched, fam = _family_scheduler(workers=4)

    with sched:
        root = sched.submit(
            "spawn",
            {
                "name": "root",
                "children": [
                    _spec(
                        "child",
                        "spawn",
                        {
                            "name": "child",
                            "children": [
                                _spec("grandchild", "hold", "grandchild"),
                                _spec("late", "echo", "never", delay=3600),
                            ],
                        },
                    ),
                ],
            },
        )
        assert fam.event("spawned-root").wait(WAIT)
        assert fam.event("spawned-child").wait(WAIT)
        assert fam.event("started-grandchild").wait(WAIT)
        child, grandchild, late = (fam.handles[n] for n in ("child", "grandchild", "late"))
        assert grandchild.info().parent == child.id
        assert child.info().children == (grandchild.id, late.id)

        assert root.cancel() is CancelResult.SIGNALLED
        assert late.status is JobStatus.CANCELLED
        for handle in (root, child, grandchild):
            assert handle.wait(WAIT)
            assert handle.status is JobStatus.CANCELLED
    assert fam.calls["echo"] == 0


def test_a_child_submitted_after_its_parent_was_cancelled_is_cancelled_at_once() -> None:
    sched = Scheduler(workers=2)
    seen: list[JobHandle] = []
    told = threading.Event()
    calls = Counter[str]()

    @sched.handler("echo")
    def echo(ctx: JobContext, payload: Any) -> Any:
        calls["echo"] += 1
        return payload

    @sched.handler("parent")
    def parent(ctx: JobContext, payload: Any) -> None:
        told.set()
        ctx.wait(WAIT)  # until cancelled
        seen.append(ctx.submit("echo", "too late"))

    with sched:
        handle = sched.submit("parent")
        assert told.wait(WAIT)
        assert handle.cancel() is CancelResult.SIGNALLED
        assert handle.wait(WAIT)
        (late,) = seen
        assert late.status is JobStatus.CANCELLED
        error = late.info().error
        assert error is not None
        assert handle.id in error.message
        assert late.info().parent == handle.id
        assert handle.info().children == (late.id,)
    assert calls["echo"] == 0


def test_children_outlive_a_parent_that_completed() -> None:
    sched, fam = _family_scheduler(workers=2)

    with sched:
        parent = sched.submit("spawn", {"name": "p", "children": [_spec("c", "hold", "c")]})
        assert fam.event("started-c").wait(WAIT)
        fam.event("release-p").set()
        assert parent.result(timeout=WAIT) == "p"
        child = fam.handles["c"]
        assert child.status is JobStatus.RUNNING
        assert parent.cancel() is CancelResult.ALREADY_FINISHED
        assert child.status is JobStatus.RUNNING
        fam.event("release-c").set()
        assert child.result(timeout=WAIT) == "c"


def test_children_are_left_alone_when_their_parent_fails() -> None:
    sched = Scheduler(workers=2)
    children: list[JobHandle] = []
    release = threading.Event()

    @sched.handler("hold")
    def hold(ctx: JobContext, payload: Any) -> Any:
        release.wait(WAIT)
        return "survived"

    @sched.handler("parent")
    def parent(ctx: JobContext, payload: Any) -> None:
        children.append(ctx.submit("hold"))
        raise Boom("parent failed")

    with sched:
        handle = sched.submit("parent")
        with pytest.raises(JobFailed):
            handle.result(timeout=WAIT)
        release.set()
        assert children[0].result(timeout=WAIT) == "survived"


def test_forceful_shutdown_resolves_parents_and_children() -> None:
    clock = ManualClock()
    sched, fam = _family_scheduler(workers=2, clock=clock)

    sched.start()
    parent = sched.submit(
        "spawn",
        {
            "name": "p",
            "children": [_spec("running", "hold", "running"), _spec("later", "echo", delay=60)],
        },
    )
    assert fam.event("spawned-p").wait(WAIT)
    assert fam.event("started-running").wait(WAIT)
    sched.shutdown(graceful=False)

    handles = [parent, fam.handles["running"], fam.handles["later"]]
    assert all(h.done() for h in handles)
    assert {h.status for h in handles} == {JobStatus.CANCELLED}


def test_a_context_without_a_scheduler_cannot_submit() -> None:
    ctx = JobContext(Job("j1", "h", None, seq=1), CancelScope(), lambda *_: None, None)
    with pytest.raises(SchedulerClosed, match="j1"):
        ctx.submit("h")
