"""The Dispatcher's schedule driving: arming each schedule's Timer entry and firing it.

A component the Dispatcher owns and calls on the actor loop, one message at a
time; `actors._schedules.book` holds the schedules and their policies, and
this module decides when the Timer wakes for them and what a fire does.

With a store, every change of a schedule (added, updated, paused, resumed,
fired, skipped, misfired, removed) is posted to the Journal as it happens,
as the schedule's whole row (`saved_record`): posting never waits, so the
actor loop never does. After a restart the facade rebuilds the stored
schedules and the driver `restore`s them with their state as stored: a fire
time that passed while the process was down is a late fire, decided by the
schedule's misfire policy like any other.
"""

from __future__ import annotations

from collections.abc import Callable, Container
from typing import TYPE_CHECKING

from actors._errors import InvalidArgument, ScheduleNotFound, SchedulerClosed
from actors._schedules.book import ScheduleBook, ScheduleInfo, ScheduleSpec, ScheduleState
from actors._schedules.stored import (
    anchored_as_stored,
    rebuild,
    same_definition,
    same_trigger,
    saved_record,
    stored_info,
)
from actors._timer.clock import Clock
from actors.messages import RestoreSchedules, ScheduleCall, ScheduleSaved, TimerKind

if TYPE_CHECKING:
    from actors._journal.link import JournalLink

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
        journal: Callable[[], JournalLink | None] = lambda: None,
    ) -> None:
        """Build the driver with an empty book.

        Args:
            clock: both clocks: fire times are wall clock, Timer entries clock time.
            unfinished: the ids of unfinished jobs (for the ``skip`` overlap policy).
            after: arms a Timer entry (due, kind, key) and returns its token; its
                `Fire` comes back to `fire`.
            cancel_timer: cancels a Timer entry by its token.
            submit: the facade's submit for a fire's job.
            journal: where to post the schedules' records: the job table's
                link, read at each change (None without a store).
        """
        self._clock = clock
        self._unfinished = unfinished
        self._after = after
        self._cancel_timer = cancel_timer
        self._submit = submit
        self._journal = journal
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

    def add(self, spec: ScheduleSpec, schedule_id: str | None = None) -> ScheduleInfo:
        """Add a schedule and arm its first fire; or, if one has ``schedule_id``,
        update it (see `_update`)."""
        now = self._clock.wall()
        schedule = None if schedule_id is None else self.book.find(schedule_id)
        if schedule is not None:
            if same_definition(schedule.spec, spec):
                return self.book.info(schedule)  # declared again as it is: nothing changes
            self._update(schedule, spec, now)
        else:
            kept = None if schedule_id is None else self.book.kept.get(schedule_id)
            if kept is None:
                schedule = self.book.add(spec, now, schedule_id)
            else:
                schedule = self._take_over(kept, spec, now)
                del self.book.kept[kept.id]
                self.book.restore(schedule)
        self._arm(schedule)
        self._save(schedule)
        return self.book.info(schedule)

    def _update(self, schedule: ScheduleState, spec: ScheduleSpec, now: float) -> None:
        """Give a schedule a new definition; its fire history and pause stay.

        The same trigger keeps its fire times (a fire now due is decided as a
        late one). A new trigger fires next at its first fire time after now,
        as a schedule added now would, except that an ``every`` without a
        start counts from when the schedule was first added: fire times the
        old trigger had are not owed by the new one.
        """
        if not same_trigger(schedule.spec, spec):
            trigger = spec.trigger.anchored(schedule.created_at)  # raises before any change
            schedule.trigger = trigger
            schedule.next_fire = trigger.first_fire(now)
        schedule.spec = spec
        schedule.definition = None

    @staticmethod
    def _take_over(kept: ScheduleSaved, spec: ScheduleSpec, now: float) -> ScheduleState:
        """The schedule added with the id of one kept in the store: it takes
        over the kept one's history, pause and place, and, if it has the same
        trigger, its fire times (`_update`'s rule)."""
        stored = _rebuilt_spec(kept)
        if stored is not None and same_trigger(stored, spec):
            trigger = anchored_as_stored(spec, kept)
            next_fire = kept.next_fire
        else:
            trigger = spec.trigger.anchored(kept.created_at)
            next_fire = trigger.first_fire(now)
        schedule = ScheduleState(kept.id, kept.seq, spec, trigger, next_fire, kept.created_at)
        _restore_state(schedule, kept)
        return schedule

    def restore(self, message: RestoreSchedules) -> None:
        """Put back the schedules a store kept, as stored, and arm them (a
        fire time that passed meanwhile is due at once: a late fire)."""
        book = self.book
        for row in message.kept:
            book.kept[row.id] = row
            book.skip_numbers(row.seq)
        for row, spec, trigger in message.restored:
            if book.find(row.id) is not None:
                continue  # added again before the restore: the caller's wins
            schedule = ScheduleState(row.id, row.seq, spec, trigger, row.next_fire, row.created_at)
            _restore_state(schedule, row)
            book.restore(schedule)
            self._arm(schedule)

    def _save(self, schedule: ScheduleState) -> None:
        """Post the schedule's row to the Journal, if there is a store."""
        journal = self._journal()
        if journal is not None:
            journal.schedule_saved(saved_record(schedule))

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
            try:
                self._run_schedule(schedule, decision.fire_time, forced=False)
            except SchedulerClosed:
                # Shutting down: the fire stays due as stored, for the next
                # start's misfire policy to decide, rather than lost.
                return
        schedule.next_fire = decision.next_fire
        self._arm(schedule)
        self._save(schedule)

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
        job_id = self._submit(spec, repo, schedule.id, fire_time)  # SchedulerClosed: the caller's
        if job_id is None:
            self.book.skipped(schedule, f"queue {spec.queue or 'default'!r} is full")
            return None
        self.book.fired(schedule, job_id, fire_time)
        return job_id

    def call(self, message: ScheduleCall) -> ScheduleInfo | str | None:
        """Act on one schedule (see `ScheduleCall`)."""
        op = message.op
        if op == "remove":
            kept = self.book.kept.pop(message.schedule_id, None)
            if kept is not None:
                # Kept in the store, never restored: removing it is how its row goes.
                self._removed(kept.id)
                return stored_info(kept)
            schedule = self.book.remove(message.schedule_id)
            self._disarm(schedule)
            self._removed(schedule.id)
            return self.book.info(schedule)
        schedule = self._get(message.schedule_id)
        if op == "trigger":
            # Once, now, and the schedule's own fire times do not move.
            try:
                job_id = self._run_schedule(schedule, self._clock.wall(), forced=True)
            except SchedulerClosed:
                return None
            self._save(schedule)  # a fire or a skip: counted either way
            return job_id
        if op == "pause" and not schedule.paused:
            schedule.paused = True
            self._disarm(schedule)
            self._save(schedule)
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
            self._save(schedule)
        return self.book.info(schedule)

    def _get(self, schedule_id: str) -> ScheduleState:
        """The running schedule with this id; `ScheduleNotFound` says so of a kept one."""
        kept = self.book.kept.get(schedule_id)
        if kept is not None:
            msg = (
                f"the schedule {schedule_id!r} is kept in the store but not running: "
                f"its handler {kept.handler!r} is not registered, or its definition "
                "cannot run here (the log said which); remove() deletes it"
            )
            raise ScheduleNotFound(msg)
        return self.book.get(schedule_id)

    def _removed(self, schedule_id: str) -> None:
        journal = self._journal()
        if journal is not None:
            journal.schedule_removed(schedule_id)


def _restore_state(schedule: ScheduleState, row: ScheduleSaved) -> None:
    """Give ``schedule`` the pause, the fire history and the counts stored in ``row``."""
    schedule.paused = row.paused
    schedule.last_fire, schedule.last_job = row.last_fire, row.last_job
    schedule.fires, schedule.misfires, schedule.skips = row.fires, row.misfires, row.skips


def _rebuilt_spec(row: ScheduleSaved) -> ScheduleSpec | None:
    """The spec ``row`` was stored with, or None if it cannot be rebuilt here."""
    try:
        return rebuild(row)[0]
    except InvalidArgument:
        return None
