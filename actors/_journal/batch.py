"""`Batch`: the records of one transaction, folded per job, and the SQL that writes them.

The Journal folds each record into the batch as it comes: a job accepted
and updated within one batch is one ``INSERT`` with its latest values; an
attempt started and ended within it, one run row. So a small job costs two
statements (its row and its run) however many records it made, and rows
are written with ``executemany`` per statement.

Folding keeps the order that matters: each job's fields hold the latest
record's values, and a run's end never precedes its start. A schedule's
records each carry its whole row: the latest one wins, a removal included
(``schedules.py``).
"""

from __future__ import annotations

import functools
import json
import sqlite3
from itertools import chain
from json.encoder import encode_basestring
from typing import Any

from actors._journal.schedules import write_schedules
from actors._policy.retry import RetryPolicy
from actors.messages import (
    ErrorInfo,
    JobAccepted,
    JobEnded,
    JobReleased,
    JobRetrying,
    JSONValue,
    RunEnded,
    RunStarted,
    ScheduleRemoved,
    ScheduleSaved,
)

__all__ = ["JOB_COLUMNS", "Batch", "dump_json", "error_columns", "retry_json"]

JOB_COLUMNS = (
    "id",
    "seq",
    "handler",
    "queue",
    "repo",
    "priority",
    "status",
    "attempts",
    "max_retries",
    "timeout",
    "retry",
    "payload",
    "result",
    "error_type",
    "error_message",
    "error_traceback",
    "idempotency_key",
    "submitted_at",
    "started_at",
    "finished_at",
    "due_at",
    "retry_of",
    "schedule_id",
    "fire_time",
    "parent",
    "link",
    "trace",
)
_COL = {name: i for i, name in enumerate(JOB_COLUMNS)}
_INSERT_JOB = (
    f"INSERT OR REPLACE INTO jobs ({', '.join(JOB_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(JOB_COLUMNS))})"
)
_RUN_COLUMNS = (
    "job_id",
    "attempt",
    "started_at",
    "finished_at",
    "outcome",
    "error_type",
    "error_message",
    "error_traceback",
    "worker",
    "retryable",
)
_INSERT_RUN = (
    f"INSERT OR REPLACE INTO runs ({', '.join(_RUN_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(_RUN_COLUMNS))})"
)
_END_RUN = (
    "UPDATE runs SET finished_at = ?, outcome = ?, error_type = ?, error_message = ?, "
    "error_traceback = ?, retryable = ? WHERE job_id = ? AND attempt = ?"
)
_INSERT_KEY = "INSERT OR REPLACE INTO idempotency_keys (key, job_id) VALUES (?, ?)"
_DROP_KEY = "DELETE FROM idempotency_keys WHERE key = ? AND job_id = ?"


_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
"""``json.dumps`` with these options, without building an encoder per call."""


def dump_json(value: JSONValue) -> str:
    """A payload or result as stored: compact JSON text.

    The Journal calls this for every job's payload and result: the common
    small values skip the encoder (``json.dumps`` with options costs some
    microseconds even for ``None``) and come out as it writes them.
    """
    if value is None:
        return "null"
    if type(value) is int:  # not a bool, not a subclass: as the encoder writes it
        return int.__repr__(value)
    if type(value) is str:
        return encode_basestring(value)
    return _encode(value)


_last_retry: tuple[RetryPolicy | None, str] = (None, "")
"""The last policy `retry_json` wrote, and its text: most jobs share their
handler's policy object. Replaced whole, so any thread reads a matching pair."""


def retry_json(policy: RetryPolicy) -> str:
    """A `RetryPolicy` as stored (an infinite cap as null: JSON has no infinity)."""
    global _last_retry  # noqa: PLW0603 - a one-entry memo, see above
    last, text = _last_retry
    if policy is last:
        return text
    cap = None if policy.cap == float("inf") else policy.cap
    text = dump_json(
        {
            "kind": policy.kind,
            "base": policy.base,
            "cap": cap,
            "jitter": policy.jitter,
            "factor": policy.factor,
        }
    )
    _last_retry = (policy, text)
    return text


_ROWS_PER_INSERT = 128
"""Rows one ``INSERT`` statement takes at most (fewer if SQLite's limit on
parameters says so)."""


def _insert(conn: sqlite3.Connection, insert: str, width: int, rows: list[Any]) -> None:
    """Run ``insert`` (one row's ``INSERT ... VALUES (?, ...)``) for every row of
    ``rows`` (each ``width`` values), many rows per statement.

    Not ``executemany``: it runs one SQLite step per row, and each step lets the
    GIL go and takes it back. On a busy process taking it back waits for the
    other threads: 20,000 job rows took eight times as long next to one busy
    thread as alone (and the threads it waits for are the scheduler's own). One statement of
    128 rows is one step. Chunks are powers of two, so a handful of statement
    texts cover every batch (the connection caches them).
    """
    limit = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    size = _ROWS_PER_INSERT
    while size > 1 and size * width > limit:
        size //= 2
    done, count = 0, len(rows)
    while done < count:
        while size > count - done:
            size //= 2
        chunk = rows[done : done + size]
        conn.execute(_values(insert, width, size), list(chain.from_iterable(chunk)))
        done += size


@functools.cache
def _values(insert: str, width: int, rows: int) -> str:
    """``insert`` with ``rows`` rows of ``width`` parameters."""
    row = f"({', '.join('?' * width)})"
    head = insert[: insert.index(" VALUES ")]
    return f"{head} VALUES {', '.join([row] * rows)}"


def error_columns(error: ErrorInfo | None) -> tuple[str | None, str | None, str | None]:
    """An error as its three columns (type, message, traceback), all None for none."""
    if error is None:
        return None, None, None
    return error.type, error.message, error.traceback


class Batch:
    """The records of the next transaction, folded (see the module docstring).

    Owned by the Journal's thread: nothing else touches it.
    """

    def __init__(self) -> None:
        self.new: dict[str, list[Any]] = {}
        """Jobs accepted in this batch: their full rows, latest values."""
        self.waited: set[str] = set()
        """Of ``new``, the jobs whose submitter waits for this commit."""
        self.changed: dict[str, dict[str, Any]] = {}
        """Jobs accepted before this batch: the columns changed, latest values."""
        self.runs: dict[tuple[str, int], list[Any]] = {}
        """Attempts started in this batch: their full rows."""
        self.ended: dict[tuple[str, int], tuple[Any, ...]] = {}
        """Attempts started before this batch and ended in it."""
        self.keys: dict[str, str] = {}
        """Idempotency keys taken (key -> job id)."""
        self.dropped_keys: dict[str, str] = {}
        """Idempotency keys let go (key -> job id)."""
        self.schedules: dict[str, ScheduleSaved | None] = {}
        """Schedules changed: each one's latest row, or None once removed."""
        self.records = 0
        """Records folded in (each, one of the messages above)."""

    def __bool__(self) -> bool:
        return self.records > 0

    # --- folding ------------------------------------------------------------------

    def fold(self, record: Any) -> None:
        """Fold one record in (see the module docstring)."""
        self.records += 1
        kind = type(record)
        if kind is RunStarted:
            self._run_started(record)
        elif kind is RunEnded:
            self._run_ended(record)
        elif kind is JobAccepted:
            self._accepted(record)
        elif kind is JobEnded:
            self._ended(record)
        elif kind is JobRetrying:
            error_type, message, trace = error_columns(record.error)
            self._set(
                record.job_id,
                status="retrying",
                attempts=record.attempts,
                due_at=record.due_at,
                error_type=error_type,
                error_message=message,
                error_traceback=trace,
            )
        elif kind is JobReleased:
            self._set(record.job_id, status="pending", payload=dump_json(record.payload))
        elif kind is ScheduleSaved:
            self.schedules[record.id] = record
        elif kind is ScheduleRemoved:
            self.schedules[record.id] = None
        else:
            msg = f"the journal cannot record {record!r}"
            raise TypeError(msg)

    def _accepted(self, record: JobAccepted) -> None:
        job = record.job
        self.new[job.id] = [
            job.id,
            job.seq,
            job.handler,
            job.queue,
            job.repo,
            job.priority,
            record.status,
            0,
            job.max_retries,
            job.timeout,
            retry_json(job.retry),
            dump_json(job.payload),
            None,
            None,
            None,
            None,
            job.idempotency_key,
            job.submitted_at,
            None,
            None,
            record.due_at,
            record.retry_of,
            record.schedule_id,
            record.fire_time,
            record.parent,
            record.link,
            job.trace,
        ]
        if record.waited:
            self.waited.add(job.id)
        if job.idempotency_key is not None:
            self.keys[job.idempotency_key] = job.id
            self.dropped_keys.pop(job.idempotency_key, None)

    def _run_started(self, record: RunStarted) -> None:
        self.runs[record.job_id, record.attempt] = [
            record.job_id,
            record.attempt,
            record.started_at,
            None,
            None,
            None,
            None,
            None,
            record.worker,
            None,
        ]
        row = self.new.get(record.job_id)
        if row is not None:
            row[6] = "running"
            row[7] = record.attempt
            row[20] = None
            if row[18] is None:
                row[18] = record.started_at
        else:
            changes = self.changed.setdefault(record.job_id, {})
            changes["status"] = "running"
            changes["attempts"] = record.attempt
            changes["due_at"] = None
            changes.setdefault("first_start", record.started_at)

    def _run_ended(self, record: RunEnded) -> None:
        key = (record.job_id, record.attempt)
        error_type, message, trace = error_columns(record.error)
        run = self.runs.get(key)
        retryable = 1 if record.retryable else 0
        if run is not None:
            run[3:8] = [record.finished_at, record.outcome, error_type, message, trace]
            run[9] = retryable
        else:
            self.ended[key] = (
                record.finished_at,
                record.outcome,
                error_type,
                message,
                trace,
                retryable,
                record.job_id,
                record.attempt,
            )

    def _ended(self, record: JobEnded) -> None:
        error_type, message, trace = error_columns(record.error)
        self._set(
            record.job_id,
            status=record.status,
            result=dump_json(record.result) if record.status == "completed" else None,
            error_type=error_type,
            error_message=message,
            error_traceback=trace,
            finished_at=record.finished_at,
            due_at=None,
        )
        key = record.key
        if key is not None and record.status != "completed":
            if self.keys.get(key) == record.job_id:
                del self.keys[key]
            self.dropped_keys[key] = record.job_id

    def _set(self, job_id: str, **columns: Any) -> None:
        row = self.new.get(job_id)
        if row is not None:
            for name, value in columns.items():
                row[_COL[name]] = value
        else:
            self.changed.setdefault(job_id, {}).update(columns)

    def drop_waited(self) -> set[str]:
        """Take out the jobs whose submitters wait (a failed commit): they are
        not accepted, and the rest of the batch is kept to be written again."""
        dropped = self.waited
        for job_id in dropped:
            row = self.new.pop(job_id, None)
            key = row[_COL["idempotency_key"]] if row is not None else None
            if key is not None and self.keys.get(key) == job_id:
                del self.keys[key]
        self.waited = set()
        return dropped

    # --- writing ------------------------------------------------------------------

    def write(self, conn: Any) -> None:
        """Write the batch within the caller's transaction."""
        if self.new:
            _insert(conn, _INSERT_JOB, len(JOB_COLUMNS), list(self.new.values()))
        groups: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
        for job_id, changes in self.changed.items():
            names = tuple(sorted(changes))
            groups.setdefault(names, []).append((*(changes[n] for n in names), job_id))
        for names, rows in groups.items():
            sets = ", ".join(
                "started_at = coalesce(started_at, ?)" if n == "first_start" else f"{n} = ?"
                for n in names
            )
            conn.executemany(f"UPDATE jobs SET {sets} WHERE id = ?", rows)
        if self.runs:
            _insert(conn, _INSERT_RUN, len(_RUN_COLUMNS), list(self.runs.values()))
        if self.ended:
            conn.executemany(_END_RUN, self.ended.values())
        if self.keys:
            conn.executemany(_INSERT_KEY, self.keys.items())
        if self.dropped_keys:
            conn.executemany(_DROP_KEY, self.dropped_keys.items())
        if self.schedules:
            saved = [row for row in self.schedules.values() if row is not None]
            removed = [key for key, row in self.schedules.items() if row is None]
            write_schedules(conn, saved, removed)
