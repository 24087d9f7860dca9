"""The store's tables, and the forward migrations that build them.

A store records its schema version in ``postroom_schema``. Opening a store
applies, in one transaction each, the migrations after its version; a store
whose version is newer than this postroom knows is refused (`StoreCorrupt`),
never written. A migration is never edited once released: a change of the
schema is a new migration at the end of `MIGRATIONS`, and
``tests/test_journal_schema.py`` opens a store made by the one before.

Times are wall-clock seconds since the epoch (REAL). Payloads, results and
options are JSON text, so ``sqlite3 jobs.db`` can read and query them
(``json_extract(payload, '$.sha')``).

The tables (version 6):

``jobs``
    One row per job, written when it is accepted and updated as it moves.
    ``seq`` is the submission order across restarts (a restart goes on
    after the largest); ``status`` one of `JobStatus`'s values; ``attempts``
    the attempts started; ``due_at`` when its next attempt may start (a
    delay or a backoff), None for at once. ``retry`` is the `RetryPolicy` as
    JSON. ``parent`` and ``link`` (``"child"`` or ``"followup"``) tie a
    child or follow-up to the job it belongs to; ``retry_of`` a manual
    retry to the job it re-runs. ``retried_as``, ``children`` and
    ``followups`` are read from those (the indexes serve them).
``runs``
    One row per attempt that started: its number, start and end, ``outcome``
    (a `RunOutcome`; NULL while it runs), the error, the worker, and
    ``retryable`` (version 5: 0 when its error was final, so a restart that
    finds its job's end missing fails the job; NULL: not known).
``idempotency_keys``
    The keys held (unique): a key stays with its job while the job is
    unfinished or completed, and is let go when it fails or is cancelled
    (rule 10, docs/guarantees.md), as in memory.
``schedules`` (version 2)
    One row per schedule: its definition (``kind``, ``spec`` as JSON), the
    job it makes (``handler``, ``payload``, ``options``), its policies, its
    state (``paused``, ``next_fire``, ``last_fire``) and its counts.

Version 3 adds the index ``jobs_failed_or_cancelled``: listing the failed
(or cancelled) jobs, newest first, walks those only instead of every job
(``reader.py`` says what each query costs). Version 4 adds
``schedules.last_job``: the id of the last job a schedule made, which its
overlap policy asks about after a restart. Version 6 adds ``jobs.trace``: the
submitter's trace context (`Job.trace`, W3C ``traceparent`` and ``tracestate``),
so an attempt after a restart is still a child of the span that submitted it
(``actors/_tracing.py``); NULL when the scheduler did not trace.
"""

from __future__ import annotations

import sqlite3

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "TERMINAL", "check_version", "migrate", "version_of"]

TERMINAL = ("completed", "failed", "cancelled")
"""The statuses of a finished job, as stored."""

_V1 = """
CREATE TABLE postroom_schema (version INTEGER NOT NULL);
INSERT INTO postroom_schema (version) VALUES (0);

CREATE TABLE jobs (
    id              TEXT PRIMARY KEY,
    seq             INTEGER NOT NULL,
    handler         TEXT NOT NULL,
    queue           TEXT NOT NULL,
    repo            TEXT,
    priority        INTEGER NOT NULL,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    max_retries     INTEGER NOT NULL,
    timeout         REAL,
    retry           TEXT NOT NULL,
    payload         TEXT NOT NULL,
    result          TEXT,
    error_type      TEXT,
    error_message   TEXT,
    error_traceback TEXT,
    idempotency_key TEXT,
    submitted_at    REAL NOT NULL,
    started_at      REAL,
    finished_at     REAL,
    due_at          REAL,
    retry_of        TEXT,
    schedule_id     TEXT,
    fire_time       REAL,
    parent          TEXT
);
CREATE INDEX jobs_unfinished ON jobs (seq)
    WHERE status NOT IN ('completed', 'failed', 'cancelled');
CREATE INDEX jobs_by_seq ON jobs (seq);
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX jobs_parent ON jobs (parent) WHERE parent IS NOT NULL;
CREATE INDEX jobs_retry_of ON jobs (retry_of) WHERE retry_of IS NOT NULL;

CREATE TABLE runs (
    job_id          TEXT NOT NULL,
    attempt         INTEGER NOT NULL,
    started_at      REAL NOT NULL,
    finished_at     REAL,
    outcome         TEXT,
    error_type      TEXT,
    error_message   TEXT,
    error_traceback TEXT,
    worker          TEXT,
    PRIMARY KEY (job_id, attempt)
) WITHOUT ROWID;

CREATE TABLE idempotency_keys (
    key     TEXT PRIMARY KEY,
    job_id  TEXT NOT NULL
) WITHOUT ROWID;
"""

_V2 = """
ALTER TABLE jobs ADD COLUMN link TEXT;
UPDATE jobs SET link = 'child' WHERE parent IS NOT NULL;

CREATE TABLE schedules (
    id            TEXT PRIMARY KEY,
    seq           INTEGER NOT NULL,
    kind          TEXT NOT NULL,
    spec          TEXT NOT NULL,
    description   TEXT NOT NULL,
    handler       TEXT NOT NULL,
    payload       TEXT NOT NULL,
    options       TEXT NOT NULL,
    overlap       TEXT NOT NULL,
    misfire       TEXT NOT NULL,
    misfire_grace REAL NOT NULL,
    paused        INTEGER NOT NULL DEFAULT 0,
    next_fire     REAL,
    last_fire     REAL,
    fires         INTEGER NOT NULL DEFAULT 0,
    misfires      INTEGER NOT NULL DEFAULT 0,
    skips         INTEGER NOT NULL DEFAULT 0,
    created_at    REAL NOT NULL
);
"""

_V3 = """
CREATE INDEX jobs_failed_or_cancelled ON jobs (status, seq)
    WHERE status IN ('failed', 'cancelled');
"""

_V4 = """
ALTER TABLE schedules ADD COLUMN last_job TEXT;
"""

_V5 = """
ALTER TABLE runs ADD COLUMN retryable INTEGER;
"""

_V6 = """
ALTER TABLE jobs ADD COLUMN trace TEXT;
"""

MIGRATIONS: tuple[str, ...] = (_V1, _V2, _V3, _V4, _V5, _V6)
"""Migration N (1-based) takes a store from version N-1 to N."""

SCHEMA_VERSION = len(MIGRATIONS)
"""The version this postroom writes."""


def version_of(conn: sqlite3.Connection) -> int:
    """The store's schema version: 0 for an empty database.

    Raises:
        sqlite3.DatabaseError: the file is not a database, or not a postroom
            store (it has tables, but not ours).
    """
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if not tables:
        return 0
    if "postroom_schema" not in tables:
        msg = f"not a postroom store: it holds other tables ({', '.join(sorted(tables)[:5])})"
        raise sqlite3.DatabaseError(msg)
    row = conn.execute("SELECT version FROM postroom_schema").fetchone()
    if row is None or not isinstance(row[0], int):
        msg = "not a postroom store: its schema version is missing"
        raise sqlite3.DatabaseError(msg)
    return int(row[0])


def check_version(conn: sqlite3.Connection, *, upto: int = SCHEMA_VERSION) -> int:
    """The store's version, once it is one `migrate` can bring to ``upto``.

    Reads only: a file that is refused here is left as it was.

    Raises:
        sqlite3.DatabaseError: not a postroom store (see `version_of`), or
            newer than ``upto``.
    """
    before = version_of(conn)
    if before > upto:
        msg = (
            f"the store's schema is version {before}, newer than this postroom's "
            f"{upto}: it was written by a newer postroom"
        )
        raise sqlite3.DatabaseError(msg)
    return before


def migrate(conn: sqlite3.Connection, *, upto: int = SCHEMA_VERSION) -> int:
    """Bring the store to version ``upto`` (the current one unless a test asks
    for an older store); the version it had before.

    Each migration runs in a transaction of its own with its version bump, so a
    crash mid-way leaves the store at the last version that completed. The
    connection must be in autocommit mode (``isolation_level=None``).

    Raises:
        sqlite3.DatabaseError: not a postroom store, or newer than ``upto``
            (see `version_of`); SQLite's own errors as they come.
    """
    before = check_version(conn, upto=upto)
    for version in range(before + 1, upto + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            if version_of(conn) >= version:  # another opener migrated it meanwhile
                conn.execute("ROLLBACK")
                continue
            for statement in _statements(MIGRATIONS[version - 1]):
                conn.execute(statement)
            conn.execute("UPDATE postroom_schema SET version = ?", (version,))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    return before


def _statements(script: str) -> list[str]:
    """The statements of a migration, one by one (``executescript`` would
    commit the transaction the migration runs in)."""
    statements: list[str] = []
    current = ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    if current.strip():
        statements.append(current.strip())
    return statements
