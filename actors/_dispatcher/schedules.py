"""The Dispatcher's schedule driving: arming each schedule's Timer entry and firing it.

A component the Dispatcher owns and calls on the actor loop, one message at a
time; `actors._schedules.book` holds the schedules and their policies, and
this module decides when the Timer wakes for them and what a fire does.
"""

from __future__ import annotations

from collections.abc import Callable, Container

from actors._errors import SchedulerClosed
from actors._schedules.book import ScheduleBook, ScheduleInfo, ScheduleSpec, ScheduleState
from actors._timer.clock import Clock
from actors.messages import ScheduleCall, TimerKind

__all__ = ["ScheduleDriver", "SubmitScheduled"]

SubmitScheduled = Callable[[ScheduleSpec, "str | None", str, float], "str | None"]
"""The facade's submit for a schedule's fire: (spec, repo, schedule id, fire time)
-> the job's id, or None if back-pressure refused it. Never blocks; raises
`SchedulerClosed` once the scheduler stops accepting jobs."""


class ScheduleDriver:
    """Schedules, as the Dispatcher runs them."""

    def __init__(
        self,
        clock: Clock,
        unfinished: Container[str],
        after: Callable[[float, TimerKind, str], int],
        cancel_timer: Callable[[int], None],
        submit: SubmitScheduled | None,
    ) -> None:
        """Build the driver with an empty book.

        Args:
            clock: both clocks: fire times are wall clock, Timer entries clock time.
            unfinished: the ids of unfinished jobs (for the ``skip`` overlap policy).
            after: arms a Timer entry (due, kind, key) and returns its token; its
                `Fire` comes back to `fire`.
            cancel_timer: cancels a Timer entry by its token.
            submit: the facade's submit for a fire's job.
        """
        self._clock = clock
        self._unfinished = unfinished
        self._after = after
        self._cancel_timer = cancel_timer
        self._submit = submit
        self.book = ScheduleBook()
        """The schedules (read by the figures for their counts)."""
        self._closing = False
        """Shutdown began: schedules fire no more."""

    def infos(self) -> list[ScheduleInfo]:
        """Every schedule's `ScheduleInfo`."""
        return [self.book.info(s) for s in self.book.all()]

    def close(self) -> None:
        """Shutdown: disarm every schedule; none is armed again."""
        self._closing = True
        for schedule in self.book.all():
            self._disarm(schedule)

    def add(self, spec: ScheduleSpec) -> ScheduleInfo:
        """Add a schedule and arm its first fire."""
        schedule = self.book.add(spec, self._clock.wall())
        self._arm(schedule)
        return self.book.info(schedule)

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

    def fire(self, schedule_id: str, token: int) -> None:
        """The Timer entry ``token`` of the schedule came due: run it if the entry is current."""
        schedule = self.book.find(schedule_id)
        if schedule is None or schedule.token != token or schedule.next_fire is None:
            return  # removed, paused, re-armed or closed meanwhile: a stale entry
        schedule.token = None
        now = self._clock.wall()
        if now < schedule.next_fire:
            # The wall clock went back since the entry was armed: never early.
            self._arm(schedule)
            return
        decision = self.book.decide(schedule, now)
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
            and schedule.last_job in self._unfinished
        ):
            self.book.skipped(schedule, f"its last job {schedule.last_job} is unfinished")
            return None
        # "queue": the fires' jobs share a repo, so they run one after another.
        repo = spec.repo
        if repo is None and spec.overlap == "queue":
            repo = f"postroom.schedule:{schedule.id}"
        assert self._submit is not None
        try:
            job_id = self._submit(spec, repo, schedule.id, fire_time)
        except SchedulerClosed:
            return None
        if job_id is None:
            self.book.skipped(schedule, f"queue {spec.queue or 'default'!r} is full")
            return None
        self.book.fired(schedule, job_id, fire_time)
        return job_id

    def call(self, message: ScheduleCall) -> ScheduleInfo | str | None:
        """Act on one schedule (see `ScheduleCall`)."""
        op = message.op
        if op == "remove":
            schedule = self.book.remove(message.schedule_id)
            self._disarm(schedule)
            return self.book.info(schedule)
        schedule = self.book.get(message.schedule_id)
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
        return self.book.info(schedule)
