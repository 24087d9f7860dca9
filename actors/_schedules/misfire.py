"""What to do about a schedule's fire that came, perhaps late: the misfire policy.

A scheduler that wakes for a fire may find it late (a busy process, a paused
schedule resumed, a suspended machine), with more fire times due since. A fire
handled at most ``misfire_grace`` seconds after its time is a normal fire: it
runs, counts as nothing else, and the fires after it are decided in turn. One
handled later than that is a misfire: `decide_fire` counts every misfire due by
now and applies the policy to them at once, so a long backlog is never a burst
of runs, nor a silent drop. ``actors/_schedules/triggers.py`` says when the fires fall.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from actors._errors import InvalidArgument
from actors._schedules.triggers import (
    CronTrigger,
    IntervalTrigger,
    Trigger,
    interval_index,
    time_arg,
)

__all__ = ["FireDecision", "MisfirePolicy", "check_misfire", "decide_fire"]

MisfirePolicy = Literal["coalesce", "skip"]
"""What to do with a fire that started more than ``misfire_grace`` late: see `decide_fire`."""


@dataclass(frozen=True, slots=True)
class FireDecision:
    """What to do about a schedule whose fire time came: the answer of `decide_fire`."""

    run: bool
    """Start one run now."""
    fire_time: float | None
    """The fire time the run stands for (the latest one due), or None without a run."""
    next_fire: float | None
    """When to look at the schedule again: the fire time after the one that ran
    (perhaps due already), its first fire time after now when none ran, or
    ``due`` itself when it is not due yet; None when it has no more fires."""
    missed: int
    """Fire times due by now that get no run of their own: dropped, or folded
    into this run. Add it to the schedule's misfire count."""


def check_misfire(policy: object, misfire_grace: object) -> None:
    """`InvalidArgument` unless ``policy`` is a `MisfirePolicy` and ``misfire_grace``
    is seconds >= 0 (infinity allowed: never a misfire)."""
    if (
        not isinstance(misfire_grace, int | float)
        or isinstance(misfire_grace, bool)
        or math.isnan(misfire_grace)
        or misfire_grace < 0
    ):
        msg = f"misfire_grace must be seconds >= 0 (inf allowed), not {misfire_grace!r}"
        raise InvalidArgument(msg)
    if policy not in ("coalesce", "skip"):
        msg = f"misfire policy must be 'coalesce' or 'skip', not {policy!r}"
        raise InvalidArgument(msg)


def decide_fire(
    trigger: Trigger,
    due: float,
    now: float,
    *,
    misfire_grace: float,
    policy: MisfirePolicy = "coalesce",
) -> FireDecision:
    """Decide, at ``now``, about the fire the scheduler woke up for at ``due``.

    ``due`` is a fire time the trigger produced. A fire is late by ``now``
    minus its time, and a misfire if that is more than ``misfire_grace``.

    - ``due`` is not a misfire: it runs, as a normal fire, and ``next_fire`` is
      the trigger's next fire time after it (perhaps due already: the
      scheduler then decides about that one at once, in its turn).
    - ``due`` is a misfire: so may be the trigger's later fire times up to
      ``now``. All of them are counted in ``missed`` and handled at once.
      ``"coalesce"`` folds them into one run: the first fire after them that
      is within the grace, if one is due by ``now``; else a run now for the
      latest of them. ``"skip"`` drops them, and runs that first fire within
      the grace if there is one. The schedule goes on after the fire that ran
      (or after ``now``, when none within the grace was due).

    So a late scheduler never runs a burst for its misfires, and every fire
    within the grace runs as if on time. A fire is never due before its time:
    with ``now < due`` nothing runs and ``next_fire`` is ``due``.

    Cost: constant for an `IntervalTrigger`; for other triggers, one step per
    misfire.

    Raises:
        InvalidArgument: ``due`` or ``now`` is not finite epoch seconds,
            ``misfire_grace`` is negative or NaN (infinity is allowed: never a
            misfire), or ``policy`` is neither ``"coalesce"`` nor ``"skip"``.
    """
    due = time_arg(due, "due")
    now = time_arg(now, "now")
    check_misfire(policy, misfire_grace)
    if now < due:
        return FireDecision(run=False, fire_time=None, next_fire=due, missed=0)
    if now - due <= misfire_grace:
        return FireDecision(run=True, fire_time=due, next_fire=trigger.next_after(due), missed=0)
    backlog = _misfires(trigger, due, now, misfire_grace)
    if backlog.in_grace is not None:
        # The misfires are folded into (coalesce) or dropped before (skip) the
        # first fire within the grace, which runs as a normal fire.
        return FireDecision(
            run=True,
            fire_time=backlog.in_grace,
            next_fire=trigger.next_after(backlog.in_grace),
            missed=backlog.count,
        )
    if policy == "coalesce":
        return FireDecision(
            run=True,
            fire_time=backlog.latest,
            next_fire=backlog.after_now,
            missed=backlog.count - 1,
        )
    return FireDecision(
        run=False, fire_time=None, next_fire=backlog.after_now, missed=backlog.count
    )


@dataclass(frozen=True, slots=True)
class _Backlog:
    """The misfires of a schedule handled late: ``due`` and the trigger's fire
    times after it that are more than the grace before ``now``."""

    count: int
    latest: float
    """The latest misfire."""
    in_grace: float | None
    """The first fire time after them, if it is due by ``now`` (so within the grace)."""
    after_now: float | None
    """The first fire time after ``now`` (meaningful when ``in_grace`` is None)."""


def _misfires(trigger: Trigger, due: float, now: float, grace: float) -> _Backlog:
    """Count the misfires from ``due`` on; ``now - due > grace`` is given."""
    if isinstance(trigger, IntervalTrigger) and trigger.start is not None:
        return _interval_misfires(trigger, due, now, grace)
    fires = trigger.fires_after(due) if isinstance(trigger, CronTrigger) else _chain(trigger, due)
    count, latest = 1, due
    for fire in fires:
        if fire > now:
            return _Backlog(count, latest, None, fire)
        if now - fire <= grace:
            return _Backlog(count, latest, fire, None)
        count, latest = count + 1, fire
    return _Backlog(count, latest, None, None)


def _interval_misfires(trigger: IntervalTrigger, due: float, now: float, grace: float) -> _Backlog:
    # Index arithmetic instead of a walk: an interval of a second, missed for a
    # day, is 86,400 misfires. ``due`` may be off the grid (an IntervalTrigger
    # only ever produces fires on it, but a caller may ask): it counts as one.
    first = interval_index(trigger, due, strictly=True)  # the first fire after due
    after_now = interval_index(trigger, now, strictly=True)
    stop = after_now
    if trigger.end is not None:
        stop = min(stop, interval_index(trigger, trigger.end, strictly=True))

    def late(k: int) -> bool:
        return now - trigger.fire(k) > grace

    # The first fire within the grace: estimated by division, which may be a few
    # ulps off, then stepped to the exact boundary with the very test the walk uses.
    k = max(first, math.ceil((now - grace - trigger.fire(0)) / trigger.interval))
    while k > first and not late(k - 1):
        k -= 1
    while k < stop and late(k):
        k += 1
    count = 1 + max(0, min(k, stop) - first)
    latest = trigger.fire(min(k, stop) - 1) if min(k, stop) > first else due
    in_grace = trigger.fire(k) if k < stop else None
    return _Backlog(count, latest, in_grace, trigger.next_after(now))


def _chain(trigger: Trigger, t: float) -> Iterator[float]:
    """Fire times strictly after ``t``, by repeated `next_after`."""
    fire = trigger.next_after(t)
    while fire is not None:
        yield fire
        fire = trigger.next_after(fire)
