"""A model of the jobs a scheduler with a store holds, and of what a restart must bring back.

Each job the test has seen acknowledged is a `ModelJob`: what memory holds of
it now (`Snap`), and what the store may hold of it (``disk``). Under
``durability="commit"`` a job's row and each attempt's start are committed
before `submit` returns or the handler is called; an attempt's end, a retry's
due time and a job's end are committed later, in the Journal's next group
commit. So the store holds, of each job, its state at some moment between
the last one known to be committed and now: ``disk`` lists those states,
oldest first. A commit the test knows of (a submit that returned, an attempt
that started, a flush) makes everything recorded before it certain, and
``disk`` shrinks to what came after.

`recovered` is what a start makes of a stored job (``actors/_journal/recovery.py``
documents the rules; this is them, written once more from the docs, not from
that code): an open run was cut short by the crash and is ``interrupted``; a
job still ``running`` is retried or failed by its last run's outcome and its
handler's ``on_interrupt``. (The rules cited are docs/guarantees.md's.)

`read_store` reads what a store file holds, to compare with ``disk`` before
a restart reads it.

Schedules (`ModelSchedule`) are kept the same way, by id: a schedule's
records are never waited for, so the store holds its state of some moment
since the last commit the test knows of (or none, once removed). `declared`,
`resumed` and `driven` are docs/schedules.md's rules for a declaration by
``id=``, a resume, and the fires (and misfires) due by a time.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = [
    "CANCELLED_ERROR",
    "Definition",
    "FAILURE",
    "INTERRUPTED",
    "TERMINAL",
    "WAITING",
    "ModelJob",
    "ModelSchedule",
    "SchedSnap",
    "Snap",
    "StoredJob",
    "StoredSchedule",
    "Trigger",
    "declared",
    "driven",
    "fired",
    "read_schedules",
    "read_store",
    "recovered",
    "resumed",
    "runnable",
]

WAITING = ("scheduled", "pending", "retrying")
TERMINAL = ("completed", "failed", "cancelled")
FAILURE = "RuntimeError"
"""The error type of an attempt the test fails (its handler raises RuntimeError)."""
INTERRUPTED = "postroom.JobInterrupted"
CANCELLED_ERROR = "postroom.JobCancelled"
DUE_SLACK = 1e-6
"""Clock seconds two due times may differ by (the store keeps wall-clock
times; every time the test uses is a multiple of 0.5 s, exact in binary)."""


@dataclass(frozen=True, slots=True)
class Snap:
    """One job's state, as memory or the store holds it."""

    status: str
    attempts: int
    """Attempts started."""
    due: float | None
    """Clock time its next attempt may start (a waiting job), or None: at once."""
    runs: tuple[str | None, ...]
    """Each attempt's outcome, oldest first; None while it runs."""
    error: str | None = None
    """The error type a failed job ended with."""

    def start(self) -> Snap:
        """Its next attempt started."""
        return Snap("running", self.attempts + 1, None, (*self.runs, None), self.error)

    def run_ended(self, outcome: str) -> Snap:
        """Its running attempt ended so (its job not yet told)."""
        assert self.runs and self.runs[-1] is None, self
        return replace(self, runs=(*self.runs[:-1], outcome))

    def ended(self, status: str, error: str | None = None) -> Snap:
        """The job ended."""
        return Snap(status, self.attempts, None, self.runs, error)

    def retrying(self, due: float | None, error: str | None) -> Snap:
        """The job waits for its next attempt, due at ``due``."""
        return Snap("retrying", self.attempts, due, self.runs, error)


@dataclass
class ModelJob:
    """One acknowledged job, as the test knows it."""

    id: str
    order: int
    """Submission order among the acknowledged jobs (the scheduler's ``seq`` order)."""
    repo: str | None
    key: str | None
    max_retries: int
    backoff: float
    now: Snap
    """What memory holds."""
    disk: list[tuple[int, Snap]] = field(default_factory=list)
    """What the store may hold: the last state known committed, then the later
    ones, each with the stamp of the moment memory reached it."""

    def move(self, snap: Snap, stamp: int, *, committed: bool = False) -> None:
        """Memory moves to ``snap`` at ``stamp``; the store may follow later,
        or (``committed``) did."""
        self.now = snap
        self.disk = [(stamp, snap)] if committed else [*self.disk, (stamp, snap)]

    def confirm(self, stamp: int) -> None:
        """Everything memory held by ``stamp`` is committed: the store holds
        the state of then, or a later one."""
        keep = 0
        for i, (at, _) in enumerate(self.disk):
            if at <= stamp:
                keep = i
        del self.disk[:keep]

    @property
    def stored(self) -> list[Snap]:
        """The states the store may hold, oldest first."""
        return [snap for _, snap in self.disk]

    @property
    def unfinished(self) -> bool:
        return self.now.status not in TERMINAL

    @property
    def holds_key(self) -> bool:
        """Whether it holds its idempotency key (rule 10: unfinished or completed)."""
        return self.key is not None and self.now.status not in ("failed", "cancelled")


def recovered(job: ModelJob, stored: Snap, now: float, on_interrupt: str) -> Snap:  # noqa: PLR0911
    """What a start makes of ``job`` found in the store as ``stored``, at clock ``now``."""
    if stored.status in TERMINAL:
        # An open run of a finished job is closed with the job's outcome.
        runs = tuple(stored.status if o is None else o for o in stored.runs)
        return replace(stored, runs=runs)
    if stored.status != "running":
        return stored  # waiting: back as it was, with its due time
    last = stored.runs[-1] if stored.runs else None
    if last is None:
        stored = stored.run_ended("interrupted")  # cut short by the crash
        last = "interrupted"
    left = stored.attempts <= job.max_retries
    if last == "completed":
        return stored.ended("completed")  # its end was not recorded; its run was
    if last == "failed":
        if left:
            return stored.retrying(now + job.backoff if job.backoff > 0 else None, FAILURE)
        return stored.ended("failed", FAILURE)
    # interrupted, or cancelled as it ran without its job's end recorded
    if on_interrupt == "retry" and left:
        return stored.retrying(None, INTERRUPTED)
    return stored.ended("failed", INTERRUPTED)


def runnable(jobs: Iterable[ModelJob], now: float) -> list[ModelJob]:
    """The waiting jobs that must start now: due, and first of their repo.

    Every job has a worker free (the test keeps fewer unfinished jobs than
    workers), so each due job without a repo starts, and in each repo the
    first unfinished job by submission (ordered mode: rule 2; a job waiting
    for its delay or backoff holds its place) starts once due.
    """
    heads: dict[str, ModelJob] = {}
    waiting = []
    for job in sorted(jobs, key=lambda j: j.order):
        if not job.unfinished:
            continue
        if job.repo is not None:
            heads.setdefault(job.repo, job)
        if job.now.status in WAITING:
            waiting.append(job)
    return [
        job
        for job in waiting
        if (job.now.due is None or job.now.due <= now)
        and (job.repo is None or heads[job.repo] is job)
    ]


@dataclass(frozen=True, slots=True)
class StoredJob:
    """A job's row and runs, as a store file holds them."""

    id: str
    seq: int
    status: str
    attempts: int
    due_at: float | None
    """Wall-clock time."""
    error: str | None
    runs: tuple[tuple[int, str | None], ...]
    """(attempt, outcome) of each run, by attempt."""

    def matches(self, snap: Snap, wall_offset: float) -> bool:
        """Whether this is ``snap``, stored (``wall_offset``: wall minus clock time)."""
        if self.status != snap.status or self.attempts != snap.attempts:
            return False
        if self.runs != tuple(enumerate(snap.runs, 1)):
            return False
        if (self.due_at is None) != (snap.due is None):
            return False
        if snap.due is not None and abs(self.due_at - wall_offset - snap.due) > DUE_SLACK:  # type: ignore[operator]
            return False
        return snap.status != "failed" or self.error == snap.error

    def describe(self, wall_offset: float) -> str:
        due = None if self.due_at is None else self.due_at - wall_offset
        runs = [outcome for _, outcome in self.runs]
        return f"{self.status} attempts={self.attempts} due={due} runs={runs} error={self.error}"


def read_store(path: str) -> tuple[dict[str, StoredJob], dict[str, str]]:
    """Every job a store file holds, and its idempotency keys (key -> job id).

    Read-only, by SQL: what the next start will find, before it touches it.
    """
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        runs: dict[str, list[tuple[int, str | None]]] = {}
        for job_id, attempt, outcome in conn.execute(
            "SELECT job_id, attempt, outcome FROM runs ORDER BY job_id, attempt"
        ):
            runs.setdefault(job_id, []).append((attempt, outcome))
        jobs = {
            job_id: StoredJob(
                job_id, seq, status, attempts, due_at, error, tuple(runs.get(job_id, ()))
            )
            for job_id, seq, status, attempts, due_at, error in conn.execute(
                # The jobs schedules made are the schedules' business (their
                # counts), not the jobs the test acknowledged.
                "SELECT id, seq, status, attempts, due_at, error_type FROM jobs "
                "WHERE schedule_id IS NULL"
            )
        }
        keys = dict(conn.execute("SELECT key, job_id FROM idempotency_keys").fetchall())
    finally:
        conn.close()
    return jobs, keys


# --- schedules ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Trigger:
    """An ``every`` (with a start) or an ``at``, in clock time (docs/schedules.md)."""

    kind: str
    """``every`` or ``at``."""
    at: float
    """The start of an ``every``; the moment of an ``at``."""
    interval: float | None = None

    def first_fire(self, now: float) -> float:
        """The first fire of a schedule added (or given this trigger) at ``now``:
        an ``at``'s moment even if past; an ``every``'s first fire at or after now."""
        if self.kind == "at" or now <= self.at:
            return self.at
        assert self.interval is not None
        return self.at + math.ceil((now - self.at) / self.interval) * self.interval

    def next_after(self, t: float) -> float | None:
        """The first fire strictly after ``t``, or None."""
        if t < self.at:
            return self.at
        if self.kind == "at":
            return None
        assert self.interval is not None
        return self.at + (math.floor((t - self.at) / self.interval) + 1) * self.interval


@dataclass(frozen=True, slots=True)
class Definition:
    """What a schedule is declared with: its trigger, payload and misfire policy."""

    trigger: Trigger
    payload: str
    misfire: str


@dataclass(frozen=True, slots=True)
class SchedSnap:
    """One schedule's state, as memory or the store holds it (clock times)."""

    definition: Definition
    paused: bool
    next_fire: float | None
    fires: int = 0
    misfires: int = 0
    last_fire: float | None = None


@dataclass
class ModelSchedule:
    """One schedule id, as the test knows it: None while it does not exist (removed)."""

    id: str
    now: SchedSnap | None
    disk: list[tuple[int, SchedSnap | None]] = field(default_factory=list)
    """What the store may hold, as `ModelJob.disk`: schedule records are never
    waited for, so the store holds the state of some moment between the last
    commit the test knows of and now."""

    def move(self, snap: SchedSnap | None, stamp: int, *, committed: bool = False) -> None:
        self.now = snap
        self.disk = [(stamp, snap)] if committed else [*self.disk, (stamp, snap)]

    def confirm(self, stamp: int) -> None:
        keep = 0
        for i, (at, _) in enumerate(self.disk):
            if at <= stamp:
                keep = i
        del self.disk[:keep]

    @property
    def stored(self) -> list[SchedSnap | None]:
        return [snap for _, snap in self.disk]


def declared(snap: SchedSnap | None, definition: Definition, now: float) -> SchedSnap:
    """A schedule declared with ``definition`` at ``now`` over ``snap`` (ids and
    restarts): a new one; the same, if declared as it is; else an update that
    keeps its history and pause, and its fire times if the trigger is the same."""
    if snap is None:
        return SchedSnap(definition, False, definition.trigger.first_fire(now))
    if definition == snap.definition:
        return snap
    if definition.trigger == snap.definition.trigger:
        return replace(snap, definition=definition)
    return replace(snap, definition=definition, next_fire=definition.trigger.first_fire(now))


def resumed(snap: SchedSnap, now: float) -> SchedSnap:
    """Resumed at ``now``: fire times that passed while paused are not owed
    (an ``at`` keeps its time, and comes due at once)."""
    if not snap.paused:
        return snap
    next_fire = snap.next_fire
    if next_fire is not None and next_fire < now:
        later = snap.definition.trigger.next_after(now)
        if later is not None or snap.definition.trigger.kind != "at":
            next_fire = later
    return replace(snap, paused=False, next_fire=next_fire)


def driven(snap: SchedSnap, now: float, grace: float) -> SchedSnap:
    """``snap`` once every fire due by ``now`` was handled (see `fired`)."""
    steps = fired(snap, now, grace)
    return steps[-1] if steps else snap


def fired(snap: SchedSnap, now: float, grace: float) -> list[SchedSnap]:
    """The states ``snap`` goes through as every fire due by ``now`` is
    handled, by the misfire policy: one per fire handled (each is recorded
    on its own, so a crash may leave the store at any of them).

    A fire at most ``grace`` late runs as on time. The fires more than
    ``grace`` late are misfires, handled at once: the first fire after them,
    if due by now, runs and stands for them (both policies); else
    ``coalesce`` runs once, as the latest of them, and ``skip`` runs nothing.
    Misfires that get no run of their own are counted.
    """
    trigger = snap.definition.trigger
    steps = []
    while not snap.paused and snap.next_fire is not None and snap.next_fire <= now:
        due = snap.next_fire
        if now - due <= grace:
            snap = _ran(snap, due, trigger.next_after(due), 0)
            steps.append(snap)
            continue
        missed = [due]
        after = trigger.next_after(due)
        while after is not None and now - after > grace:
            missed.append(after)
            after = trigger.next_after(after)
        if after is not None and after <= now:
            snap = _ran(snap, after, trigger.next_after(after), len(missed))
        elif snap.definition.misfire == "coalesce":
            snap = _ran(snap, missed[-1], after, len(missed) - 1)
        else:
            snap = replace(snap, next_fire=after, misfires=snap.misfires + len(missed))
        steps.append(snap)
    return steps


def _ran(snap: SchedSnap, fire: float, next_fire: float | None, missed: int) -> SchedSnap:
    return replace(
        snap,
        next_fire=next_fire,
        fires=snap.fires + 1,
        misfires=snap.misfires + missed,
        last_fire=fire,
    )


@dataclass(frozen=True, slots=True)
class StoredSchedule:
    """A schedule's row, as a store file holds it."""

    id: str
    kind: str
    spec: dict[str, Any]
    payload: Any
    misfire: str
    paused: bool
    next_fire: float | None
    last_fire: float | None
    fires: int
    misfires: int
    skips: int

    def matches(self, snap: SchedSnap, wall_offset: float) -> bool:
        """Whether this is ``snap``, stored (``wall_offset``: wall minus clock time)."""
        trigger = snap.definition.trigger
        if trigger.kind == "at":
            spec_ok = self.spec == {"when": trigger.at + wall_offset}
        else:
            start, interval = self.spec.get("start"), self.spec.get("interval")
            spec_ok = start == trigger.at + wall_offset and interval == trigger.interval
        wall = (snap.next_fire, snap.last_fire)
        return (
            spec_ok
            and self.kind == trigger.kind
            and self.payload == snap.definition.payload
            and self.misfire == snap.definition.misfire
            and self.paused == snap.paused
            and (self.next_fire, self.last_fire) == tuple(_wall(t, wall_offset) for t in wall)
            and (self.fires, self.misfires, self.skips) == (snap.fires, snap.misfires, 0)
        )

    def describe(self, wall_offset: float) -> str:
        times = {
            name: None if t is None else t - wall_offset
            for name, t in (("next", self.next_fire), ("last", self.last_fire))
        }
        return (
            f"{self.kind} {self.spec} payload={self.payload!r} {self.misfire} "
            f"paused={self.paused} next={times['next']} last={times['last']} "
            f"fires={self.fires} misfires={self.misfires} skips={self.skips}"
        )


def _wall(t: float | None, offset: float) -> float | None:
    return None if t is None else t + offset


def read_schedules(path: str) -> dict[str, StoredSchedule]:
    """Every schedule a store file holds, by id (read-only, by SQL)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT id, kind, spec, payload, misfire, paused, next_fire, last_fire, "
            "fires, misfires, skips FROM schedules"
        ).fetchall()
    finally:
        conn.close()
    return {
        row[0]: StoredSchedule(
            row[0], row[1], json.loads(row[2]), json.loads(row[3]), row[4], bool(row[5]),
            *row[6:],
        )
        for row in rows
    }
