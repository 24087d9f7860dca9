"""The ``schedules`` table: a schedule's row written from its records, and read back.

The Dispatcher posts a `ScheduleSaved` (the whole row) each time a schedule
changes and a `ScheduleRemoved` when it goes; a `Batch` keeps the latest of
each schedule and writes it here (`write_schedules`): one ``INSERT OR
REPLACE`` or ``DELETE`` per schedule per transaction, however often it fired.

`load_schedules` reads them back, as the same records (`StoredSchedule`), for
the facade to restore as the scheduler starts (``actors/_facade/schedules.py``).
The trigger, payload and options are JSON text, readable with ``sqlite3``
(``json_extract(spec, '$.expr')``).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from typing import Any, TypeAlias

from actors._errors import StoreCorrupt
from actors._journal.store import translate
from actors.messages import ScheduleSaved

__all__ = ["SCHEDULE_COLUMNS", "StoredSchedule", "load_schedules", "write_schedules"]

StoredSchedule: TypeAlias = ScheduleSaved
"""A schedule as a store gives it back: the record it was last saved with."""

SCHEDULE_COLUMNS = (
    "id",
    "seq",
    "kind",
    "spec",
    "description",
    "handler",
    "payload",
    "options",
    "overlap",
    "misfire",
    "misfire_grace",
    "paused",
    "next_fire",
    "last_fire",
    "last_job",
    "fires",
    "misfires",
    "skips",
    "created_at",
)
"""The columns, in the order of `ScheduleSaved`'s fields."""

_UPSERT = (
    f"INSERT OR REPLACE INTO schedules ({', '.join(SCHEDULE_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(SCHEDULE_COLUMNS))})"
)
_DELETE = "DELETE FROM schedules WHERE id = ?"
_SELECT = f"SELECT {', '.join(SCHEDULE_COLUMNS)} FROM schedules ORDER BY seq, id"
_JSON_COLUMNS = ("spec", "payload", "options")


def _text(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _row(record: ScheduleSaved) -> tuple[Any, ...]:
    return (
        record.id,
        record.seq,
        record.kind,
        _text(record.spec),
        record.description,
        record.handler,
        _text(record.payload),
        _text(record.options),
        record.overlap,
        record.misfire,
        record.misfire_grace,
        int(record.paused),
        record.next_fire,
        record.last_fire,
        record.last_job,
        record.fires,
        record.misfires,
        record.skips,
        record.created_at,
    )


def write_schedules(
    conn: sqlite3.Connection, saved: Iterable[ScheduleSaved], removed: Iterable[str]
) -> None:
    """Write the latest row of each schedule saved, and delete those removed
    (within the caller's transaction)."""
    conn.executemany(_UPSERT, [_row(record) for record in saved])
    conn.executemany(_DELETE, [(schedule_id,) for schedule_id in removed])


def load_schedules(conn: sqlite3.Connection) -> list[StoredSchedule]:
    """Every schedule the store holds, oldest first, as last saved.

    Raises:
        StoreCorrupt: a row's trigger, payload or options is not the JSON
            postroom wrote (the store is damaged, or was edited by hand);
            the store is not written.
        StoreError: SQLite could not read it.
    """
    try:
        rows = conn.execute(_SELECT).fetchall()
    except sqlite3.Error as exc:
        raise translate(exc, "cannot read the schedules of", _path(conn)) from None
    stored: list[StoredSchedule] = []
    for row in rows:
        values = dict(zip(SCHEDULE_COLUMNS, row, strict=True))
        for name in _JSON_COLUMNS:
            try:
                values[name] = json.loads(values[name])
            except (TypeError, ValueError) as exc:
                msg = f"the schedule {values['id']!r} in the store has a malformed {name}: {exc}"
                raise StoreCorrupt(msg) from None
        if not isinstance(values["spec"], dict) or not isinstance(values["options"], dict):
            msg = f"the schedule {values['id']!r} in the store has a malformed definition"
            raise StoreCorrupt(msg)
        values["paused"] = bool(values["paused"])
        stored.append(ScheduleSaved(**values))
    return stored


def _path(conn: sqlite3.Connection) -> str:
    """The file ``conn`` reads, for an error's message."""
    try:
        for _seq, name, path in conn.execute("PRAGMA database_list"):
            if name == "main":
                return str(path)
    except sqlite3.Error:
        pass
    return "the store"
