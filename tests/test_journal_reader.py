"""The store's queries (``actors/_journal/reader.py``): what `Batch` writes reads back
as the `JobInfo` and `RunInfo` the scheduler shows, filtered and paged as
`Scheduler.jobs` pages; links derived; retention that takes runs and keys with
their jobs and never an unfinished job; and every statement served by an index.

Every store is a real file in ``tmp_path``, written the way the Journal writes:
records folded into a `Batch`, committed by `Store.transaction`.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from actors import InvalidArgument, JobInfo, JobStatus, RetryPolicy
from actors._errors import StoreCorrupt, StoreError
from actors._jobs.runs import RunInfo, RunOutcome
from actors._journal import reader
from actors._journal.batch import Batch
from actors._journal.schema import SCHEMA_VERSION, migrate
from actors._journal.store import Store, connect_readonly
from actors.messages import (
    ErrorInfo,
    Job,
    JobAccepted,
    JobEnded,
    JobReleased,
    JobRetrying,
    RunEnded,
    RunStarted,
)

T0 = 1_767_225_600.0
"""Wall-clock seconds of the first submission (2026-01-01)."""

BOOM = ErrorInfo("tests.Boom", "boom", 'Traceback (most recent call last):\n  File "x"\nBoom\n')


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(str(tmp_path / "jobs.db"), busy_timeout=1.0)
    opened.open()
    yield opened
    opened.close()


def write(store: Store, *records: Any) -> None:
    """Fold the records into one batch and commit it, as the Journal does."""
    batch = Batch()
    for record in records:
        batch.fold(record)
    store.transaction(batch.write, "writing to")


def read(store: Store, work: Callable[[sqlite3.Connection], Any]) -> Any:
    return store.read(work, "reading")


def accepted(
    job: Job,
    *,
    status: str = "pending",
    due_at: float | None = None,
    retry_of: str | None = None,
    schedule_id: str | None = None,
    fire_time: float | None = None,
    parent: str | None = None,
    link: str | None = None,
) -> JobAccepted:
    return JobAccepted(job, status, due_at, retry_of, schedule_id, fire_time, parent, link, False)


def job(job_id: str, seq: int, **fields: Any) -> Job:
    fields.setdefault("handler", "build")
    fields.setdefault("payload", {"n": seq})
    fields.setdefault("submitted_at", T0 + seq)
    return Job(job_id, seq=seq, **fields)


# --- every field, as the scheduler shows it ------------------------------------------------


def test_a_job_written_over_several_batches_reads_back_field_by_field(store: Store) -> None:
    build = job(
        "a",
        1,
        payload={"sha": "abc", "steps": [1, 2.5, None, True], "note": "héllo"},
        priority=2,
        repo="repo-1",
        max_retries=3,
        timeout=10.0,
        retry=RetryPolicy.exponential(base=1, cap=60),
        idempotency_key="repo-1-abc",
        queue="high",
    )
    write(store, accepted(build))
    write(store, RunStarted("a", 1, T0 + 2, "worker-1", False))
    write(
        store,
        RunEnded("a", 1, T0 + 3, "failed", BOOM),
        JobRetrying("a", 1, T0 + 5, BOOM),
    )
    retrying = read(store, lambda c: reader.job_info(c, "a"))
    assert retrying == JobInfo(
        id="a",
        handler="build",
        status=JobStatus.RETRYING,
        repo="repo-1",
        priority=2,
        attempts=1,
        max_retries=3,
        payload={"sha": "abc", "steps": [1, 2.5, None, True], "note": "héllo"},
        result=None,
        error=BOOM,
        progress=None,
        idempotency_key="repo-1-abc",
        submitted_at=T0 + 1,
        started_at=T0 + 2,
        finished_at=None,
        queue="high",
    )
    assert type(retrying.status) is JobStatus
    # The second attempt starts and completes in one batch with the job's end.
    write(
        store,
        RunStarted("a", 2, T0 + 6, "worker-2", False),
        RunEnded("a", 2, T0 + 7.5, "completed", None),
        JobEnded("a", "completed", {"ok": True, "files": ["a.o"]}, None, T0 + 7.5, "repo-1-abc"),
    )
    done = read(store, lambda c: reader.job_info(c, "a"))
    assert done == JobInfo(
        id="a",
        handler="build",
        status=JobStatus.COMPLETED,
        repo="repo-1",
        priority=2,
        attempts=2,
        max_retries=3,
        payload={"sha": "abc", "steps": [1, 2.5, None, True], "note": "héllo"},
        result={"ok": True, "files": ["a.o"]},
        error=None,
        progress=None,
        idempotency_key="repo-1-abc",
        submitted_at=T0 + 1,
        started_at=T0 + 2,  # the first attempt's start, kept
        finished_at=T0 + 7.5,
        queue="high",
    )
    assert read(store, lambda c: reader.run_infos(c, "a")) == [
        RunInfo("a", 1, T0 + 2, T0 + 3, RunOutcome.FAILED, BOOM, "worker-1"),
        RunInfo("a", 2, T0 + 6, T0 + 7.5, RunOutcome.COMPLETED, None, "worker-2"),
    ]
    runs = read(store, lambda c: reader.run_infos(c, "a"))
    assert all(type(run.outcome) is RunOutcome for run in runs)
    assert read(store, lambda c: reader.key_holder(c, "repo-1-abc")) == "a"


def test_a_job_accepted_started_and_ended_in_one_batch(store: Store) -> None:
    write(
        store,
        accepted(job("b", 1, payload="plain text", handler="lint")),
        RunStarted("b", 1, T0 + 1.25, "worker-3", False),
        RunEnded("b", 1, T0 + 1.5, "completed", None),
        JobEnded("b", "completed", None, None, T0 + 1.5, None),
    )
    assert read(store, lambda c: reader.job_info(c, "b")) == JobInfo(
        id="b",
        handler="lint",
        status=JobStatus.COMPLETED,
        repo=None,
        priority=5,
        attempts=1,
        max_retries=0,
        payload="plain text",
        result=None,  # the handler returned None
        error=None,
        progress=None,
        idempotency_key=None,
        submitted_at=T0 + 1,
        started_at=T0 + 1.25,
        finished_at=T0 + 1.5,
    )


def test_a_running_attempt_has_no_outcome_yet(store: Store) -> None:
    write(store, accepted(job("r", 1)), RunStarted("r", 1, T0 + 2, "worker-1", False))
    info = read(store, lambda c: reader.job_info(c, "r"))
    assert info.status is JobStatus.RUNNING
    assert (info.attempts, info.started_at, info.finished_at) == (1, T0 + 2, None)
    assert read(store, lambda c: reader.run_infos(c, "r")) == [
        RunInfo("r", 1, T0 + 2, None, None, None, "worker-1")
    ]


def test_each_run_outcome_and_error_reads_back(store: Store) -> None:
    timed_out = ErrorInfo("postroom.JobTimedOut", "ran past 1s", "")
    cancelled = ErrorInfo("postroom.JobCancelled", "cancelled", "")
    lost = ErrorInfo("postroom.Interrupted", "the process stopped", "")
    write(
        store,
        accepted(job("x", 1, max_retries=4)),
        RunStarted("x", 1, T0 + 1, "worker-1", False),
        RunEnded("x", 1, T0 + 2, "timed_out", timed_out),
        RunStarted("x", 2, T0 + 3, "worker-1", False),
        RunEnded("x", 2, T0 + 4, "interrupted", lost),
        RunStarted("x", 3, T0 + 5, "worker-2", False),
        RunEnded("x", 3, T0 + 6, "cancelled", cancelled),
        JobEnded("x", "cancelled", None, cancelled, T0 + 6, None),
    )
    runs = read(store, lambda c: reader.run_infos(c, "x"))
    assert [(r.attempt, r.outcome, r.error) for r in runs] == [
        (1, RunOutcome.TIMED_OUT, timed_out),
        (2, RunOutcome.INTERRUPTED, lost),
        (3, RunOutcome.CANCELLED, cancelled),
    ]
    info = read(store, lambda c: reader.job_info(c, "x"))
    assert (info.status, info.error, info.attempts) == (JobStatus.CANCELLED, cancelled, 3)


def test_a_scheduled_job_of_a_schedule_reads_back(store: Store) -> None:
    write(
        store,
        accepted(
            job("s", 1, handler="rollup"),
            status="scheduled",
            due_at=T0 + 60,
            schedule_id="nightly",
            fire_time=T0 + 60,
        ),
    )
    info = read(store, lambda c: reader.job_info(c, "s"))
    assert (info.status, info.schedule_id, info.fire_time) == (
        JobStatus.SCHEDULED,
        "nightly",
        T0 + 60,
    )
    assert read(store, lambda c: reader.run_infos(c, "s")) == []


def test_unknown_ids_and_keys_read_as_none(store: Store) -> None:
    write(store, accepted(job("a", 1, idempotency_key="k")))
    assert read(store, lambda c: reader.job_info(c, "nope")) is None
    assert read(store, lambda c: reader.run_infos(c, "nope")) == []
    assert read(store, lambda c: reader.key_holder(c, "other")) is None


def test_a_key_let_go_and_taken_again_names_its_new_holder(store: Store) -> None:
    write(store, accepted(job("a", 1, idempotency_key="k")))
    write(store, JobEnded("a", "failed", None, BOOM, T0 + 2, "k"))
    assert read(store, lambda c: reader.key_holder(c, "k")) is None
    write(store, accepted(job("b", 2, idempotency_key="k")))
    assert read(store, lambda c: reader.key_holder(c, "k")) == "b"


# --- links ------------------------------------------------------------------------------


def test_links_are_derived_from_the_jobs_that_name_a_job(store: Store) -> None:
    write(
        store,
        accepted(job("p", 1)),
        accepted(job("c1", 2), parent="p", link="child"),
        accepted(job("f1", 3), status="scheduled", parent="p", link="followup"),
        accepted(job("c2", 4), parent="p", link="child"),
        accepted(job("f2", 5), status="scheduled", parent="p", link="followup"),
        accepted(job("other", 6)),
        accepted(job("c3", 7), parent="other", link="child"),
    )
    write(store, JobReleased("f1", {"from": "p"}))
    write(store, JobEnded("other", "failed", None, BOOM, T0 + 8, None))
    write(store, accepted(job("again", 8), retry_of="other"))
    parent = read(store, lambda c: reader.job_info(c, "p"))
    assert (parent.children, parent.followups, parent.parent) == (("c1", "c2"), ("f1", "f2"), None)
    assert parent.retried_as is None
    child = read(store, lambda c: reader.job_info(c, "c2"))
    assert (child.parent, child.children, child.followups) == ("p", (), ())
    released = read(store, lambda c: reader.job_info(c, "f1"))
    assert (released.status, released.payload, released.parent) == (
        JobStatus.PENDING,
        {"from": "p"},
        "p",
    )
    other = read(store, lambda c: reader.job_info(c, "other"))
    assert (other.retried_as, other.children, other.followups) == ("again", ("c3",), ())
    assert read(store, lambda c: reader.job_info(c, "again")).retry_of == "other"
    # A page derives the same links as a single job does.
    page = {info.id: info for info in read(store, reader.job_infos)}
    for job_id in ("p", "c2", "f1", "other", "again"):
        assert page[job_id] == read(store, lambda c, i=job_id: reader.job_info(c, i))


def test_a_page_bigger_than_one_chunk_keeps_every_link(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reader, "_CHUNK", 3)  # links are read per chunk of ids
    records: list[Any] = []
    for n in range(8):
        records.append(accepted(job(f"p{n}", 2 * n + 1)))
        records.append(accepted(job(f"c{n}", 2 * n + 2), parent=f"p{n}", link="child"))
    write(store, *records)
    page = read(store, reader.job_infos)
    assert len(page) == 16
    assert {info.id: info.children for info in page if info.id.startswith("p")} == {
        f"p{n}": (f"c{n}",) for n in range(8)
    }


# --- filters and pages --------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    id: str
    seq: int
    status: str
    queue: str
    repo: str | None
    handler: str


STATUSES = ["scheduled", "pending", "running", "retrying", "completed", "failed", "cancelled"]


def _fill(store: Store) -> list[Row]:
    """40 jobs over every status, 3 queues, 3 repos (and none), 2 handlers; the model."""
    rows: list[Row] = []
    records: list[Any] = []
    for seq in range(1, 41):
        row = Row(
            id=f"j{seq:02d}",
            seq=seq,
            status=STATUSES[(seq * 3) % 7],
            queue=("default", "high", "slow")[seq % 3],
            repo=(None, "repo-a", "repo-b", "repo-c")[seq % 4],
            handler=("build", "deploy")[(seq // 5) % 2],
        )
        rows.append(row)
        spec = job(row.id, seq, handler=row.handler, repo=row.repo, queue=row.queue)
        start = "scheduled" if row.status == "scheduled" else "pending"
        records.append(accepted(spec, status=start))
        if row.status in ("running", "retrying", "completed", "failed"):
            records.append(RunStarted(row.id, 1, T0 + seq + 0.5, "worker-1", False))
        if row.status == "retrying":
            records.append(RunEnded(row.id, 1, T0 + seq + 0.7, "failed", BOOM))
            records.append(JobRetrying(row.id, 1, T0 + 100, BOOM))
        if row.status in ("completed", "failed", "cancelled"):
            outcome = {"completed": "completed", "failed": "failed", "cancelled": "cancelled"}
            error = None if row.status == "completed" else BOOM
            if row.status != "cancelled":
                records.append(RunEnded(row.id, 1, T0 + seq + 0.7, outcome[row.status], error))
            records.append(JobEnded(row.id, row.status, None, error, T0 + seq + 0.7, None))
    # Written in three batches, so some rows are inserted and others updated.
    for part in (records[:30], records[30:70], records[70:]):
        write(store, *part)
    return rows


FILTERS: list[dict[str, Any]] = [
    {},
    *({"status": status} for status in STATUSES),
    {"status": JobStatus.FAILED},
    {"queue": "high"},
    {"repo": "repo-b"},
    {"handler": "deploy"},
    {"status": "completed", "queue": "slow"},
    {"status": "pending", "repo": "repo-a", "handler": "build"},
    {"queue": "nowhere"},
    {"handler": "nobody"},
]


def _expected(rows: list[Row], **filters: Any) -> list[str]:
    return [
        row.id
        for row in sorted(rows, key=lambda r: r.seq, reverse=True)
        if all(getattr(row, name) == str(value) for name, value in filters.items())
    ]


@pytest.mark.parametrize("filters", FILTERS, ids=repr)
def test_filters_list_the_matching_jobs_newest_first(store: Store, filters: dict[str, Any]) -> None:
    rows = _fill(store)
    expected = _expected(rows, **filters)
    got = read(store, lambda c: reader.job_infos(c, limit=1000, **filters))
    assert [info.id for info in got] == expected
    status = {row.id: row.status for row in rows}
    assert [info.status.value for info in got] == [status[job_id] for job_id in expected]


@pytest.mark.parametrize("filters", [{}, {"status": "failed"}, {"repo": "repo-c"}], ids=repr)
def test_pages_tile_the_listing(store: Store, filters: dict[str, Any]) -> None:
    rows = _fill(store)
    expected = _expected(rows, **filters)
    for limit in (1, 3, 7):
        pages = [
            [info.id for info in read(store, lambda c, o=offset, n=limit: reader.job_infos(
                c, limit=n, offset=o, **filters))]
            for offset in range(0, len(expected) + limit, limit)
        ]  # fmt: skip
        assert list(itertools.chain.from_iterable(pages)) == expected
        assert all(len(page) == limit for page in pages[: len(expected) // limit])
        assert pages[-1] == []


def test_the_default_page_is_the_newest_hundred(store: Store) -> None:
    write(store, *(accepted(job(f"j{n:03d}", n)) for n in range(1, 131)))
    page = read(store, reader.job_infos)
    assert [info.id for info in page] == [f"j{n:03d}" for n in range(130, 30, -1)]
    assert read(store, lambda c: reader.job_infos(c, limit=0)) == []
    assert read(store, lambda c: reader.job_infos(c, offset=130)) == []


@pytest.mark.parametrize(
    "bad",
    [
        {"status": "done"},
        {"status": 3},
        {"queue": 1},
        {"repo": b"r"},
        {"handler": ["build"]},
        {"limit": -1},
        {"limit": True},
        {"offset": -1},
        {"offset": 1.5},
    ],
    ids=repr,
)
def test_bad_filters_are_refused_by_name(store: Store, bad: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument, match=next(iter(bad))):
        read(store, lambda c: reader.job_infos(c, **bad))


def test_unfinished_count(store: Store) -> None:
    rows = _fill(store)
    unfinished = sum(row.status not in ("completed", "failed", "cancelled") for row in rows)
    assert 0 < unfinished < len(rows)
    assert read(store, reader.unfinished_count) == unfinished


# --- retention ---------------------------------------------------------------------------


def _finished_store(store: Store) -> dict[str, float]:
    """Jobs finished at known times (out of submission order), with runs and keys;
    and two unfinished jobs submitted before all of them. Their finish times."""
    finished = {"f1": T0 + 50, "f2": T0 + 10, "f3": T0 + 40, "f4": T0 + 20, "f5": T0 + 30}
    records: list[Any] = [
        accepted(job("u1", 1, idempotency_key="ku1")),
        accepted(job("u2", 2), status="scheduled", due_at=T0 + 10_000),
        RunStarted("u1", 1, T0 + 3, "worker-1", False),
    ]
    for seq, (job_id, end) in enumerate(finished.items(), start=3):
        status = "failed" if job_id == "f3" else "completed"
        records += [
            accepted(job(job_id, seq, idempotency_key=f"k{job_id}")),
            RunStarted(job_id, 1, end - 1, "worker-1", False),
            RunEnded(job_id, 1, end, status, BOOM if status == "failed" else None),
            JobEnded(job_id, status, None, BOOM if status == "failed" else None, end, f"k{job_id}"),
        ]
    write(store, *records)
    return finished


def _ids(store: Store) -> set[str]:
    return {info.id for info in read(store, lambda c: reader.job_infos(c, limit=1000))}


def _prune(store: Store, **limits: Any) -> int:
    return int(store.transaction(lambda c: reader.prune(c, now=T0 + 100, **limits), "pruning"))


def test_prune_by_age_takes_the_old_finished_jobs_with_their_runs_and_keys(store: Store) -> None:
    _finished_store(store)
    assert read(store, lambda c: reader.run_infos(c, "f2")) != []
    assert _prune(store, older_than=75) == 2  # finished before T0 + 25: f2, f4
    assert _ids(store) == {"u1", "u2", "f1", "f3", "f5"}
    for gone in ("f2", "f4"):
        assert read(store, lambda c, i=gone: reader.job_info(c, i)) is None
        assert read(store, lambda c, i=gone: reader.run_infos(c, i)) == []
        assert read(store, lambda c, i=gone: reader.key_holder(c, f"k{i}")) is None
    assert read(store, lambda c: reader.key_holder(c, "kf1")) == "f1"
    assert len(read(store, lambda c: reader.run_infos(c, "f1"))) == 1
    # Nothing is that old any more; the unfinished jobs, oldest of all, stay.
    assert _prune(store, older_than=75) == 0
    assert _prune(store, older_than=0) == 3
    assert _ids(store) == {"u1", "u2"}
    assert read(store, lambda c: reader.key_holder(c, "ku1")) == "u1"
    assert len(read(store, lambda c: reader.run_infos(c, "u1"))) == 1
    assert read(store, reader.unfinished_count) == 2


def test_prune_by_count_keeps_the_last_finished(store: Store) -> None:
    _finished_store(store)
    assert _prune(store, keep=2) == 3
    assert _ids(store) == {"u1", "u2", "f1", "f3"}  # finished last, though not submitted last
    assert read(store, lambda c: reader.run_infos(c, "f5")) == []
    assert read(store, lambda c: reader.key_holder(c, "kf5")) is None
    assert _prune(store, keep=2) == 0
    assert _prune(store, keep=0) == 2
    assert _ids(store) == {"u1", "u2"}


def test_prune_with_both_limits_keeps_each(store: Store) -> None:
    _finished_store(store)
    # Age alone would take f2 (T0+10); count alone f2, f4, f5: each limit holds.
    assert _prune(store, older_than=85, keep=2) == 3
    assert _ids(store) == {"u1", "u2", "f1", "f3"}
    assert _prune(store, older_than=55, keep=10) == 1  # f3, finished at T0 + 40
    assert _ids(store) == {"u1", "u2", "f1"}


def test_prune_without_limits_deletes_nothing(store: Store) -> None:
    _finished_store(store)
    assert _prune(store) == 0
    assert len(_ids(store)) == 7


def test_prune_leaves_a_key_another_job_took_since(store: Store) -> None:
    write(store, accepted(job("old", 1, idempotency_key="k")))
    write(store, JobEnded("old", "failed", None, BOOM, T0 + 2, "k"))
    write(store, accepted(job("new", 2, idempotency_key="k")))
    assert _prune(store, older_than=0) == 1
    assert read(store, lambda c: reader.key_holder(c, "k")) == "new"


@pytest.mark.parametrize(
    "bad",
    [
        {"older_than": -1},
        {"older_than": float("nan")},
        {"older_than": float("inf")},
        {"older_than": "7d"},
        {"keep": -1},
        {"keep": 2.0},
    ],
    ids=repr,
)
def test_prune_refuses_bad_limits(store: Store, bad: dict[str, Any]) -> None:
    _finished_store(store)
    with pytest.raises(InvalidArgument, match=next(iter(bad))):
        _prune(store, **bad)
    assert len(_ids(store)) == 7


# --- every statement is served by an index ------------------------------------------------


def _plans(store: Store, work: Callable[[sqlite3.Connection], Any]) -> dict[str, list[str]]:
    """Each statement ``work`` ran (with its values) and SQLite's plan of it."""
    ran: list[str] = []

    def traced(conn: sqlite3.Connection) -> Any:
        conn.set_trace_callback(ran.append)
        try:
            return work(conn)
        finally:
            conn.set_trace_callback(None)

    store.transaction(traced, "tracing")  # a transaction: prune writes
    statements = [sql for sql in ran if sql.lstrip().upper().startswith(("SELECT", "DELETE"))]
    assert statements
    return {
        sql: [row[3] for row in store.read(
            lambda c, s=sql: c.execute(f"EXPLAIN QUERY PLAN {s}").fetchall(), "planning")]
        for sql in statements
    }  # fmt: skip


def _full_scans(plans: dict[str, list[str]]) -> list[tuple[str, str]]:
    """Steps that read a whole table (``SCAN t`` without an index)."""
    return [
        (sql, step)
        for sql, steps in plans.items()
        for step in steps
        if step.startswith("SCAN ") and " USING " not in step
    ]


@pytest.mark.parametrize(
    ("filters", "index"),
    [
        ({}, "jobs_by_seq"),
        ({"status": "scheduled"}, "jobs_unfinished"),
        ({"status": "pending"}, "jobs_unfinished"),
        ({"status": "running"}, "jobs_unfinished"),
        ({"status": "retrying"}, "jobs_unfinished"),
        ({"status": "completed"}, "jobs_by_seq"),
        ({"status": "failed"}, "jobs_failed_or_cancelled"),
        ({"status": "cancelled"}, "jobs_failed_or_cancelled"),
        ({"queue": "high"}, "jobs_by_seq"),
        ({"repo": "repo-a"}, "jobs_by_seq"),
        ({"handler": "build"}, "jobs_by_seq"),
    ],
    ids=repr,
)
def test_each_listing_walks_an_index_in_order(
    store: Store, filters: dict[str, Any], index: str
) -> None:
    _fill(store)
    sql, params = reader.listing(
        JobStatus(filters["status"]) if "status" in filters else None,
        filters.get("queue"),
        filters.get("repo"),
        filters.get("handler"),
    )
    plan = [
        row[3]
        for row in read(store, lambda c: c.execute(f"EXPLAIN QUERY PLAN {sql}", (*params, 10, 0)))
    ]
    # Newest first straight from the index: no sort of the matches, no full scan.
    assert len(plan) == 1, plan
    assert index in plan[0], plan
    assert "TEMP B-TREE" not in plan[0]
    plans = _plans(store, lambda c: reader.job_infos(c, **filters))
    assert not _full_scans(plans), plans


def test_every_other_query_is_served_by_an_index(store: Store) -> None:
    _finished_store(store)
    write(store, accepted(job("c", 20), parent="f1", link="child"))
    write(store, accepted(job("again", 21), retry_of="f3"))
    works: list[Callable[[sqlite3.Connection], Any]] = [
        lambda c: reader.job_info(c, "f1"),
        lambda c: reader.run_infos(c, "f1"),
        lambda c: reader.key_holder(c, "kf1"),
        reader.unfinished_count,
        lambda c: reader.prune(c, older_than=60, now=T0 + 100),
        lambda c: reader.prune(c, keep=1, now=T0 + 100),
    ]
    for work in works:
        plans = _plans(store, work)
        assert not _full_scans(plans), plans


# --- a reader's connection -------------------------------------------------------------------


def test_a_reader_sees_what_the_owner_committed_while_it_owns_the_store(store: Store) -> None:
    write(store, accepted(job("a", 1)))
    with connect_readonly(store.path) as conn:
        assert reader.check_readable(conn, store.path) == SCHEMA_VERSION
        assert [info.id for info in reader.job_infos(conn)] == ["a"]
        write(store, accepted(job("b", 2)))  # committed to the WAL, not checkpointed
        assert [info.id for info in reader.job_infos(conn)] == ["b", "a"]


def test_check_readable_refuses_what_it_cannot_read(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE accounts (id INTEGER)")
    newer = tmp_path / "newer.db"
    older = tmp_path / "older.db"
    for path, version in ((newer, None), (older, 1)):
        conn = sqlite3.connect(path, isolation_level=None)
        migrate(conn, upto=version) if version else migrate(conn)
        if version is None:
            conn.execute("UPDATE postroom_schema SET version = 99")
        conn.close()
    for path, kind, words in (
        (empty, StoreCorrupt, "not a postroom store"),
        (foreign, StoreCorrupt, "not a postroom store"),
        (newer, StoreCorrupt, "newer"),
        (older, StoreError, "older"),
    ):
        with connect_readonly(str(path)) as conn, pytest.raises(kind, match=words) as caught:
            reader.check_readable(conn, str(path))
        assert str(path) in str(caught.value)
        if kind is StoreError:
            assert not isinstance(caught.value, StoreCorrupt)


def test_a_stored_value_postroom_never_writes_is_corrupt(store: Store) -> None:
    write(store, accepted(job("a", 1)), accepted(job("b", 2)))
    store.transaction(
        lambda c: c.execute("UPDATE jobs SET payload = '{not json' WHERE id = 'a'"), "damaging"
    )
    store.transaction(
        lambda c: c.execute("UPDATE jobs SET status = 'lost' WHERE id = 'b'"), "damaging"
    )
    with pytest.raises(StoreCorrupt, match=r"'a'.*payload"):
        read(store, lambda c: reader.job_info(c, "a"))
    with pytest.raises(StoreCorrupt, match=r"'b'.*status 'lost'"):
        read(store, lambda c: reader.job_info(c, "b"))
