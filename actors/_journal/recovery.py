"""What a start finds in the store, and what it makes of it (`recover`).

Run once, as `Scheduler.start` opens the store and before any job is
accepted, in one transaction:

1. An attempt still open (started, never ended) of an unfinished job was cut
   short by the end of the process: its run is closed as ``interrupted``.
   An open run of a finished job (it was cancelled or failed on another path
   as it ran) is closed with its job's outcome.
2. Every unfinished job then gets what its state asks for:

   - ``pending``, ``scheduled``, ``retrying``: it comes back as it was, with
     its due time (wall clock) and its place (``seq``);
   - ``running`` (its last attempt was interrupted, or ended without its job
     being told): by its handler's ``on_interrupt``, retried if it has
     retries left (at once: the backoff is for failures), else failed with
     ``postroom.JobInterrupted``; an attempt that ended failed is retried or
     failed as any failure is, by the error its run holds (the job's own
     error columns are still the previous attempt's);
   - its handler is not registered, or its queue is gone: failed, with a run
     that says so (``postroom.UnknownHandler``, ``postroom.UnknownQueue``),
     and logged.

3. The jobs to bring back are returned in submission order, with the
   largest ``seq`` the store holds, after which new jobs are numbered.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import sqlite3
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from actors._errors import StoreCorrupt
from actors._journal.batch import dump_json, error_columns
from actors._journal.reader import error_of
from actors._journal.schema import TERMINAL
from actors._log import journal_logger as logger
from actors._policy.handlers import HandlerSpec
from actors._policy.retry import RetryPolicy
from actors.messages import ErrorInfo, JSONValue

__all__ = ["Recovered", "Recovery", "recover"]

INTERRUPTED = ErrorInfo(
    "postroom.JobInterrupted",
    "the attempt was cut short: the process running it stopped before it ended",
)


@dataclass(frozen=True, slots=True)
class Recovered:
    """One unfinished job to bring back, as the store holds it."""

    id: str
    seq: int
    handler: str
    queue: str
    repo: str | None
    priority: int
    status: str
    """``pending``, ``scheduled`` or ``retrying``."""
    attempts: int
    """Attempts started before; the next is ``attempts + 1``."""
    max_retries: int
    timeout: float | None
    retry: RetryPolicy
    payload: JSONValue
    idempotency_key: str | None
    submitted_at: float
    started_at: float | None
    due_at: float | None
    """Wall-clock time its next attempt may start, or None for at once."""
    error: ErrorInfo | None
    retry_of: str | None
    schedule_id: str | None
    fire_time: float | None
    parent: str | None
    link: str | None
    trace: str | None = None
    """The submitter's trace context (`Job.trace`), if it was traced."""


@dataclass(slots=True)
class Recovery:
    """What `recover` found."""

    jobs: list[Recovered] = field(default_factory=list)
    """To bring back, in submission order."""
    max_seq: int = 0
    """The largest ``seq`` in the store."""
    interrupted: int = 0
    """Runs closed as interrupted."""
    failed: int = 0
    """Jobs failed by recovery (interrupted with no retry left, or unknown handler)."""
    parents: dict[str, tuple[str, JSONValue, ErrorInfo | None]] = field(default_factory=dict)
    """Finished parents of held follow-ups: id -> (status, result, error)."""


_UNFINISHED = """
SELECT id, seq, handler, queue, repo, priority, status, attempts, max_retries, timeout,
       retry, payload, idempotency_key, submitted_at, started_at, due_at,
       error_type, error_message, error_traceback, retry_of, schedule_id, fire_time,
       parent, link, trace
FROM jobs WHERE status NOT IN ('completed', 'failed', 'cancelled') ORDER BY seq
"""


def recover(
    conn: sqlite3.Connection,
    handlers: Mapping[str, HandlerSpec],
    queues: Collection[str],
    now: float,
) -> Recovery:
    """Settle what the last run left (see the module docstring), within the
    caller's transaction. ``now`` is the wall-clock time of this start."""
    recovery = Recovery()
    row = conn.execute("SELECT max(seq) FROM jobs").fetchone()
    recovery.max_seq = int(row[0]) if row and row[0] is not None else 0
    open_runs = {
        (job_id, attempt): status
        for job_id, attempt, status in conn.execute(
            "SELECT r.job_id, r.attempt, j.status FROM runs r JOIN jobs j ON j.id = r.job_id "
            "WHERE r.outcome IS NULL"
        )
    }
    for (job_id, attempt), status in open_runs.items():
        if status in TERMINAL:
            outcome = "completed" if status == "completed" else status
            _end_run(conn, job_id, attempt, now, outcome, None)
        else:
            _end_run(conn, job_id, attempt, now, "interrupted", INTERRUPTED)
            recovery.interrupted += 1
    # The last run of each running job: how it ended, and with which error
    # (the job's own error columns are its previous attempt's, if any).
    last_runs = {
        job_id: (outcome, error_of(error_type, message, trace), retryable != 0)
        for job_id, outcome, error_type, message, trace, retryable in conn.execute(
            "SELECT job_id, outcome, error_type, error_message, error_traceback, "
            "retryable FROM runs r "
            "WHERE attempt = (SELECT max(attempt) FROM runs WHERE job_id = r.job_id) AND "
            "job_id IN (SELECT id FROM jobs WHERE status = 'running')"
        )
    }
    for values in conn.execute(_UNFINISHED).fetchall():
        job = _recovered(values)
        spec = handlers.get(job.handler)
        if spec is None or job.queue not in queues:
            kind = "UnknownHandler" if spec is None else "UnknownQueue"
            what = (
                f"no handler named {job.handler!r} is registered"
                if spec is None
                else f"the scheduler has no queue named {job.queue!r}"
            )
            error = ErrorInfo(f"postroom.{kind}", f"recovered from the store, but {what}")
            logger.error("job %s cannot be recovered: %s; it is failed", job.id, what)
            _add_run(conn, job.id, job.attempts + 1, now, "failed", error)
            _end_job(conn, job, "failed", error, now, attempts=job.attempts + 1)
            recovery.failed += 1
            continue
        if job.status == "running":
            outcome, last_error, retryable = last_runs.get(job.id, ("interrupted", None, True))
            settled = _after_running(
                conn, job, outcome, last_error, spec, now, recovery, retryable=retryable
            )
            if settled is None:
                continue
            job = settled
        recovery.jobs.append(job)
    _find_parents(conn, recovery)
    return recovery


def _after_running(
    conn: sqlite3.Connection,
    job: Recovered,
    outcome: str,
    error: ErrorInfo | None,
    spec: HandlerSpec,
    now: float,
    recovery: Recovery,
    *,
    retryable: bool = True,
) -> Recovered | None:
    """A job whose last attempt ran when the process ended: its next step.
    ``outcome``, ``error`` and ``retryable`` are that attempt's, as its run
    holds them (``retryable`` False: its error was final, `Fatal` or ``throws=``)."""
    left = job.attempts <= job.max_retries
    if outcome == "completed":
        # Its run ended completed, its job's end was never written: completed,
        # but its result is lost (the run row does not hold it).
        logger.warning("job %s completed as the process ended; its result was not kept", job.id)
        _end_job(conn, job, "completed", None, now)
        return None
    if outcome in ("failed", "timed_out"):
        retry = left and retryable
        if not retry:
            _end_job(conn, job, "failed", error, now)
            recovery.failed += 1
            return None
        delay = job.retry.delay(job.attempts)
        due = now + delay if delay > 0 else None
        return _retrying(conn, job, due, error)
    # interrupted, or cancelled by a shutdown that could not wait for it
    if spec.on_interrupt == "fail" or not left:
        why = "its handler says on_interrupt='fail'" if left else "it has no retry left"
        error = ErrorInfo(INTERRUPTED.type, f"{INTERRUPTED.message}; failed: {why}")
        _end_job(conn, job, "failed", error, now)
        recovery.failed += 1
        return None
    return _retrying(conn, job, None, INTERRUPTED)


def _retrying(
    conn: sqlite3.Connection, job: Recovered, due: float | None, error: ErrorInfo | None
) -> Recovered:
    conn.execute(
        "UPDATE jobs SET status = 'retrying', due_at = ?, error_type = ?, error_message = ?, "
        "error_traceback = ? WHERE id = ?",
        (due, *error_columns(error), job.id),
    )
    return _replace(job, status="retrying", due_at=due, error=error)


def _replace(job: Recovered, **changes: object) -> Recovered:
    return dataclasses.replace(job, **changes)  # type: ignore[arg-type]


def _find_parents(conn: sqlite3.Connection, recovery: Recovery) -> None:
    """The finished parents of the follow-ups still held (their release or cancel)."""
    back = {job.id for job in recovery.jobs}
    wanted = {
        job.parent
        for job in recovery.jobs
        if job.parent is not None
        and job.link == "followup"
        and job.status == "scheduled"
        and job.parent not in back
    }
    for parent in wanted:
        row = conn.execute(
            "SELECT status, result, error_type, error_message, error_traceback "
            "FROM jobs WHERE id = ?",
            (parent,),
        ).fetchone()
        if row is None:
            recovery.parents[parent] = ("cancelled", None, None)  # pruned: never released
            continue
        status, result, error_type, message, trace = row
        error = error_of(error_type, message, trace)
        try:
            value = json.loads(result) if result is not None else None
        except ValueError:
            msg = f"job {parent!r} in the store holds a result that is not JSON"
            raise StoreCorrupt(msg) from None
        recovery.parents[parent] = (status, value, error)


def _recovered(values: tuple[object, ...]) -> Recovered:
    """A job row as `Recovered`.

    Raises:
        StoreCorrupt: a value is not what postroom writes (JSON that does not
            parse, a retry policy out of range...): the store was changed by
            hand, or damaged.
    """
    try:
        return _decoded(values)
    except (ValueError, TypeError, AttributeError) as exc:
        msg = f"job {values[0]!r} in the store holds a value postroom did not write: {exc}"
        raise StoreCorrupt(msg) from None


def _decoded(values: tuple[object, ...]) -> Recovered:
    (
        job_id, seq, handler, queue, repo, priority, status, attempts, max_retries, timeout,
        retry, payload, key, submitted_at, started_at, due_at,
        error_type, error_message, error_traceback, retry_of, schedule_id, fire_time,
        parent, link, trace,
    ) = values  # fmt: skip
    error = error_of(error_type, error_message, error_traceback)
    return Recovered(
        id=str(job_id),
        seq=int(seq),  # type: ignore[call-overload]
        handler=str(handler),
        queue=str(queue),
        repo=None if repo is None else str(repo),
        priority=int(priority),  # type: ignore[call-overload]
        status=str(status),
        attempts=int(attempts),  # type: ignore[call-overload]
        max_retries=int(max_retries),  # type: ignore[call-overload]
        timeout=None if timeout is None else float(timeout),  # type: ignore[arg-type]
        retry=_retry_policy(str(retry)),
        payload=json.loads(str(payload)),
        idempotency_key=None if key is None else str(key),
        submitted_at=float(submitted_at),  # type: ignore[arg-type]
        started_at=None if started_at is None else float(started_at),  # type: ignore[arg-type]
        due_at=None if due_at is None else float(due_at),  # type: ignore[arg-type]
        error=error,
        retry_of=None if retry_of is None else str(retry_of),
        schedule_id=None if schedule_id is None else str(schedule_id),
        fire_time=None if fire_time is None else float(fire_time),  # type: ignore[arg-type]
        parent=None if parent is None else str(parent),
        link=None if link is None else str(link),
        trace=None if trace is None else str(trace),
    )


@functools.lru_cache(maxsize=256)
def _retry_policy(text: str) -> RetryPolicy:
    # Kept by text: the jobs of a store share a few policies (their handlers'),
    # and a RetryPolicy is frozen, so they can share the object. Decoding and
    # checking one per job was over half of a recovery's time.
    raw = json.loads(text)
    cap = raw.get("cap")
    return RetryPolicy(
        kind=raw.get("kind", "fixed"),
        base=float(raw.get("base", 0.0)),
        cap=math.inf if cap is None else float(cap),
        jitter=float(raw.get("jitter", 0.0)),
        factor=float(raw.get("factor", 2.0)),
    )


def _end_run(
    conn: sqlite3.Connection,
    job_id: str,
    attempt: int,
    now: float,
    outcome: str,
    error: ErrorInfo | None,
) -> None:
    conn.execute(
        "UPDATE runs SET finished_at = ?, outcome = ?, error_type = coalesce(error_type, ?), "
        "error_message = coalesce(error_message, ?), "
        "error_traceback = coalesce(error_traceback, ?) WHERE job_id = ? AND attempt = ?",
        (now, outcome, *error_columns(error), job_id, attempt),
    )


def _add_run(
    conn: sqlite3.Connection,
    job_id: str,
    attempt: int,
    now: float,
    outcome: str,
    error: ErrorInfo | None,
) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO runs (job_id, attempt, started_at, finished_at, outcome, "
        "error_type, error_message, error_traceback, worker) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (job_id, attempt, now, now, outcome, *error_columns(error), "recovery"),
    )


def _end_job(
    conn: sqlite3.Connection,
    job: Recovered,
    status: str,
    error: ErrorInfo | None,
    now: float,
    *,
    attempts: int | None = None,
) -> None:
    conn.execute(
        "UPDATE jobs SET status = ?, finished_at = ?, due_at = NULL, attempts = ?, "
        "error_type = ?, error_message = ?, error_traceback = ?, "
        "result = CASE WHEN ? = 'completed' THEN ? ELSE NULL END WHERE id = ?",
        (
            status,
            now,
            job.attempts if attempts is None else attempts,
            *error_columns(error),
            status,
            dump_json(None),
            job.id,
        ),
    )
    if job.idempotency_key is not None and status != "completed":
        conn.execute(
            "DELETE FROM idempotency_keys WHERE key = ? AND job_id = ?",
            (job.idempotency_key, job.id),
        )


def find_key(conn: sqlite3.Connection, key: str) -> tuple[Recovered, str, JSONValue] | None:
    """The job that holds idempotency key ``key`` in the store: as a
    `Recovered` (for an unfinished one), its status, and its result."""
    row = conn.execute("SELECT job_id FROM idempotency_keys WHERE key = ?", (key,)).fetchone()
    if row is None:
        return None
    values = conn.execute(
        _UNFINISHED.replace(
            "WHERE status NOT IN ('completed', 'failed', 'cancelled') ORDER BY seq",
            "WHERE id = ?",
        ),
        (row[0],),
    ).fetchone()
    if values is None:
        return None
    job = _recovered(values)
    status_row = conn.execute("SELECT status, result FROM jobs WHERE id = ?", (job.id,)).fetchone()
    status, result = status_row
    return job, str(status), json.loads(result) if result is not None else None
