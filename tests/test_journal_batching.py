"""How the Journal writes its commits (``actors/_journal/batch.py``).

- Payloads and results are written as ``json.dumps`` writes them; rows go in
  many rows per ``INSERT``, chunked within SQLite's limit on parameters, and
  read back as written.
- End to end, under both durabilities and many submitting threads, every job
  and every run reaches the store.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

import pytest

from actors import JobStatus, RunOutcome, Scheduler
from actors._journal.batch import Batch, _insert, dump_json
from actors._journal.store import Store
from actors.messages import Job, JobAccepted, JobEnded, JSONValue, RunEnded, RunStarted

NOW = 1_767_225_600.0


@pytest.mark.parametrize(
    "value",
    [None, 0, -7, 2**63 - 1, 2**80, True, False, 1.5, -0.0, "", "plain", 'q"uo\\te\n\x00é€',
     [1, "x", None, [True]], {"sha": "abc", "n": {"deep": [1.0, "ü"]}}],
)
def test_dump_json_writes_what_json_dumps_writes(value: JSONValue) -> None:
    assert dump_json(value) == json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@pytest.mark.parametrize("count", [1, 2, 127, 128, 129, 300, 1000])
@pytest.mark.parametrize("limit", [None, 999, 60])
def test_insert_writes_every_row_whatever_the_chunking(count: int, limit: int | None) -> None:
    conn = sqlite3.connect(":memory:")
    if limit is not None:
        conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, limit)
    conn.execute("CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT, c REAL)")
    rows = [[n, f"row {n}", n / 3] for n in range(count)]
    _insert(conn, "INSERT OR REPLACE INTO t (a, b, c) VALUES (?, ?, ?)", 3, rows)
    assert conn.execute("SELECT a, b, c FROM t ORDER BY a").fetchall() == [tuple(r) for r in rows]


def test_the_journal_writes_jobs_and_runs_as_rows_it_can_read_back(tmp_path: Path) -> None:
    """Many jobs in one batch, so the rows go in several multi-row statements."""
    store = Store(str(tmp_path / "jobs.db"))
    store.open()
    try:
        batch = Batch()
        for n in range(300):
            job = Job(f"job-{n}", "noop", {"n": n, "text": f"é{n}"}, n + 1, submitted_at=NOW)
            batch.fold(JobAccepted(job, "pending", None, None, None, None, None, None, False))
            batch.fold(RunStarted(job.id, 1, NOW + 1, "worker-0", False))
            batch.fold(RunEnded(job.id, 1, NOW + 2, "completed", None))
            batch.fold(JobEnded(job.id, "completed", [n], None, NOW + 2, None))
        store.transaction(batch.write, "cannot write to")
        rows = store.read(
            lambda c: c.execute(
                "SELECT j.id, j.status, j.payload, j.result, j.started_at, r.outcome "
                "FROM jobs j JOIN runs r ON r.job_id = j.id ORDER BY j.seq"
            ).fetchall(),
            "read",
        )
    finally:
        store.close()
    assert len(rows) == 300
    assert rows[299] == (
        "job-299", "completed", '{"n":299,"text":"é299"}', "[299]", NOW + 1, "completed"
    )


@pytest.mark.parametrize(("durability", "submitters"), [("batch", 1), ("commit", 16)])
def test_every_job_and_run_reaches_the_store(
    tmp_path: Path, durability: str, submitters: int
) -> None:
    jobs = 400
    sched = Scheduler(
        workers=4, store=tmp_path / "jobs.db", durability=durability, batch_interval=0.01
    )
    sched.register("noop", lambda _ctx, n: n)
    handles: list[list[object]] = [[] for _ in range(submitters)]

    def submit(t: int) -> None:
        handles[t] = [sched.submit("noop", n) for n in range(t, jobs, submitters)]

    with sched:
        threads = [threading.Thread(target=submit, args=(t,)) for t in range(submitters)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        every = [h for part in handles for h in part]
        assert all(h.wait(30) for h in every)  # type: ignore[attr-defined]
        stored = sched.jobs(status=JobStatus.COMPLETED, limit=jobs + 1)
        assert len(stored) == jobs
        last = every[-1]
        runs = sched.runs(last.id)  # type: ignore[attr-defined]
        assert [r.outcome for r in runs] == [RunOutcome.COMPLETED]
    assert sched.stats().completed == jobs
