"""Named queues: own workers, own bound, own defaults; isolation between queues."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from actors import (
    InvalidArgument,
    JobTimedOut,
    Queue,
    QueueFull,
    RetryPolicy,
    Scheduler,
    UnknownQueue,
)
from tests.helpers import WAIT, gated_scheduler


def test_a_job_runs_on_the_queue_it_names_and_says_so() -> None:
    sched = Scheduler(workers=1, queues={"high": Queue(workers=2)})
    threads: dict[str, str] = {}

    @sched.handler("where")
    def where(ctx: Any, payload: Any) -> str:
        threads[payload] = threading.current_thread().name
        return payload

    with sched:
        default = sched.submit("where", "d")
        high = sched.submit("where", "h", queue="high")
        assert default.result(WAIT) == "d"
        assert high.result(WAIT) == "h"
        assert sched.job(default.id).queue == "default"
        assert sched.job(high.id).queue == "high"
        stats = sched.stats()
    assert [q.name for q in stats.queues] == ["default", "high"]
    assert stats.queue("high").workers == 2
    assert stats.workers == 3


def test_a_saturated_queue_never_delays_another_queues_job() -> None:
    sched, gate, _calls = gated_scheduler(
        workers=1, queues={"low": Queue(workers=1), "high": Queue(workers=1)}
    )
    with sched:
        # low's only worker is held, and a backlog waits behind it.
        held = sched.submit("block", None, queue="low")
        assert gate.started.wait(WAIT)
        backlog = [sched.submit("work", i, queue="low") for i in range(50)]
        # A high job runs at once, while every low job is still stuck.
        urgent = sched.submit("work", "urgent", queue="high")
        assert urgent.result(WAIT) == "urgent"
        assert not held.done()
        assert not any(h.done() for h in backlog)
        assert sched.stats().queue("low").pending == 50
        gate.release.set()
        assert all(h.wait(WAIT) for h in backlog)


def test_each_queue_has_its_own_bound() -> None:
    sched, gate, _calls = gated_scheduler(
        workers=1, queues={"low": Queue(workers=1, max_pending=2)}
    )
    with sched:
        sched.submit("block", None, queue="low")
        assert gate.started.wait(WAIT)
        sched.submit("work", 1, queue="low")
        with pytest.raises(QueueFull, match="queue 'low' holds max_pending=2"):
            sched.submit("work", 2, queue="low")
        # The default queue is not full: its bound is its own.
        assert sched.submit("work", "elsewhere").result(WAIT) == "elsewhere"
        assert sched.stats().rejected == 1
        gate.release.set()


def test_a_handlers_queue_is_where_its_jobs_go_unless_submit_says_otherwise() -> None:
    sched = Scheduler(workers=1, queues={"high": Queue(workers=1), "low": Queue(workers=1)})

    @sched.handler("report", queue="high")
    def report(ctx: Any, payload: Any) -> Any:
        return payload

    with sched:
        by_handler = sched.submit("report", 1)
        by_submit = sched.submit("report", 2, queue="low")
        assert by_handler.result(WAIT) == 1
        assert by_submit.result(WAIT) == 2
        assert sched.job(by_handler.id).queue == "high"
        assert sched.job(by_submit.id).queue == "low"


def _failing_scheduler(**queue_options: Any) -> tuple[Scheduler, dict[str, int]]:
    sched = Scheduler(workers=1, queues={"q": Queue(workers=1, **queue_options)})
    attempts: dict[str, int] = {}
    lock = threading.Lock()

    def fail(ctx: Any, payload: Any) -> None:
        with lock:
            attempts[payload] = attempts.get(payload, 0) + 1
        raise RuntimeError("no")

    sched.register("plain", fail, queue="q")
    sched.register("own", fail, queue="q", max_retries=1)
    return sched, attempts


def test_job_defaults_fall_through_submit_handler_queue() -> None:
    sched, attempts = _failing_scheduler(max_retries=3)
    with sched:
        handles = {
            "queue": sched.submit("plain", "queue"),  # the queue's 3
            "handler": sched.submit("own", "handler"),  # the handler's 1
            "submit": sched.submit("own", "submit", max_retries=0),  # the submit's 0
        }
        for h in handles.values():
            assert h.wait(WAIT)
        infos = {name: sched.job(h.id) for name, h in handles.items()}
    assert {name: info.max_retries for name, info in infos.items()} == {
        "queue": 3,
        "handler": 1,
        "submit": 0,
    }
    assert attempts == {"queue": 4, "handler": 2, "submit": 1}


def test_a_queues_timeout_and_backoff_apply_to_its_jobs() -> None:
    sched = Scheduler(
        workers=1,
        queues={
            "slow": Queue(workers=1, timeout=0.05, retry=RetryPolicy.fixed(0.01), max_retries=1)
        },
    )

    @sched.handler("hang", queue="slow")
    def hang(ctx: Any, payload: Any) -> None:
        assert ctx.wait(WAIT)

    with sched:
        handle = sched.submit("hang")
        with pytest.raises(JobTimedOut):
            handle.result(WAIT)
        assert sched.job(handle.id).attempts == 2


def test_resize_one_queue_leaves_the_others_alone() -> None:
    with Scheduler(workers=2, queues={"high": Queue(workers=1)}) as sched:
        sched.resize(3, queue="high")
        stats = sched.stats()
        assert (stats.queue("high").workers, stats.queue("default").workers) == (3, 2)
        sched.resize(1, queue="high")
        assert sched.stats().queue("high").workers == 1
        with pytest.raises(UnknownQueue, match="'nope'"):
            sched.resize(1, queue="nope")


def test_an_unknown_queue_is_a_typed_error_that_names_it() -> None:
    sched = Scheduler(workers=1, queues={"high": Queue(workers=1)})
    sched.register("noop", lambda ctx, payload: None)
    with pytest.raises(UnknownQueue, match=r"'nope'.*'default', 'high'"):
        sched.register("other", lambda ctx, payload: None, queue="nope")
    with sched:
        with pytest.raises(UnknownQueue, match="'nope'"):
            sched.submit("noop", queue="nope")
        # The scheduler goes on.
        assert sched.submit("noop").wait(WAIT)
        assert sched.stats().submitted == 1


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"workers": -1}, "Queue.workers"),
        ({"workers": 1, "max_pending": 0}, "Queue.max_pending"),
        ({"workers": 1, "timeout": -1.0}, "Queue.timeout"),
        ({"workers": 1, "max_retries": -1}, "Queue.max_retries"),
        ({"workers": 1, "retry": "fast"}, "retry"),
    ],
)
def test_bad_queue_options_raise_naming_the_value(options: dict[str, Any], named: str) -> None:
    with pytest.raises(InvalidArgument, match=named):
        Queue(**options)


def test_bad_queue_mappings_are_refused() -> None:
    with pytest.raises(InvalidArgument, match="'default' queue is sized by"):
        Scheduler(queues={"default": Queue(workers=1)})
    with pytest.raises(InvalidArgument, match="must be a Queue"):
        Scheduler(queues={"high": 4})  # type: ignore[dict-item]
    with pytest.raises(InvalidArgument, match="non-empty str"):
        Scheduler(queues={"": Queue(workers=1)})
