"""Queries of a store: jobs as `JobInfo`, runs as `RunInfo`, keys, and pruning.

Each function takes a ``sqlite3`` connection: the owner's (through
`Store.read` or `Store.transaction`, which turn SQLite's errors into
`StoreError`) or a reader's (`connect_readonly`, which does the same). None of
them commits: `prune` writes within the caller's transaction.

What a query costs (``EXPLAIN QUERY PLAN``, checked by
``tests/test_journal_reader.py``):

- `job_info`, `run_infos`, `key_holder`: primary-key lookups; a job's
  ``retried_as``, ``children`` and ``followups`` are index lookups
  (``jobs_retry_of``, ``jobs_parent``), a page's in one query per 500 jobs.
- `job_infos` walks the jobs newest first and stops at the end of the page:
  with no filter, or with ``status="completed"`` (most of a store), it reads
  about ``offset + limit`` rows. An unfinished status walks only the
  unfinished jobs (``jobs_unfinished``); ``failed`` and ``cancelled`` only
  those (``jobs_failed_or_cancelled``, migration 3). A filter on ``repo``,
  ``handler`` or ``queue`` reads rows until the page is full: cheap for a
  value common among recent jobs, and for a rare one about 0.5 µs per row
  read (some 50 ms per 100,000 stored jobs, measured). Those three have no
  index on purpose: an index on ``repo`` cost 30% of the store's write
  throughput (measured: 100,000 jobs in batches of 500), a price every job
  would pay for a query an operator makes now and then; retention
  (``keep_finished=``, `prune`) keeps the walk short.
- `unfinished_count` counts ``jobs_unfinished``; `prune` finds its jobs
  through ``jobs_finished`` and deletes their runs and keys by primary key.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from actors._errors import InvalidArgument, StoreCorrupt, StoreError
from actors._jobs.info import JobInfo
from actors._jobs.query import check_status
from actors._jobs.runs import RunInfo, RunOutcome
from actors._jobs.status import JobStatus
from actors._journal.schema import SCHEMA_VERSION, TERMINAL, version_of
from actors._policy.checks import check_int
from actors.messages import ErrorInfo, JSONValue

__all__ = [
    "READABLE_FROM",
    "check_readable",
    "error_of",
    "job_info",
    "job_infos",
    "key_holder",
    "listing",
    "prune",
    "run_infos",
    "unfinished_count",
]

READABLE_FROM = 2
"""The oldest schema version these queries read (``jobs.link`` came in 2)."""

_TERMINAL_SQL = f"({', '.join(repr(status) for status in TERMINAL)})"
"""``('completed', 'failed', 'cancelled')``, as the partial index ``jobs_unfinished``
names them (SQLite walks it for a query that repeats its condition)."""
_FAILED_OR_CANCELLED = ("failed", "cancelled")
_CHUNK = 500
"""Ids per ``IN (...)`` list: well under SQLite's limit on bound parameters."""

_JOB_SELECT = (
    "SELECT id, handler, status, repo, priority, attempts, max_retries, payload, result, "
    "error_type, error_message, error_traceback, idempotency_key, submitted_at, started_at, "
    "finished_at, queue, retry_of, schedule_id, fire_time, parent FROM jobs"
)
_RUN_SELECT = (
    "SELECT job_id, attempt, started_at, finished_at, outcome, error_type, error_message, "
    "error_traceback, worker FROM runs WHERE job_id = ? ORDER BY attempt"
)


def check_readable(conn: sqlite3.Connection, path: str) -> int:
    """The store's schema version, once it is one these queries can read.

    For a reader's connection (`connect_readonly`), which, unlike `Store.open`,
    neither checks nor migrates the file.

    Raises:
        StoreCorrupt: not a postroom store (an empty database, other tables),
            or written by a newer postroom.
        StoreError: a store too old to read without migrating it (opening it
            with a scheduler, or ``postroom prune``, migrates it).
        sqlite3.Error: the file is not a database, or cannot be read.
    """
    try:
        version = version_of(conn)
    except sqlite3.DatabaseError as exc:
        if "not a postroom store" not in str(exc):
            raise
        msg = f"{path} is {exc}"
        raise StoreCorrupt(msg) from None
    if version == 0:
        msg = f"{path} is not a postroom store: it holds no tables"
        raise StoreCorrupt(msg)
    if version > SCHEMA_VERSION:
        msg = (
            f"{path} has schema version {version}, newer than this postroom's "
            f"{SCHEMA_VERSION}: read it with the postroom that wrote it"
        )
        raise StoreCorrupt(msg)
    if version < READABLE_FROM:
        msg = (
            f"{path} has schema version {version}, older than this postroom reads "
            f"({READABLE_FROM}): open it once with a scheduler, or run postroom prune on it, "
            "to migrate it"
        )
        raise StoreError(msg)
    return version


# --- jobs --------------------------------------------------------------------------------


def job_info(conn: sqlite3.Connection, job_id: str) -> JobInfo | None:
    """The stored job with this id, or None.

    ``progress`` is None (it is not stored); ``retried_as``, ``children`` and
    ``followups`` are read from the jobs that name this one.

    Raises:
        StoreCorrupt: a stored value is not what postroom writes.
    """
    row = conn.execute(f"{_JOB_SELECT} WHERE id = ?", (job_id,)).fetchone()
    if row is None:
        return None
    return _infos(conn, [row])[0]


def listing(
    status: JobStatus | None, queue: str | None, repo: str | None, handler: str | None
) -> tuple[str, list[Any]]:
    """The SQL of `job_infos` for these filters, and its parameters (without
    the page's ``LIMIT ? OFFSET ?``, which end it)."""
    terms: list[str] = []
    params: list[Any] = []
    if status is not None:
        terms.append("status = ?")
        params.append(status.value)
        # A term that repeats what the status implies lets SQLite walk a
        # partial index: it uses one only when the query names its condition.
        if not status.finished:
            terms.append(f"status NOT IN {_TERMINAL_SQL}")
        elif status.value in _FAILED_OR_CANCELLED:
            terms.append("status IN ('failed', 'cancelled')")
    for column, value in (("queue", queue), ("repo", repo), ("handler", handler)):
        if value is not None:
            terms.append(f"{column} = ?")
            params.append(value)
    where = f" WHERE {' AND '.join(terms)}" if terms else ""
    return f"{_JOB_SELECT}{where} ORDER BY seq DESC LIMIT ? OFFSET ?", params


def job_infos(
    conn: sqlite3.Connection,
    *,
    status: JobStatus | str | None = None,
    queue: str | None = None,
    repo: str | None = None,
    handler: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[JobInfo]:
    """The stored jobs that match every filter given, newest (by submission) first:
    ``limit`` of them after skipping ``offset``, as `Scheduler.jobs` pages.

    A name that no job has matches nothing (a store does not know which
    handlers and queues a scheduler has).

    Raises:
        InvalidArgument: a filter of the wrong type, an unknown status, or
            ``limit`` / ``offset`` not an int >= 0.
        StoreCorrupt: a stored value is not what postroom writes.
    """
    checked = check_status(status)
    for name, value in (("queue", queue), ("repo", repo), ("handler", handler)):
        if value is not None and not isinstance(value, str):
            msg = f"{name} must be a str or None, not {value!r}"
            raise InvalidArgument(msg)
    check_int("limit", limit, 0)
    check_int("offset", offset, 0)
    if not limit:
        return []
    sql, params = listing(checked, queue, repo, handler)
    rows = conn.execute(sql, (*params, limit, offset)).fetchall()
    return _infos(conn, rows)


def _infos(conn: sqlite3.Connection, rows: Sequence[Sequence[Any]]) -> list[JobInfo]:
    """`JobInfo`s of job rows (``_JOB_SELECT``'s columns), with their links."""
    ids = [row[0] for row in rows]
    retried_as: dict[str, str] = {}
    children: dict[str, list[str]] = {}
    followups: dict[str, list[str]] = {}
    for chunk in _chunks(ids):
        marks = ", ".join("?" * len(chunk))
        for retry_of, job_id in conn.execute(
            f"SELECT retry_of, id FROM jobs WHERE retry_of IN ({marks}) ORDER BY seq", chunk
        ):
            retried_as.setdefault(retry_of, job_id)  # a job is retried at most once
        for parent, link, job_id in conn.execute(
            f"SELECT parent, link, id FROM jobs WHERE parent IN ({marks}) ORDER BY seq", chunk
        ):
            (followups if link == "followup" else children).setdefault(parent, []).append(job_id)
    return [
        _info(row, retried_as.get(row[0]), children.get(row[0], ()), followups.get(row[0], ()))
        for row in rows
    ]


def _info(
    row: Sequence[Any], retried_as: str | None, children: Iterable[str], followups: Iterable[str]
) -> JobInfo:
    (job_id, handler, status, repo, priority, attempts, max_retries, payload, result,
     error_type, error_message, error_traceback, key, submitted_at, started_at,
     finished_at, queue, retry_of, schedule_id, fire_time, parent) = row  # fmt: skip
    return JobInfo(
        id=job_id,
        handler=handler,
        status=_enum(JobStatus, status, job_id, "status"),
        repo=repo,
        priority=priority,
        attempts=attempts,
        max_retries=max_retries,
        payload=_json(payload, job_id, "payload"),
        result=None if result is None else _json(result, job_id, "result"),
        error=error_of(error_type, error_message, error_traceback),
        progress=None,
        idempotency_key=key,
        submitted_at=submitted_at,
        started_at=started_at,
        finished_at=finished_at,
        queue=queue,
        retry_of=retry_of,
        retried_as=retried_as,
        schedule_id=schedule_id,
        fire_time=fire_time,
        parent=parent,
        children=tuple(children),
        followups=tuple(followups),
    )


def unfinished_count(conn: sqlite3.Connection) -> int:
    """How many stored jobs are not finished (scheduled, pending, running, retrying)."""
    row = conn.execute(f"SELECT count(*) FROM jobs WHERE status NOT IN {_TERMINAL_SQL}").fetchone()
    return int(row[0])


# --- runs and keys -----------------------------------------------------------------------


def run_infos(conn: sqlite3.Connection, job_id: str) -> list[RunInfo]:
    """The job's attempts, oldest first ([] for a job that never started, or no such job).

    Raises:
        StoreCorrupt: a stored value is not what postroom writes.
    """
    return [
        RunInfo(
            job_id=run_id,
            attempt=attempt,
            started_at=started_at,
            finished_at=finished_at,
            outcome=None if outcome is None else _enum(RunOutcome, outcome, run_id, "outcome"),
            error=error_of(error_type, error_message, error_traceback),
            worker=worker,
        )
        for (run_id, attempt, started_at, finished_at, outcome, error_type, error_message,
             error_traceback, worker) in conn.execute(_RUN_SELECT, (job_id,))
    ]  # fmt: skip


def key_holder(conn: sqlite3.Connection, key: str) -> str | None:
    """The id of the job holding this idempotency key, or None."""
    row = conn.execute("SELECT job_id FROM idempotency_keys WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


# --- retention ---------------------------------------------------------------------------


def prune(
    conn: sqlite3.Connection,
    *,
    older_than: float | None = None,
    keep: int | None = None,
    now: float,
) -> int:
    """Delete finished jobs, with their runs and the idempotency keys they hold;
    how many jobs were deleted.

    A finished job goes when it finished more than ``older_than`` seconds
    before ``now`` (wall-clock seconds since the epoch), or when it is not
    among the ``keep`` that finished last: each limit given is kept. With
    neither, nothing goes. Unfinished jobs are never deleted. A key a job let
    go (it failed or was cancelled) and another job took is left to that job.

    Runs within the caller's transaction (``Store.transaction``), so a prune
    is all or nothing.

    Raises:
        InvalidArgument: ``older_than`` not a finite number of seconds >= 0, or
            ``keep`` not an int >= 0.
    """
    if older_than is not None and (
        not isinstance(older_than, int | float)
        or isinstance(older_than, bool)
        or not math.isfinite(older_than)
        or older_than < 0
    ):
        msg = f"older_than must be a finite number of seconds >= 0 or None, not {older_than!r}"
        raise InvalidArgument(msg)
    if keep is not None:
        check_int("keep", keep, 0)
    deleted = 0
    if older_than is not None:
        deleted += _delete(
            conn,
            f"SELECT id FROM jobs WHERE finished_at < ? AND status IN {_TERMINAL_SQL}",
            (now - older_than,),
        )
    if keep is not None:
        deleted += _delete(
            conn,
            f"SELECT id FROM jobs WHERE finished_at IS NOT NULL AND status IN {_TERMINAL_SQL} "
            "ORDER BY finished_at DESC LIMIT -1 OFFSET ?",
            (keep,),
        )
    return deleted


def _delete(conn: sqlite3.Connection, doomed: str, params: tuple[Any, ...]) -> int:
    """Delete the jobs ``doomed`` selects (by id), their runs and their keys."""
    # Runs and keys first: the jobs' rows are what finds them.
    conn.execute(f"DELETE FROM runs WHERE job_id IN ({doomed})", params)
    conn.execute(
        "DELETE FROM idempotency_keys WHERE (key, job_id) IN "
        f"(SELECT idempotency_key, id FROM jobs WHERE idempotency_key IS NOT NULL "
        f"AND id IN ({doomed}))",
        params,
    )
    return conn.execute(f"DELETE FROM jobs WHERE id IN ({doomed})", params).rowcount


# --- decoding ----------------------------------------------------------------------------


def _chunks(ids: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]


def error_of(kind: object, message: object, trace: object) -> ErrorInfo | None:
    """The `ErrorInfo` its three columns hold, or None."""
    if kind is None:
        return None
    return ErrorInfo(str(kind), str(message or ""), str(trace or ""))


def _json(text: str, job_id: str, column: str) -> JSONValue:
    try:
        value: JSONValue = json.loads(text)
    except (TypeError, ValueError, RecursionError):
        msg = f"job {job_id!r}: its stored {column} is not JSON text"
        raise StoreCorrupt(msg) from None
    return value


def _enum(kind: type[Any], value: object, job_id: str, column: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        msg = f"job {job_id!r}: its stored {column} {value!r} is not one postroom writes"
        raise StoreCorrupt(msg) from None
