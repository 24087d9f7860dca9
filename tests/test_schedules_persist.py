"""Schedules that persist: ids, the schedules' records, the store's rows, and restore.

Three layers, each against a real store file where one is involved:

- a schedule's record (`ScheduleSaved`) folded into a `Batch`, written through
  `Store` and read back by `load_schedules` is the same record, and rebuilds
  the same schedule, for each kind of trigger;
- ``id=`` in memory: a schedule added again under its id is updated (its
  history kept), and one declared again as it is changes nothing;
- end to end, ``Scheduler(store=...)``: a second scheduler on the same file
  restores the schedules the first one recorded, with their counts, pauses,
  removals and last jobs; fires missed meanwhile go through the misfire policy.

The `ManualClock` starts its wall time at 2026-01-01 00:00 UTC; a restart is a
second scheduler whose clock starts later (``ManualClock(wall=...)``).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from actors import (
    InvalidArgument,
    ManualClock,
    RetryPolicy,
    ScheduleNotFound,
    Scheduler,
)
from actors._errors import StoreCorrupt
from actors._journal.batch import Batch
from actors._journal.schedules import load_schedules
from actors._journal.schema import migrate
from actors._journal.store import Store, connect_readonly
from actors._schedules.book import ScheduleSpec, ScheduleState
from actors._schedules.stored import rebuild, same_definition, saved_record
from actors._schedules.triggers import AtTrigger, CronTrigger, IntervalTrigger, Trigger
from actors.messages import ScheduleRemoved, ScheduleSaved
from tests.helpers import WAIT, wait_until

START = datetime(2026, 1, 1, tzinfo=UTC)


def _at(**delta: float) -> float:
    return (START + timedelta(**delta)).timestamp()


# --- records, rows, rebuild ----------------------------------------------------------


def _state(kind: str, trigger: Trigger, now: float, **changes: Any) -> ScheduleState:
    spec = ScheduleSpec(
        kind,  # type: ignore[arg-type]
        f"{kind} schedule",
        trigger,
        "tick",
        {"n": [1, 2.5, None, True], "s": "ü"},
        {"repo": "r", "priority": 3, "retry": RetryPolicy.exponential(base=1, jitter=0.5)},
        "queue",
        "skip",
        float("inf"),
    )
    running = trigger.anchored(now)
    state = ScheduleState(f"id-{kind}", 7, spec, running, running.first_fire(now), now)
    for name, value in changes.items():
        setattr(state, name, value)
    return state


TRIGGERS: list[tuple[str, Trigger]] = [
    ("cron", CronTrigger("30 2 * * *", "Europe/Berlin")),
    ("cron", CronTrigger("*/10 * * * * *")),
    ("every", IntervalTrigger(90)),  # no start: anchored when added
    ("every", IntervalTrigger(0.5, _at(hours=1), _at(hours=2))),
    ("at", AtTrigger(_at(days=3))),
]


def _open(path: Path) -> Store:
    store = Store(str(path))
    store.open()
    return store


def _write(store: Store, *records: Any) -> None:
    batch = Batch()
    for record in records:
        batch.fold(record)
    store.transaction(batch.write, "cannot write to")


def _load(store: Store) -> list[ScheduleSaved]:
    return store.read(load_schedules, "cannot read")


@pytest.mark.parametrize(("kind", "trigger"), TRIGGERS, ids=lambda v: repr(v)[:40])
def test_a_schedule_round_trips_through_the_store(
    tmp_path: Path, kind: str, trigger: Trigger
) -> None:
    now = _at(minutes=5)
    state = _state(
        kind, trigger, now, fires=4, misfires=2, skips=1, last_fire=_at(minutes=4),
        last_job="job-9", paused=True,
    )  # fmt: skip
    record = saved_record(state)
    store = _open(tmp_path / "jobs.db")
    try:
        _write(store, record)
        assert _load(store) == [record]
    finally:
        store.close()
    store = _open(tmp_path / "jobs.db")  # and after the file was closed and opened again
    try:
        (row,) = _load(store)
    finally:
        store.close()
    assert row == record
    spec, running = rebuild(row)
    assert same_definition(spec, state.spec)
    assert spec.options == state.spec.options
    # The rebuilt trigger runs as the stored one did: the same fire times.
    t = now
    for _ in range(3):
        assert running.next_after(t) == state.trigger.next_after(t)
        t = running.next_after(t) or t


def test_an_every_without_start_keeps_its_anchor_not_the_restart_time(tmp_path: Path) -> None:
    state = _state("every", IntervalTrigger(90), _at(seconds=10))
    store = _open(tmp_path / "jobs.db")
    try:
        _write(store, saved_record(state))
        (row,) = _load(store)
    finally:
        store.close()
    assert row.spec == {"interval": 90.0, "start": None, "end": None, "anchor": _at(seconds=10)}
    spec, running = rebuild(row)
    assert spec.trigger == IntervalTrigger(90)  # as declared: a re-declaration compares equal
    assert running.next_after(_at(hours=1)) == _at(seconds=10 + 90 * 40)


def test_the_latest_record_of_a_schedule_wins_within_a_batch(tmp_path: Path) -> None:
    first = saved_record(_state("cron", CronTrigger("* * * * *"), _at()))
    later = replace(first, fires=3, next_fire=_at(minutes=4), last_fire=_at(minutes=3))
    gone = replace(first, id="gone")
    back = replace(first, id="back")
    store = _open(tmp_path / "jobs.db")
    try:
        _write(
            store, first, gone, later, ScheduleRemoved("gone"), ScheduleRemoved("back"), back
        )
        assert {r.id: r for r in _load(store)} == {"id-cron": later, "back": back}
        _write(store, ScheduleRemoved("id-cron"))  # a later batch deletes a stored row
        assert [r.id for r in _load(store)] == ["back"]
    finally:
        store.close()


def test_schedules_load_oldest_first(tmp_path: Path) -> None:
    base = saved_record(_state("cron", CronTrigger("* * * * *"), _at()))
    rows = [replace(base, id=name, seq=seq) for name, seq in (("c", 3), ("a", 1), ("b", 2))]
    store = _open(tmp_path / "jobs.db")
    try:
        _write(store, *rows)
        assert [r.id for r in _load(store)] == ["a", "b", "c"]
    finally:
        store.close()


def test_a_store_of_schema_2_gains_the_last_job_of_its_schedules(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, upto=2)
    conn.execute(
        "INSERT INTO schedules (id, seq, kind, spec, description, handler, payload, options,"
        " overlap, misfire, misfire_grace, next_fire, fires, created_at) VALUES"
        " ('old', 1, 'cron', '{\"expr\":\"* * * * *\",\"tz\":null}', '* * * * *', 'tick',"
        " 'null', '{}', 'skip', 'coalesce', 60.0, ?, 5, ?)",
        (_at(minutes=1), _at()),
    )
    conn.close()
    store = _open(path)
    try:
        (row,) = _load(store)
    finally:
        store.close()
    assert (row.id, row.fires, row.last_job, row.paused, row.spec["expr"]) == (
        "old", 5, None, False, "* * * * *"
    )  # fmt: skip
    spec, _running = rebuild(row)
    assert spec.trigger == CronTrigger("* * * * *")


def test_a_row_that_is_not_postroom_json_is_a_corrupt_store(tmp_path: Path) -> None:
    store = _open(tmp_path / "jobs.db")
    try:
        _write(store, saved_record(_state("cron", CronTrigger("* * * * *"), _at())))
        store.transaction(
            lambda c: c.execute("UPDATE schedules SET options = '{oops'"), "cannot write to"
        )
        with pytest.raises(StoreCorrupt, match=r"'id-cron'.*malformed options"):
            _load(store)
    finally:
        store.close()


# --- id= in memory -----------------------------------------------------------------


def _scheduler(
    clock: ManualClock | None = None, **options: Any
) -> tuple[Scheduler, ManualClock, list[Any]]:
    clock = clock or ManualClock()
    sched = Scheduler(clock=clock, **{"workers": 2, **options})
    seen: list[Any] = []
    lock = threading.Lock()

    @sched.handler("tick")
    def tick(ctx: Any, payload: Any) -> Any:
        with lock:
            seen.append(payload)
        return payload

    @sched.handler("tock")
    def tock(ctx: Any, payload: Any) -> Any:
        return payload

    return sched, clock, seen


def _jobs_of(sched: Scheduler, schedule_id: str) -> list[Any]:
    return sorted(
        (i for i in sched.jobs(limit=1000) if i.schedule_id == schedule_id),
        key=lambda i: i.fire_time or 0.0,
    )


def _fired(sched: Scheduler, schedule_id: str, count: int) -> None:
    """Wait until the schedule made ``count`` jobs, and each of them ended."""
    wait_until(lambda: sched.schedule(schedule_id).fires >= count, f"{count} fire(s)")
    wait_until(
        lambda: all(i.status.finished for i in _jobs_of(sched, schedule_id)), "its jobs to end"
    )


def test_a_schedule_takes_the_id_it_is_given() -> None:
    sched, _clock, _seen = _scheduler()
    with sched:
        handle = sched.cron("tick", "* * * * *", id="nightly")
        assert handle.id == "nightly"
        assert sched.schedule("nightly").id == "nightly"
        assert sched.every("tick", 60, id="often").id == "often"
        assert sched.at("tick", _at(days=1), id="once").id == "once"
        assert [s.id for s in sched.schedules()] == ["nightly", "often", "once"]


@pytest.mark.parametrize("bad", ["", 5, b"x"])
def test_a_bad_id_is_refused(bad: object) -> None:
    sched, _clock, _seen = _scheduler()
    with sched:
        with pytest.raises(InvalidArgument, match="id must be a non-empty str"):
            sched.cron("tick", "* * * * *", id=bad)  # type: ignore[arg-type]
        assert sched.schedules() == []


def test_a_drawn_id_never_takes_over_a_named_schedule() -> None:
    sched, _clock, _seen = _scheduler()
    with sched:
        sched.cron("tick", "* * * * *", "named", id="schedule-2")
        drawn = [sched.cron("tick", "* * * * *").id for _ in range(2)]
        assert drawn == ["schedule-3", "schedule-4"]
        assert sched.schedule("schedule-2").fires == 0
        assert len(sched.schedules()) == 3


def test_adding_an_id_again_updates_the_schedule_and_keeps_its_history() -> None:
    sched, clock, seen = _scheduler()
    with sched:
        handle = sched.cron("tick", "* * * * *", "old", id="report")
        for n in (1, 2):
            clock.advance(60)
            _fired(sched, "report", n)
        before = sched.schedule("report")
        handle.pause()
        again = sched.cron(
            "tock", "* * * * *", "new", id="report", overlap="allow", misfire_grace=5, priority=2
        )
        assert again.id == "report"
        info = sched.schedule("report")
        assert len(sched.schedules()) == 1
        # The history and the pause stay; the definition is the new one.
        assert (info.fires, info.last_fire, info.last_job, info.paused) == (
            2, before.last_fire, before.last_job, True
        )  # fmt: skip
        assert (info.handler, info.overlap, info.misfire_grace) == ("tock", "allow", 5.0)
        sched.resume("report")
        clock.advance(60)
        _fired(sched, "report", 3)
        last = sched.job(sched.schedule("report").last_job or "")
        assert (last.handler, last.payload, last.priority) == ("tock", "new", 2)
        assert seen == ["old", "old"]


def test_a_new_trigger_fires_at_its_own_times_from_now() -> None:
    sched, clock, _seen = _scheduler()
    with sched:
        sched.cron("tick", "0 * * * *", id="report")  # hourly
        clock.advance(60)
        info = sched.cron("tick", "*/5 * * * *", id="report").info()
        assert info.next_fire == START + timedelta(minutes=5)
        assert info.description == "*/5 * * * *"
        # An every without a start counts from when the schedule was first added.
        sched.every("tick", 3600, id="poll", start=_at(hours=5))
        clock.advance(60)  # now 00:02; it was added at 00:01
        assert sched.every("tick", 600, id="poll").info().next_fire == START + timedelta(
            minutes=11
        )


def test_declaring_a_schedule_again_as_it_is_changes_nothing() -> None:
    sched, clock, _seen = _scheduler()
    with sched:

        def declare() -> list[str]:
            return [
                sched.every("tick", 60, {"k": [1, 2]}, id="poll", max_retries=2).id,
                sched.cron("tick", "*/5 * * * *", id="cron", tz="Europe/Berlin").id,
                sched.at("tick", _at(minutes=-1), "late", id="once").id,
            ]

        assert declare() == ["poll", "cron", "once"]
        _fired(sched, "poll", 1)  # an every without a start fires at once
        _fired(sched, "once", 1)  # an at in the past runs now
        clock.advance(30)
        before = sched.schedules()
        assert declare() == ["poll", "cron", "once"]  # as at the service's next start
        # Nothing moved: no new fire, not re-anchored to now, the `at` does not run again.
        assert sched.schedules() == before
        assert [len(_jobs_of(sched, s)) for s in ("poll", "cron", "once")] == [1, 0, 1]
        clock.advance(30)
        _fired(sched, "poll", 2)
        assert [i.fire_time for i in _jobs_of(sched, "poll")] == [_at(), _at(minutes=1)]


def test_a_payload_that_differs_only_in_json_type_is_an_update() -> None:
    sched, _clock, _seen = _scheduler()
    with sched:
        sched.at("tick", _at(days=1), 1, id="once")
        sched.at("tick", _at(days=1), True, id="once")
        # The handler would see true, not 1: the schedule was updated (and its next
        # fire, which comes from the same trigger, kept).
        assert sched.schedule("once").next_fire == START + timedelta(days=1)
        assert sched.trigger("once") is not None
        _fired(sched, "once", 1)
        assert _jobs_of(sched, "once")[0].payload is True


# --- recorded by a Journal, restored by the next scheduler ----------------------------


@dataclass
class Run:
    """One scheduler's life on a store file (see `_journaled`)."""

    sched: Scheduler
    clock: ManualClock
    seen: list[Any]

    def flush(self) -> None:
        """Commit what the Journal holds, for a read of the file."""
        durable = self.sched._durable
        assert durable is not None
        durable.flush(WAIT)


@contextlib.contextmanager
def _journaled(
    path: Path, clock: ManualClock | None = None, *, handlers: tuple[str, ...] = ()
) -> Iterator[Run]:
    """A scheduler with its store in ``path``, started (restoring what the file
    holds) and shut down. ``handlers`` are registered too, before `start`, as
    a service does."""
    clock = clock or ManualClock()
    sched, _clock, seen = _scheduler(clock, store=str(path))
    for name in handlers:
        sched.register(name, lambda ctx, payload: None)
    with sched:
        yield Run(sched, clock, seen)


def _rows(path: Path) -> dict[str, ScheduleSaved]:
    with connect_readonly(str(path)) as conn:
        return {row.id: row for row in load_schedules(conn)}


def test_every_change_of_a_schedule_is_recorded(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    with _journaled(path) as run:
        sched, clock = run.sched, run.clock

        def rows() -> dict[str, ScheduleSaved]:
            run.flush()
            return _rows(path)

        sched.cron("tick", "* * * * *", "p", id="c")
        row = rows()["c"]
        assert (row.kind, row.spec, row.payload, row.fires) == (
            "cron", {"expr": "* * * * *", "tz": None}, "p", 0
        )  # fmt: skip
        assert row.next_fire == _at(minutes=1)
        clock.advance(60)
        _fired(sched, "c", 1)
        row = rows()["c"]
        assert (row.fires, row.last_fire, row.next_fire) == (1, _at(minutes=1), _at(minutes=2))
        assert row.last_job == sched.schedule("c").last_job
        sched.pause("c")
        assert rows()["c"].paused
        clock.advance(120)
        sched.resume("c")
        row = rows()["c"]
        assert (row.paused, row.next_fire) == (False, _at(minutes=4))
        sched.trigger("c")
        assert rows()["c"].fires == 2
        sched.cron("tick", "*/2 * * * *", "q", id="c", overlap="allow")
        row = rows()["c"]
        assert (row.spec["expr"], row.payload, row.overlap, row.fires) == (
            "*/2 * * * *", "q", "allow", 2
        )  # fmt: skip
        # A misfire is recorded too (the grace is 1 s; the fire is handled 5 s late).
        sched.every("tick", 600, id="e", start=_at(minutes=10), misfire="skip", misfire_grace=1)
        clock.advance(7 * 60 + 5)
        wait_until(lambda: sched.schedule("e").misfires == 1, "the misfire")
        assert (rows()["e"].misfires, rows()["e"].next_fire) == (1, _at(minutes=20))
        # And a skip (overlap "skip": the last fire's job is unfinished).
        release = threading.Event()
        sched.register("slow", lambda ctx, payload: release.wait(WAIT))
        sched.cron("slow", "* * * * *", id="s")
        clock.advance(60)
        wait_until(lambda: sched.schedule("s").fires == 1, "the slow fire")
        clock.advance(60)
        wait_until(lambda: sched.schedule("s").skips == 1, "the skip")
        assert (rows()["s"].fires, rows()["s"].skips) == (1, 1)
        release.set()
        sched.remove("c")
        assert "c" not in rows()


class _Recorder:
    """A journal link that keeps what it is posted (the Dispatcher's records)."""

    def __init__(self) -> None:
        self.records: list[Any] = []

    def schedule_saved(self, record: ScheduleSaved) -> None:
        self.records.append(record)

    def schedule_removed(self, schedule_id: str) -> None:
        self.records.append(ScheduleRemoved(schedule_id))


def test_a_declaration_identical_to_the_schedule_records_nothing() -> None:
    sched, _clock, _seen = _scheduler()
    recorder = _Recorder()
    sched._table.journal = recorder  # type: ignore[assignment]
    with sched:
        sched.cron("tick", "0 * * * *", {"a": 1, "b": 2}, id="c", tz="UTC", priority=3)
        assert [r.id for r in recorder.records] == ["c"]
        sched.cron("tick", "0 * * * *", {"b": 2, "a": 1}, id="c", tz="UTC", priority=3)
        sched.schedules()  # the Dispatcher handled both
        assert len(recorder.records) == 1
        sched.cron("tick", "0 * * * *", {"a": 1, "b": 2}, id="c", tz="UTC", priority=4)
        assert len(recorder.records) == 2
        assert recorder.records[-1].options == {"priority": 4}


def test_schedules_come_back_after_a_restart_with_their_history(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    with _journaled(path) as run:
        sched = run.sched
        sched.cron("tick", "* * * * *", "c", id="cron")
        sched.every("tick", 30, "e", id="poll")
        paused = sched.at("tick", _at(hours=2), "a", id="later")
        gone = sched.cron("tick", "0 0 * * *", id="gone")
        _fired(sched, "poll", 1)  # at once
        run.clock.advance(30)  # one step per fire: the overlap policy skips a fire
        _fired(sched, "poll", 2)  # while the last one's job is unfinished
        run.clock.advance(30)
        _fired(sched, "cron", 1)
        _fired(sched, "poll", 3)
        paused.pause()
        gone.remove()
        drawn = sched.cron("tick", "0 0 * * *").id
        before = {s.id: s for s in sched.schedules()}
    # The next start, just after the last one stopped: nothing was missed.
    with _journaled(path, ManualClock(wall=_at(seconds=61))) as run:
        sched = run.sched
        after = {s.id: s for s in sched.schedules()}
        assert list(after) == ["cron", "poll", "later", drawn]
        assert after == before
        # Ids drawn after a restart are not a stored one's.
        assert sched.cron("tick", "0 0 * * *").id not in (*after, "gone")
        run.clock.advance(29)  # 00:01:30: the interval's next fire, on its old grid
        _fired(sched, "poll", 4)
        assert run.seen == ["e"]
        assert sched.schedule("poll").last_fire == START + timedelta(seconds=90)


def test_declared_again_after_a_restart_a_schedule_is_not_duplicated(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"

    def declare(sched: Scheduler) -> None:
        sched.every("tick", 60, "e", id="poll")
        sched.at("tick", _at(seconds=10), "a", id="once")

    with _journaled(path) as run:
        declare(run.sched)
        _fired(run.sched, "poll", 1)
        run.clock.advance(10)
        _fired(run.sched, "once", 1)
        before = run.sched.schedules()
    with _journaled(path, ManualClock(wall=_at(seconds=20))) as run:
        declare(run.sched)
        assert run.sched.schedules() == before  # restored, then declared: no change at all
        assert run.seen == []  # the `at` does not run again, the interval is not re-anchored
    assert list(_rows(path)) == ["poll", "once"]


def test_fires_missed_while_down_go_through_the_misfire_policy(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    with _journaled(path) as run:
        for policy in ("coalesce", "skip"):
            run.sched.every(
                "tick", 60, policy, id=policy, start=_at(minutes=1), misfire=policy,
                misfire_grace=10,
            )  # fmt: skip
        run.sched.at("tick", _at(minutes=5), "at", id="at")  # due while down
        run.clock.advance(60)
        _fired(run.sched, "coalesce", 1)
        _fired(run.sched, "skip", 1)
    # Down for ten and a half minutes: the fires at 2, 3, ..., 11 min were missed
    # (each more than 10 s late by 11:30); the next is at 12 min.
    with _journaled(path, ManualClock(wall=_at(minutes=11, seconds=30))) as run:
        sched = run.sched
        wait_until(lambda: sched.schedule("skip").misfires == 10, "the skipped misfires")
        _fired(sched, "coalesce", 2)
        _fired(sched, "at", 1)
        coalesce, skip = sched.schedule("coalesce"), sched.schedule("skip")
        # coalesce: one run, standing for the latest missed fire; the 9 others counted.
        assert (coalesce.fires, coalesce.misfires) == (2, 9)
        assert coalesce.last_fire == START + timedelta(minutes=11)
        # skip: no run, all 10 counted.
        assert (skip.fires, skip.misfires) == (1, 10)
        assert coalesce.next_fire == skip.next_fire == START + timedelta(minutes=12)
        assert sorted(run.seen) == ["at", "coalesce"]
        assert sched.schedule("at").last_fire == START + timedelta(minutes=5)
    rows = _rows(path)
    assert (rows["coalesce"].fires, rows["coalesce"].misfires) == (2, 9)
    assert (rows["skip"].fires, rows["skip"].misfires) == (1, 10)
    assert (rows["at"].fires, rows["at"].next_fire) == (1, None)


def test_a_paused_schedule_stays_paused_and_a_removed_one_removed(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    with _journaled(path) as run:
        run.sched.cron("tick", "* * * * *", id="paused").pause()
        run.sched.cron("tick", "* * * * *", id="removed").remove()
    with _journaled(path, ManualClock(wall=_at(hours=1))) as run:
        sched = run.sched
        assert [s.id for s in sched.schedules()] == ["paused"]
        assert sched.schedule("paused").paused
        with pytest.raises(ScheduleNotFound):
            sched.schedule("removed")
        run.clock.advance(120)
        assert sched.schedule("paused").fires == 0
        assert run.seen == []
    assert list(_rows(path)) == ["paused"]


def test_a_schedule_whose_handler_is_gone_is_kept_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "jobs.db"
    with _journaled(path, handlers=("retired",)) as run:
        run.sched.cron("retired", "* * * * *", id="old-report")
        run.sched.cron("tick", "0 * * * *", id="kept-too")
        run.clock.advance(60)
        _fired(run.sched, "old-report", 1)
    stored = _rows(path)["old-report"]
    caplog.set_level(logging.WARNING, logger="postroom.schedules")
    with _journaled(path, ManualClock(wall=_at(minutes=30))) as run:
        sched = run.sched
        warnings = [r.getMessage() for r in caplog.records if r.name == "postroom.schedules"]
        assert any("old-report" in w and "'retired' is not registered" in w for w in warnings)
        assert [s.id for s in sched.schedules()] == ["kept-too"]
        with pytest.raises(ScheduleNotFound, match="kept in the store"):
            sched.schedule("old-report")
        # Its id is not drawn for another schedule, and its row is untouched.
        assert all(sched.cron("tick", "0 * * * *").id != "old-report" for _ in range(3))
    assert _rows(path)["old-report"] == stored
    # A later start that has the handler runs it again, with its history: the
    # fires at 2 to 29 min are misfires (coalesced), the one at 30 min is in the grace.
    later = ManualClock(wall=_at(minutes=30, seconds=30))
    with _journaled(path, later, handlers=("retired",)) as run:
        _fired(run.sched, "old-report", 2)
        info = run.sched.schedule("old-report")
        assert (info.fires, info.misfires) == (2, 28)
        assert info.last_fire == START + timedelta(minutes=30)


def test_the_overlap_policy_sees_the_last_job_a_restart_brought_back(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    clock = ManualClock()
    first, _clock, _seen = _scheduler(clock, store=str(path), workers=1)
    busy = threading.Event()

    def block(ctx: Any, payload: Any) -> None:
        busy.set()
        ctx.wait(WAIT)  # until the shutdown cancels it

    first.register("block", block)
    first.register("slow", lambda ctx, payload: None)
    with first:
        first.submit("block")
        assert busy.wait(WAIT)  # the one worker is taken: the fire's job waits
        first.cron("slow", "* * * * *", id="s")
        clock.advance(60)
        wait_until(lambda: first.schedule("s").fires == 1, "the fire")
        last_job = first.schedule("s").last_job
        assert last_job is not None
        first.shutdown(graceful=True, timeout=0.05)  # the waiting job stays stored
    # Restarted 5 s after the next fire time: that fire is due at once, while
    # the job of the last one, brought back, still runs.
    hold = threading.Event()
    running = threading.Event()

    def slow(ctx: Any, payload: Any) -> None:
        running.set()
        hold.wait(WAIT)

    later = ManualClock(wall=_at(minutes=2, seconds=5))
    second, _clock, _seen = _scheduler(later, store=str(path))
    second.register("block", lambda ctx, payload: None)
    second.register("slow", slow)
    with second:
        try:
            assert running.wait(WAIT)
            wait_until(lambda: second.schedule("s").skips == 1, "the skipped fire")
            info = second.schedule("s")
            assert (info.fires, info.last_job) == (1, last_job)
        finally:
            hold.set()


def test_a_schedule_that_cannot_run_here_is_kept_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "jobs.db"
    base = saved_record(_state("cron", CronTrigger("* * * * *"), _at()))
    zone = replace(base, id="zone", seq=1, spec={"expr": "* * * * *", "tz": "Mars/Olympus"})
    queue = replace(base, id="queue", seq=2, options={"queue": "gone"})
    fine = replace(base, id="fine", seq=3, options={})
    store = _open(path)
    try:
        _write(store, zone, queue, fine)
    finally:
        store.close()
    caplog.set_level(logging.WARNING, logger="postroom.schedules")
    with _journaled(path) as run:
        assert [s.id for s in run.sched.schedules()] == ["fine"]
    warnings = [r.getMessage() for r in caplog.records if r.name == "postroom.schedules"]
    assert any("zone" in w and "Mars/Olympus" in w for w in warnings)
    assert any("queue" in w and "'gone'" in w for w in warnings)
    rows = _rows(path)
    assert (rows["zone"], rows["queue"]) == (zone, queue)


def test_adding_the_id_of_a_kept_schedule_takes_its_history_over(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    with _journaled(path, handlers=("retired",)) as run:
        run.sched.every("retired", 60, id="job", start=_at(minutes=1))
        run.clock.advance(60)
        _fired(run.sched, "job", 1)
        run.sched.pause("job")
    with _journaled(path, ManualClock(wall=_at(minutes=5))) as run:
        info = run.sched.every("tick", 60, id="job", start=_at(minutes=1)).info()
        # The same trigger: its fire times and pause go on; the handler is the new one.
        assert (info.handler, info.fires, info.paused) == ("tick", 1, True)
        assert info.last_fire == START + timedelta(minutes=1)
        run.flush()
        assert _rows(path)["job"].handler == "tick"
        run.sched.resume("job")  # fire times that passed while paused are not owed
        assert run.sched.schedule("job").next_fire == START + timedelta(minutes=6)


def test_removing_a_kept_schedule_deletes_its_row(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    with _journaled(path, handlers=("retired",)) as run:
        run.sched.cron("retired", "* * * * *", id="old")
    with _journaled(path) as run:
        info = run.sched.remove("old")
        assert (info.id, info.handler, info.fires) == ("old", "retired", 0)
        with pytest.raises(ScheduleNotFound):
            run.sched.remove("old")
    assert _rows(path) == {}


def test_a_fire_the_shutdown_refused_stays_due_for_the_next_start() -> None:
    # The Dispatcher's driver alone: its submit says the scheduler stopped
    # accepting jobs, as it does when a fire comes in while a shutdown begins.
    from actors._dispatcher.schedules import ScheduleDriver
    from actors._errors import SchedulerClosed

    def closed(*_args: Any) -> str | None:
        raise SchedulerClosed("the scheduler is shut down")

    tokens = itertools.count(1)
    recorder = _Recorder()
    driver = ScheduleDriver(
        ManualClock(), set(), lambda *_: next(tokens), lambda _token: None, closed,
        lambda: recorder,  # type: ignore[arg-type,return-value]
    )  # fmt: skip
    spec = ScheduleSpec(
        "at", "at", AtTrigger(_at(minutes=-1)), "tick", None, {}, "allow", "coalesce", 60.0
    )
    driver.add(spec, "once")
    saved = len(recorder.records)
    driver.fire("once", 1)  # its first Timer entry
    info = driver.book.info(driver.book.get("once"))
    # Not fired, not counted, not moved on: the store still says it is due.
    assert (info.fires, info.next_fire) == (0, START - timedelta(minutes=1))
    assert len(recorder.records) == saved
