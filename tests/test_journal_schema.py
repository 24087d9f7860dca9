"""The store's file: forward migrations, files it refuses untouched, one owner, and
each fault as its `StoreError` (``actors/_journal/schema.py``, ``store.py``).

Every store is a real file in ``tmp_path``. A file that is refused is compared byte
for byte before and after: postroom never writes to a file it does not own or
cannot read as its own.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from actors._errors import (
    StoreBusy,
    StoreCorrupt,
    StoreError,
    StoreFull,
    StoreLocked,
    StoreReadOnly,
)
from actors._journal import reader
from actors._journal.batch import Batch
from actors._journal.schema import MIGRATIONS, SCHEMA_VERSION, migrate, version_of
from actors._journal.store import Store
from actors.messages import Job, JobAccepted
from tests.helpers import WAIT

ROOT = Path(__file__).resolve().parent.parent

ROOT_IGNORES_MODES = os.geteuid() == 0
"""Root may write a file or directory whatever its mode says."""


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "jobs.db")


@pytest.fixture
def opened(path: str) -> Iterator[Store]:
    store = Store(path, busy_timeout=0.2)
    store.open()
    yield store
    store.close()


def add_jobs(store: Store, *ids: str, payload: object = None, first_seq: int = 1) -> None:
    batch = Batch()
    for seq, job_id in enumerate(ids, start=first_seq):
        job = Job(job_id, "build", payload if payload is not None else {"n": seq}, seq=seq)
        batch.fold(JobAccepted(job, "pending", None, None, None, None, None, None, False))
    store.transaction(batch.write, "adding jobs to")


def stored_ids(store: Store) -> list[str]:
    infos = store.read(lambda c: reader.job_infos(c, limit=10_000), "reading")
    return sorted(info.id for info in infos)


# --- migrations ---------------------------------------------------------------------------

_V1_JOB = """
INSERT INTO jobs (id, seq, handler, queue, repo, priority, status, attempts, max_retries,
                  timeout, retry, payload, result, error_type, error_message, error_traceback,
                  idempotency_key, submitted_at, started_at, finished_at, due_at, retry_of,
                  schedule_id, fire_time, parent)
VALUES (?, ?, 'build', 'default', 'repo-1', 3, ?, 0, 2, 30.0,
        '{"kind":"fixed","base":1.0,"cap":null,"jitter":0.0,"factor":2.0}',
        '{"sha":"abc"}', NULL, NULL, NULL, NULL, ?, 1767225600.0, NULL, NULL, NULL, NULL,
        NULL, NULL, ?)
"""


def test_a_store_of_schema_1_is_migrated_with_its_rows(path: str) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate(conn, upto=1) == 0
    conn.execute(_V1_JOB, ("parent", 1, "running", "key-1", None))
    conn.execute(_V1_JOB, ("child", 2, "pending", None, "parent"))
    conn.execute("INSERT INTO idempotency_keys (key, job_id) VALUES ('key-1', 'parent')")
    conn.execute("INSERT INTO runs (job_id, attempt, started_at) VALUES ('parent', 1, 1.5)")
    assert version_of(conn) == 1
    conn.close()

    store = Store(path)
    store.open()
    try:
        assert store.read(version_of, "reading") == SCHEMA_VERSION == len(MIGRATIONS)
        links = store.read(
            lambda c: c.execute("SELECT id, parent, link FROM jobs ORDER BY seq").fetchall(),
            "reading",
        )
        assert links == [("parent", None, None), ("child", "parent", "child")]
        parent = store.read(lambda c: reader.job_info(c, "parent"), "reading")
        assert parent is not None
        assert (parent.status, parent.repo, parent.priority, parent.payload) == (
            "running",
            "repo-1",
            3,
            {"sha": "abc"},
        )
        assert parent.children == ("child",)
        assert store.read(lambda c: reader.key_holder(c, "key-1"), "reading") == "parent"
        assert [run.attempt for run in store.read(
            lambda c: reader.run_infos(c, "parent"), "reading")] == [1]  # fmt: skip
        tables = store.read(
            lambda c: {row[0] for row in c.execute("SELECT name FROM sqlite_master")},
            "reading",
        )
        assert "schedules" in tables
        # The store goes on working at the new version.
        add_jobs(store, "new", first_seq=3)
        assert stored_ids(store) == ["child", "new", "parent"]
    finally:
        store.close()


def test_each_migration_applies_to_the_store_the_one_before_made(path: str) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for version in range(1, SCHEMA_VERSION + 1):
            assert migrate(conn, upto=version) == version - 1
            assert version_of(conn) == version
        assert migrate(conn) == SCHEMA_VERSION  # nothing left to do
    finally:
        conn.close()


def test_a_store_is_opened_again_without_migrating(opened: Store, path: str) -> None:
    add_jobs(opened, "a", "b")
    opened.close()
    again = Store(path)
    again.open()
    try:
        assert stored_ids(again) == ["a", "b"]
        assert again.read(version_of, "reading") == SCHEMA_VERSION
    finally:
        again.close()


# --- files that are refused, untouched --------------------------------------------------------


def _refused(path: str, kind: type[StoreError], words: str) -> StoreError:
    """Opening ``path`` raises ``kind`` (its message has ``words``), and leaves its
    bytes, and the absence of a WAL, as they were."""
    before = Path(path).read_bytes()
    store = Store(path)
    with pytest.raises(kind, match=words) as caught:
        store.open()
    assert not store.is_open
    assert Path(path).read_bytes() == before
    assert not os.path.exists(path + "-wal") or os.path.getsize(path + "-wal") == 0
    # Refusing it let the ownership go: the next open is refused the same way.
    with pytest.raises(kind):
        Store(path).open()
    return caught.value


def test_a_store_of_a_newer_schema_is_refused_untouched(path: str) -> None:
    store = Store(path)
    store.open()
    add_jobs(store, "a")
    store.close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE postroom_schema SET version = ?", (SCHEMA_VERSION + 1,))
    conn.close()
    error = _refused(path, StoreCorrupt, "newer postroom")
    assert path in str(error)


def test_a_file_of_garbage_is_refused_untouched(path: str) -> None:
    Path(path).write_bytes(os.urandom(3000) + b"not sqlite at all" * 50)
    _refused(path, StoreCorrupt, "damaged or not a postroom store")


def test_a_damaged_store_is_refused_untouched(path: str) -> None:
    store = Store(path)
    store.open()
    add_jobs(store, *(f"job-{n}" for n in range(300)), payload={"pad": "x" * 200})
    store.close()
    size = os.path.getsize(path)
    assert size > 8 * 4096
    with open(path, "r+b") as f:  # a page in the middle: the header still says SQLite
        f.seek(4 * 4096)
        f.write(b"\xff" * 4096)
    _refused(path, StoreCorrupt, "damaged")


def test_a_database_of_another_program_is_refused_untouched(path: str) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
        conn.execute("INSERT INTO invoices (total) VALUES (12.5)")
    conn.close()
    error = _refused(path, StoreCorrupt, "not a postroom store")
    assert "invoices" in str(error)


# --- one owner --------------------------------------------------------------------------------


def test_a_second_owner_in_this_process_is_refused(opened: Store, path: str) -> None:
    second = Store(path)
    with pytest.raises(StoreLocked, match=f"in use by another scheduler \\(pid {os.getpid()}\\)"):
        second.open()
    assert not second.is_open
    add_jobs(opened, "a")  # the owner is unaffected
    opened.close()
    second.open()  # free once the owner closed it
    try:
        assert stored_ids(second) == ["a"]
    finally:
        second.close()


_OWNER = """
import sys
from actors._journal.store import Store

store = Store(sys.argv[1])
store.open()
print("open", flush=True)
sys.stdin.read()  # hold the store until the test closes our stdin
store.close()
print("closed", flush=True)
"""


def test_a_store_owned_by_another_process_is_refused(path: str) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _OWNER, path],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline() == "open\n"
        with pytest.raises(StoreLocked, match=f"pid {child.pid}"):
            Store(path).open()
        child.stdin.close()
        assert child.stdout.readline() == "closed\n"
        assert child.wait(timeout=WAIT) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    store = Store(path)
    store.open()  # the child's lock went with it
    store.close()


def test_a_lock_left_by_a_killed_owner_does_not_hold(path: str) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _OWNER, path],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "open\n"
    finally:
        child.kill()
        child.wait()
    assert os.path.exists(path + ".lock")  # the file stays; the lock on it does not
    store = Store(path)
    store.open()
    store.close()


# --- faults -----------------------------------------------------------------------------------


@pytest.mark.skipif(ROOT_IGNORES_MODES, reason="root writes read-only files")
def test_a_read_only_store_file_is_refused(opened: Store, path: str) -> None:
    add_jobs(opened, "a")
    opened.close()
    os.chmod(path, 0o444)
    try:
        error = _refused(path, StoreReadOnly, "cannot be written")
        assert error.sqlite_error is not None
    finally:
        # SQLite made the -wal and -shm files with the store's mode: they go back too.
        for name in (path, path + "-wal", path + "-shm"):
            if os.path.exists(name):
                os.chmod(name, 0o644)
    store = Store(path)
    store.open()
    try:
        assert stored_ids(store) == ["a"]
    finally:
        store.close()


@pytest.mark.skipif(ROOT_IGNORES_MODES, reason="root writes in read-only directories")
@pytest.mark.parametrize("lock_file", ["left", "absent"])
def test_a_store_in_a_read_only_directory_is_refused(tmp_path: Path, lock_file: str) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    path = str(folder / "jobs.db")
    store = Store(path)
    store.open()
    add_jobs(store, "a")
    store.close()
    if lock_file == "absent":
        os.remove(path + ".lock")
    folder.chmod(0o555)
    try:
        _refused(path, StoreReadOnly, "cannot")
    finally:
        folder.chmod(0o755)


def test_a_full_store_refuses_the_transaction_and_keeps_what_was_committed(
    opened: Store,
) -> None:
    add_jobs(opened, "a", "b")
    pages = opened.read(lambda c: c.execute("PRAGMA page_count").fetchone()[0], "reading")
    opened.read(lambda c: c.execute(f"PRAGMA max_page_count = {pages + 2}"), "limiting")
    with pytest.raises(StoreFull, match="full") as caught:
        add_jobs(opened, *(f"big-{n}" for n in range(20)), payload={"pad": "x" * 4000}, first_seq=3)
    assert caught.value.sqlite_error == "SQLITE_FULL"
    assert stored_ids(opened) == ["a", "b"]  # the failed transaction left nothing behind
    add_jobs(opened, "c", first_seq=3)  # a small one still fits
    assert stored_ids(opened) == ["a", "b", "c"]


def test_a_database_held_by_another_program_is_busy_after_the_timeout(
    opened: Store, path: str
) -> None:
    add_jobs(opened, "a")
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        with pytest.raises(StoreBusy, match="another program holds the store") as caught:
            add_jobs(opened, "b", first_seq=2)
        waited = time.monotonic() - started
        assert isinstance(caught.value, TimeoutError)
        assert caught.value.sqlite_error is not None
        assert caught.value.sqlite_error.startswith("SQLITE_BUSY")
        assert 0.15 <= waited < WAIT  # it waited for busy_timeout (0.2 s) first
        other.execute("ROLLBACK")
    finally:
        other.close()
    add_jobs(opened, "b", first_seq=2)
    assert stored_ids(opened) == ["a", "b"]


def test_a_closed_store_refuses_work(opened: Store) -> None:
    opened.close()
    with pytest.raises(StoreError, match="closed"):
        add_jobs(opened, "a")
    assert json.dumps(opened.path)  # the path stays readable for messages
