"""Every message the actors exchange is defined in `actors.messages`, control ones included."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

import actors._worker.attempt
from actors import JobFailed, ManualClock, Scheduler
from actors import messages as m
from actors._dispatcher.dispatcher import Dispatcher
from actors._errors import InvalidArgument
from actors._policy.retry import RetryPolicy
from actors._repo_lock import RepoLock
from actors._timer.timer import Timer
from actors._worker.worker import Worker
from tests.helpers import WAIT
from transport.codec import encode


def _defined_here() -> set[type]:
    return {
        value
        for value in vars(m).values()
        if isinstance(value, type) and value.__module__ == m.__name__
    }


def test_every_class_of_the_module_is_a_listed_frozen_slotted_dataclass() -> None:
    wire, local = set(m.MESSAGE_TYPES), set(m.LOCAL_MESSAGE_TYPES)
    assert not wire & local
    assert wire | local == _defined_here() | {RetryPolicy}
    for cls in wire | local:
        assert dataclasses.is_dataclass(cls), cls
        params = cls.__dataclass_params__  # type: ignore[attr-defined]
        assert params.frozen, cls
        assert "__slots__" in cls.__dict__, cls


@pytest.mark.parametrize(
    "msg", [m.BOOT, m.HALT, m.GET_STATS, m.ChildFailed("timer", 0, m.ErrorInfo("E", ""))]
)
def test_local_messages_are_not_carried_by_the_codec(msg: object) -> None:
    # A peer must not be able to halt a scheduler or forge a crash report.
    with pytest.raises(InvalidArgument, match="not a message type"):
        encode(msg)


def _spy(
    monkeypatch: pytest.MonkeyPatch, cls: type, seen: dict[type, str], lock: threading.Lock
) -> None:
    original: Callable[[Any, Any], Any] = cls.on_receive  # type: ignore[attr-defined]

    def on_receive(self: Any, message: Any) -> Any:
        with lock:
            seen.setdefault(type(message), cls.__name__)
        return original(self, message)

    monkeypatch.setattr(cls, "on_receive", on_receive)


def test_every_message_an_actor_receives_is_defined_in_messages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: dict[type, str] = {}
    lock = threading.Lock()
    for cls in (Dispatcher, RepoLock, Timer, Worker):
        _spy(monkeypatch, cls, seen, lock)
    original_run = actors._worker.attempt.AttemptRunner.run

    def run(self: Any, job: Any, *args: Any) -> Any:
        if job.payload == "crash":
            raise RuntimeError("worker bug")  # a postroom bug: the Dispatcher hears ChildFailed
        return original_run(self, job, *args)

    monkeypatch.setattr(actors._worker.attempt.AttemptRunner, "run", run)
    clock = ManualClock()
    registry = CollectorRegistry()
    sched = Scheduler(workers=1, clock=clock, registry=registry)
    release = threading.Event()

    @sched.handler("work", max_retries=1)
    def work(ctx: Any, payload: Any) -> Any:
        if payload == "block":
            release.wait(WAIT)
        if payload == "fail":
            raise ValueError("retried")
        return payload

    with sched:
        assert sched.submit("work", "a", repo="r").result(WAIT) == "a"
        with pytest.raises(JobFailed, match="retried"):
            sched.submit("work", "fail").result(WAIT)
        later = sched.submit("work", "later", repo="r", delay=60)
        blocked = sched.submit("work", "block")
        waiting = sched.submit("work", "waiting", repo="r2")
        waiting.cancel()
        release.set()
        blocked.result(WAIT)
        clock.advance(60)
        assert later.result(WAIT) == "later"
        with pytest.raises(JobFailed):
            sched.submit("work", "crash").result(WAIT)
        schedule = sched.cron("work", "* * * * *", payload="tick")
        schedule.pause()
        assert [s.id for s in sched.schedules()] == [schedule.id]
        schedule.remove()
        sched.resize(2)
        sched.stats()
        assert b"postroom" in generate_latest(registry)

    strays = {cls.__qualname__: who for cls, who in seen.items() if cls.__module__ != m.__name__}
    assert strays == {}
    # The scenario reached the control messages, not just the job flow.
    reached = {m.Boot, m.GetStats, m.GetMetrics, m.Halt, m.ListSchedules, m.AddSchedule}
    reached |= {m.ScheduleCall, m.ChildFailed, m.Close, m.Resize, m.Cancel, m.Pull}
    assert reached - set(seen) == set()
    assert set(seen) <= set(m.MESSAGE_TYPES) | set(m.LOCAL_MESSAGE_TYPES)
