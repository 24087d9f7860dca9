"""Schedules: cron, interval and one-shot triggers that create jobs.

A schedule is data owned by the Dispatcher (`ScheduleBook`), on the actor loop:
its trigger (`actors._schedules.triggers`), the options of the jobs it creates, and its
policies. The Dispatcher arms one Timer entry per schedule, for its next fire
time, and when the entry comes due asks the book what to do:

- **Misfires.** A fire that is handled more than ``misfire_grace`` seconds after
  its time (the process was busy or suspended) is a misfire; one handled within
  the grace is a normal fire and runs. ``"coalesce"`` (the default) runs once for
  all the misfires; ``"skip"`` drops them. Either way they are counted and
  logged, and the fires after them are handled as usual (`decide_fire`).
- **Overlap.** ``"skip"`` (the default) starts no fire while the job of the
  previous one is unfinished (pending or running): the fire is counted as a
  skip and logged. ``"queue"`` runs every fire, one after the other (its jobs
  share a repo, so they never overlap and start in order). ``"allow"`` runs
  every fire at once.

- **Ids.** A schedule has an id, given (``id=``) or drawn (``schedule-N``).
  Adding a schedule under an id that exists updates that schedule instead
  (``actors/_dispatcher/schedules.py``): its fire history, counts and pause
  stay. A store keeps each schedule's row (``actors/_schedules/stored.py``)
  and gives it back at the next start; rows that cannot run there are
  ``kept``: their ids are never drawn for another schedule.

Fire times are wall-clock times (epoch seconds). A job a schedule creates
carries the schedule's id and its fire time (`JobInfo.schedule_id`,
`JobInfo.fire_time`), and is never started before that time (rule 11, docs/guarantees.md): the
Dispatcher turns a fire time into a Timer due time when it arms it, and checks
the wall clock again when the entry comes due.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from actors._errors import InvalidArgument, ScheduleNotFound
from actors._log import schedules_logger as logger
from actors._policy.options import JobOptions
from actors._schedules.misfire import FireDecision, MisfirePolicy, check_misfire, decide_fire
from actors._schedules.triggers import Trigger
from actors.messages import JSONValue, ScheduleSaved

__all__ = [
    "OverlapPolicy",
    "ScheduleBook",
    "ScheduleInfo",
    "ScheduleKind",
    "ScheduleSpec",
    "ScheduleState",
    "check_policies",
]

OverlapPolicy = Literal["skip", "queue", "allow"]
"""What a fire does while the previous fire's job is unfinished."""

ScheduleKind = Literal["cron", "every", "at"]


@dataclass(frozen=True, slots=True)
class ScheduleSpec:
    """A schedule as the facade checked it: what to run, when, and how."""

    kind: ScheduleKind
    description: str
    """The cron expression, the interval, or the moment, as given."""
    trigger: Trigger
    handler: str
    payload: JSONValue
    options: JobOptions
    """The options of every job it creates (checked; nobody changes them)."""
    overlap: OverlapPolicy
    misfire: MisfirePolicy
    misfire_grace: float

    @property
    def repo(self) -> str | None:
        """The repo of its jobs (None: each its own, unless ``overlap="queue"``)."""
        return self.options.get("repo")

    @property
    def queue(self) -> str | None:
        """The queue its jobs name (None: the handler's)."""
        return self.options.get("queue")


@dataclass(frozen=True, slots=True)
class ScheduleInfo:
    """A schedule at the moment it was asked for (`Scheduler.schedules`)."""

    id: str
    handler: str
    kind: ScheduleKind
    description: str
    """The cron expression, the interval, or the moment, as given."""
    paused: bool
    next_fire: datetime | None
    """When it fires next (UTC); None once it has no more fires, or while paused."""
    last_fire: datetime | None
    """The fire time of the last job it created (UTC)."""
    last_job: str | None
    """The id of the last job it created."""
    fires: int
    """Jobs it created (`trigger` included)."""
    misfires: int
    """Fire times handled more than ``misfire_grace`` late that got no run of
    their own: coalesced into another fire's run, or dropped."""
    skips: int
    """Fires that created no job: the previous one was unfinished (overlap
    ``"skip"``), or the queue was full."""
    overlap: OverlapPolicy
    misfire: MisfirePolicy
    misfire_grace: float


class ScheduleState:
    """One schedule's mutable state (the Dispatcher's thread only)."""

    __slots__ = (
        "created_at",
        "definition",
        "fires",
        "id",
        "last_fire",
        "last_job",
        "misfires",
        "next_fire",
        "paused",
        "seq",
        "skips",
        "spec",
        "token",
        "trigger",
    )

    def __init__(
        self,
        schedule_id: str,
        seq: int,
        spec: ScheduleSpec,
        trigger: Trigger,
        next_fire: float | None,
        created_at: float,
    ) -> None:
        self.id = schedule_id
        self.seq = seq
        """Its place among the schedules, which list oldest first."""
        self.spec = spec
        self.trigger = trigger
        """``spec.trigger`` as it runs (an ``every`` without a start, anchored)."""
        self.next_fire = next_fire
        self.created_at = created_at
        """Wall-clock time it was first added (kept when it is updated)."""
        self.paused = False
        self.token: int | None = None
        """The armed Timer entry, if any: a Fire with another token is stale."""
        self.last_fire: float | None = None
        self.last_job: str | None = None
        self.fires = 0
        self.misfires = 0
        self.skips = 0
        self.definition: tuple[Any, Any] | None = None
        """The journal's JSON of ``spec`` (``actors/_schedules/stored.py``),
        made once per definition; None until then, and after ``spec`` changes."""


def check_policies(overlap: object, misfire: object, misfire_grace: object) -> None:
    """Raise `InvalidArgument` naming the first bad schedule policy."""
    if overlap not in ("skip", "queue", "allow"):
        msg = f"overlap must be 'skip', 'queue' or 'allow', not {overlap!r}"
        raise InvalidArgument(msg)
    check_misfire(misfire, misfire_grace)


class ScheduleBook:
    """Every schedule of one scheduler, and the counts the metrics report.

    Used on the Dispatcher's thread only. Counts per handler never go down,
    even when a schedule is removed (they are Prometheus counters).
    """

    def __init__(self) -> None:
        self._schedules: dict[str, ScheduleState] = {}
        self._last_seq = 0
        """The largest number a schedule holds (`ScheduleState.seq`)."""
        self.kept: dict[str, ScheduleSaved] = {}
        """Schedules a store holds that were not restored (their handler is not
        registered, say): their rows stay as stored, their ids are not drawn,
        and adding one by its id takes its history over."""
        self.fires_by: Counter[str] = Counter()
        self.misfires_by: Counter[str] = Counter()
        self.skips_by: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._schedules)

    def add(self, spec: ScheduleSpec, now: float, schedule_id: str | None = None) -> ScheduleState:
        """A new schedule, its first fire time computed from ``now``; ``schedule_id``
        None draws an id no schedule has, running or kept.

        Raises:
            InvalidArgument: its trigger cannot start at ``now`` (an ``every``
                without a start whose end has passed).
        """
        trigger = spec.trigger.anchored(now)
        self._last_seq += 1
        seq = self._last_seq
        if schedule_id is None:
            schedule_id = f"schedule-{seq}"
            while schedule_id in self._schedules or schedule_id in self.kept:
                # One the user named so, or a kept one from a store: not taken over.
                self._last_seq += 1
                seq = self._last_seq
                schedule_id = f"schedule-{seq}"
        schedule = ScheduleState(schedule_id, seq, spec, trigger, trigger.first_fire(now), now)
        self._schedules[schedule_id] = schedule
        return schedule

    def restore(self, schedule: ScheduleState) -> None:
        """Put back a schedule rebuilt from a store, in the order it is given
        (oldest first); ids drawn from now on come after its number."""
        self._schedules[schedule.id] = schedule
        self.skip_numbers(schedule.seq)

    def skip_numbers(self, seq: int) -> None:
        """Draw numbers after ``seq`` from now on (a stored schedule holds it)."""
        self._last_seq = max(self._last_seq, seq)

    def get(self, schedule_id: str) -> ScheduleState:
        """The schedule with this id.

        Raises:
            ScheduleNotFound: there is none (never added, or removed).
        """
        schedule = self._schedules.get(schedule_id)
        if schedule is None:
            msg = f"no schedule with id {schedule_id!r}"
            raise ScheduleNotFound(msg)
        return schedule

    def find(self, schedule_id: str) -> ScheduleState | None:
        """The schedule with this id, or None."""
        return self._schedules.get(schedule_id)

    def remove(self, schedule_id: str) -> ScheduleState:
        """Forget a schedule (its unfinished jobs go on). Raises `ScheduleNotFound`."""
        schedule = self.get(schedule_id)
        del self._schedules[schedule_id]
        return schedule

    def all(self) -> list[ScheduleState]:
        """Every schedule, oldest first."""
        return list(self._schedules.values())

    def decide(self, schedule: ScheduleState, now: float) -> FireDecision:
        """Apply the misfire policy to the fire ``schedule`` was armed for."""
        assert schedule.next_fire is not None
        spec = schedule.spec
        decision = decide_fire(
            schedule.trigger,
            schedule.next_fire,
            now,
            misfire_grace=spec.misfire_grace,
            policy=spec.misfire,
        )
        if decision.missed:
            schedule.misfires += decision.missed
            self.misfires_by[spec.handler] += decision.missed
            action = "coalesced into one run" if spec.misfire == "coalesce" else "skipped"
            logger.warning(
                "schedule %s (%s): %d fire(s) more than %ss late, %s",
                schedule.id,
                spec.handler,
                decision.missed,
                spec.misfire_grace,
                action,
            )
        return decision

    def fired(self, schedule: ScheduleState, job_id: str, fire_time: float) -> None:
        """A fire created job ``job_id``."""
        schedule.fires += 1
        schedule.last_job = job_id
        schedule.last_fire = fire_time
        self.fires_by[schedule.spec.handler] += 1

    def skipped(self, schedule: ScheduleState, why: str) -> None:
        """A fire created no job; counted and logged, never silent."""
        schedule.skips += 1
        self.skips_by[schedule.spec.handler] += 1
        logger.warning(
            "schedule %s (%s): fire skipped: %s", schedule.id, schedule.spec.handler, why
        )

    def info(self, schedule: ScheduleState) -> ScheduleInfo:
        """The frozen view of ``schedule``."""
        spec = schedule.spec
        return ScheduleInfo(
            id=schedule.id,
            handler=spec.handler,
            kind=spec.kind,
            description=spec.description,
            paused=schedule.paused,
            next_fire=None if schedule.paused else _utc(schedule.next_fire),
            last_fire=_utc(schedule.last_fire),
            last_job=schedule.last_job,
            fires=schedule.fires,
            misfires=schedule.misfires,
            skips=schedule.skips,
            overlap=spec.overlap,
            misfire=spec.misfire,
            misfire_grace=spec.misfire_grace,
        )


def _utc(t: float | None) -> datetime | None:
    return None if t is None else datetime.fromtimestamp(t, UTC)
