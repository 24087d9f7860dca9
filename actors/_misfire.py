"""What to do about a schedule's fire that came, perhaps late: the misfire policy.

A scheduler that wakes for a fire may find it late (a busy process, a paused
schedule resumed, a suspended machine), with more fire times due since. The
answer (`decide_fire`) is at most one run, standing for the latest of them,
and the count of those that got no run of their own: never a burst, never a
silent drop. ``_triggers.py`` says when the fires fall.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from actors._errors import InvalidArgument
from actors._triggers import CronTrigger, IntervalTrigger, Trigger, interval_index, time_arg

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
    """When to look at the schedule again: its first fire time after now, or ``due``
    itself when it is not due yet; None when it has no more fires."""
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

    ``due`` is a fire time the trigger produced. The fire times due by now are
    ``due`` and the trigger's later ones up to ``now`` inclusive; if the
    scheduler ran late, there may be several. At most one run ever results (a
    late scheduler never runs a burst) and it stands for the latest of them. It
    runs if that fire is at most ``misfire_grace`` seconds late; if it is later
    still (a misfire), ``"coalesce"`` runs it anyway, once for all of them, and
    ``"skip"`` drops it. Either way the schedule continues from its first fire
    time after ``now``.

    A fire is never due before its time: with ``now < due`` nothing runs and
    ``next_fire`` is ``due``.

    Cost: constant for an `IntervalTrigger`; for other triggers, one step per
    fire time due.

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
    count, latest, following = _due_fires(trigger, due, now)
    run = policy == "coalesce" or now - latest <= misfire_grace
    return FireDecision(
        run=run,
        fire_time=latest if run else None,
        next_fire=following,
        missed=count - 1 if run else count,
    )


def _due_fires(trigger: Trigger, due: float, now: float) -> tuple[int, float, float | None]:
    """How many fire times lie in [due, now], the latest of them, and the one after.

    ``due <= now`` is given.
    """
    if isinstance(trigger, IntervalTrigger) and trigger.start is not None:
        # Index arithmetic instead of a walk: an interval of a second, missed
        # for a day, is 86,400 fires.
        first = interval_index(trigger, due, strictly=False)
        last = interval_index(trigger, now, strictly=True) - 1
        if trigger.end is not None:
            last = min(last, interval_index(trigger, trigger.end, strictly=True) - 1)
        if last < first:
            return 1, due, trigger.next_after(now)  # `due` is off the grid
        count = last - first + 1 if trigger.fire(first) == due else last - first + 2
        return count, trigger.fire(last), trigger.next_after(now)
    fires = trigger.fires_after(due) if isinstance(trigger, CronTrigger) else _chain(trigger, due)
    count, latest = 1, due
    for fire in fires:
        if fire > now:
            return count, latest, fire
        count, latest = count + 1, fire
    return count, latest, None


def _chain(trigger: Trigger, t: float) -> Iterator[float]:
    """Fire times strictly after ``t``, by repeated `next_after`."""
    fire = trigger.next_after(t)
    while fire is not None:
        yield fire
        fire = trigger.next_after(fire)
