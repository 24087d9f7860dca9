"""Schedule arithmetic (`actors._schedules.triggers`): cron, interval and one-shot fire
times, DST days in real zones, bad input, and the misfire decision."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from actors._errors import InvalidArgument
from actors._schedules.misfire import FireDecision, decide_fire
from actors._schedules.triggers import AtTrigger, CronTrigger, IntervalTrigger, Trigger


def utc(*args: int) -> float:
    """Epoch seconds of a UTC wall-clock time."""
    return datetime(*args, tzinfo=UTC).timestamp()  # type: ignore[arg-type, misc]


def local(zone: str, *args: int, fold: int = 0) -> float:
    """Epoch seconds of a wall-clock time in ``zone``."""
    return datetime(*args, tzinfo=ZoneInfo(zone), fold=fold).timestamp()  # type: ignore[arg-type, misc]


def fires(trigger: Trigger, after: float, n: int) -> list[float | None]:
    """The next ``n`` answers of `next_after`, each from the one before."""
    out: list[float | None] = []
    t: float | None = after
    for _ in range(n):
        t = trigger.next_after(t) if t is not None else None
        out.append(t)
    return out


# --- cron: plain days ---------------------------------------------------------------


def test_a_five_field_expression_fires_on_the_minute() -> None:
    trigger = CronTrigger("*/15 * * * *")
    assert fires(trigger, utc(2026, 1, 1, 0, 7, 30), 3) == [
        utc(2026, 1, 1, 0, 15),
        utc(2026, 1, 1, 0, 30),
        utc(2026, 1, 1, 0, 45),
    ]


def test_a_six_field_expression_reads_seconds_first() -> None:
    trigger = CronTrigger("*/20 30 9 * * *")
    assert fires(trigger, utc(2026, 1, 1), 4) == [
        utc(2026, 1, 1, 9, 30, 0),
        utc(2026, 1, 1, 9, 30, 20),
        utc(2026, 1, 1, 9, 30, 40),
        utc(2026, 1, 2, 9, 30, 0),
    ]


def test_weekday_and_month_names_and_a_time_zone() -> None:
    trigger = CronTrigger("0 9 * jan-feb MON", tz="Asia/Kolkata")  # 2026-01-01 is a Thursday
    assert trigger.next_after(utc(2026, 1, 1)) == local("Asia/Kolkata", 2026, 1, 5, 9, 0)
    assert trigger.next_after(utc(2026, 2, 23, 4)) == local("Asia/Kolkata", 2027, 1, 4, 9, 0)


def test_next_after_is_strictly_after_even_a_hair_before_a_fire() -> None:
    trigger = CronTrigger("0 12 * * *")
    noon = utc(2026, 5, 1, 12)
    assert trigger.next_after(noon) == utc(2026, 5, 2, 12)
    assert trigger.next_after(noon - 0.5) == noon
    # The float just below noon rounds to noon as a datetime: it must not be skipped.
    assert trigger.next_after(math.nextafter(noon, 0.0)) == noon


def test_without_a_time_zone_it_is_utc() -> None:
    assert CronTrigger("0 6 * * *").next_after(utc(2026, 7, 1)) == utc(2026, 7, 1, 6)
    assert CronTrigger("0 6 * * *").tz is None


def test_fires_after_yields_what_next_after_chains() -> None:
    trigger = CronTrigger("*/30 * * * *", tz="Europe/Berlin")
    start = utc(2026, 10, 24, 23, 10)
    it = trigger.fires_after(start)
    assert [next(it) for _ in range(8)] == fires(trigger, start, 8)


def test_an_expression_that_never_matches_has_no_next_time() -> None:
    # Days 1, 21 of a month that are also its last Monday: valid, never true.
    assert CronTrigger("* * */20 * 1L").next_after(utc(2026, 1, 1)) is None


def test_no_fire_time_past_year_9999() -> None:
    assert CronTrigger("0 0 1 1 *").next_after(utc(9999, 6, 1)) is None


def test_triggers_compare_by_value() -> None:
    assert CronTrigger("0 * * * *", "Europe/Berlin") == CronTrigger("0 * * * *", "Europe/Berlin")
    assert CronTrigger("0 * * * *") != CronTrigger("0 * * * *", "Europe/Berlin")
    assert IntervalTrigger(60, start=0) == IntervalTrigger(timedelta(minutes=1), start=0.0)
    assert AtTrigger(0) == AtTrigger(datetime(1970, 1, 1))


# --- cron: DST days ------------------------------------------------------------------
# Berlin: 2026-03-29 02:00 CET -> 03:00 CEST; 2026-10-25 03:00 CEST -> 02:00 CET.
# New York: 2026-03-08 02:00 EST -> 03:00 EDT; 2026-11-01 02:00 EDT -> 01:00 EST.

BERLIN = "Europe/Berlin"
NEW_YORK = "America/New_York"


def test_spring_forward_a_fixed_time_in_the_gap_runs_when_the_gap_ends() -> None:
    trigger = CronTrigger("30 2 * * *", BERLIN)
    assert fires(trigger, utc(2026, 3, 28, 12), 2) == [
        utc(2026, 3, 29, 1, 0),  # 03:00 CEST, the first minute after the gap
        utc(2026, 3, 30, 0, 30),  # 02:30 CEST
    ]
    trigger = CronTrigger("30 2 * * *", NEW_YORK)
    assert fires(trigger, utc(2026, 3, 7, 12), 2) == [
        utc(2026, 3, 8, 7, 0),  # 03:00 EDT
        utc(2026, 3, 9, 6, 30),  # 02:30 EDT
    ]


def test_spring_forward_several_fixed_times_in_the_gap_run_once() -> None:
    trigger = CronTrigger("15,45 2 * * *", BERLIN)
    assert fires(trigger, utc(2026, 3, 28, 12), 2) == [
        utc(2026, 3, 29, 1, 0),  # 02:15 and 02:45 together, at 03:00 CEST
        utc(2026, 3, 30, 0, 15),
    ]


def test_spring_forward_a_six_field_time_in_the_gap_is_skipped() -> None:
    trigger = CronTrigger("0 30 2 * * *", BERLIN)
    assert trigger.next_after(utc(2026, 3, 28, 12)) == utc(2026, 3, 30, 0, 30)
    trigger = CronTrigger("0 30 2 * * *", NEW_YORK)
    assert trigger.next_after(utc(2026, 3, 7, 12)) == utc(2026, 3, 9, 6, 30)


def test_spring_forward_a_wildcard_expression_skips_the_missing_hour() -> None:
    trigger = CronTrigger("*/30 * * * *", BERLIN)
    assert fires(trigger, utc(2026, 3, 29, 0, 15), 3) == [
        utc(2026, 3, 29, 0, 30),  # 01:30 CET
        utc(2026, 3, 29, 1, 0),  # 03:00 CEST: 02:00 and 02:30 do not exist
        utc(2026, 3, 29, 1, 30),
    ]


def test_fall_back_a_fixed_time_in_the_repeated_hour_runs_once_in_the_first_pass() -> None:
    trigger = CronTrigger("30 2 * * *", BERLIN)
    assert fires(trigger, utc(2026, 10, 24, 12), 2) == [
        utc(2026, 10, 25, 0, 30),  # 02:30 CEST
        utc(2026, 10, 26, 1, 30),  # not 02:30 CET the same night
    ]
    trigger = CronTrigger("30 1 * * *", NEW_YORK)
    assert fires(trigger, utc(2026, 10, 31, 12), 2) == [
        utc(2026, 11, 1, 5, 30),  # 01:30 EDT
        utc(2026, 11, 2, 6, 30),  # 01:30 EST, the next day
    ]


def test_fall_back_from_inside_the_second_pass_the_fixed_time_already_ran() -> None:
    second_pass = local(BERLIN, 2026, 10, 25, 2, 10, fold=1)  # 02:10 CET
    assert second_pass == utc(2026, 10, 25, 1, 10)
    assert CronTrigger("30 2 * * *", BERLIN).next_after(second_pass) == utc(2026, 10, 26, 1, 30)
    assert CronTrigger("0 30 2 * * *", BERLIN).next_after(second_pass) == utc(2026, 10, 25, 1, 30)


def test_fall_back_a_six_field_time_in_the_repeated_hour_fires_twice() -> None:
    trigger = CronTrigger("0 30 2 * * *", BERLIN)
    assert fires(trigger, utc(2026, 10, 24, 12), 3) == [
        utc(2026, 10, 25, 0, 30),  # 02:30 CEST
        utc(2026, 10, 25, 1, 30),  # 02:30 CET
        utc(2026, 10, 26, 1, 30),
    ]
    trigger = CronTrigger("0 30 1 * * *", NEW_YORK)
    assert fires(trigger, utc(2026, 10, 31, 12), 3) == [
        utc(2026, 11, 1, 5, 30),
        utc(2026, 11, 1, 6, 30),
        utc(2026, 11, 2, 6, 30),
    ]


def test_fall_back_a_wildcard_expression_fires_in_both_passes() -> None:
    trigger = CronTrigger("0 * * * *", NEW_YORK)
    assert fires(trigger, utc(2026, 11, 1, 3, 30), 4) == [
        utc(2026, 11, 1, 4),  # 00:00 EDT
        utc(2026, 11, 1, 5),  # 01:00 EDT
        utc(2026, 11, 1, 6),  # 01:00 EST
        utc(2026, 11, 1, 7),  # 02:00 EST
    ]


def test_fall_back_not_on_a_whole_hour_neither_hangs_nor_goes_back() -> None:
    # Chatham: 2027-04-04 03:45 +13:45 -> 02:45 +12:45. cronsim alone answers
    # 03:00 +13:45 (the past) from here, again and again.
    zone = "Pacific/Chatham"
    start = local(zone, 2027, 4, 4, 3, 39, 53)
    assert fires(CronTrigger("*/55 3 * * *", zone), start, 2) == [
        local(zone, 2027, 4, 4, 3, 0, fold=1),  # 03:00 +12:45, second pass
        local(zone, 2027, 4, 4, 3, 55),
    ]


def test_spring_forward_at_midnight_skips_a_wildcard_time_in_the_missing_hour() -> None:
    # Havana: 2027-03-14 00:00 CST -> 01:00 CDT, a Sunday. cronsim alone fires
    # "0 0 0 * * 0" at 01:00 CDT that day, though 00:00 never happened.
    zone = "America/Havana"
    start = local(zone, 2027, 3, 13, 12)
    assert CronTrigger("0 0 0 * * 0", zone).next_after(start) == local(zone, 2027, 3, 21)
    assert CronTrigger("* 0 * * 0", zone).next_after(start) == local(zone, 2027, 3, 21)
    # The wall-clock rule runs a fixed time of the missing hour when it ends.
    assert CronTrigger("0 0 * * 0", zone).next_after(start) == local(zone, 2027, 3, 14, 1)


def test_half_hour_fall_back_keeps_the_times_after_it() -> None:
    # Lord Howe: 2026-04-05 02:00 +11:00 -> 01:30 +10:30. cronsim alone jumps
    # from 01:45 (second pass) to 02:40, skipping 02:00 and 02:20.
    zone = "Australia/Lord_Howe"
    start = local(zone, 2026, 4, 5, 1, 45, fold=1)
    assert fires(CronTrigger("0 */20 0,2 * * *", zone), start, 3) == [
        local(zone, 2026, 4, 5, 2, 0),
        local(zone, 2026, 4, 5, 2, 20),
        local(zone, 2026, 4, 5, 2, 40),
    ]


# --- cron: bad input -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "says"),
    [
        ("61 * * * *", "bad minute"),
        ("60 * * * * *", "bad second"),
        ("0 24 * * *", "bad hour"),
        ("0 0 30 2 *", "bad day-of-month"),
        ("0 0 * 13 *", "bad month"),
        ("0 0 * * 8", "bad day-of-week"),
        ("5-1 * * * *", "bad minute"),
        ("*/0 * * * *", "bad minute"),
        ("1,,2 * * * *", "bad minute"),
        ("0 0 1 * 1#6", "bad day-of-week"),
        ("a b c d e", "bad minute"),
        ("* * * *", "4 fields"),
        ("* * * * * * *", "7 fields"),
        ("", "0 fields"),
        ("@hourly", "1 fields"),
    ],
)
def test_an_invalid_expression_is_named_with_what_is_wrong(expr: str, says: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        CronTrigger(expr)
    assert repr(expr) in str(info.value)
    assert says in str(info.value)


@pytest.mark.parametrize("expr", [None, 5, b"* * * * *", ["*"] * 5])
def test_an_expression_that_is_not_a_str_is_named(expr: object) -> None:
    with pytest.raises(InvalidArgument, match="must be a str") as info:
        CronTrigger(expr)  # type: ignore[arg-type]
    assert repr(expr) in str(info.value)


@pytest.mark.parametrize(
    "tz", ["Mars/Olympus_Mons", "Europe", "", "../../etc/passwd", "/usr/share/zoneinfo/UTC"]
)
def test_an_unknown_time_zone_is_named(tz: str) -> None:
    with pytest.raises(InvalidArgument, match="unknown time zone") as info:
        CronTrigger("* * * * *", tz=tz)
    assert repr(tz) in str(info.value)


@pytest.mark.parametrize("tz", [5, ZoneInfo("UTC"), UTC])
def test_a_time_zone_that_is_not_a_name_is_named(tz: object) -> None:
    with pytest.raises(InvalidArgument, match="IANA time zone name") as info:
        CronTrigger("* * * * *", tz=tz)  # type: ignore[arg-type]
    assert repr(tz) in str(info.value)


@pytest.mark.parametrize("t", [math.nan, math.inf, -math.inf, "0", None, True, 1e20, -1e20])
def test_a_bad_time_is_named(t: object) -> None:
    triggers: list[Trigger] = [
        CronTrigger("* * * * *"),
        IntervalTrigger(1, start=0),
        AtTrigger(0),
    ]
    for trigger in triggers:
        with pytest.raises(InvalidArgument) as info:
            trigger.next_after(t)  # type: ignore[arg-type]
        assert repr(t) in str(info.value)


# --- interval ---------------------------------------------------------------------


def test_an_interval_fires_at_start_and_every_interval_after() -> None:
    trigger = IntervalTrigger(10, start=100.0)
    assert trigger.first_fire(50.0) == 100.0
    assert trigger.first_fire(100.0) == 100.0
    assert trigger.first_fire(100.5) == 110.0
    assert trigger.next_after(99.9) == 100.0
    assert trigger.next_after(100.0) == 110.0
    assert trigger.next_after(105.0) == 110.0
    assert fires(trigger, 100.0, 3) == [110.0, 120.0, 130.0]


def test_an_interval_ends_at_end_inclusive() -> None:
    trigger = IntervalTrigger(10, start=100.0, end=130.0)
    assert fires(trigger, 105.0, 4) == [110.0, 120.0, 130.0, None]
    assert trigger.first_fire(131.0) is None
    assert IntervalTrigger(10, start=100.0, end=100.0).first_fire(0.0) == 100.0


def test_an_interval_takes_timedelta_and_datetimes() -> None:
    start = datetime(2026, 3, 29, 1, 30, tzinfo=ZoneInfo(BERLIN))  # 00:30Z, before the gap
    trigger = IntervalTrigger(timedelta(minutes=30), start=start)
    # Intervals are elapsed time: DST does not bend them.
    assert fires(trigger, start.timestamp(), 2) == [utc(2026, 3, 29, 1, 0), utc(2026, 3, 29, 1, 30)]


def test_naive_datetimes_are_utc() -> None:
    naive = datetime(2026, 6, 1, 12, 0)
    assert IntervalTrigger(60, start=naive, end=naive).start == utc(2026, 6, 1, 12)
    assert IntervalTrigger(60, start=0, end=naive).end == utc(2026, 6, 1, 12)
    assert AtTrigger(naive).when == utc(2026, 6, 1, 12)


def test_ten_thousand_intervals_do_not_drift() -> None:
    start, step = 1_767_225_600.123, 0.1
    trigger = IntervalTrigger(step, start=start)
    t = trigger.first_fire(start)
    for k in range(10_001):
        assert t == start + k * step, k
        assert t == trigger.fire(k)
        t = trigger.next_after(t)
    # Adding the step each time would have drifted by about a millisecond.
    added = start
    for _ in range(10_000):
        added += step
    assert added != start + 10_000 * step


def test_an_interval_without_start_is_anchored_when_added() -> None:
    trigger = IntervalTrigger(60)
    assert trigger.start is None
    with pytest.raises(InvalidArgument, match=r"anchored\(now\)"):
        trigger.first_fire(1000.0)
    with pytest.raises(InvalidArgument, match=r"anchored\(now\)"):
        trigger.next_after(1000.0)
    anchored = trigger.anchored(1000.0)
    assert anchored == IntervalTrigger(60, start=1000.0)
    assert anchored.first_fire(1000.0) == 1000.0  # the first run is at once
    assert anchored.next_after(1000.0) == 1060.0
    assert anchored.anchored(5000.0) is anchored  # a start, once set, stays


def test_anchoring_after_the_end_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="end"):
        IntervalTrigger(60, end=500.0).anchored(1000.0)


@pytest.mark.parametrize(
    "interval",
    [
        0,
        -1,
        0.0,
        -0.5,
        1e-7,
        math.nan,
        math.inf,
        "5",
        None,
        True,
        timedelta(0),
        timedelta(seconds=-1),
    ],
)
def test_a_bad_interval_is_named(interval: object) -> None:
    with pytest.raises(InvalidArgument, match="interval") as info:
        IntervalTrigger(interval)  # type: ignore[arg-type]
    assert repr(interval) in str(info.value)


@pytest.mark.parametrize("value", [math.nan, math.inf, "2026-01-01", True, [1.0]])
def test_a_bad_start_or_end_is_named(value: object) -> None:
    with pytest.raises(InvalidArgument, match="start") as info:
        IntervalTrigger(1, start=value)  # type: ignore[arg-type]
    assert repr(value) in str(info.value)
    with pytest.raises(InvalidArgument, match="end") as info:
        IntervalTrigger(1, start=0, end=value)  # type: ignore[arg-type]
    assert repr(value) in str(info.value)


def test_an_end_before_the_start_is_named() -> None:
    with pytest.raises(InvalidArgument, match=r"end \(5\.0\) must not be before start \(10\.0\)"):
        IntervalTrigger(1, start=10.0, end=5.0)


# --- at ------------------------------------------------------------------------------


def test_at_fires_once() -> None:
    trigger = AtTrigger(datetime(2026, 5, 1, 12, tzinfo=UTC))
    assert trigger.first_fire(utc(2026, 1, 1)) == utc(2026, 5, 1, 12)
    assert trigger.next_after(utc(2026, 1, 1)) == utc(2026, 5, 1, 12)
    assert trigger.next_after(utc(2026, 5, 1, 12)) is None
    assert trigger.anchored(0.0) is trigger


def test_at_in_the_past_is_due_at_once_and_runs_now_by_default() -> None:
    when, now = 1000.0, 1500.0  # added 500 s after its moment
    trigger = AtTrigger(when)
    assert trigger.first_fire(now) == when  # due, not dropped, not an error
    assert decide_fire(trigger, when, now, misfire_grace=1.0) == FireDecision(
        run=True, fire_time=when, next_fire=None, missed=0
    )


def test_at_in_the_past_under_skip_runs_only_within_the_grace() -> None:
    trigger = AtTrigger(1000.0)
    within = decide_fire(trigger, 1000.0, 1030.0, misfire_grace=60.0, policy="skip")
    assert within == FireDecision(run=True, fire_time=1000.0, next_fire=None, missed=0)
    beyond = decide_fire(trigger, 1000.0, 1500.0, misfire_grace=60.0, policy="skip")
    assert beyond == FireDecision(run=False, fire_time=None, next_fire=None, missed=1)


@pytest.mark.parametrize("when", [math.nan, math.inf, "tomorrow", None, True])
def test_a_bad_at_is_named(when: object) -> None:
    with pytest.raises(InvalidArgument, match="when") as info:
        AtTrigger(when)  # type: ignore[arg-type]
    assert repr(when) in str(info.value)


# --- misfires ------------------------------------------------------------------------


def test_a_fire_is_never_due_before_its_time() -> None:
    trigger = IntervalTrigger(10, start=100.0)
    early = decide_fire(trigger, 100.0, math.nextafter(100.0, 0.0), misfire_grace=5.0)
    assert early == FireDecision(run=False, fire_time=None, next_fire=100.0, missed=0)
    on_time = decide_fire(trigger, 100.0, 100.0, misfire_grace=0.0, policy="skip")
    assert on_time == FireDecision(run=True, fire_time=100.0, next_fire=110.0, missed=0)


def test_misfires_before_a_fire_within_the_grace_give_way_to_it() -> None:
    trigger = IntervalTrigger(10, start=100.0)
    # Woken at 135 for the fire of 100: 100, 110, 120 and 130 are due; 130 is 5 s
    # late, within the grace, so it runs; the three before it are misfires.
    for policy in ("coalesce", "skip"):
        decision = decide_fire(trigger, 100.0, 135.0, misfire_grace=5.0, policy=policy)
        assert decision == FireDecision(run=True, fire_time=130.0, next_fire=140.0, missed=3)


@pytest.mark.parametrize("policy", ["coalesce", "skip"])
def test_a_fire_late_within_the_grace_is_a_normal_fire(policy: str) -> None:
    # Every 10 s; woken 20 s after the fire of 00:00:10, the grace being 60 s:
    # 00:00:10, :20 and :30 are due, none a misfire. Each runs in its turn.
    trigger = CronTrigger("*/10 * * * * *")
    now = utc(2026, 1, 1, 0, 0, 30)
    due = utc(2026, 1, 1, 0, 0, 10)
    runs = []
    while due <= now:
        decision = decide_fire(trigger, due, now, misfire_grace=60.0, policy=policy)  # type: ignore[arg-type]
        assert decision == FireDecision(run=True, fire_time=due, next_fire=due + 10, missed=0)
        runs.append(due)
        due = decision.next_fire
    assert runs == [utc(2026, 1, 1, 0, 0, s) for s in (10, 20, 30)]


@pytest.mark.parametrize("policy", ["coalesce", "skip"])
def test_the_grace_is_inclusive(policy: str) -> None:
    trigger = CronTrigger("*/10 * * * * *")
    due = utc(2026, 1, 1, 0, 0, 10)
    at_the_limit = decide_fire(trigger, due, due + 60, misfire_grace=60.0, policy=policy)  # type: ignore[arg-type]
    assert at_the_limit == FireDecision(run=True, fire_time=due, next_fire=due + 10, missed=0)
    # A hair later, the fire of :10 is a misfire, and the one of :20 (50 s late) runs.
    past = decide_fire(
        trigger,
        due,
        math.nextafter(due + 60, math.inf),
        misfire_grace=60.0,
        policy=policy,  # type: ignore[arg-type]
    )
    assert past == FireDecision(run=True, fire_time=due + 10, next_fire=due + 20, missed=1)
    interval = IntervalTrigger(10, start=due)
    assert decide_fire(interval, due, due + 60, misfire_grace=60.0) == at_the_limit
    assert (
        decide_fire(interval, due, math.nextafter(due + 60, math.inf), misfire_grace=60.0) == past
    )


def test_a_misfire_is_coalesced_into_one_run() -> None:
    trigger = IntervalTrigger(10, start=100.0)
    decision = decide_fire(trigger, 100.0, 135.0, misfire_grace=1.0)
    assert decision == FireDecision(run=True, fire_time=130.0, next_fire=140.0, missed=3)


def test_a_misfire_is_skipped_under_skip() -> None:
    trigger = IntervalTrigger(10, start=100.0)
    decision = decide_fire(trigger, 100.0, 135.0, misfire_grace=1.0, policy="skip")
    assert decision == FireDecision(run=False, fire_time=None, next_fire=140.0, missed=4)


def test_misfires_of_a_cron_schedule() -> None:
    trigger = CronTrigger("* * * * *")
    due = utc(2026, 1, 1, 0, 0)
    now = utc(2026, 1, 1, 0, 3, 30)  # 00:00 .. 00:03 are due
    assert decide_fire(trigger, due, now, misfire_grace=10.0) == FireDecision(
        run=True, fire_time=utc(2026, 1, 1, 0, 3), next_fire=utc(2026, 1, 1, 0, 4), missed=3
    )
    assert decide_fire(trigger, due, now, misfire_grace=10.0, policy="skip") == FireDecision(
        run=False, fire_time=None, next_fire=utc(2026, 1, 1, 0, 4), missed=4
    )
    assert decide_fire(trigger, due, now, misfire_grace=math.inf, policy="skip").run


def test_the_last_fire_of_an_ending_schedule() -> None:
    trigger = IntervalTrigger(10, start=100.0, end=120.0)
    decision = decide_fire(trigger, 100.0, 1000.0, misfire_grace=1.0)
    assert decision == FireDecision(run=True, fire_time=120.0, next_fire=None, missed=2)


def test_a_long_backlog_is_counted_without_walking_it() -> None:
    year = 365 * 86400
    trigger = IntervalTrigger(1, start=0.0)
    decision = decide_fire(trigger, 0.0, year + 0.5, misfire_grace=1.0)
    assert decision == FireDecision(
        run=True, fire_time=float(year), next_fire=year + 1.0, missed=year
    )
    cron = CronTrigger("* * * * * *")
    due = utc(2026, 1, 1)
    decision = decide_fire(cron, due, due + 7200.5, misfire_grace=1.0)
    assert decision == FireDecision(
        run=True, fire_time=due + 7200, next_fire=due + 7201, missed=7200
    )


@dataclass(frozen=True)
class EveryTen:
    """A trigger of the test's own: only `next_after`, so `decide_fire` walks it."""

    end: float

    def anchored(self, now: float) -> EveryTen:
        return self

    def first_fire(self, now: float) -> float | None:
        return self.next_after(now - 1)

    def next_after(self, t: float) -> float | None:
        fire = (math.floor(t / 10) + 1) * 10.0
        return fire if fire <= self.end else None


@pytest.mark.parametrize("due", [100.0, 105.0, 110.0, 150.0])
@pytest.mark.parametrize("now", [100.0, 109.0, 110.0, 135.0, 150.0, 151.0, 163.0, 400.0])
@pytest.mark.parametrize("grace", [0.0, 3.0, 10.0, 25.0])
@pytest.mark.parametrize("policy", ["coalesce", "skip"])
def test_interval_arithmetic_agrees_with_walking_the_fires(
    due: float, now: float, grace: float, policy: str
) -> None:
    walked = decide_fire(EveryTen(end=150.0), due, now, misfire_grace=grace, policy=policy)  # type: ignore[arg-type]
    counted = decide_fire(
        IntervalTrigger(10, start=0.0, end=150.0),
        due,
        now,
        misfire_grace=grace,
        policy=policy,  # type: ignore[arg-type]
    )
    assert counted == walked


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"misfire_grace": -1.0}, "-1.0"),
        ({"misfire_grace": math.nan}, "nan"),
        ({"misfire_grace": "1"}, "'1'"),
        ({"misfire_grace": 1.0, "policy": "later"}, "'later'"),
    ],
)
def test_bad_misfire_arguments_are_named(kwargs: dict[str, object], says: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        decide_fire(IntervalTrigger(10, start=0.0), 0.0, 5.0, **kwargs)  # type: ignore[arg-type]
    assert says in str(info.value)


@pytest.mark.parametrize("bad", [math.nan, math.inf, "5", None])
def test_a_bad_due_or_now_is_named(bad: object) -> None:
    trigger = IntervalTrigger(10, start=0.0)
    with pytest.raises(InvalidArgument, match="due") as info:
        decide_fire(trigger, bad, 5.0, misfire_grace=1.0)  # type: ignore[arg-type]
    assert repr(bad) in str(info.value)
    with pytest.raises(InvalidArgument, match="now") as info:
        decide_fire(trigger, 0.0, bad, misfire_grace=1.0)  # type: ignore[arg-type]
    assert repr(bad) in str(info.value)
