"""Schedule arithmetic: when a cron, interval or one-shot schedule fires next.
(What to do about a fire that came late is ``actors/_schedules/misfire.py``.)

Pure functions and immutable classes over wall-clock time: no threads, no actors,
no clock reads. A time here is a float of seconds since the Unix epoch (the
`time.time` scale), not the Timer's monotonic clock; the scheduler converts.

Cron expressions are parsed and evaluated by cronsim (healthchecks.io), not
croniter: cronsim reads 5 fields, or 6 with leading seconds, without a flag, and
rejects what cron rejects (``5-1``, ``0 0 30 2 *``, a seventh field), where
croniter accepts all three. Its DST rules are Debian cron's, written down and
tested (Sentry and aiocron moved to it from croniter over DST bugs; croniter runs
``30 2 * * *`` twice on a fall-back night). It is typed, has no dependencies and
one steady maintainer, while croniter needs python-dateutil, ships no types and
was declared abandoned in 2025 before pallets-eco took it over.

DST, as cronsim defines it (Debian cron):

- A 5-field expression whose minute *and* hour fields are specific (neither
  starts with ``*``: ``30 2 * * *``, ``0,30 1-3 * * 1-5``) follows the local wall
  clock. On a spring-forward day a fire time inside the skipped hour runs once, at
  the first minute after the gap (Berlin ``30 2 * * *`` on 2026-03-29 fires at
  03:00 CEST); several such fire times run together there, once. On a fall-back
  day a fire time inside the repeated hour runs once, in its first pass (Berlin
  ``30 2 * * *`` on 2026-10-25 fires at 02:30 CEST, not again at 02:30 CET).
- Every other expression (``*/15 * * * *``, ``0 * * * *``, and *every* 6-field
  expression, ``0 30 2 * * *`` included) fires at each instant whose local wall
  clock matches: a fire time inside the skipped hour does not exist and is
  skipped; one inside the repeated hour fires twice, once per pass.

cronsim evaluates the first rule on naive wall-clock time, which is robust. For
the second it steps through transitions itself and gets some wrong: around a
fall-back not on a whole hour (Australia/Lord_Howe, Pacific/Chatham,
America/St_Johns before 2011) it skips fire times or answers the same past time
forever, and after a spring-forward at midnight (America/Havana, Santiago) it
runs a time of the missing hour at 01:00. So for the second rule `CronTrigger`
asks cronsim in the fixed UTC offset of each stretch between two transitions,
where every wall-clock time exists once. Where cronsim gets it right the times
are its own (``properties/test_cron_triggers.py`` checks both).

Naive datetimes (start, end, when) are read as UTC, never as the host's local
time, so the same code schedules the same instants on every machine.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from actors._errors import InvalidArgument

__all__ = [
    "AtTrigger",
    "CronTrigger",
    "IntervalTrigger",
    "Trigger",
    "interval_index",
    "time_arg",
]

# Seconds: the shortest interval, one microsecond (`timedelta`'s resolution). Any
# shorter and ``start + k * interval`` may not grow with k at today's epoch.
_MIN_INTERVAL = 1e-6

# Epoch seconds a datetime can hold in any zone: years 1 to 9999, a day inside.
_MIN_TIME = datetime(1, 1, 2, tzinfo=UTC).timestamp()
_MAX_TIME = datetime(9999, 12, 30, tzinfo=UTC).timestamp()

# How far apart the fallback probes a zone's UTC offset. Real transitions are
# weeks apart, so none is missed between two probes.
_OFFSET_PROBE = 6 * 3600


class Trigger(Protocol):
    """What the scheduler needs from a schedule's trigger.

    The scheduler, when a schedule is added at ``now``, stores
    ``trigger.anchored(now)`` and waits for its ``first_fire(now)``; after each
    fire time *f* it waits for ``next_after(f)`` (or asks `decide_fire`). None
    means the schedule has no more fires.
    """

    def anchored(self, now: float) -> Trigger:
        """This trigger with every "from when it is added" default fixed to ``now``."""
        ...

    def first_fire(self, now: float) -> float | None:
        """The first fire time of a schedule added at ``now``."""
        ...

    def next_after(self, t: float) -> float | None:
        """The first fire time strictly after ``t``, or None if there is none."""
        ...


def _seconds(name: str, value: object) -> float:
    """A finite int or float (not a bool), as float; else `InvalidArgument`."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        msg = f"{name} must be a finite number of seconds, not {value!r}"
        raise InvalidArgument(msg)
    return float(value)


def _instant(name: str, value: object) -> float:
    """Epoch seconds from a datetime (naive means UTC) or a finite number."""
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        try:
            return aware.timestamp()
        except (OverflowError, ValueError) as exc:
            msg = f"{name} is out of range: {value!r}"
            raise InvalidArgument(msg) from exc
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        msg = f"{name} must be a datetime or finite epoch seconds, not {value!r}"
        raise InvalidArgument(msg)
    return float(value)


def time_arg(value: object, name: str = "t") -> float:
    """The ``t`` or ``now`` of a query: finite epoch seconds a datetime can hold."""
    t = _seconds(name, value)
    if not _MIN_TIME <= t <= _MAX_TIME:
        msg = f"{name} must be epoch seconds within years 1 to 9999, not {value!r}"
        raise InvalidArgument(msg)
    return t


def _zone(tz: object) -> tzinfo:
    """The `tzinfo` for an IANA zone name; None means UTC."""
    if tz is None:
        return UTC
    if not isinstance(tz, str):
        msg = f"tz must be an IANA time zone name (str) or None, not {tz!r}"
        raise InvalidArgument(msg)
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        # ValueError: not a key at all ("../x", ""); OSError: a directory ("Europe").
        msg = f"unknown time zone {tz!r}: expected an IANA name such as 'Europe/Berlin'"
        raise InvalidArgument(msg) from exc


@dataclass(frozen=True, slots=True, init=False)
class CronTrigger:
    """Fires at the times a cron expression names, in a time zone.

    Five fields (minute hour day-of-month month day-of-week: minute resolution)
    or six with seconds first (``*/10 * * * * *``). Fields take ``*``, values,
    ``a-b`` ranges, ``/step``, lists, month and weekday names, and cronsim's
    ``L``, ``LW``, ``5L`` and ``MON#2``. As in cron, when day-of-month and
    day-of-week are both restricted (neither starts with ``*``) a day matching
    either one fires. The module docstring says what happens on DST days.

    Raises:
        InvalidArgument: the expression is not valid cron (the message names it
            and the field at fault), or ``tz`` is not a known IANA zone.
    """

    expr: str
    """The cron expression, as given."""
    tz: str | None
    """The IANA zone the expression is read in; None means UTC."""
    _zone: tzinfo = field(init=False, repr=False, compare=False)
    _wall_clock: bool = field(init=False, repr=False, compare=False)

    def __init__(self, expr: str, tz: str | None = None) -> None:
        if not isinstance(expr, str):
            msg = f"cron expression must be a str, not {expr!r}"
            raise InvalidArgument(msg)
        n = len(expr.split())
        if n not in (5, 6):
            msg = (
                f"cron expression {expr!r} has {n} fields; expected 5 (minute hour "
                "day-of-month month day-of-week) or 6 (seconds first)"
            )
            raise InvalidArgument(msg)
        zone = _zone(tz)
        try:
            sim = CronSim(expr, datetime(2000, 1, 1, tzinfo=zone))
        except CronSimError as exc:
            # cronsim says "Bad minute", "Bad day-of-month", ...: name the field.
            msg = f"cron expression {expr!r} is invalid: {str(exc).lower()} field"
            raise InvalidArgument(msg) from exc
        object.__setattr__(self, "expr", expr)
        object.__setattr__(self, "tz", tz)
        object.__setattr__(self, "_zone", zone)
        # cronsim decides which DST rule applies (the module docstring's first one
        # is its "fixup" of a zone, done on naive wall-clock time).
        object.__setattr__(self, "_wall_clock", sim.fixup_tz is not None)

    def anchored(self, now: float) -> CronTrigger:
        """Itself: a cron schedule does not depend on when it was added."""
        return self

    def first_fire(self, now: float) -> float | None:
        """The first fire time strictly after ``now``."""
        return self.next_after(now)

    def next_after(self, t: float) -> float | None:
        """The first fire time strictly after epoch seconds ``t``.

        None if the expression matches nothing in the 50 years after ``t``
        (cronsim's horizon: ``0 0 31 2,4 *`` is rejected, but
        ``* * */20 * 1L`` is valid and never fires) or only past year 9999.
        """
        return next(self._walk(time_arg(t)), None)

    def fires_after(self, t: float) -> Iterator[float]:
        """Every fire time strictly after ``t``, in order: the same times as
        chaining `next_after`, at a fraction of the cost (one parse)."""
        return self._walk(time_arg(t))

    def _walk(self, t: float) -> Iterator[float]:
        try:
            if self._wall_clock or self._zone is UTC:
                yield from self._walk_wall_clock(t)
            else:
                yield from self._walk_by_offset(t)
        except OverflowError:
            return  # the next fire would be past year 9999

    def _walk_wall_clock(self, t: float) -> Iterator[float]:
        """cronsim's own sequence, without what does not move forward.

        cronsim answers at or before ``t`` when ``t`` is in the second pass of a
        repeated hour (those fire times ran in the first pass: Debian runs them
        once), and it may answer the same time twice when several fire times of
        a skipped hour run together after the gap.
        """
        # Fire times are whole seconds and cronsim steps one second on from its
        # start: start at the second ``t`` is in (fromtimestamp rounds, not floors).
        sim = CronSim(self.expr, datetime.fromtimestamp(math.floor(t), self._zone))
        last = t
        for when in sim:  # ends after 50 years without a match
            fire = when.timestamp()
            if fire > last:
                last = fire
                yield fire

    def _walk_by_offset(self, t: float) -> Iterator[float]:
        """The every-instant rule, one stretch of constant UTC offset at a time.

        cronsim walks through some DST transitions wrongly (see the module
        docstring). In a fixed-offset zone every wall-clock time exists once, so
        it cannot misstep: this asks it in the offset in force, and starts over
        in the new one at each transition.
        """
        cur = t
        while True:
            probe = math.floor(cur) + 1  # the first whole second after cur
            offset = self._offset(probe)
            sim = CronSim(self.expr, datetime.fromtimestamp(probe - 1, timezone(offset)))
            checked = probe  # the offset holds from probe to checked
            for when in sim:
                fire = when.timestamp()
                change = self._offset_change(checked, fire, offset)
                if change is not None:
                    cur = change - 1.0
                    break
                checked = math.floor(fire)
                yield fire
            else:
                return  # 50 years without a match

    def _offset(self, t: float) -> timedelta:
        return datetime.fromtimestamp(t, self._zone).utcoffset() or timedelta(0)

    def _offset_change(self, lo: int, hi: float, offset: timedelta) -> int | None:
        """The first whole second in (lo, hi] whose UTC offset is not ``offset``.

        The offset is known to hold at ``lo``; it is probed every few hours and
        the change found by bisection (real transitions are weeks apart).
        """
        before = lo
        while before < hi:
            after = min(before + _OFFSET_PROBE, math.floor(hi))
            if after <= before:
                return None
            if self._offset(after) != offset:
                while after - before > 1:
                    mid = (before + after) // 2
                    if self._offset(mid) != offset:
                        after = mid
                    else:
                        before = mid
                return after
            before = after
        return None


@dataclass(frozen=True, slots=True, init=False)
class IntervalTrigger:
    """Fires at ``start``, ``start + interval``, ``start + 2 * interval``, ...

    Fire *k* is computed as ``start + k * interval`` every time, never by adding
    the interval to the previous fire, so no error accumulates over any number
    of fires. ``end`` is inclusive: a fire exactly at ``end`` happens.

    ``start`` may be left out: it then means "when the schedule is added", and
    the scheduler fixes it with `anchored` (so the first run is at once, and the
    rest follow every ``interval`` from then). `first_fire` and `next_after` of
    a trigger without a start raise `InvalidArgument`.

    Naive datetimes are read as UTC.

    Raises:
        InvalidArgument: ``interval`` is not a `timedelta` or a finite number of
            seconds of at least one microsecond (zero, negative, NaN, inf, a
            str...); ``start`` or ``end`` is not a datetime or finite epoch
            seconds; ``end`` is before ``start``. The message names the value.
    """

    interval: float
    """Seconds between fires."""
    start: float | None
    """Epoch seconds of the first fire; None until `anchored`."""
    end: float | None
    """Epoch seconds after which it never fires; None for never-ending."""

    def __init__(
        self,
        interval: float | timedelta,
        start: datetime | float | None = None,
        end: datetime | float | None = None,
    ) -> None:
        seconds = interval.total_seconds() if isinstance(interval, timedelta) else interval
        if (
            not isinstance(seconds, int | float)
            or isinstance(seconds, bool)
            or not math.isfinite(seconds)
            or seconds < _MIN_INTERVAL
        ):
            least = _MIN_INTERVAL
            msg = f"interval must be a timedelta or finite seconds >= {least}, not {interval!r}"
            raise InvalidArgument(msg)
        first = None if start is None else _instant("start", start)
        last = None if end is None else _instant("end", end)
        if first is not None and last is not None and last < first:
            msg = f"end ({end!r}) must not be before start ({start!r})"
            raise InvalidArgument(msg)
        object.__setattr__(self, "interval", float(seconds))
        object.__setattr__(self, "start", first)
        object.__setattr__(self, "end", last)

    def anchored(self, now: float) -> IntervalTrigger:
        """This trigger with ``start = now`` if it had no start; else itself.

        Raises:
            InvalidArgument: ``now`` is not finite epoch seconds, or it is after
                ``end`` (a schedule that would start after it ends).
        """
        if self.start is not None:
            return self
        return IntervalTrigger(self.interval, time_arg(now, "now"), self.end)

    def fire(self, k: int) -> float:
        """Fire number ``k`` (0 is ``start``), exactly ``start + k * interval``.

        It ignores ``end``.
        """
        return self._start() + k * self.interval

    def first_fire(self, now: float) -> float | None:
        """The first fire time at or after ``now`` (``start`` itself if in the future)."""
        k = interval_index(self, time_arg(now, "now"), strictly=False)
        return self._bounded(self.fire(k))

    def next_after(self, t: float) -> float | None:
        """The first fire time strictly after ``t``; None past ``end``."""
        k = interval_index(self, time_arg(t), strictly=True)
        return self._bounded(self.fire(k))

    def _start(self) -> float:
        if self.start is None:
            msg = (
                f"IntervalTrigger(interval={self.interval!r}) has no start: call "
                "anchored(now) first (the scheduler does when the schedule is added)"
            )
            raise InvalidArgument(msg)
        return self.start

    def _bounded(self, fire: float) -> float | None:
        return None if self.end is not None and fire > self.end else fire


def interval_index(trigger: IntervalTrigger, t: float, *, strictly: bool) -> int:
    """The smallest k >= 0 whose fire is after ``t`` (or at it, unless ``strictly``)."""

    def early(k: int) -> bool:
        fire = trigger.fire(k)
        return fire <= t if strictly else fire < t

    start = trigger.fire(0)
    k = max(0, math.floor((t - start) / trigger.interval))
    # The division is off by at most a few ulps: step to the exact boundary.
    while k > 0 and not early(k - 1):
        k -= 1
    while early(k):
        k += 1
    return k


@dataclass(frozen=True, slots=True, init=False)
class AtTrigger:
    """Fires once, at ``when``.

    A ``when`` in the past is not an error: the schedule's one fire is due at
    once. `first_fire` returns ``when`` whatever ``now`` is, and `decide_fire`
    treats a past ``when`` like any late fire: under ``"coalesce"`` (the default)
    it runs now; under ``"skip"`` it runs only if no more than ``misfire_grace``
    seconds late, and is counted as missed otherwise. Raising instead would race
    the clock: ``AtTrigger(datetime.now(UTC))`` is in the past by the time the
    scheduler sees it.

    Naive datetimes are read as UTC.

    Raises:
        InvalidArgument: ``when`` is not a datetime or finite epoch seconds.
    """

    when: float
    """Epoch seconds of the one fire."""

    def __init__(self, when: datetime | float) -> None:
        object.__setattr__(self, "when", _instant("when", when))

    def anchored(self, now: float) -> AtTrigger:
        """Itself: the moment was fixed when the trigger was made."""
        return self

    def first_fire(self, now: float) -> float:
        """``when``, even if it is before ``now``: then the fire is due at once."""
        time_arg(now, "now")
        return self.when

    def next_after(self, t: float) -> float | None:
        """``when`` if it is after ``t``; None once ``t`` reached it."""
        return self.when if self.when > time_arg(t) else None
