"""The Dispatcher's schedule driving: arming each schedule's Timer entry and firing it.

A mixin of `Dispatcher` (it runs on the actor loop, with the Dispatcher's
state); `actors._schedules.book` holds the schedules and their policies.
"""

from __future__ import annotations

from collections.abc import Callable

from actors._errors import SchedulerClosed
from actors._jobs.state import JobState
from actors._schedules.book import ScheduleBook, ScheduleInfo, ScheduleSpec, ScheduleState
from actors._timer.clock import Clock
from actors.messages import ScheduleCall

__all__ = ["ScheduleDriver", "SubmitScheduled"]

SubmitScheduled = Callable[[ScheduleSpec, "str | None", str, float], "str | None"]
"""The facade's submit for a schedule's fire: (spec, repo, schedule id, fire time)
-> the job's id, or None if back-pressure refused it. Never blocks; raises
`SchedulerClosed` once the scheduler stops accepting jobs."""


class ScheduleDriver:
    """Schedules, as the Dispatcher runs them."""

    _schedules: ScheduleBook
    _submit_scheduled: SubmitScheduled | None
    _closing: bool
    _clock: Clock
    _states: dict[str, JobState]
    _after: Callable[..., int]
    _cancel_timer: Callable[[int], None]

    def _add_schedule(self, spec: ScheduleSpec) -> ScheduleInfo:
        schedule = self._schedules.add(spec, self._clock.wall())
        self._arm(schedule)
        return self._schedules.info(schedule)

    def _arm(self, schedule: ScheduleState) -> None:
        """Arm the Timer for the schedule's next fire time (wall clock -> clock)."""
        self._disarm(schedule)
        if schedule.paused or schedule.next_fire is None or self._closing:
            return
        wait = max(0.0, schedule.next_fire - self._clock.wall())
        schedule.token = self._after(self._clock.now() + wait, "schedule", schedule.id)

    def _disarm(self, schedule: ScheduleState) -> None:
        if schedule.token is not None:
            self._cancel_timer(schedule.token)
            schedule.token = None

    def _on_schedule_fire(self, schedule_id: str, token: int) -> None:
        schedule = self._schedules.find(schedule_id)
        if schedule is None or schedule.token != token or schedule.next_fire is None:
            return  # removed, paused, re-armed or closed meanwhile: a stale entry
        schedule.token = None
        now = self._clock.wall()
        if now < schedule.next_fire:
            # The wall clock went back since the entry was armed: never early.
            self._arm(schedule)
            return
        decision = self._schedules.decide(schedule, now)
        if decision.run:
            assert decision.fire_time is not None
            self._run_schedule(schedule, decision.fire_time, forced=False)
        schedule.next_fire = decision.next_fire
        self._arm(schedule)

    def _run_schedule(
        self, schedule: ScheduleState, fire_time: float, *, forced: bool
    ) -> str | None:
        """Create the job of one fire, unless the overlap policy says not to."""
        spec = schedule.spec
        if (
            not forced
            and spec.overlap == "skip"
            and schedule.last_job is not None
            and schedule.last_job in self._states
        ):
            self._schedules.skipped(schedule, f"its last job {schedule.last_job} is unfinished")
            return None
        # "queue": the fires' jobs share a repo, so they run one after another.
        repo = spec.repo
        if repo is None and spec.overlap == "queue":
            repo = f"postroom.schedule:{schedule.id}"
        assert self._submit_scheduled is not None
        try:
            job_id = self._submit_scheduled(spec, repo, schedule.id, fire_time)
        except SchedulerClosed:
            return None
        if job_id is None:
            self._schedules.skipped(schedule, f"queue {spec.queue or 'default'!r} is full")
            return None
        self._schedules.fired(schedule, job_id, fire_time)
        return job_id

    def _schedule_call(self, message: ScheduleCall) -> ScheduleInfo | str | None:
        op = message.op
        if op == "remove":
            schedule = self._schedules.remove(message.schedule_id)
            self._disarm(schedule)
            return self._schedules.info(schedule)
        schedule = self._schedules.get(message.schedule_id)
        if op == "trigger":
            # Once, now, and the schedule's own fire times do not move.
            return self._run_schedule(schedule, self._clock.wall(), forced=True)
        if op == "pause":
            schedule.paused = True
            self._disarm(schedule)
        elif op == "resume" and schedule.paused:
            schedule.paused = False
            now = self._clock.wall()
            if schedule.next_fire is not None and schedule.next_fire < now:
                # Fire times that passed while paused are not misfires: they were
                # not wanted. (A one-shot `at` keeps its time: it runs now.)
                later = schedule.trigger.next_after(now)
                if later is not None or schedule.spec.kind != "at":
                    schedule.next_fire = later
            self._arm(schedule)
        return self._schedules.info(schedule)
