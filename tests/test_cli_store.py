"""`postroom jobs`, `postroom job` and `postroom prune` on real store files: tables and
``--json``, filters and pages, reading while a scheduler's store is open, pruning
only a store nobody owns, and every failure as one line on stderr with exit code 2.

Most tests run the command in this process (`actors.cli.main`, output captured);
the last ones run it as a real ``python -m actors.cli`` process.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actors._journal import reader
from actors._journal.batch import Batch
from actors._journal.cli import duration, parse_duration
from actors._journal.schema import SCHEMA_VERSION
from actors._journal.store import Store
from actors.cli import main
from actors.messages import (
    ErrorInfo,
    Job,
    JobAccepted,
    JobEnded,
    JobRetrying,
    RunEnded,
    RunStarted,
)
from tests.helpers import WAIT

ROOT = Path(__file__).resolve().parent.parent

NOW = time.time()
DAY = 86400.0
OLD = NOW - 10 * DAY
"""When the old jobs ran: older than ``--older-than 7d``."""
RECENT = NOW - 3600.0

TRACE = 'Traceback (most recent call last):\n  File "ci.py", line 9, in build\nci.Broken: red\n'
BROKEN = ErrorInfo("ci.Broken", "red", TRACE)


def _accept(job: Job, **extra: Any) -> JobAccepted:
    fields: dict[str, Any] = {
        "status": "pending",
        "due_at": None,
        "retry_of": None,
        "schedule_id": None,
        "fire_time": None,
        "parent": None,
        "link": None,
        "waited": False,
    }
    fields.update(extra)
    return JobAccepted(job, **fields)


def _records() -> list[Any]:
    """Six jobs: two finished long ago, one failed and one completed lately, one
    running, one pending child; runs and idempotency keys with them."""
    jobs = {
        "old-ok": Job("old-ok", "build", {"sha": "a1"}, seq=1, repo="repo-a",
                      submitted_at=OLD, idempotency_key="key-old"),
        "old-bad": Job("old-bad", "deploy", {"env": "prod"}, seq=2, queue="high",
                       submitted_at=OLD + 1),
        "bad": Job("bad", "build", {"sha": "b2"}, seq=3, repo="repo-b", max_retries=1,
                   submitted_at=RECENT, priority=2),
        "ok": Job("ok", "build", {"sha": "c3"}, seq=4, repo="repo-a", submitted_at=RECENT + 1),
        "busy": Job("busy", "test", [1, 2, 3], seq=5, submitted_at=NOW - 60),
        "kid": Job("kid", "test", {"of": "ok"}, seq=6, submitted_at=NOW - 30),
    }  # fmt: skip
    return [
        _accept(jobs["old-ok"]),
        RunStarted("old-ok", 1, OLD + 1, "worker-1", False),
        RunEnded("old-ok", 1, OLD + 2, "completed", None),
        JobEnded("old-ok", "completed", {"built": True}, None, OLD + 2, "key-old"),
        _accept(jobs["old-bad"]),
        RunStarted("old-bad", 1, OLD + 2, "worker-2", False),
        RunEnded("old-bad", 1, OLD + 3, "failed", BROKEN),
        JobEnded("old-bad", "failed", None, BROKEN, OLD + 3, None),
        _accept(jobs["bad"]),
        RunStarted("bad", 1, RECENT + 1, "worker-1", False),
        RunEnded("bad", 1, RECENT + 2, "failed", BROKEN),
        JobRetrying("bad", 1, RECENT + 5, BROKEN),
        RunStarted("bad", 2, RECENT + 5, "worker-2", False),
        RunEnded("bad", 2, RECENT + 9, "failed", BROKEN),
        JobEnded("bad", "failed", None, BROKEN, RECENT + 9, None),
        _accept(jobs["ok"]),
        RunStarted("ok", 1, RECENT + 2, "worker-1", False),
        RunEnded("ok", 1, RECENT + 3.5, "completed", None),
        JobEnded("ok", "completed", {"artifact": "c3.tar"}, None, RECENT + 3.5, None),
        _accept(jobs["busy"]),
        RunStarted("busy", 1, NOW - 50, "worker-3", False),
        _accept(jobs["kid"], parent="ok", link="child"),
    ]


NEWEST_FIRST = ["kid", "busy", "ok", "bad", "old-bad", "old-ok"]


def _write(path: str, records: list[Any]) -> None:
    store = Store(path)
    store.open()
    try:
        batch = Batch()
        for record in records:
            batch.fold(record)
        store.transaction(batch.write, "writing")
    finally:
        store.close()


@pytest.fixture
def path(tmp_path: Path) -> str:
    made = str(tmp_path / "jobs.db")
    _write(made, _records())
    return made


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _local(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


def _table(out: str) -> list[dict[str, str]]:
    """An aligned table's rows, cut at the header's column starts (and checked to
    be aligned: every column starts where its header does)."""
    lines = out.splitlines()
    header = lines[0]
    starts = [m.start() for m in re.finditer(r"\S+", header)]
    names = header.split()
    rows = []
    for line in lines[1:]:
        if not line.strip() or line.startswith("("):
            break
        for start in starts[1:]:
            if start < len(line):
                assert line[start - 2 : start] == "  ", f"misaligned at {start}: {line!r}"
        cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
        rows.append(dict(zip(names, cells, strict=True)))
    return rows


# --- postroom jobs ------------------------------------------------------------------------


def test_jobs_prints_an_aligned_table_newest_first(
    capsys: pytest.CaptureFixture[str], path: str
) -> None:
    code, out, err = run(capsys, "jobs", "--store", path)
    assert (code, err) == (0, "")
    rows = _table(out)
    assert [row["ID"] for row in rows] == NEWEST_FIRST
    bad = rows[NEWEST_FIRST.index("bad")]
    assert bad == {
        "ID": "bad",
        "STATUS": "failed",
        "HANDLER": "build",
        "QUEUE": "default",
        "REPO": "repo-b",
        "PRI": "2",
        "ATTEMPTS": "2/2",
        "SUBMITTED": _local(RECENT),
        "TOOK": "8.00s",
        "ERROR": "ci.Broken: red",
    }
    busy = rows[NEWEST_FIRST.index("busy")]
    assert (busy["STATUS"], busy["REPO"], busy["ATTEMPTS"], busy["TOOK"], busy["ERROR"]) == (
        "running",
        "-",
        "1/1",
        "-",
        "",
    )
    assert rows[NEWEST_FIRST.index("old-bad")]["QUEUE"] == "high"
    assert "for more" not in out  # the whole listing fits the default page


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--status", "failed"], ["bad", "old-bad"]),
        (["--status", "running"], ["busy"]),
        (["--repo", "repo-a"], ["ok", "old-ok"]),
        (["--handler", "test"], ["kid", "busy"]),
        (["--queue", "high"], ["old-bad"]),
        (["--status", "completed", "--repo", "repo-a", "--handler", "build"], ["ok", "old-ok"]),
    ],
    ids=" ".join,
)
def test_jobs_filters(
    capsys: pytest.CaptureFixture[str], path: str, options: list[str], expected: list[str]
) -> None:
    code, out, _ = run(capsys, "jobs", "--store", path, *options)
    assert code == 0
    assert [row["ID"] for row in _table(out)] == expected


def test_jobs_pages_and_says_where_the_next_page_starts(
    capsys: pytest.CaptureFixture[str], path: str
) -> None:
    code, out, _ = run(capsys, "jobs", "--store", path, "--limit", "2", "--offset", "2")
    assert code == 0
    assert [row["ID"] for row in _table(out)] == NEWEST_FIRST[2:4]
    assert out.splitlines()[-1] == "(jobs 3 to 4: --offset 4 for more)"
    code, out, _ = run(capsys, "jobs", "--store", path, "--limit", "4", "--offset", "4")
    assert [row["ID"] for row in _table(out)] == NEWEST_FIRST[4:]
    assert "for more" not in out


def test_jobs_says_so_when_nothing_matches(capsys: pytest.CaptureFixture[str], path: str) -> None:
    assert run(capsys, "jobs", "--store", path, "--repo", "nowhere") == (0, "no jobs match\n", "")
    empty = str(Path(path).with_name("empty.db"))
    _write(empty, [])
    assert run(capsys, "jobs", "--store", empty) == (0, "no jobs\n", "")
    assert run(capsys, "jobs", "--store", empty, "--json") == (0, '{\n  "jobs": []\n}\n', "")


def test_jobs_json_is_one_document_with_every_field(
    capsys: pytest.CaptureFixture[str], path: str
) -> None:
    code, out, err = run(capsys, "jobs", "--store", path, "--json")
    assert (code, err) == (0, "")
    document = json.loads(out)
    assert list(document) == ["jobs"]
    jobs = document["jobs"]
    assert [job["id"] for job in jobs] == NEWEST_FIRST
    ok = jobs[NEWEST_FIRST.index("ok")]
    assert ok == {
        "id": "ok",
        "handler": "build",
        "status": "completed",
        "repo": "repo-a",
        "priority": 5,
        "attempts": 1,
        "max_retries": 0,
        "payload": {"sha": "c3"},
        "result": {"artifact": "c3.tar"},
        "error": None,
        "progress": None,
        "idempotency_key": None,
        "submitted_at": RECENT + 1,
        "started_at": RECENT + 2,
        "finished_at": RECENT + 3.5,
        "queue": "default",
        "retry_of": None,
        "retried_as": None,
        "schedule_id": None,
        "fire_time": None,
        "parent": None,
        "children": ["kid"],
        "followups": [],
    }
    bad = jobs[NEWEST_FIRST.index("bad")]
    assert bad["error"] == {"type": "ci.Broken", "message": "red", "traceback": TRACE}
    code, out, _ = run(capsys, "jobs", "--store", path, "--json", "--status", "failed")
    assert [job["id"] for job in json.loads(out)["jobs"]] == ["bad", "old-bad"]


def test_readers_see_a_store_a_scheduler_owns_and_writes(
    capsys: pytest.CaptureFixture[str], path: str
) -> None:
    owner = Store(path)
    owner.open()
    try:
        batch = Batch()
        batch.fold(_accept(Job("fresh", "build", {}, seq=7, submitted_at=NOW)))
        owner.transaction(batch.write, "writing")  # in the WAL, not yet in the file
        code, out, _ = run(capsys, "jobs", "--store", path, "--limit", "1")
        assert code == 0
        assert [row["ID"] for row in _table(out)] == ["fresh"]
        code, out, _ = run(capsys, "job", "--store", path, "fresh", "--json")
        assert (code, json.loads(out)["job"]["status"]) == (0, "pending")
    finally:
        owner.close()


def test_a_path_with_uri_characters_is_read_as_the_file_it_names(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "ci? #1 %41"
    folder.mkdir()
    _write(str(folder / "jobs.db"), _records())
    monkeypatch.chdir(tmp_path)  # a relative path, as typed
    before = set(os.listdir(tmp_path))
    code, out, err = run(capsys, "jobs", "--store", "ci? #1 %41/jobs.db", "--status", "running")
    assert (code, err) == (0, "")
    assert [row["ID"] for row in _table(out)] == ["busy"]
    assert set(os.listdir(tmp_path)) == before  # no file made of a piece of the path


# --- postroom job -------------------------------------------------------------------------


def test_job_shows_its_fields_runs_and_tracebacks(
    capsys: pytest.CaptureFixture[str], path: str
) -> None:
    code, out, err = run(capsys, "job", "--store", path, "bad")
    assert (code, err) == (0, "")
    fields_text, runs_text, traces = out.split("\n\n", 2)
    fields = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in fields_text.splitlines())
    assert fields == {
        "job": "bad",
        "status": "failed",
        "handler": "build",
        "queue": "default",
        "repo": "repo-b",
        "priority": "2",
        "attempts": "2 of at most 2",
        "submitted": _local(RECENT),
        "started": f"{_local(RECENT + 1)}  (waited 1.00s)",
        "finished": f"{_local(RECENT + 9)}  (took 8.00s)",
        "payload": '{"sha":"b2"}',
        "error": "ci.Broken: red",
    }
    assert runs_text.splitlines()[0] == "runs"
    runs = _table(runs_text.split("\n", 1)[1])
    assert runs == [
        {
            "ATTEMPT": "1",
            "STARTED": _local(RECENT + 1),
            "FINISHED": _local(RECENT + 2),
            "TOOK": "1.00s",
            "OUTCOME": "failed",
            "WORKER": "worker-1",
            "ERROR": "ci.Broken: red",
        },
        {
            "ATTEMPT": "2",
            "STARTED": _local(RECENT + 5),
            "FINISHED": _local(RECENT + 9),
            "TOOK": "4.00s",
            "OUTCOME": "failed",
            "WORKER": "worker-2",
            "ERROR": "ci.Broken: red",
        },
    ]
    indented = "".join(f"  {line}\n" for line in TRACE.splitlines())
    assert traces == f"attempt 1: ci.Broken: red\n{indented}\nattempt 2: ci.Broken: red\n{indented}"


def test_job_shows_links_results_and_a_running_attempt(
    capsys: pytest.CaptureFixture[str], path: str
) -> None:
    code, out, _ = run(capsys, "job", "--store", path, "ok")
    assert code == 0
    assert re.search(r"^children\s+kid$", out, re.M)
    assert re.search(r'^result\s+\{"artifact":"c3.tar"\}$', out, re.M)
    assert "error" not in out
    code, out, _ = run(capsys, "job", "--store", path, "kid")
    assert re.search(r"^parent\s+ok$", out, re.M)
    assert out.endswith("\nno runs\n")
    code, out, _ = run(capsys, "job", "--store", path, "busy")
    (row,) = _table(out.split("\nruns\n")[1])
    assert (row["FINISHED"], row["OUTCOME"], row["WORKER"]) == ("running", "-", "worker-3")


def test_job_json_has_the_job_and_its_runs(capsys: pytest.CaptureFixture[str], path: str) -> None:
    code, out, err = run(capsys, "job", "--store", path, "bad", "--json")
    assert (code, err) == (0, "")
    document = json.loads(out)
    assert list(document) == ["job", "runs"]
    assert document["job"]["id"] == "bad"
    assert document["job"]["attempts"] == 2
    error = {"type": "ci.Broken", "message": "red", "traceback": TRACE}
    assert document["runs"] == [
        {
            "job_id": "bad",
            "attempt": 1,
            "started_at": RECENT + 1,
            "finished_at": RECENT + 2,
            "outcome": "failed",
            "error": error,
            "worker": "worker-1",
        },
        {
            "job_id": "bad",
            "attempt": 2,
            "started_at": RECENT + 5,
            "finished_at": RECENT + 9,
            "outcome": "failed",
            "error": error,
            "worker": "worker-2",
        },
    ]
    code, out, _ = run(capsys, "job", "--store", path, "busy", "--json")
    (running,) = json.loads(out)["runs"]
    assert (running["finished_at"], running["outcome"], running["error"]) == (None, None, None)


def test_job_of_an_unknown_id_exits_1(capsys: pytest.CaptureFixture[str], path: str) -> None:
    assert run(capsys, "job", "--store", path, "nope") == (
        1,
        "",
        f"postroom job: no job 'nope' in {path}\n",
    )
    assert run(capsys, "job", "--store", path, "nope", "--json")[0] == 1


# --- postroom prune -----------------------------------------------------------------------


def _stored(path: str) -> dict[str, Any]:
    """Each stored job's id and its runs; the idempotency keys held."""
    with sqlite3.connect(path) as conn:
        runs = dict(conn.execute("SELECT job_id, count(*) FROM runs GROUP BY job_id").fetchall())
        ids = [info.id for info in reader.job_infos(conn, limit=100)]
        keys = dict(conn.execute("SELECT key, job_id FROM idempotency_keys").fetchall())
    conn.close()
    return {"jobs": {job_id: runs.get(job_id, 0) for job_id in ids}, "keys": keys}


def test_prune_deletes_old_finished_jobs_with_their_runs_and_keys(
    capsys: pytest.CaptureFixture[str], path: str
) -> None:
    assert _stored(path)["keys"] == {"key-old": "old-ok"}
    code, out, err = run(capsys, "prune", "--store", path, "--older-than", "7d")
    assert (code, err) == (0, "")
    assert out == (
        "deleted 2 finished jobs (finished more than 7d ago) with their runs and keys; "
        "2 unfinished kept\n"
    )
    assert _stored(path) == {
        "jobs": {"kid": 0, "busy": 1, "ok": 1, "bad": 2},
        "keys": {},
    }
    code, out, _ = run(capsys, "prune", "--store", path, "--older-than", "7d", "--json")
    assert (code, json.loads(out)) == (
        0,
        {"deleted": 0, "older_than": 7 * DAY, "keep": None, "unfinished": 2},
    )


def test_prune_keeps_at_most_the_newest_n(capsys: pytest.CaptureFixture[str], path: str) -> None:
    code, out, _ = run(
        capsys, "prune", "--store", path, "--older-than", "30d", "--keep", "1", "--json"
    )
    assert (code, json.loads(out)["deleted"]) == (0, 3)
    assert _stored(path)["jobs"] == {"kid": 0, "busy": 1, "bad": 2}  # bad finished last
    code, out, _ = run(capsys, "prune", "--store", path, "--older-than", "0", "--keep", "5")
    assert out.startswith("deleted 1 finished job (finished more than 0.00s ago or beyond")
    assert _stored(path)["jobs"] == {"kid": 0, "busy": 1}  # never an unfinished one


def test_prune_refuses_a_store_a_scheduler_owns(
    capsys: pytest.CaptureFixture[str], path: str
) -> None:
    owner = Store(path)
    owner.open()
    try:
        before = _stored(path)
        code, out, err = run(capsys, "prune", "--store", path, "--older-than", "1s")
        assert (code, out) == (2, "")
        assert err.count("\n") == 1
        assert err.startswith(f"postroom prune: the store {path} is in use by another scheduler")
        assert "prune needs the store to itself" in err
        assert _stored(path) == before
    finally:
        owner.close()


def test_prune_makes_no_store_where_there_is_none(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = tmp_path / "typo.db"
    code, out, err = run(capsys, "prune", "--store", str(missing), "--older-than", "7d")
    assert (code, out, err) == (2, "", f"postroom prune: no store at {missing}\n")
    assert not missing.exists()


# --- what cannot be read ------------------------------------------------------------------


def _unreadable(tmp_path: Path) -> Iterator[tuple[str, Path, str]]:
    """Files that are no store: a name for the test id, the file, words of the error."""
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"\x00\x01 this is no database " * 200)
    yield "garbage", garbage, "damaged or not a postroom store"
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    yield "empty", empty, "not a postroom store"
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER)")
    conn.close()
    yield "foreign", foreign, "not a postroom store"
    newer = tmp_path / "newer.db"
    _write(str(newer), [])
    with sqlite3.connect(newer) as conn:
        conn.execute("UPDATE postroom_schema SET version = ?", (SCHEMA_VERSION + 1,))
    conn.close()
    yield "newer", newer, "newer"
    yield "missing", tmp_path / "missing.db", "no store at"
    yield "a directory", tmp_path, ""


COMMAND_LINES = [
    ["jobs", "--store", "{}"],
    ["jobs", "--store", "{}", "--json"],
    ["job", "--store", "{}", "some-id"],
    ["prune", "--store", "{}", "--older-than", "1d"],
]


@pytest.mark.parametrize("argv", COMMAND_LINES, ids=" ".join)
def test_a_file_that_is_no_store_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str]
) -> None:
    for name, path, words in _unreadable(tmp_path):
        before = path.read_bytes() if path.is_file() else None
        code, out, err = run(capsys, *(arg.format(path) for arg in argv))
        assert (code, out) == (2, ""), name
        assert err.startswith(f"postroom {argv[0]}: "), (name, err)
        assert err.count("\n") == 1, (name, err)
        assert words in err, (name, err)
        assert "Traceback" not in err
        if before is not None:
            assert path.read_bytes() == before, f"{argv[0]} changed the {name} file"


@pytest.mark.parametrize(
    "argv",
    [
        ["prune", "--store", "x.db", "--older-than", "soon"],
        ["prune", "--store", "x.db", "--older-than", "-1d"],
        ["prune", "--store", "x.db"],
        ["prune", "--store", "x.db", "--older-than", "1d", "--keep", "-1"],
        ["jobs", "--store", "x.db", "--status", "lost"],
        ["jobs", "--store", "x.db", "--limit", "ten"],
        ["jobs"],
        ["job", "--store", "x.db"],
    ],
    ids=" ".join,
)
def test_a_wrong_command_line_exits_2(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert f"postroom {argv[0]}: error: " in err


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("7d", 7 * DAY), ("12h", 43_200), ("30m", 1800), ("90s", 90), ("3600", 3600),
     ("1.5h", 5400), (" 2D ", 2 * DAY), ("0", 0)],
)  # fmt: skip
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_durations_read_back() -> None:
    assert [duration(s) for s in (0.25, 42, 192, 18_180, 7 * DAY, 2 * DAY + 4 * 3600)] == [
        "0.25s",
        "42.00s",
        "3m12s",
        "5h03m",
        "7d",
        "2d04h",
    ]


def test_demo_still_runs_and_help_lists_every_command(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("demo", "jobs", "job", "prune", "keys"):
        assert re.search(rf"^\s+{command}\s", out, re.M), out
    with pytest.raises(SystemExit):
        main(["prune", "--help"])
    assert "a running scheduler" in " ".join(capsys.readouterr().out.split())
    assert main(["demo", "--jobs", "3", "--seed", "1"]) == 0
    assert "completed" in capsys.readouterr().out


def test_demo_with_a_store_keeps_its_jobs_for_the_store_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "demo.db"
    assert main(["demo", "--jobs", "20", "--seed", "3", "--store", str(path)]) == 0
    capsys.readouterr()
    assert main(["jobs", "--store", str(path), "--limit", "1000", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["jobs"]
    handlers = {job["handler"] for job in listed}
    assert {"build", "probe"} <= handlers  # the demo's jobs, its schedules' too
    assert len([job for job in listed if job["schedule_id"] is None]) >= 20
    assert all(job["status"] in ("completed", "failed", "cancelled") for job in listed)
    failed = [job["id"] for job in listed if job["status"] == "failed"]
    if failed:  # the seed fails some: each shows its runs
        assert main(["job", "--store", str(path), failed[0]]) == 0
        assert "runs" in capsys.readouterr().out


def test_demo_with_a_store_in_use_says_so_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "demo.db"
    owner = Store(str(path))
    owner.open()
    try:
        assert main(["demo", "--jobs", "3", "--store", str(path)]) == 2
    finally:
        owner.close()
    err = capsys.readouterr().err
    assert "in use by another scheduler" in err and "Traceback" not in err


# --- as a real process ----------------------------------------------------------------------


def _postroom(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "actors.cli", *argv],
        cwd=ROOT,
        env={**os.environ, "TZ": "UTC", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_each_command_as_a_process(path: str) -> None:
    utc = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(RECENT))
    done = _postroom("jobs", "--store", path, "--status", "failed")
    assert (done.returncode, done.stderr) == (0, "")
    assert [row["ID"] for row in _table(done.stdout)] == ["bad", "old-bad"]
    assert _table(done.stdout)[0]["SUBMITTED"] == utc  # the process's local time

    done = _postroom("jobs", "--store", path, "--json")
    assert (done.returncode, done.stderr) == (0, "")
    assert [job["id"] for job in json.loads(done.stdout)["jobs"]] == NEWEST_FIRST

    done = _postroom("job", "--store", path, "bad")
    assert (done.returncode, done.stderr) == (0, "")
    assert "attempt 2: ci.Broken: red\n  Traceback (most recent call last):" in done.stdout

    done = _postroom("job", "--store", path, "bad", "--json")
    assert (done.returncode, done.stderr) == (0, "")
    assert [run["attempt"] for run in json.loads(done.stdout)["runs"]] == [1, 2]

    done = _postroom("job", "--store", path, "nope")
    assert (done.returncode, done.stdout, done.stderr) == (
        1,
        "",
        f"postroom job: no job 'nope' in {path}\n",
    )

    done = _postroom("prune", "--store", path, "--older-than", "7d")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.startswith("deleted 2 finished jobs")

    done = _postroom("prune", "--store", path, "--older-than", "1s", "--json")
    assert (done.returncode, done.stderr) == (0, "")
    assert json.loads(done.stdout)["deleted"] == 2


def test_failures_as_a_process_are_one_line_and_exit_2(path: str, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"no database here " * 100)
    for argv in (
        ["jobs", "--store", str(tmp_path / "missing.db")],
        ["job", "--store", str(garbage), "x", "--json"],
        ["prune", "--store", str(garbage), "--older-than", "1d"],
    ):
        done = _postroom(*argv)
        assert (done.returncode, done.stdout) == (2, ""), argv
        assert done.stderr.count("\n") == 1, done.stderr
        assert done.stderr.startswith(f"postroom {argv[0]}: ")

    owner = subprocess.Popen(
        [sys.executable, "-c", _OWNER, path],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout is not None and owner.stdin is not None
        assert owner.stdout.readline() == "open\n"
        done = _postroom("prune", "--store", path, "--older-than", "1s")
        assert (done.returncode, done.stdout) == (2, "")
        assert f"in use by another scheduler (pid {owner.pid})" in done.stderr
        assert done.stderr.count("\n") == 1
        done = _postroom("jobs", "--store", path, "--json")  # reading goes on
        assert (done.returncode, len(json.loads(done.stdout)["jobs"])) == (0, 6)
        owner.stdin.close()
        assert owner.wait(timeout=WAIT) == 0
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()


_OWNER = """
import sys
from actors._journal.store import Store

store = Store(sys.argv[1])
store.open()
print("open", flush=True)
sys.stdin.read()
store.close()
"""


def test_output_cut_short_by_its_reader_is_no_error(tmp_path: Path) -> None:
    big = str(tmp_path / "big.db")
    records = [
        _accept(Job(f"job-{n:05d}", "build", {"pad": "x" * 200}, seq=n, submitted_at=NOW))
        for n in range(1, 1001)
    ]
    _write(big, records)
    process = subprocess.Popen(
        [sys.executable, "-m", "actors.cli", "jobs", "--store", big, "--json", "--limit", "1000"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.readline() == b"{\n"  # like `| head -1`
    process.stdout.close()
    err = process.stderr.read()
    process.stderr.close()
    assert process.wait(timeout=WAIT) == 0
    assert b"Traceback" not in err, err.decode()
