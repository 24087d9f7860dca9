"""`Scheduler.cron`, `every` and `at`, the schedule management calls, and `ScheduleHandle`.

The facade checks everything a schedule is given (the trigger's own checks
name a bad cron expression, time zone, interval or moment), then asks the
Dispatcher, which owns the schedules (`actors._schedules.book`), to add or change
one. A schedule's jobs are ordinary jobs: the Dispatcher submits each fire
through the facade's own path, so back-pressure, queues and repos apply.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Unpack

from actors._errors import QueueFull
from actors._facade.life import Life
from actors._policy.checks import check_name, unknown_handler
from actors._policy.handlers import HandlerSpec
from actors._policy.options import JOB_OPTIONS, JobOptions, check_options
from actors._policy.payloads import json_copy
from actors._policy.queue import Queue
from actors._schedules.book import (
    OverlapPolicy,
    ScheduleInfo,
    ScheduleKind,
    ScheduleSpec,
    check_policies,
)
from actors._schedules.misfire import MisfirePolicy
from actors._schedules.triggers import AtTrigger, CronTrigger, IntervalTrigger, Trigger

if TYPE_CHECKING:
    from actors._dispatcher.dispatcher import DispatcherConfig
    from actors._jobs.handle import JobHandle

__all__ = ["DEFAULT_MISFIRE_GRACE", "ScheduleAPI", "ScheduleHandle"]

DEFAULT_MISFIRE_GRACE = 60.0
"""Seconds a fire may start late before it counts as a misfire."""


class ScheduleHandle:
    """A schedule, as `Scheduler.cron`, `every` and `at` return it."""

    __slots__ = ("_api", "id")

    def __init__(self, api: ScheduleAPI, schedule_id: str) -> None:
        self._api = api
        self.id = schedule_id
        """The schedule's id (`Scheduler.schedules` lists it)."""

    def info(self) -> ScheduleInfo:
        """The schedule now: next fire time, counts, paused or not."""
        return self._api.schedule(self.id)

    def pause(self) -> ScheduleInfo:
        """Stop firing until `resume`; see `Scheduler.pause`."""
        return self._api.pause(self.id)

    def resume(self) -> ScheduleInfo:
        """Fire again from the next fire time after now; see `Scheduler.resume`."""
        return self._api.resume(self.id)

    def trigger(self) -> JobHandle | None:
        """Run it once now; see `Scheduler.trigger`."""
        return self._api.trigger(self.id)

    def remove(self) -> ScheduleInfo:
        """Remove it; see `Scheduler.remove`."""
        return self._api.remove(self.id)

    def __repr__(self) -> str:
        return f"<ScheduleHandle {self.id}>"


class ScheduleAPI:
    """The schedule half of `Scheduler` (a mixin: it uses the facade's state)."""

    _handlers: dict[str, HandlerSpec]
    _life: Life
    _config: DispatcherConfig
    _handle_of: Callable[[str], JobHandle]
    _queues: dict[str, Queue]

    def cron(
        self,
        handler: str,
        expr: str,
        payload: Any = None,
        *,
        tz: str | None = None,
        overlap: OverlapPolicy = "skip",
        misfire: MisfirePolicy = "coalesce",
        misfire_grace: float = DEFAULT_MISFIRE_GRACE,
        **options: Unpack[JobOptions],
    ) -> ScheduleHandle:
        """Run ``handler`` at the times a cron expression names.

        Args:
            handler: a registered handler's name.
            expr: 5 fields (minute hour day month weekday) or 6 with leading
                seconds; see `actors._schedules.triggers` for the dialect and DST rules.
            payload: each job's payload (JSON-able; a private copy is taken).
            tz: an IANA time zone the expression is read in (default: UTC).
            **options: the `JobOptions` of every job the schedule creates, as
                for `submit` (all but ``delay`` and ``idempotency_key``).
            overlap: ``"skip"`` (no fire while the last one's job is unfinished),
                ``"queue"`` (one after the other) or ``"allow"``.
            misfire: ``"coalesce"`` (one run for fires missed by more than
                ``misfire_grace``) or ``"skip"`` (drop them).
            misfire_grace: seconds a fire may be late and still count as on time.

        Raises:
            InvalidArgument: a bad expression (the message names it and says
                why), unknown time zone, or bad option.
            UnknownHandler / UnknownQueue: no handler or queue of that name.
            SchedulerClosed: the scheduler is not running.
        """
        trigger = CronTrigger(expr, tz)
        description = expr if tz is None else f"{expr} ({tz})"
        return self._add(
            "cron", description, trigger, handler, payload, options, overlap, misfire,
            misfire_grace,
        )  # fmt: skip

    def every(
        self,
        handler: str,
        interval: float | timedelta,
        payload: Any = None,
        *,
        start: datetime | float | None = None,
        end: datetime | float | None = None,
        overlap: OverlapPolicy = "skip",
        misfire: MisfirePolicy = "coalesce",
        misfire_grace: float = DEFAULT_MISFIRE_GRACE,
        **options: Unpack[JobOptions],
    ) -> ScheduleHandle:
        """Run ``handler`` every ``interval`` (seconds, or a `timedelta`).

        Fires at ``start`` (default: when it is added), then every ``interval``
        after it, without drift, until ``end`` (default: never). Naive datetimes
        are read as UTC. The other arguments are `cron`'s.

        Raises:
            InvalidArgument: ``interval`` <= 0 or not a number or timedelta (the
                message names it), or a bad ``start``, ``end`` or option.
            UnknownHandler / UnknownQueue: no handler or queue of that name.
            SchedulerClosed: the scheduler is not running.
        """
        trigger = IntervalTrigger(interval, start, end)
        seconds = interval.total_seconds() if isinstance(interval, timedelta) else interval
        return self._add(
            "every", f"every {seconds:g}s", trigger, handler, payload, options, overlap,
            misfire, misfire_grace,
        )  # fmt: skip

    def at(
        self,
        handler: str,
        when: datetime | float,
        payload: Any = None,
        *,
        misfire: MisfirePolicy = "coalesce",
        misfire_grace: float = DEFAULT_MISFIRE_GRACE,
        **options: Unpack[JobOptions],
    ) -> ScheduleHandle:
        """Run ``handler`` once, at ``when`` (a datetime, naive read as UTC, or epoch seconds).

        A ``when`` in the past is not an error: it is a fire that is late. Under
        ``misfire="coalesce"`` (the default) it runs at once; under ``"skip"`` it
        runs only if it is no more than ``misfire_grace`` seconds late, and is
        counted as a misfire otherwise.

        Raises:
            InvalidArgument: ``when`` is not a datetime or finite epoch seconds,
                or a bad option.
            UnknownHandler / UnknownQueue: no handler or queue of that name.
            SchedulerClosed: the scheduler is not running.
        """
        trigger = AtTrigger(when)
        moment = datetime.fromtimestamp(trigger.when).astimezone().isoformat()
        return self._add(
            "at", f"at {moment}", trigger, handler, payload, options, "allow", misfire,
            misfire_grace,
        )  # fmt: skip

    def schedules(self) -> list[ScheduleInfo]:
        """Every schedule, oldest first, with its next fire time and counts."""
        from actors._dispatcher.dispatcher import LIST_SCHEDULES

        infos: list[ScheduleInfo] = self._life.ask(LIST_SCHEDULES)
        return infos

    def schedule(self, schedule_id: str) -> ScheduleInfo:
        """One schedule. Raises `ScheduleNotFound`."""
        return self._call("info", schedule_id)  # type: ignore[return-value]

    def pause(self, schedule_id: str) -> ScheduleInfo:
        """Stop a schedule firing until `resume`; its jobs already made go on.

        Raises:
            ScheduleNotFound: no schedule has that id.
        """
        return self._call("pause", schedule_id)  # type: ignore[return-value]

    def resume(self, schedule_id: str) -> ScheduleInfo:
        """Let a paused schedule fire again, from its next fire time after now.

        Fire times that passed while it was paused are not run and not
        misfires (they were not wanted); a one-shot `at` that came due while
        paused runs at once.

        Raises:
            ScheduleNotFound: no schedule has that id.
        """
        return self._call("resume", schedule_id)  # type: ignore[return-value]

    def trigger(self, schedule_id: str) -> JobHandle | None:
        """Run a schedule once now, without moving its fire times (even if paused).

        Returns:
            The job's handle, or None if the queue was full (counted as a skip).

        Raises:
            ScheduleNotFound: no schedule has that id.
        """
        job_id = self._call("trigger", schedule_id)
        return None if job_id is None else self._handle_of(str(job_id))

    def remove(self, schedule_id: str) -> ScheduleInfo:
        """Remove a schedule; the jobs it made go on. Returns its last figures.

        Raises:
            ScheduleNotFound: no schedule has that id.
        """
        return self._call("remove", schedule_id)  # type: ignore[return-value]

    # --- internals ------------------------------------------------------------------

    def _call(self, op: str, schedule_id: str) -> ScheduleInfo | str | None:
        from actors._dispatcher.dispatcher import ScheduleCall

        check_name("schedule_id", schedule_id)
        result: ScheduleInfo | str | None = self._life.ask(ScheduleCall(op, schedule_id))  # type: ignore[arg-type]
        return result

    def _add(
        self,
        kind: ScheduleKind,
        description: str,
        trigger: Trigger,
        handler: str,
        payload: Any,
        options: JobOptions,
        overlap: OverlapPolicy,
        misfire: MisfirePolicy,
        misfire_grace: float,
    ) -> ScheduleHandle:
        from actors._dispatcher.dispatcher import AddSchedule

        if not isinstance(handler, str) or handler not in self._handlers:
            raise unknown_handler(handler, self._handlers)
        check_options(options, self._queues, JOB_OPTIONS, kind)
        check_policies(overlap, misfire, misfire_grace)
        spec = ScheduleSpec(
            kind, description, trigger, handler,
            json_copy(payload, max_bytes=self._config.max_payload_bytes), JobOptions(**options),
            overlap, misfire, float(misfire_grace),
        )  # fmt: skip
        info: ScheduleInfo = self._life.ask(AddSchedule(spec))
        return ScheduleHandle(self, info.id)

    def _submit_scheduled(
        self, spec: ScheduleSpec, repo: str | None, schedule_id: str, fire_time: float
    ) -> str | None:
        """Submit one fire's job (called on the actor loop; never waits for room).

        Returns the job's id, or None if back-pressure refused it.
        """
        submit: Callable[..., JobHandle] = self.submit  # type: ignore[attr-defined]
        try:
            handle = submit(
                spec.handler, spec.payload, _schedule=(schedule_id, fire_time),
                **{**spec.options, "repo": repo},
            )  # fmt: skip
        except QueueFull:
            return None
        info = handle.info()
        return handle.id if info.schedule_id == schedule_id else None  # not dropped
