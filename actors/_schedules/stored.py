"""A schedule as plain data: the row a store keeps of it, and the schedule rebuilt from it.

The Dispatcher records a schedule whenever it changes as one `ScheduleSaved`
(``actors/messages.py``): its whole row, made of JSON-able data. A store gives
the same record back after a restart (``actors/_journal/schedules.py``), and
`rebuild` turns it into the `ScheduleSpec` and the running trigger again.

A trigger is stored as it was given (`trigger_definition`), so a schedule
declared again with the same arguments compares equal to the one restored
(`same_definition`); an ``every`` without a ``start`` also stores the
``anchor`` it was fixed to when first added, so its fires keep their times
across a restart.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any, cast

from actors._errors import InvalidArgument
from actors._policy.options import JobOptions
from actors._policy.retry import RetryPolicy
from actors._schedules.book import (
    ScheduleInfo,
    ScheduleKind,
    ScheduleSpec,
    ScheduleState,
    check_policies,
)
from actors._schedules.triggers import AtTrigger, CronTrigger, IntervalTrigger, Trigger
from actors.messages import JSONValue, ScheduleSaved

__all__ = [
    "anchored_as_stored",
    "options_from_json",
    "options_json",
    "rebuild",
    "same_definition",
    "same_trigger",
    "saved_record",
    "stored_info",
    "trigger_definition",
]


def trigger_definition(trigger: Trigger) -> dict[str, JSONValue]:
    """A trigger as it was given, as JSON-able data (what rebuilds it)."""
    if isinstance(trigger, CronTrigger):
        return {"expr": trigger.expr, "tz": trigger.tz}
    if isinstance(trigger, IntervalTrigger):
        return {"interval": trigger.interval, "start": trigger.start, "end": trigger.end}
    if isinstance(trigger, AtTrigger):
        return {"when": trigger.when}
    msg = f"a schedule cannot be stored with the trigger {trigger!r}"
    raise TypeError(msg)


def _spec_json(spec: ScheduleSpec, running: Trigger) -> dict[str, JSONValue]:
    """The ``spec`` column: the trigger as given, and the anchor of an ``every``
    whose start was left to when it was added."""
    definition = trigger_definition(spec.trigger)
    if isinstance(running, IntervalTrigger) and definition.get("start") is None:
        definition["anchor"] = running.start
    return definition


def options_json(options: JobOptions) -> dict[str, JSONValue]:
    """Job options as JSON-able data: a `RetryPolicy` as a dict (an infinite
    cap as None: JSON has no infinity)."""
    out: dict[str, JSONValue] = {}
    for name, value in options.items():
        if isinstance(value, RetryPolicy):
            cap = None if value.cap == math.inf else value.cap
            out[name] = {
                "kind": value.kind,
                "base": value.base,
                "cap": cap,
                "jitter": value.jitter,
                "factor": value.factor,
            }
        else:
            out[name] = cast("JSONValue", value)
    return out


def options_from_json(data: JSONValue) -> JobOptions:
    """`options_json`'s output as `JobOptions` again.

    Raises:
        InvalidArgument: it is not what `options_json` makes.
    """
    if not isinstance(data, dict):
        msg = f"stored job options must be an object, not {data!r}"
        raise InvalidArgument(msg)
    options: dict[str, Any] = dict(data)
    retry = options.get("retry")
    if retry is not None:
        if not isinstance(retry, dict):
            msg = f"a stored retry policy must be an object, not {retry!r}"
            raise InvalidArgument(msg)
        try:
            cap = retry.get("cap")
            options["retry"] = RetryPolicy(
                retry["kind"],
                retry["base"],
                math.inf if cap is None else cap,
                retry["jitter"],
                retry["factor"],
            )
        except KeyError as exc:
            msg = f"a stored retry policy lacks {exc}"
            raise InvalidArgument(msg) from None
        except TypeError as exc:  # a value of the wrong type, compared
            msg = f"a stored retry policy is malformed: {exc}"
            raise InvalidArgument(msg) from None
    return cast("JobOptions", options)


def _payload_text(payload: JSONValue) -> str:
    # Python's == says True == 1 and ignores key order: the JSON text tells
    # apart what a handler would see as different, and only that.
    return json.dumps(payload, sort_keys=True, separators=(",", ":"))


def same_trigger(a: ScheduleSpec, b: ScheduleSpec) -> bool:
    """Whether two specs give the same trigger (of the same kind)."""
    return a.kind == b.kind and trigger_definition(a.trigger) == trigger_definition(b.trigger)


def same_definition(a: ScheduleSpec, b: ScheduleSpec) -> bool:
    """Whether declaring ``b`` over ``a`` changes nothing: same trigger, job and policies."""
    return (
        same_trigger(a, b)
        and a.description == b.description
        and a.handler == b.handler
        and _payload_text(a.payload) == _payload_text(b.payload)
        and options_json(a.options) == options_json(b.options)
        and (a.overlap, a.misfire, a.misfire_grace) == (b.overlap, b.misfire, b.misfire_grace)
    )


def saved_record(schedule: ScheduleState) -> ScheduleSaved:
    """The schedule's whole row, as the journal records it."""
    spec = schedule.spec
    definition = schedule.definition
    if definition is None:
        # Built once per definition, not per fire: a fire changes only the state.
        definition = schedule.definition = (
            _spec_json(spec, schedule.trigger),
            options_json(spec.options),
        )
    return ScheduleSaved(
        schedule.id,
        schedule.seq,
        spec.kind,
        definition[0],
        spec.description,
        spec.handler,
        spec.payload,
        definition[1],
        spec.overlap,
        spec.misfire,
        spec.misfire_grace,
        schedule.paused,
        schedule.next_fire,
        schedule.last_fire,
        schedule.last_job,
        schedule.fires,
        schedule.misfires,
        schedule.skips,
        schedule.created_at,
    )


def _number(value: JSONValue, name: str) -> float | None:
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool):
        msg = f"a stored schedule's {name} must be a number, not {value!r}"
        raise InvalidArgument(msg)
    return float(value)


def rebuild(row: ScheduleSaved) -> tuple[ScheduleSpec, Trigger]:
    """The spec and the running trigger of a stored schedule.

    Raises:
        InvalidArgument: the row cannot be rebuilt here: a time zone this
            machine does not know, or data that `saved_record` does not make.
    """
    spec = row.spec
    trigger: Trigger
    running: Trigger
    try:
        if row.kind == "cron":
            trigger = running = CronTrigger(cast("str", spec["expr"]), cast("Any", spec["tz"]))
        elif row.kind == "every":
            interval = _number(spec["interval"], "interval")
            start, end = _number(spec["start"], "start"), _number(spec["end"], "end")
            trigger = running = IntervalTrigger(cast("float", interval), start, end)
            if start is None:
                anchor = _number(spec.get("anchor"), "anchor")
                if anchor is None:
                    msg = "a stored every schedule without a start lacks its anchor"
                    raise InvalidArgument(msg)
                running = trigger.anchored(anchor)
        elif row.kind == "at":
            trigger = running = AtTrigger(cast("float", _number(spec["when"], "when")))
        else:
            msg = f"a stored schedule's kind must be cron, every or at, not {row.kind!r}"
            raise InvalidArgument(msg)
    except KeyError as exc:
        msg = f"a stored {row.kind} schedule's trigger lacks {exc}"
        raise InvalidArgument(msg) from None
    check_policies(row.overlap, row.misfire, row.misfire_grace)
    rebuilt = ScheduleSpec(
        cast("ScheduleKind", row.kind), row.description, trigger, row.handler, row.payload,
        options_from_json(row.options), cast("Any", row.overlap), cast("Any", row.misfire),
        row.misfire_grace,
    )  # fmt: skip
    return rebuilt, running


def anchored_as_stored(spec: ScheduleSpec, row: ScheduleSaved) -> Trigger:
    """``spec``'s trigger running as the stored one ran (an ``every`` without a
    start, from the stored anchor), when it is the trigger ``row`` was stored with."""
    anchor = row.spec.get("anchor")
    if isinstance(anchor, int | float) and not isinstance(anchor, bool):
        return spec.trigger.anchored(float(anchor))
    return spec.trigger.anchored(row.created_at)


def stored_info(row: ScheduleSaved) -> ScheduleInfo:
    """The `ScheduleInfo` of a stored row (one kept in the store, not running)."""

    def utc(t: float | None) -> datetime | None:
        return None if t is None else datetime.fromtimestamp(t, UTC)

    return ScheduleInfo(
        id=row.id,
        handler=row.handler,
        kind=cast("ScheduleKind", row.kind),
        description=row.description,
        paused=row.paused,
        next_fire=None if row.paused else utc(row.next_fire),
        last_fire=utc(row.last_fire),
        last_job=row.last_job,
        fires=row.fires,
        misfires=row.misfires,
        skips=row.skips,
        overlap=cast("Any", row.overlap),
        misfire=cast("Any", row.misfire),
        misfire_grace=row.misfire_grace,
    )
