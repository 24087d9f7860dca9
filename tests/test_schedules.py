"""Schedules through a real scheduler: cron, every and at, on a manual clock.

The `ManualClock` starts its wall time at 2026-01-01 00:00 UTC; the tests move
it and wait for the jobs a schedule made, never for real minutes.
"""

from __future__ import annotations

import itertools
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from actors import (
    InvalidArgument,
    ManualClock,
    ScheduleNotFound,
    Scheduler,
    UnknownHandler,
    UnknownQueue,
)
from tests.helpers import WAIT, wait_until

START = datetime(2026, 1, 1, tzinfo=UTC)


def _at(**delta: float) -> float:
    return (START + timedelta(**delta)).timestamp()


def _scheduler(**options: Any) -> tuple[Scheduler, ManualClock, list[tuple[Any, float | None]]]:
    clock = ManualClock()
    sched = Scheduler(workers=2, clock=clock, **options)
    seen: list[tuple[Any, float | None]] = []
    lock = threading.Lock()

    @sched.handler("tick")
    def tick(ctx: Any, payload: Any) -> Any:
        with lock:
            seen.append((payload, ctx.job_id))
        return payload

    return sched, clock, seen


def _fires(sched: Scheduler, schedule_id: str, count: int) -> None:
    """Wait until the schedule has made ``count`` jobs and they have finished."""
    wait_until(lambda: sched.schedule(schedule_id).fires >= count, f"{count} fire(s)")
    for info in sched.jobs(handler="tick", limit=1000):
        if info.schedule_id == schedule_id:
            handle = sched._submitter.handle_of(info.id)
            assert sched.job(info.id).status.finished or handle.wait(WAIT)


def _fire_times(sched: Scheduler, schedule_id: str) -> list[float]:
    infos = sched.jobs(limit=1000)
    return sorted(i.fire_time for i in infos if i.schedule_id == schedule_id and i.fire_time)


def test_cron_fires_at_each_minute_and_never_before() -> None:
    sched, clock, _seen = _scheduler()
    with sched:
        handle = sched.cron("tick", "* * * * *", payload="m")
        assert handle.info().next_fire == START + timedelta(minutes=1)
        clock.advance(59)
        # Not due yet: nothing may run (rule 11, docs/guarantees.md). The Dispatcher answers after
        # handling everything before, so the fire would have been handled.
        assert sched.schedule(handle.id).fires == 0
        clock.advance(1)
        _fires(sched, handle.id, 1)
        clock.advance(60)
        _fires(sched, handle.id, 2)
        assert _fire_times(sched, handle.id) == [_at(minutes=1), _at(minutes=2)]
        info = sched.job(sched.schedule(handle.id).last_job or "")
        assert (info.schedule_id, info.fire_time, info.payload) == (handle.id, _at(minutes=2), "m")
        assert handle.info().next_fire == START + timedelta(minutes=3)


def test_six_field_cron_has_seconds() -> None:
    sched, clock, _seen = _scheduler()
    with sched:
        handle = sched.cron("tick", "*/20 * * * * *")
        for n in range(1, 4):
            clock.advance(20)
            _fires(sched, handle.id, n)
        assert _fire_times(sched, handle.id) == [_at(seconds=s) for s in (20, 40, 60)]


def test_every_fires_from_start_without_drift_until_end() -> None:
    sched, clock, _seen = _scheduler()
    with sched:
        # Binary fractions, so the manual clock's sums are exact too.
        handle = sched.every(
            "tick", 0.5, start=_at(seconds=1), end=_at(seconds=2.75), misfire_grace=10
        )
        clock.advance(1)
        _fires(sched, handle.id, 1)
        for n in (2, 3, 4):
            clock.advance(0.5)
            _fires(sched, handle.id, n)
        clock.advance(5)
        assert sched.schedule(handle.id).next_fire is None
        assert sched.schedule(handle.id).fires == 4
        assert _fire_times(sched, handle.id) == [_at(seconds=1) + k * 0.5 for k in range(4)]


def test_at_in_the_past_runs_now_unless_misfires_are_skipped() -> None:
    sched, _clock, _seen = _scheduler()
    with sched:
        late = sched.at("tick", START - timedelta(hours=1))
        _fires(sched, late.id, 1)
        assert sched.schedule(late.id).next_fire is None
        dropped = sched.at("tick", START - timedelta(hours=1), misfire="skip", misfire_grace=60)
        wait_until(lambda: sched.schedule(dropped.id).misfires == 1, "the misfire")
        assert sched.schedule(dropped.id).fires == 0


def test_misfires_coalesce_into_one_run_or_are_skipped() -> None:
    sched, clock, _seen = _scheduler()
    with sched:
        together = sched.cron("tick", "* * * * *", misfire_grace=5)
        dropped = sched.cron("tick", "* * * * *", misfire="skip", misfire_grace=5)
        clock.advance(10 * 60 + 30)  # ten fire times pass at once, all > 5 s late
        _fires(sched, together.id, 1)
        wait_until(lambda: sched.schedule(dropped.id).misfires == 10, "ten misfires")
        coalesced = sched.schedule(together.id)
        assert (coalesced.fires, coalesced.misfires) == (1, 9)
        # The one run stands for the latest fire time; the schedule goes on after now.
        assert _fire_times(sched, together.id) == [_at(minutes=10)]
        assert coalesced.next_fire == START + timedelta(minutes=11)
        assert sched.schedule(dropped.id).fires == 0


def test_fires_late_within_the_grace_run_as_normal_fires() -> None:
    sched, clock, _seen = _scheduler()
    with sched:
        # Every 10 s from 00:00:10. Seventy seconds pass at once: the fire of :10
        # is handled exactly 60 s late, at the limit of one grace (a normal fire)
        # and past the other (a misfire, which gives way to the fire of :20).
        within = sched.cron("tick", "*/10 * * * * *", misfire_grace=60, overlap="allow")
        past = sched.cron("tick", "*/10 * * * * *", misfire_grace=59.5, overlap="allow")
        dropped = sched.cron(
            "tick", "*/10 * * * * *", misfire="skip", misfire_grace=59.5, overlap="allow"
        )
        clock.advance(70)
        for handle in (within, past, dropped):
            wait_until(
                lambda h=handle: h.info().next_fire == START + timedelta(seconds=80),  # type: ignore[misc]
                "the schedule caught up",
            )
        assert (within.info().fires, within.info().misfires) == (7, 0)
        assert _fire_times(sched, within.id) == [_at(seconds=s) for s in range(10, 71, 10)]
        for handle in (past, dropped):
            assert (handle.info().fires, handle.info().misfires) == (6, 1)
            assert _fire_times(sched, handle.id) == [_at(seconds=s) for s in range(20, 71, 10)]


def test_overlap_skip_queue_allow() -> None:
    clock = ManualClock()
    sched = Scheduler(workers=4, clock=clock)
    release = threading.Event()
    running: dict[str, int] = {}
    peak: dict[str, int] = {}
    lock = threading.Lock()

    @sched.handler("slow")
    def slow(ctx: Any, payload: str) -> None:
        with lock:
            running[payload] = running.get(payload, 0) + 1
            peak[payload] = max(peak.get(payload, 0), running[payload])
        assert release.wait(WAIT)
        with lock:
            running[payload] -= 1

    with sched:
        skip = sched.every("slow", 10, "skip", start=_at(seconds=10), overlap="skip")
        queue = sched.every("slow", 10, "queue", start=_at(seconds=10), overlap="queue")
        allow = sched.every("slow", 10, "allow", start=_at(seconds=10), overlap="allow")
        for _ in range(2):
            clock.advance(10)
            wait_until(lambda: sched.schedule(allow.id).fires >= (clock.now() // 10), "fires")
        wait_until(lambda: running.get("allow") == 2, "both allow runs at once")
        assert sched.schedule(skip.id).fires == 1
        assert sched.schedule(skip.id).skips == 1
        assert sched.schedule(queue.id).fires == 2
        assert running.get("queue") == 1  # the second waits for the first
        release.set()
        wait_until(lambda: sched.stats().running == 0 and sched.stats().pending == 0, "drain")
    assert peak == {"skip": 1, "queue": 1, "allow": 2}


def test_pause_resume_trigger_remove() -> None:
    sched, clock, _seen = _scheduler()
    with sched:
        handle = sched.cron("tick", "* * * * *")
        assert handle.pause().paused
        clock.advance(5 * 60)
        assert sched.schedule(handle.id).fires == 0
        info = handle.resume()
        # Missed while paused: not run, not misfires; it goes on after now.
        assert (info.paused, info.misfires) == (False, 0)
        assert info.next_fire == START + timedelta(minutes=6)
        job = handle.trigger()
        assert job is not None and job.result(WAIT) is None
        assert sched.job(job.id).schedule_id == handle.id
        assert sched.schedule(handle.id).next_fire == START + timedelta(minutes=6)
        assert [s.id for s in sched.schedules()] == [handle.id]
        handle.remove()
        assert sched.schedules() == []
        for call in (sched.pause, sched.resume, sched.trigger, sched.remove, sched.schedule):
            with pytest.raises(ScheduleNotFound, match=handle.id):
                call(handle.id)


def test_cron_in_a_time_zone_across_spring_forward() -> None:
    # Berlin, 2026-03-29: 02:00 CET jumps to 03:00 CEST. "30 2 * * *" names a
    # minute that does not exist that day; the library runs it at 03:00 CEST.
    clock = ManualClock(wall=datetime(2026, 3, 28, 23, 0, tzinfo=UTC).timestamp())
    sched = Scheduler(workers=1, clock=clock)
    sched.register("tick", lambda ctx, payload: None)
    with sched:
        handle = sched.cron("tick", "30 2 * * *", tz="Europe/Berlin")
        expected = datetime(2026, 3, 29, 1, 0, tzinfo=UTC)  # 03:00 CEST
        assert handle.info().next_fire == expected
        clock.advance(expected.timestamp() - clock.wall())
        wait_until(lambda: sched.schedule(handle.id).fires == 1, "the fire")
        assert sched.job(sched.schedule(handle.id).last_job or "").fire_time == expected.timestamp()


def test_real_time_interval_fires_never_before_due() -> None:
    with Scheduler(workers=1) as sched:
        started: list[tuple[float, float]] = []
        done = threading.Event()

        @sched.handler("stamp")
        def stamp(ctx: Any, payload: Any) -> None:
            info = sched.job(ctx.job_id)
            assert info.fire_time is not None
            started.append((info.fire_time, datetime.now(UTC).timestamp()))
            if len(started) == 3:
                done.set()

        handle = sched.every("stamp", 0.05)
        assert done.wait(WAIT)
        handle.remove()
    fire_times = [f for f, _ in started]
    assert all(b - a == pytest.approx(0.05) for a, b in itertools.pairwise(fire_times))
    assert all(at >= fire for fire, at in started)


@pytest.mark.parametrize(
    ("call", "error", "named"),
    [
        (lambda s: s.cron("tick", "61 * * * *"), InvalidArgument, "61 \\* \\* \\* \\*"),
        (lambda s: s.cron("tick", "* * * *"), InvalidArgument, r"\* \* \* \*"),
        (lambda s: s.cron("tick", "* * * * *", tz="Mars/Olympus"), InvalidArgument, "Mars"),
        (lambda s: s.every("tick", 0), InvalidArgument, "0"),
        (lambda s: s.every("tick", -1.5), InvalidArgument, "-1.5"),
        (lambda s: s.every("tick", timedelta(0)), InvalidArgument, r"timedelta\(0\)"),
        (lambda s: s.at("tick", "tomorrow"), InvalidArgument, "tomorrow"),
        (lambda s: s.cron("tick", "* * * * *", overlap="never"), InvalidArgument, "never"),
        (lambda s: s.cron("tick", "* * * * *", misfire_grace=-1), InvalidArgument, "-1"),
        (lambda s: s.cron("nope", "* * * * *"), UnknownHandler, "nope"),
        (lambda s: s.cron("tick", "* * * * *", queue="nope"), UnknownQueue, "nope"),
    ],
)
def test_bad_schedules_raise_naming_the_value(call: Any, error: type, named: str) -> None:
    sched, _clock, _seen = _scheduler()
    with sched:
        with pytest.raises(error, match=named):
            call(sched)
        assert sched.schedules() == []
