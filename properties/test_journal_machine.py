"""Rule 12 (docs/guarantees.md): a scheduler with a store restarts and brings back what it held.

Hypothesis drives a real scheduler with a store (``durability="commit"``) on
a `ManualClock`. Its one handler, ``work``, runs until the test decides how
each attempt ends: the machine submits jobs (with or without a repo, a delay,
an idempotency key, retries and a backoff), completes or fails running
attempts, cancels jobs (waiting, running or finished), moves the clock, reads
a job's runs, and **restarts**: either a clean shutdown, or a crash. The
model (``journal_model.py``) says after every step which attempts run: every
due job without a repo, and the first job of each repo once due; the machine
waits for those to start, and fails on any other start.

A crash is simulated in the process, and honestly: at the crash the store
stops taking writes (every commit from then on fails before ``COMMIT``), so
the file holds exactly what was committed by then, as after a ``kill -9``;
the scheduler, cut off from its store, is then stopped, its handlers let go.
What it does after the crash reaches memory only. Some crashes come right
after a flush; most come while an attempt's end, a retry or a job's end may
still be waiting for the Journal's next group commit (``batch_interval`` is
drawn per start: at once, or only with the next commit somebody waits for).
``crash_between`` crashes at the worst moment on purpose: once an attempt's
end is committed and before its job's end (or retry) is.

At every restart, before the new scheduler opens the file, the machine reads
it (SQL, read-only) and checks it against the model: every acknowledged job
is there, in one of the states it may hold (the last one known committed, or
a later one), in submission order, with its runs, and the idempotency keys
are the ones its jobs hold. The new scheduler must then bring back exactly
what `recovered` makes of the stored state: each unfinished job with its
status, attempts and due time (an attempt that was running when it crashed
gets an ``interrupted`` run and is retried or failed by ``on_interrupt``,
drawn per restart), each finished one findable with its final status through
`Scheduler.job`, every run through `Scheduler.runs`, repos in their order (the
next starts are checked as always), and every key still held dedupes a
resubmission. The teardown crashes the scheduler once more and checks the file.

Schedules too: the machine declares ``every`` and ``at`` schedules by ids
drawn from three (so a declaration is often an update, or changes nothing),
pauses, resumes and removes them; clock moves drive their fires, with a
``misfire_grace`` of 1 s so that moves and downtimes make misfires. Their
jobs (handler ``tick``, returning at once, overlap ``allow``) are left out
of the job model. A schedule's records are never waited for, so the store
holds each one as of some moment since the last commit the test knows of
(or not at all, once removed): at every restart the file's ``schedules``
table must hold one of those states (definition, pause, fire times and
counts), and the new scheduler must bring back exactly that state, then
handle the fires missed while it was down (restarts move the clock by a
drawn downtime) by the misfire policy: under ``coalesce`` one run for all of
them. ``sched.schedules()`` lists each id once; declaring them all again as
they are after a restart changes nothing.

Seeded bugs it catches (``test_journal_machine_catches_seeded_bug``):

- ``lost_row``: the Journal's batch drops the row of the second job accepted;
  its submitter is told it is committed all the same (rule 12).
- ``run_left_open``: recovery does not close the open runs of jobs that were
  running at a crash as ``interrupted`` (rule 12).
- ``pause_not_recorded``: pausing a schedule is not posted to the Journal;
  the store keeps it running (rule 12).
- ``counts_dropped``: a restored schedule forgets its fire and misfire counts
  (rule 12).
"""

from __future__ import annotations

import itertools
import os
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import replace
from datetime import datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from actors import (
    CancelResult,
    JobContext,
    JobNotFound,
    ManualClock,
    RetryPolicy,
    ScheduleNotFound,
    Scheduler,
    StoreError,
)
from properties.journal_model import (
    CANCELLED_ERROR,
    FAILURE,
    TERMINAL,
    WAITING,
    Definition,
    ModelJob,
    ModelSchedule,
    SchedSnap,
    Snap,
    Trigger,
    declared,
    fired,
    read_schedules,
    read_store,
    recovered,
    resumed,
    runnable,
)
from properties.profiles import examples
from properties.seeded import failure_of, patched
from tests.helpers import wait_until

WORKERS = 4
MAX_LIVE = WORKERS
"""Unfinished jobs at most: a submit beyond does nothing, so every job that
may start has a worker free and the model knows which jobs run."""
WAIT = 20.0
"""Real seconds any wait for something that must happen may take: a deadline,
not a pause (each wait ends as soon as its condition holds, in milliseconds
when nothing is wrong), so it is long enough for a machine loaded by a full
suite running beside other work."""
POLL = 0.002
"""Real seconds a running handler waits between two looks at the test's decision."""
REPOS = (None, None, "a", "b")
DELAYS = (0.0, 0.0, 1.0, 2.5)
BACKOFFS = (0.0, 1.5)
KEYS = (None, None, "k1", "k2")
BATCH_INTERVALS = (0.002, 60.0, 60.0)
"""The Journal's ``batch_interval``: records nobody waits for are committed at
once, or only with the next commit somebody waits for (a submit, an
attempt's start), so that a crash finds them in memory only."""
ADVANCES = (0.5, 1.0, 2.0, 3.0)
"""Clock moves (every time the test uses is a multiple of 0.5 s: exact in the
store's wall-clock seconds too, so a due time is never a rounding off)."""
DOWN = (0.0, 0.0, 2.0, 6.0)
"""Clock seconds a restart is down for: fires missed meanwhile are late."""
SCHEDULE_IDS = ("s1", "s2", "s3")
"""Few, so that a declaration often names a schedule that exists (an update,
or nothing at all) or one that was removed."""
KINDS = ("every", "every", "at")
INTERVALS = (1.0, 2.5)
FIRST = (-3.0, 0.0, 0.5, 2.0)
"""An ``every``'s start or an ``at``'s moment, in clock seconds from now."""
GRACE = 1.0
"""Every schedule's ``misfire_grace``: clock moves and downtimes of a few
seconds make misfires."""


def _frozen() -> None:
    raise sqlite3.OperationalError("simulated crash: the store takes no more writes")


class JournalMachine(RuleBasedStateMachine):
    """A scheduler with a store, restarted at random (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="postroom-journal-machine-")
        self.path = os.path.join(self.dir, "jobs.db")
        self.clock = ManualClock()
        self.jobs: dict[str, ModelJob] = {}
        self._stamps = itertools.count(1)
        self.stamp = 0
        """The last moment of the model (`ModelJob.move`)."""
        self.step_began = 0
        """`stamp` as the current step began: every record of what memory held
        by then has been posted to the Journal."""
        self._numbers = itertools.count()
        self._lock = threading.Lock()
        self._started = threading.Condition(self._lock)
        self.starts: dict[tuple[str, int], float] = {}
        """(job, attempt) -> clock time, for every attempt a handler began."""
        self.expected: set[tuple[str, int]] = set()
        """The attempts the model said must start, and that did."""
        self.decisions: dict[tuple[str, int], str] = {}
        """How the test told a running attempt to end: ``ok`` or ``fail``."""
        self.closing = threading.Event()
        """Set as the current scheduler is abandoned: its handlers return."""
        self.clean = True
        """No step failed: the teardown's check of the file means something."""
        self.sched: Scheduler | None = None
        self.schedules = {sid: ModelSchedule(sid, None, [(0, None)]) for sid in SCHEDULE_IDS}

    @initialize(batch_interval=st.sampled_from(BATCH_INTERVALS))
    def start(self, batch_interval: float) -> None:
        self.sched = self._start("retry", batch_interval)

    @property
    def live(self) -> Scheduler:
        assert self.sched is not None
        return self.sched

    def _start(self, on_interrupt: str, batch_interval: float) -> Scheduler:
        self.closing = threading.Event()
        sched = Scheduler(
            workers=WORKERS, clock=self.clock, store=self.path, batch_interval=batch_interval
        )
        sched.register("work", self._work, on_interrupt=on_interrupt)  # type: ignore[arg-type]
        sched.register("tick", lambda ctx, payload: payload)  # the schedules' jobs
        sched.start()
        return sched

    # --- the handler --------------------------------------------------------------------

    def _work(self, ctx: JobContext, payload: Any) -> Any:
        key = (ctx.job_id, ctx.attempt)
        closing = self.closing  # this scheduler's: a restart makes a new one
        with self._lock:
            self.starts[key] = self.clock.now()
            self._started.notify_all()
        while True:
            decision = self.decisions.get(key)
            if decision == "ok":
                return payload
            if decision == "fail":
                raise RuntimeError(f"failed by the test on attempt {ctx.attempt}")
            if closing.is_set() or ctx.wait(POLL):
                return None  # cancelled (or abandoned by a crash): this attempt is over

    # --- the model's bookkeeping --------------------------------------------------------

    def _move(self, job: ModelJob, snap: Snap, *, committed: bool = False) -> None:
        self.stamp = next(self._stamps)
        job.move(snap, self.stamp, committed=committed)

    def _move_schedule(
        self, schedule: ModelSchedule, snap: SchedSnap | None, *, committed: bool = False
    ) -> None:
        self.stamp = next(self._stamps)
        schedule.move(snap, self.stamp, committed=committed)

    def _commit_seen(self) -> None:
        """A commit was waited for in this step (a submit returned, an attempt
        started): it holds every record posted before the step began."""
        for job in self.jobs.values():
            job.confirm(self.step_began)
        for schedule in self.schedules.values():
            schedule.confirm(self.step_began)

    def _flushed(self) -> None:
        """Everything posted so far is committed (a flush)."""
        for job in self.jobs.values():
            job.confirm(self.stamp)
        for schedule in self.schedules.values():
            schedule.confirm(self.stamp)

    def _ordered(self) -> list[ModelJob]:
        return sorted(self.jobs.values(), key=lambda j: j.order)

    def _running(self) -> list[ModelJob]:
        return [j for j in self._ordered() if j.now.status == "running"]

    def _holder(self, key: str | None) -> ModelJob | None:
        if key is None:
            return None
        holders = [j for j in self._ordered() if j.key == key and j.holds_key]
        assert len(holders) <= 1, f"model: {key!r} held by {holders}"
        return holders[0] if holders else None

    # --- waiting for what must happen -----------------------------------------------------

    def _settle(self) -> None:
        """Wait for every attempt the model says must start, and check nothing else started.

        Then ask the Dispatcher for its figures: it has handled what it was
        sent before, so every record of what the test saw has been posted.
        """
        now = self.clock.now()
        for job in runnable(self.jobs.values(), now):
            key = (job.id, job.now.attempts + 1)
            with self._started:
                began = self._started.wait_for(lambda k=key: k in self.starts, WAIT)  # type: ignore[misc]
            if not began:
                where = f"first of repo {job.repo!r}" if job.repo else "no repo"
                msg = (
                    f"rule 12: {job.id} ({job.now}, {where}) is due at {now} "
                    f"but attempt {key[1]} never started"
                )
                raise AssertionError(msg)
            self.expected.add(key)
            self._commit_seen()  # the worker waited for the start's commit
            self._move(job, job.now.start(), committed=True)
        self.live.stats()
        self._check_starts()

    def _check_starts(self) -> None:
        with self._lock:
            unexpected = sorted(set(self.starts) - self.expected)
        if unexpected:
            known = {k: (self.jobs[k[0]].now if k[0] in self.jobs else None) for k in unexpected}
            msg = (
                "rules 2, 11, 12: attempts started that were not due or not first "
                f"of their repo: {known}"
            )
            raise AssertionError(msg)

    def _wait_status(self, job: ModelJob, status: str) -> None:
        sched = self.live
        try:
            wait_until(
                lambda: sched.job(job.id).status.value == status,
                f"{job.id} {status}",
                timeout=WAIT,
            )
        except AssertionError:
            msg = f"rule 5: {job.id} never became {status}: it is {sched.job(job.id).status}"
            raise AssertionError(msg) from None

    # --- rules ------------------------------------------------------------------------------

    @rule(
        repo=st.sampled_from(REPOS),
        delay=st.sampled_from(DELAYS),
        key=st.sampled_from(KEYS),
        max_retries=st.integers(0, 2),
        backoff=st.sampled_from(BACKOFFS),
    )
    def submit(
        self, repo: str | None, delay: float, key: str | None, max_retries: int, backoff: float
    ) -> None:
        self._begin()
        if sum(j.unfinished for j in self.jobs.values()) >= MAX_LIVE:
            return  # a no-op, not a precondition: hypothesis gives up on rules often disabled
        holder = self._holder(key)
        handle = self.live.submit(
            "work",
            {"n": next(self._numbers)},
            repo=repo,
            delay=delay,
            idempotency_key=key,
            max_retries=max_retries,
            retry=RetryPolicy.fixed(backoff),
        )
        if holder is not None:
            assert handle.id == holder.id, (
                f"rule 10: {key!r} is held by {holder.id} ({holder.now.status}), "
                f"but a resubmission got {handle.id}"
            )
            event("submit: deduped by its key")
        else:
            assert handle.id not in self.jobs, f"rule 10: a new job got {handle.id}'s handle"
            self._commit_seen()  # submit returned: its row is committed, and all before it
            due = self.clock.now() + delay if delay else None
            snap = Snap("scheduled" if delay else "pending", 0, due, ())
            job = ModelJob(handle.id, len(self.jobs), repo, key, max_retries, backoff, snap)
            self.jobs[job.id] = job
            self._move(job, snap, committed=True)
        self._settle()

    @rule(pick=st.integers(0, 1 << 16))
    def complete(self, pick: int) -> None:
        self._begin()
        running = self._running()
        if not running:
            return
        job = running[pick % len(running)]
        self.decisions[job.id, job.now.attempts] = "ok"
        self._wait_status(job, "completed")
        self._move(job, job.now.run_ended("completed"))
        self._move(job, job.now.ended("completed"))
        self._settle()

    @rule(pick=st.integers(0, 1 << 16))
    def fail(self, pick: int) -> None:
        self._begin()
        running = self._running()
        if not running:
            return
        job = running[pick % len(running)]
        self.decisions[job.id, job.now.attempts] = "fail"
        left = job.now.attempts <= job.max_retries
        if not left:
            self._wait_status(job, "failed")
            after = job.now.run_ended("failed").ended("failed", FAILURE)
        elif job.backoff > 0:
            self._wait_status(job, "retrying")
            after = job.now.run_ended("failed").retrying(self.clock.now() + job.backoff, FAILURE)
        else:
            # Retried at once: `_settle` waits for its next attempt.
            after = job.now.run_ended("failed").retrying(None, FAILURE)
        self._move(job, job.now.run_ended("failed"))
        self._move(job, after)
        self._settle()

    @rule(pick=st.integers(0, 1 << 16))
    def cancel(self, pick: int) -> None:
        self._begin()
        if not self.jobs:
            return
        ordered = self._ordered()
        job = ordered[pick % len(ordered)]
        was = job.now.status
        try:
            result = self.live.cancel(job.id)
        except JobNotFound:
            msg = f"rule 7: cancel({job.id}) of a {was} job said JobNotFound"
            raise AssertionError(msg) from None
        expected = (
            CancelResult.ALREADY_FINISHED
            if was in TERMINAL
            else CancelResult.SIGNALLED
            if was == "running"
            else CancelResult.CANCELLED
        )
        assert result is expected, f"rule 7: cancel({job.id}) of a {was} job said {result}"
        event(f"cancel: {result.value}")
        if was in TERMINAL:
            return
        self._wait_status(job, "cancelled")
        if was == "running":
            self._move(job, job.now.run_ended("cancelled"))
        self._move(job, job.now.ended("cancelled", CANCELLED_ERROR))
        self._settle()

    @rule(seconds=st.sampled_from(ADVANCES))
    def advance(self, seconds: float) -> None:
        self._begin()
        self.clock.advance(seconds)
        self._settle()
        self._drive_schedules()
        self._settle_schedules("")

    @rule(pick=st.integers(0, 1 << 16))
    def inspect(self, pick: int) -> None:
        self._begin()
        # A job and its runs as the scheduler answers now (runs() commits
        # what the Journal holds first).
        if not self.jobs:
            return
        ordered = self._ordered()
        self._check_live(ordered[pick % len(ordered)], "")
        self._flushed()

    # --- schedules -----------------------------------------------------------------------

    @rule(
        sid=st.sampled_from(SCHEDULE_IDS),
        kind=st.sampled_from(KINDS),
        first=st.sampled_from(FIRST),
        interval=st.sampled_from(INTERVALS),
        payload=st.sampled_from(["a", "b"]),
        misfire=st.sampled_from(["coalesce", "coalesce", "skip"]),
        same_trigger=st.booleans(),
    )
    def declare(
        self,
        sid: str,
        kind: str,
        first: float,
        interval: float,
        payload: str,
        misfire: str,
        same_trigger: bool,
    ) -> None:
        """Add a schedule by its id, or declare it again: as it is, with a new
        payload or policy (its fire times kept), or with a new trigger."""
        self._begin()
        schedule, now = self.schedules[sid], self.clock.now()
        if schedule.now is not None and same_trigger:
            trigger = schedule.now.definition.trigger
        else:
            trigger = Trigger(kind, now + first, interval if kind == "every" else None)
        definition = Definition(trigger, payload, misfire)
        after = declared(schedule.now, definition, now)
        event(
            "declare: new"
            if schedule.now is None
            else "declare: as it is"
            if after == schedule.now
            else "declare: an update"
        )
        sched, wall = self.live, trigger.at + self.clock.wall() - now
        if trigger.kind == "every":
            assert trigger.interval is not None
            sched.every(
                "tick", trigger.interval, payload, id=sid, start=wall, overlap="allow",
                misfire=misfire, misfire_grace=GRACE,  # type: ignore[arg-type]
            )  # fmt: skip
        else:
            sched.at("tick", wall, payload, id=sid, misfire=misfire, misfire_grace=GRACE)  # type: ignore[arg-type]
        if after != schedule.now:
            self._move_schedule(schedule, after)
            self._drive_schedules()
        self._settle_schedules("")

    @rule(sid=st.sampled_from(SCHEDULE_IDS), op=st.sampled_from(["pause", "resume", "remove"]))
    def manage(self, sid: str, op: str) -> None:
        """Pause, resume or remove a schedule (one that does not exist: `ScheduleNotFound`)."""
        self._begin()
        schedule, sched = self.schedules[sid], self.live
        try:
            getattr(sched, op)(sid)
        except ScheduleNotFound:
            assert schedule.now is None, f"{op}({sid}): ScheduleNotFound, but it is {schedule.now}"
            return
        assert schedule.now is not None, f"{op}({sid}) found a schedule the model has not"
        event(f"schedule: {op}")
        if op == "remove":
            self._move_schedule(schedule, None)
        elif op == "pause" and not schedule.now.paused:
            self._move_schedule(schedule, replace(schedule.now, paused=True))
        elif op == "resume" and schedule.now.paused:
            self._move_schedule(schedule, resumed(schedule.now, self.clock.now()))
            self._drive_schedules()
        self._settle_schedules("")

    @rule(
        crash=st.booleans(),
        flushed=st.sampled_from([False, False, True]),
        graceful=st.booleans(),
        on_interrupt=st.sampled_from(["retry", "retry", "fail"]),
        batch_interval=st.sampled_from(BATCH_INTERVALS),
        down=st.sampled_from(DOWN),
        redeclare=st.booleans(),
    )
    def restart(
        self,
        crash: bool,
        flushed: bool,
        graceful: bool,
        on_interrupt: str,
        batch_interval: float,
        down: float,
        redeclare: bool,
    ) -> None:
        self._begin()
        if crash:
            self._crash(flushed=flushed)
        else:
            self._shut_down(graceful=graceful)
        event(f"restart: {'crash' if crash else 'shutdown'}")
        self.clock.advance(down)
        self._come_back(on_interrupt, batch_interval, redeclare=redeclare)

    @rule(
        pick=st.integers(0, 1 << 16),
        how=st.sampled_from(["ok", "fail", "cancel"]),
        on_interrupt=st.sampled_from(["retry", "retry", "fail"]),
        batch_interval=st.sampled_from(BATCH_INTERVALS),
        down=st.sampled_from(DOWN),
    )
    def crash_between(
        self, pick: int, how: str, on_interrupt: str, batch_interval: float, down: float
    ) -> None:
        """The process dies once an attempt's end is committed, before what
        follows for its job (its end, or its retry) is: the store holds a
        running job whose last run ended."""
        self._begin()
        running = self._running()
        if not running:
            return
        job = running[pick % len(running)]
        sched = self.live
        durable = sched._durable  # the store's link and its fault hooks: nowhere public
        assert durable is not None
        cut = threading.Event()
        failed: list[StoreError] = []
        link, store = durable.link, durable.store

        def crash_before(record: Callable[..., None]) -> Callable[..., None]:
            def recorded(target: Any, *args: Any, **kwargs: Any) -> None:
                if target.id == job.id and not cut.is_set():
                    # On the thread about to record what follows the attempt:
                    # commit the attempt's end (and all before it), then no more.
                    try:
                        durable.flush(WAIT)
                    except StoreError as exc:
                        failed.append(exc)
                    store.before_commit = _frozen
                    cut.set()
                record(target, *args, **kwargs)

            return recorded

        link.ended = crash_before(link.ended)  # type: ignore[method-assign]
        link.retrying = crash_before(link.retrying)  # type: ignore[method-assign]
        if how == "cancel":
            sched.cancel(job.id)
        else:
            self.decisions[job.id, job.now.attempts] = how
        assert cut.wait(WAIT), f"rule 5: {job.id}'s attempt ended ({how}), its job never moved on"
        assert not failed, f"a flush with no fault failed: {failed}"
        self._flushed()
        outcome = {"ok": "completed", "fail": "failed", "cancel": "cancelled"}[how]
        self._move(job, job.now.run_ended(outcome), committed=True)
        # Its repo's next job may have started meanwhile, its start committed
        # or not (the only record another thread may post as the store freezes).
        if job.repo is not None and (how != "fail" or job.now.attempts > job.max_retries):
            was, job.now = job.now, job.now.ended(outcome)
            after = runnable(self.jobs.values(), self.clock.now())
            job.now = was
            for other in after:
                if other.repo == job.repo:
                    self._move(other, other.now.start())
        self._abandon()
        event(f"crash between: {how}")
        self.clock.advance(down)
        self._come_back(on_interrupt, batch_interval, redeclare=False)

    def _come_back(self, on_interrupt: str, batch_interval: float, *, redeclare: bool) -> None:
        """The scheduler stopped (or crashed): check the file, start a new one
        on it, and check what it brought back."""
        stored = self._check_store("restart")
        stored_schedules = self._check_schedule_store("restart")
        now = self.clock.now()
        for schedule in self.schedules.values():
            # Back as stored, then the fires missed while down (misfire policy).
            self._move_schedule(schedule, stored_schedules[schedule.id], committed=True)
        for job in self._ordered():
            back = recovered(job, stored[job.id], now, on_interrupt)
            if back != stored[job.id]:
                last = stored[job.id].runs[-1] if stored[job.id].runs else None
                event(f"recovered: {stored[job.id].status}, last run {last} -> {back.status}")
            self._move(job, back, committed=True)
        self.sched = self._start(on_interrupt, batch_interval)
        self._check_due(now)
        self._settle()
        for job in self._ordered():
            self._check_live(job, " after a restart")
        self._flushed()
        self._probe_keys()
        self._drive_schedules(" after a restart")
        self._settle_schedules(" after a restart")
        if redeclare:
            self._redeclare()

    def _begin(self) -> None:
        self.clean = False

    @invariant()
    def step_ends(self) -> None:
        self.clean = True
        self.step_began = self.stamp

    def teardown(self) -> None:
        try:
            if self.sched is not None and self.clean:
                # One more crash, and the file checked: a lost row shows
                # even in a run that never restarted.
                self._crash(flushed=False)
                self._check_store("teardown")
                self._check_schedule_store("teardown")
        finally:
            self._abandon()
            shutil.rmtree(self.dir, ignore_errors=True)

    # --- restarts -------------------------------------------------------------------------

    def _crash(self, *, flushed: bool) -> None:
        """The process dies: the file keeps what was committed by now; memory goes."""
        sched = self.live
        if flushed:
            sched.jobs(limit=0)  # answered from the store, once the Journal committed
            self._flushed()
        sched._durable.store.before_commit = _frozen  # type: ignore[union-attr]
        self._abandon()

    def _abandon(self) -> None:
        """Stop the scheduler cut off from its store. What it starts as it
        stops happened after the crash: no process would run it."""
        sched, self.sched = self.sched, None
        if sched is not None:
            self.closing.set()
            sched.shutdown(graceful=False, timeout=0.0)  # its threads are joined
            with self._lock:
                for key in set(self.starts) - self.expected:
                    del self.starts[key]

    def _shut_down(self, *, graceful: bool) -> None:
        """A clean shutdown: the attempts it cuts short are ``interrupted``,
        every other job stays as it was, and all of it is committed."""
        sched, self.sched = self.live, None
        sched.shutdown(graceful=graceful, timeout=0.0)
        for job in self._ordered():
            snap = job.now.run_ended("interrupted") if job.now.status == "running" else job.now
            self._move(job, snap, committed=True)
        for schedule in self.schedules.values():
            self._move_schedule(schedule, schedule.now, committed=True)

    def _check_store(self, when: str) -> dict[str, Snap]:
        """The file against the model; the state each job is stored in."""
        rows, keys = read_store(self.path)
        offset = self.clock.wall() - self.clock.now()
        problems = []
        found: dict[str, Snap] = {}
        for job in self._ordered():
            row = rows.get(job.id)
            if row is None:
                problems.append(f"rule 12: {job.id} ({job.now.status}) is not in the store")
                continue
            match = next((s for s in reversed(job.stored) if row.matches(s, offset)), None)
            if match is None:
                problems.append(
                    f"rule 12: {job.id} is stored as {row.describe(offset)}, "
                    f"not as one of {job.stored}"
                )
                continue
            found[job.id] = match
            behind = len(job.stored) - 1 - job.stored.index(match)
            if behind:
                event(f"{when}: a job stored {behind} state(s) behind memory")
        strangers = sorted(set(rows) - set(self.jobs))
        if strangers:
            problems.append(f"rule 12: the store holds jobs nobody acknowledged: {strangers}")
        by_seq = [i for i in sorted(rows, key=lambda i: rows[i].seq) if i in self.jobs]
        by_order = [job.id for job in self._ordered() if job.id in rows]
        if by_seq != by_order:
            problems.append(f"rule 2: stored in the order {by_seq}, submitted as {by_order}")
        held = {
            job.key: job.id
            for job in self._ordered()
            if job.key is not None
            and job.id in found
            and found[job.id].status not in ("failed", "cancelled")
        }
        if keys != held:
            problems.append(f"rule 10: the store holds the keys {keys}, its jobs hold {held}")
        if problems:
            raise AssertionError(f"{when}:\n" + "\n".join(problems))
        return found

    def _check_due(self, now: float) -> None:
        """Right after a start: each waiting job is due when it was (or now, if that has passed)."""
        active = self.live._table.active  # a due time is nowhere public
        for job in self._ordered():
            if job.now.status not in WAITING:
                continue
            state = active.get(job.id)
            assert state is not None, f"rule 12: {job.id} ({job.now}) was not brought back"
            due = job.now.due
            expected = None if due is None else max(due, now)
            got = state.job.not_before
            ok = got is None if expected is None else got is not None and abs(got - expected) < 1e-6
            assert ok, f"rule 12: {job.id} ({job.now}) came back due at {got}, not {expected}"

    def _check_live(self, job: ModelJob, when: str) -> None:
        """What the scheduler answers of ``job``: `job` and `runs`."""
        sched, snap, now = self.live, job.now, self.clock.now()
        try:
            info = sched.job(job.id)
        except JobNotFound:
            raise AssertionError(f"rule 12: {job.id} ({snap}) is not found{when}") from None
        status = info.status.value
        waiting_ok = status == "pending" and (snap.due is None or snap.due <= now)
        assert status == snap.status or (snap.status in WAITING and waiting_ok), (
            f"rule 12: {job.id} is {status}{when}, not {snap}"
        )
        assert info.attempts == snap.attempts, (
            f"rule 12: {job.id} has {info.attempts} attempts{when}, not {snap}"
        )
        if snap.status == "failed":
            error = info.error.type if info.error is not None else None
            assert error == snap.error, f"rule 12: {job.id} failed with {error}{when}, not {snap}"
        runs = sched.runs(job.id)
        got = [(r.attempt, None if r.outcome is None else r.outcome.value) for r in runs]
        assert got == list(enumerate(snap.runs, 1)), (
            f"rule 12: {job.id}'s runs are {got}{when}, not {snap}"
        )

    def _drive_schedules(self, when: str = "") -> None:
        """The model's schedules, once the fires due by now were handled."""
        now = self.clock.now()
        for schedule in self.schedules.values():
            if schedule.now is None:
                continue
            # Each fire handled is a record of its own: the store may hold any.
            for after in fired(schedule.now, now, GRACE):
                if after.misfires != schedule.now.misfires:
                    event(f"schedule{when}: misfires ({after.definition.misfire})")
                else:
                    event(f"schedule{when}: fires")
                self._move_schedule(schedule, after)

    def _expected_schedules(self) -> dict[str, tuple[Any, ...]]:
        return {
            s.id: (
                s.now.definition.trigger.kind,
                s.now.definition.misfire,
                s.now.paused,
                None if s.now.paused else s.now.next_fire,
                s.now.last_fire,
                s.now.fires,
                s.now.misfires,
                0,
            )
            for s in self.schedules.values()
            if s.now is not None
        }

    def _live_schedules(self) -> tuple[list[str], dict[str, tuple[Any, ...]]]:
        offset = self.clock.wall() - self.clock.now()

        def clock(t: datetime | None) -> float | None:
            return None if t is None else t.timestamp() - offset

        infos = self.live.schedules()
        live = {
            i.id: (
                i.kind,
                i.misfire,
                i.paused,
                clock(i.next_fire),
                clock(i.last_fire),
                i.fires,
                i.misfires,
                i.skips,
            )
            for i in infos
        }
        return [i.id for i in infos], live

    def _settle_schedules(self, when: str) -> None:
        """Wait for the schedules to be as the model says (their fires are
        handled on the Dispatcher as the Timer wakes it), and check it."""
        expected = self._expected_schedules()
        seen: list[Any] = []

        def matches() -> bool:
            ids, live = self._live_schedules()
            seen[:] = [ids, live]
            return len(ids) == len(live) and live == expected

        try:
            wait_until(matches, "the schedules", timeout=WAIT)
        except AssertionError:
            ids, live = seen
            rule = "rule 12" if when else "rule 11"
            msg = (
                f"{rule}: the schedules{when} are (kind, misfire, paused, next, last, fires, "
                f"misfires, skips)\n  {live} (ids listed: {ids}),\nnot\n  {expected}"
            )
            raise AssertionError(msg) from None

    def _redeclare(self) -> None:
        """A service declares its schedules again at its start: nothing changes,
        nothing is duplicated."""
        sched, offset = self.live, self.clock.wall() - self.clock.now()
        before = sched.schedules()
        for schedule in self.schedules.values():
            if schedule.now is None:
                continue
            d = schedule.now.definition
            if d.trigger.kind == "every":
                assert d.trigger.interval is not None
                sched.every(
                    "tick", d.trigger.interval, d.payload, id=schedule.id,
                    start=d.trigger.at + offset, overlap="allow", misfire=d.misfire,  # type: ignore[arg-type]
                    misfire_grace=GRACE,
                )  # fmt: skip
            else:
                sched.at(
                    "tick", d.trigger.at + offset, d.payload, id=schedule.id,
                    misfire=d.misfire, misfire_grace=GRACE,  # type: ignore[arg-type]
                )  # fmt: skip
        after = sched.schedules()
        assert after == before, (
            f"rule 12: declared again as they are after a restart, the schedules "
            f"changed:\n  {before}\nto\n  {after}"
        )
        event("restart: schedules declared again")

    def _check_schedule_store(self, when: str) -> dict[str, SchedSnap | None]:
        """The schedules table against the model; the state each id is stored in."""
        rows = read_schedules(self.path)
        offset = self.clock.wall() - self.clock.now()
        problems = []
        found: dict[str, SchedSnap | None] = {}
        for schedule in self.schedules.values():
            row = rows.get(schedule.id)
            candidates = schedule.stored
            match: list[SchedSnap | None] = [
                snap
                for snap in reversed(candidates)
                if (row is None and snap is None)
                or (row is not None and snap is not None and row.matches(snap, offset))
            ]
            if not match:
                stored = "absent" if row is None else row.describe(offset)
                problems.append(
                    f"rule 12: schedule {schedule.id} is stored as {stored}, "
                    f"not as one of {candidates}"
                )
                continue
            found[schedule.id] = match[0]
            if candidates.index(match[0]) < len(candidates) - 1:
                event(f"{when}: a schedule stored behind memory")
        strangers = sorted(set(rows) - set(self.schedules))
        if strangers:
            problems.append(f"rule 12: the store holds schedules nobody declared: {strangers}")
        if problems:
            raise AssertionError(f"{when}:\n" + "\n".join(problems))
        return found

    def _probe_keys(self) -> None:
        """Every key held before the restart still dedupes (rule 10)."""
        for key in sorted({j.key for j in self.jobs.values() if j.holds_key and j.key}):
            holder = self._holder(key)
            assert holder is not None
            handle = self.live.submit("work", {"probe": key}, idempotency_key=key)
            assert handle.id == holder.id, (
                f"rule 10: after a restart, {key!r} is held by {holder.id} "
                f"({holder.now.status}), but a resubmission got {handle.id}"
            )


JournalMachine.TestCase.settings = settings(
    max_examples=examples(150),
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestJournalMachine = JournalMachine.TestCase


# --- seeded bugs: the machine must catch each one ------------------------------------


def _lost_row() -> AbstractContextManager[None]:
    from actors._journal.batch import Batch
    from actors.messages import JobAccepted

    original = Batch._accepted

    def accepted(self: Batch, record: JobAccepted) -> None:
        if record.job.seq == 2:
            return  # BUG: the second job's row is never written; its submitter hears nothing
        original(self, record)

    return patched(Batch, "_accepted", accepted)


def _run_left_open() -> AbstractContextManager[None]:
    from actors._journal import recovery

    original = recovery._end_run

    def end_run(*args: Any) -> None:
        if args[4] == "interrupted":
            return  # BUG: the run a crash cut short stays open
        original(*args)

    return patched(recovery, "_end_run", end_run)


def _pause_not_recorded() -> AbstractContextManager[None]:
    from actors._dispatcher.schedules import ScheduleDriver
    from actors.messages import ScheduleCall

    original = ScheduleDriver.call

    def call(self: ScheduleDriver, message: ScheduleCall) -> Any:
        if message.op != "pause":
            return original(self, message)
        journal = self._journal
        self._journal = lambda: None  # BUG: a pause is not posted to the Journal
        try:
            return original(self, message)
        finally:
            self._journal = journal

    return patched(ScheduleDriver, "call", call)


def _counts_dropped() -> AbstractContextManager[None]:
    from actors._dispatcher import schedules

    original = schedules._restore_state

    def restore_state(schedule: Any, row: Any) -> None:
        original(schedule, row)
        schedule.fires = schedule.misfires = 0  # BUG: a restored schedule forgets its counts

    return patched(schedules, "_restore_state", restore_state)


SEEDED_BUGS: dict[str, Callable[[], AbstractContextManager[None]]] = {
    "lost_row": _lost_row,
    "run_left_open": _run_left_open,
    "pause_not_recorded": _pause_not_recorded,
    "counts_dropped": _counts_dropped,
}


@pytest.mark.parametrize("bug", sorted(SEEDED_BUGS))
def test_journal_machine_catches_seeded_bug(bug: str) -> None:
    """The machine is only worth something if it fails on a broken journal."""
    with SEEDED_BUGS[bug]():
        # 400 examples: an unrecorded pause shows only at a clean restart after
        # it (a crash may keep any state since the last known commit), and with
        # real threads whether a run reaches that sequence varies; 100 missed
        # it once in a full-suite run, though never alone.
        message = failure_of(JournalMachine, max_examples=400, steps=20)
    assert "rule 12" in message, message[:500]
