"""The fire times a real scheduler produces for a cron schedule are cronsim's own.

For random cron expressions (5 fields, or 6 with seconds), time zones and
windows, a scheduler on a `ManualClock` runs a schedule; the test moves the
clock to one second before each announced fire time (no job may appear: none
early), then to the fire time (exactly one job appears), and at the end holds
the jobs' ``fire_time`` sequence to cronsim's next-time sequence from the
window's start: equal, strictly increasing (none twice), none before the window.

The clock is moved by the schedule's own ``next_fire``; the expected times come
from cronsim directly, so a scheduler that announced or fired the wrong times
would fail either way.
"""

from __future__ import annotations

import itertools
import threading
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from cronsim import CronSim
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pykka.messages import ProxyGetAttr

from actors import ManualClock, Scheduler

ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Sydney"]
FIRES = 4
WAIT = 10.0


def _field(low: int, high: int) -> st.SearchStrategy[str]:
    value = st.integers(low, high)
    return st.one_of(
        st.just("*"),
        st.integers(1, max(1, (high - low) // 2)).map(lambda k: f"*/{k}"),
        value.map(str),
        st.tuples(value, value).map(lambda ab: f"{min(ab)}-{max(ab)}"),
        st.lists(value, min_size=2, max_size=3, unique=True).map(
            lambda vs: ",".join(map(str, sorted(vs)))
        ),
    )


# Days stop at 28 and months are every month, so each expression fires often
# enough that a window of a few fire times stays short.
FIVE = st.tuples(_field(0, 59), _field(0, 23), _field(1, 28), st.just("*"), _field(0, 6))
EXPRESSIONS = st.one_of(
    FIVE.map(" ".join),
    st.tuples(_field(0, 59), FIVE).map(lambda t: f"{t[0]} {' '.join(t[1])}"),
)
STARTS = st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2026, 12, 1), timezones=st.just(UTC)
)


def _expected(expr: str, zone: str, start: datetime) -> list[float]:
    local = start.astimezone(ZoneInfo(zone))
    times = CronSim(expr, local)
    return [next(times).timestamp() for _ in range(FIRES)]


def _timer_barrier(sched: Scheduler) -> None:
    """Every entry the Timer found due by now has become a Fire to the Dispatcher."""
    timer = sched._life.timer  # the test drives the Timer's clock by hand
    assert timer is not None
    timer.ask(ProxyGetAttr(attr_path=("actor_urn",)), timeout=WAIT)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(expr=EXPRESSIONS, zone=st.sampled_from(ZONES), start=STARTS)
def test_scheduler_fires_at_the_librarys_times(expr: str, zone: str, start: datetime) -> None:
    start = start.replace(microsecond=0)
    clock = ManualClock(wall=start.timestamp())
    sched = Scheduler(workers=1, clock=clock, metrics=False)
    made = threading.Semaphore(0)

    @sched.handler("fire")
    def fire(ctx: Any, payload: Any) -> None:
        made.release()

    with sched:
        schedule = sched.cron("fire", expr, tz=zone, overlap="allow")
        for n in range(FIRES):
            next_fire = sched.schedule(schedule.id).next_fire
            assert next_fire is not None
            gap = next_fire.timestamp() - clock.wall()
            assert gap > 0, f"{expr} in {zone}: fire {n} announced in the past"
            if gap > 1:
                clock.advance(gap - 1)
                _timer_barrier(sched)
                assert sched.schedule(schedule.id).fires == n, "a fire started early"
            clock.advance(next_fire.timestamp() - clock.wall())
            assert made.acquire(timeout=WAIT), f"fire {n} of {expr} in {zone} never ran"
        fire_times = [
            info.fire_time
            for info in reversed(sched.jobs(handler="fire", limit=FIRES + 1))
            if info.fire_time is not None
        ]
    assert fire_times == _expected(expr, zone, start)
    assert all(b > a for a, b in itertools.pairwise(fire_times))
    assert fire_times[0] > start.timestamp()
