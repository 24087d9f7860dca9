"""The schedules, as the facade adds and manages them: `Schedules` and `ScheduleHandle`.

`Scheduler.cron`, `every` and `at` make the trigger (its own checks name a bad
cron expression, time zone, interval or moment); `Schedules` checks the rest of
what a schedule is given, then asks the Dispatcher, which owns the schedules
(`actors._schedules.book`), to add or change one. A schedule's jobs are
ordinary jobs: the Dispatcher submits each fire through the facade's own
path (`Schedules.submit_fire`), so back-pressure, queues and repos apply.

With a store, `Schedules.restore` puts back the schedules it kept as the
scheduler starts: each is rebuilt and checked here (its handler registered,
its queue known, its trigger valid on this machine); one that cannot run is
logged and left in the store as it is.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any, cast

from actors._errors import QueueFull, SchedulerError
from actors._facade.life import Life
from actors._facade.submit import Submitter
from actors._log import schedules_logger as logger
from actors._policy.checks import check_name, unknown_handler
from actors._policy.handlers import HandlerSpec
from actors._policy.options import JOB_OPTIONS, JobOptions, check_options, widen
from actors._policy.payloads import json_copy
from actors._schedules.book import (
    OverlapPolicy,
    ScheduleInfo,
    ScheduleKind,
    ScheduleSpec,
    check_policies,
)
from actors._schedules.misfire import MisfirePolicy
from actors._schedules.stored import rebuild
from actors._schedules.triggers import Trigger

if TYPE_CHECKING:
    from actors._jobs.handle import JobHandle
    from actors._journal.schedules import StoredSchedule
    from actors.messages import ScheduleOp

__all__ = ["DEFAULT_MISFIRE_GRACE", "ScheduleHandle", "Schedules"]

DEFAULT_MISFIRE_GRACE = 60.0
"""Seconds a fire may start late before it counts as a misfire."""


class ScheduleHandle:
    """A schedule, as `Scheduler.cron`, `every` and `at` return it."""

    __slots__ = ("_api", "id")

    def __init__(self, api: Schedules, schedule_id: str) -> None:
        self._api = api
        self.id = schedule_id
        """The schedule's id (`Scheduler.schedules` lists it)."""

    def info(self) -> ScheduleInfo:
        """The schedule now: next fire time, counts, paused or not."""
        return self._api.info(self.id)

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


class Schedules:
    """A scheduler's schedules, as callers add and manage them."""

    def __init__(
        self,
        life: Life,
        handlers: Mapping[str, HandlerSpec],
        queues: Collection[str],
        max_payload_bytes: int,
        submitter: Submitter,
    ) -> None:
        """Manage the schedules of one scheduler.

        Args:
            life: the scheduler's life: every call asks its Dispatcher.
            handlers: the registered handlers (a schedule names one).
            queues: the names of the scheduler's queues.
            max_payload_bytes: the most bytes a schedule's payload may take.
            submitter: submits each fire's job, and makes the handle `trigger`
                returns.
        """
        self._life = life
        self._handlers = handlers
        self._queues = queues
        self._max_payload_bytes = max_payload_bytes
        self._submitter = submitter

    def add(
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
        schedule_id: str | None = None,
    ) -> ScheduleHandle:
        """Check a schedule and have the Dispatcher add it, or update the one
        with ``schedule_id`` (`Scheduler.cron` says how)."""
        from actors.messages import AddSchedule

        check_name("id", schedule_id)
        if not isinstance(handler, str) or handler not in self._handlers:
            raise unknown_handler(handler, self._handlers)
        check_options(options, self._queues, JOB_OPTIONS, kind)
        check_policies(overlap, misfire, misfire_grace)
        spec = ScheduleSpec(
            kind, description, trigger, handler,
            json_copy(payload, max_bytes=self._max_payload_bytes), JobOptions(**options),
            overlap, misfire, float(misfire_grace),
        )  # fmt: skip
        info: ScheduleInfo = self._life.ask(AddSchedule(spec, schedule_id))
        return ScheduleHandle(self, info.id)

    def restore(self, stored: list[StoredSchedule]) -> None:
        """Put back the schedules a store kept (``load_schedules``), with their
        state as stored; call it once, as the scheduler starts, once its
        Dispatcher runs and before anyone adds a schedule.

        A stored schedule that cannot run here (its handler is not registered,
        its queue is gone, its time zone is unknown on this machine) is logged
        as a warning naming it and stays in the store untouched: a later start
        that can run it restores it; `Scheduler.remove` deletes it.

        Raises:
            SchedulerClosed: the scheduler is not running (yet, or any more).
        """
        from actors.messages import RestoreSchedules

        restored = []
        kept = []
        for row in stored:
            problem = None
            if row.handler not in self._handlers:
                problem = f"its handler {row.handler!r} is not registered"
            else:
                try:
                    spec, trigger = rebuild(row)
                    check_options(spec.options, self._queues, JOB_OPTIONS, row.kind)
                except SchedulerError as exc:  # InvalidArgument, UnknownQueue
                    problem = str(exc)
            if problem is None:
                restored.append((row, spec, trigger))
            else:
                kept.append(row)
                logger.warning(
                    "schedule %s (%s) is kept in the store but not restored: %s",
                    row.id,
                    row.handler,
                    problem,
                )
        if restored or kept:
            self._life.ask(RestoreSchedules(tuple(restored), tuple(kept)))

    def all(self) -> list[ScheduleInfo]:
        """`Scheduler.schedules`."""
        from actors.messages import LIST_SCHEDULES

        infos: list[ScheduleInfo] = self._life.ask(LIST_SCHEDULES)
        return infos

    def info(self, schedule_id: str) -> ScheduleInfo:
        """`Scheduler.schedule`."""
        return cast("ScheduleInfo", self._call("info", schedule_id))

    def pause(self, schedule_id: str) -> ScheduleInfo:
        """`Scheduler.pause`."""
        return cast("ScheduleInfo", self._call("pause", schedule_id))

    def resume(self, schedule_id: str) -> ScheduleInfo:
        """`Scheduler.resume`."""
        return cast("ScheduleInfo", self._call("resume", schedule_id))

    def trigger(self, schedule_id: str) -> JobHandle | None:
        """`Scheduler.trigger`."""
        job_id = self._call("trigger", schedule_id)
        return None if job_id is None else self._submitter.handle_of(str(job_id))

    def remove(self, schedule_id: str) -> ScheduleInfo:
        """`Scheduler.remove`."""
        return cast("ScheduleInfo", self._call("remove", schedule_id))

    def submit_fire(
        self, spec: ScheduleSpec, repo: str | None, schedule_id: str, fire_time: float
    ) -> str | None:
        """Submit one fire's job (called on the actor loop; never waits for room).

        Returns the job's id, or None if back-pressure refused it.
        """
        try:
            options = widen({**spec.options, "repo": repo})
            handle = self._submitter.submit(
                spec.handler, spec.payload, options, schedule=(schedule_id, fire_time)
            )
        except QueueFull:
            return None
        info = handle.info()
        return handle.id if info.schedule_id == schedule_id else None  # not dropped

    def _call(self, op: ScheduleOp, schedule_id: str) -> ScheduleInfo | str | None:
        """Ask the Dispatcher to act on one schedule (`ScheduleNotFound` raises here)."""
        from actors.messages import ScheduleCall

        check_name("schedule_id", schedule_id)
        result: ScheduleInfo | str | None = self._life.ask(ScheduleCall(op, schedule_id))
        return result
