"""Schedules that persist: the schedules' records and the store's rows.

A schedule's record (`ScheduleSaved`) folded into a `Batch`, written through
`Store` and read back by `load_schedules` is the same record, and rebuilds
the same schedule, for each kind of trigger.
"""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from actors import RetryPolicy
from actors._errors import StoreCorrupt
from actors._journal.batch import Batch
from actors._journal.schedules import load_schedules
from actors._journal.schema import migrate
from actors._journal.store import Store
from actors._schedules.book import ScheduleSpec, ScheduleState
from actors._schedules.stored import rebuild, same_definition, saved_record
from actors._schedules.triggers import AtTrigger, CronTrigger, IntervalTrigger, Trigger
from actors.messages import ScheduleRemoved, ScheduleSaved

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
