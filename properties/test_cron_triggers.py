"""Properties of `CronTrigger`: for random valid expressions, zones and windows,
`next_after` follows cronsim's own sequence and the DST rule it states, strictly
increasing and never before the window.

Windows start near a DST transition of their zone more often than not, so the
rules of the module docstring are exercised, not just plain days.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

from cronsim import CronSim
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors._errors import InvalidArgument
from actors._schedules.triggers import CronTrigger

_SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Zones whose transitions fall on a whole hour other than midnight, where
# cronsim steps through DST by itself correctly: including a two-hour shift
# (Troll), a half-hour offset (Adelaide) and no DST at all (Kolkata).
ALIGNED = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Europe/London",
    "Australia/Sydney",
    "Australia/Adelaide",
    "Antarctica/Troll",
    "Asia/Kolkata",
]
# Zones where cronsim misreads its own every-instant rule: a fall-back not on a
# whole hour (Lord_Howe, Chatham; St_Johns at 00:01 until 2011) makes it skip
# times or repeat a past one forever; a spring-forward at midnight (Havana,
# Santiago) makes it run a time of the missing hour at 01:00. Only the rule
# itself is the reference there.
MISREAD = [
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "America/St_Johns",
    "America/Havana",
    "America/Santiago",
]

FIRES = 12  # fire times compared per example

# name: (lowest, highest, highest drawn); drawn days stop at 28 so that every
# search is short, but ``*`` is still every day of the month.
_FIELDS = {
    "second": (0, 59, 59),
    "minute": (0, 59, 59),
    "hour": (0, 23, 23),
    "dom": (1, 31, 28),
    "month": (1, 12, 12),
    "dow": (0, 7, 7),
}


@dataclass(frozen=True)
class Field:
    """One field of an expression: its text, and the values it stands for."""

    text: str
    values: frozenset[int]


@st.composite
def fields(draw: st.DrawFn, name: str) -> Field:
    """``*``, ``*/s``, ``a``, ``a-b``, ``a-b/s``, or a list of the last three."""
    lo, hi, drawn = _FIELDS[name]
    kind = draw(st.sampled_from(["star", "star-step", "list"]))
    if kind == "star":
        return Field("*", frozenset(range(lo, hi + 1)))
    if kind == "star-step":
        step = draw(st.integers(1, hi - lo + 1))
        return Field(f"*/{step}", frozenset(range(lo, hi + 1, step)))
    texts, values = [], set()
    for _ in range(draw(st.integers(1, 3))):
        a = draw(st.integers(lo, drawn))
        shape = draw(st.sampled_from(["value", "range", "range-step"]))
        if shape == "value" or a == drawn:
            texts.append(str(a))
            values.add(a)
            continue
        # cronsim reads "5-5/2" as "5/2" (5, 7, ... 59): keep ranges wider than one.
        b = draw(st.integers(a + 1, drawn))
        step = draw(st.integers(1, b - a + 1)) if shape == "range-step" else 1
        texts.append(f"{a}-{b}" + (f"/{step}" if shape == "range-step" else ""))
        values.update(range(a, b + 1, step))
    return Field(",".join(texts), frozenset(values))


@dataclass(frozen=True)
class Expr:
    """A random cron expression and the value sets of its fields."""

    fields: tuple[Field, ...]  # second (``{0}`` for 5 fields), minute, ... dow
    six: bool

    @property
    def text(self) -> str:
        shown = self.fields if self.six else self.fields[1:]
        return " ".join(f.text for f in shown)

    @property
    def wall_clock(self) -> bool:
        """Whether cronsim reads it on the local wall clock (the first DST rule)."""
        return not self.six and not any(f.text.startswith("*") for f in self.fields[1:3])

    def matches_day(self, d: date) -> bool:
        """Debian's rule: day-of-month AND day-of-week if either starts with ``*``,
        else OR; the month always."""
        _, _, _, dom, month, dow = self.fields
        if d.month not in month.values:
            return False
        dom_ok = d.day in dom.values
        dow_ok = (d.isoweekday() % 7) in {v % 7 for v in dow.values}
        if dom.text.startswith("*") or dow.text.startswith("*"):
            return dom_ok and dow_ok
        return dom_ok or dow_ok


@st.composite
def exprs(draw: st.DrawFn) -> Expr:
    six = draw(st.booleans())
    second = draw(fields("second")) if six else Field("0", frozenset({0}))
    rest = tuple(draw(fields(name)) for name in ("minute", "hour", "dom", "month", "dow"))
    return Expr((second, *rest), six)


@functools.cache
def transitions(zone_name: str) -> tuple[float, ...]:
    """Every UTC-offset change of a zone in 2025-2027, to the second."""
    zone = ZoneInfo(zone_name)

    def offset(t: int) -> timedelta | None:
        return datetime.fromtimestamp(t, zone).utcoffset()

    found = []
    t = int(datetime(2025, 1, 1, tzinfo=UTC).timestamp())
    end = int(datetime(2028, 1, 1, tzinfo=UTC).timestamp())
    while t < end:
        nxt = t + 3600
        if offset(nxt) != offset(t):
            lo, hi = t, nxt
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if offset(mid) == offset(t) else (lo, mid)
            found.append(float(hi))
        t = nxt
    return tuple(found)


@st.composite
def window_starts(draw: st.DrawFn, zone_name: str) -> float:
    """Epoch seconds: half within 90 minutes of a DST transition of the zone, a
    quarter within 6 hours, the rest anywhere from 2000 to 2040."""
    near = transitions(zone_name)
    tier = draw(st.integers(0, 3))
    if near and tier > 0:
        around = draw(st.sampled_from(near))
        hours = 6 if tier == 1 else 1.5
        return around + draw(st.floats(-hours * 3600, hours * 3600, allow_nan=False))
    lo = datetime(2000, 1, 1, tzinfo=UTC).timestamp()
    hi = datetime(2040, 1, 1, tzinfo=UTC).timestamp()
    return draw(st.floats(lo, hi, allow_nan=False))


def chain(trigger: CronTrigger, start: float, n: int) -> list[float]:
    """The first ``n`` fire times after ``start``, by repeated `next_after`."""
    out: list[float] = []
    t: float | None = start
    while len(out) < n:
        assert t is not None
        t = trigger.next_after(t)
        if t is None:
            break
        out.append(t)
    return out


def cronsim_sequence(expr: str, zone: tzinfo, start: float, n: int) -> list[float]:
    """cronsim's own next times from one iterator, minus the leading answers at or
    before ``start`` that it gives from the second pass of a repeated hour."""
    out: list[float] = []
    sim = CronSim(expr, datetime.fromtimestamp(math.floor(start), zone))
    for when in sim:
        t = when.timestamp()
        if out or t > start:
            out.append(t)
        if len(out) == n:
            break
    return out


def every_instant(expr: Expr, zone: tzinfo, start: float, n: int) -> list[float]:
    """The second DST rule, by brute force: the first ``n`` instants after
    ``start`` whose local wall-clock time matches every field."""
    s_, m_, h_, *_ = (sorted(f.values) for f in expr.fields)
    # Instants and wall times differ by the offset, which moves by at most 3 h
    # across a transition: start 3 h early, stop 3 h past the n-th instant.
    wall_start = datetime.fromtimestamp(start, zone).replace(tzinfo=None) - timedelta(hours=3)

    def walls() -> Iterator[datetime]:
        day = wall_start.date()
        for _ in range(366 * 150):  # "0 0 1 1 */7", Jan 1 on a Sunday: every 5-11 years
            if expr.matches_day(day):
                for h in h_:
                    if (day, h) < (wall_start.date(), wall_start.hour):
                        continue
                    for m in m_:
                        for s in s_:
                            yield datetime(day.year, day.month, day.day, h, m, s)
            day += timedelta(days=1)

    found: set[float] = set()
    stop: datetime | None = None  # no later wall time can be among the first n
    for wall in walls():
        if stop is not None and wall > stop:
            break
        first, second = wall.replace(tzinfo=zone), wall.replace(tzinfo=zone, fold=1)
        before, after = first.utcoffset(), second.utcoffset()
        assert before is not None and after is not None
        # PEP 495: in a gap fold 0 takes the smaller offset (the wall time does
        # not exist); in a repeated hour the larger (it exists twice).
        instants = [] if before < after else [first] if before == after else [first, second]
        found.update(t for t in (i.timestamp() for i in instants) if t > start)
        if stop is None and len(found) >= n:
            # The n-th smallest is at most the largest so far.
            bound = datetime.fromtimestamp(max(found), zone).replace(tzinfo=None)
            stop = bound + timedelta(hours=3)
    return sorted(found)[:n]


def assert_increasing_after(times: list[float], start: float) -> None:
    assert all(t > start for t in times), (start, times)
    assert all(a < b for a, b in itertools.pairwise(times)), times


@_SETTINGS
@given(expr=exprs(), data=st.data())
def test_next_after_follows_cronsim_where_it_is_right(expr: Expr, data: st.DataObject) -> None:
    # cronsim reads the wall-clock rule on naive local time, right in every zone.
    zones = ALIGNED + MISREAD if expr.wall_clock else ALIGNED
    zone_name = data.draw(st.sampled_from(zones), label="zone")
    start = data.draw(window_starts(zone_name), label="start")
    trigger = CronTrigger(expr.text, zone_name)

    got = chain(trigger, start, FIRES)

    assert got == cronsim_sequence(expr.text, ZoneInfo(zone_name), start, FIRES)
    assert_increasing_after(got, start)
    assert list(itertools.islice(trigger.fires_after(start), FIRES)) == got


@_SETTINGS
@given(expr=exprs(), data=st.data())
def test_every_instant_rule_holds_in_every_zone(expr: Expr, data: st.DataObject) -> None:
    zone_name = data.draw(st.sampled_from(ALIGNED) | st.sampled_from(MISREAD), label="zone")
    start = data.draw(window_starts(zone_name), label="start")
    if expr.wall_clock:
        # A minute field that starts with a star puts it under the second rule.
        minute = expr.fields[1]
        minute = Field(f"*/60,{minute.text}", minute.values | {0})
        expr = Expr((expr.fields[0], minute, *expr.fields[2:]), expr.six)
    trigger = CronTrigger(expr.text, zone_name)

    got = chain(trigger, start, FIRES)

    assert got == every_instant(expr, ZoneInfo(zone_name), start, FIRES)
    assert_increasing_after(got, start)


@_SETTINGS
@given(text=st.text(alphabet="0123456789*/-,#LW?@ JANMONjan\t", max_size=30) | st.text())
def test_any_text_is_a_valid_expression_or_invalid_argument(text: str) -> None:
    try:
        trigger = CronTrigger(text)
    except InvalidArgument as exc:
        assert repr(text) in str(exc)
    else:
        assert len(text.split()) in (5, 6)
        got = trigger.next_after(1_767_225_600.0)  # 2026-01-01T00:00:00Z
        assert got is None or got > 1_767_225_600.0
