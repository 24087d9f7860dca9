"""A scheduler's store failing: each fault is a typed error, and nothing acknowledged is lost.

The faults are real where the test can make them so: a store full to its
size limit (``PRAGMA max_page_count`` on the owner's connection), a
connection that may not write (``PRAGMA query_only``), a file without write
permission, a database another connection holds locked (``BEGIN
IMMEDIATE``), a file that is not a database or is damaged, a store another
scheduler owns (in this process or another). An ambiguous commit (the
commit happens, then an error reaches the submitter) is injected through
the store's ``after_commit`` hook.

For each fault while the scheduler runs: the submit that meets it raises the
fault's `StoreError` and its job is not half accepted (it never runs, no
counter moved, its key is free); the jobs acknowledged before keep running;
and once the fault clears, or after a restart, every one of them is in the
store and has run.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from actors import (
    JobContext,
    JobStatus,
    Scheduler,
    StoreReadOnly,
)
from tests.helpers import WAIT

BUSY = 0.2
"""The store's ``busy_timeout`` here: a locked database is reported quickly."""


@pytest.fixture
def store(tmp_path: Path) -> str:
    return str(tmp_path / "jobs.db")


def _permissions_enforced(where: Path) -> bool:
    """Whether a file's mode stops this process from writing it (not for
    root, or any process with CAP_DAC_OVERRIDE)."""
    probe = where / "mode-probe"
    probe.write_text("")
    probe.chmod(0o444)
    try:
        with open(probe, "a"):
            return False
    except PermissionError:
        return True
    finally:
        probe.chmod(0o644)
        probe.unlink()


@pytest.fixture
def modes_enforced(tmp_path: Path) -> None:
    if not _permissions_enforced(tmp_path):
        pytest.skip(
            "file modes do not bind this process (root, or CAP_DAC_OVERRIDE): "
            "a read-only file cannot be made with chmod"
        )


@dataclass
class Ran:
    """What the handler ran: payloads, counted, and a gate jobs wait at."""

    gate: threading.Event = field(default_factory=threading.Event)
    counts: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def work(self, ctx: JobContext, payload: Any) -> Any:
        with self.lock:
            self.counts[payload["name"]] += 1
        if payload.get("gated"):
            self.gate.wait(WAIT)
        return payload["name"]


@contextlib.contextmanager
def scheduler(store: str, ran: Ran, **options: Any) -> Iterator[Scheduler]:
    """A started scheduler on ``store`` whose handler ``work`` is ``ran``'s; shut down after."""
    sched = Scheduler(workers=2, store=store, busy_timeout=BUSY, **options)
    sched.register("work", ran.work)
    sched.start()
    try:
        yield sched
    finally:
        ran.gate.set()
        sched.shutdown(graceful=False, timeout=0.0)


def _stored_bytes(path: str) -> bytes:
    return Path(path).read_bytes()


# --- at start ------------------------------------------------------------------------------


def test_a_read_only_file_at_start_is_store_read_only(store: str, modes_enforced: None) -> None:
    """A store file this process may not write is refused as it opens, not at
    the first submit; the file is not touched, and the jobs in it are kept."""
    ran = Ran()
    with scheduler(store, ran) as sched:
        kept = sched.submit("work", {"name": "kept"}, delay=3600)
    os.chmod(store, 0o444)
    before, files = _stored_bytes(store), sorted(os.listdir(os.path.dirname(store)))
    sched = Scheduler(workers=2, store=store, busy_timeout=BUSY)
    sched.register("work", ran.work)
    try:
        with pytest.raises(StoreReadOnly, match="not writable"):
            sched.start()
        assert not sched.running
        assert _stored_bytes(store) == before
        # Nothing made beside it either (SQLite would leave a read-only -wal and -shm).
        assert sorted(os.listdir(os.path.dirname(store))) == files
        # Writable again: the same scheduler starts, and the job is there.
        os.chmod(store, 0o644)
        sched.start()
        assert sched.job(kept.id).status is JobStatus.SCHEDULED
    finally:
        sched.shutdown(graceful=False, timeout=0.0)
