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

A chmod of a store in use takes nothing from its owner (SQLite writes
through the files it holds open): it is the next start that is refused. The
tests that chmod skip where file modes do not bind the process (root, or
CAP_DAC_OVERRIDE); as root they run without those capabilities::

    setpriv --bounding-set=-dac_override,-dac_read_search,-fowner --inh-caps=-all -- \
        .venv/bin/python -m pytest -p no:cacheprovider tests/test_journal_faults.py
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from actors import (
    JobContext,
    JobFailed,
    JobHandle,
    JobStatus,
    ManualClock,
    RunOutcome,
    Scheduler,
    StoreBusy,
    StoreCorrupt,
    StoreError,
    StoreFull,
    StoreLocked,
    StoreReadOnly,
)
from tests.helpers import WAIT, wait_until

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
    started: dict[str, threading.Event] = field(default_factory=dict)

    def work(self, ctx: JobContext, payload: Any) -> Any:
        name = payload["name"]
        with self.lock:
            self.counts[name] += 1
            self.started.setdefault(name, threading.Event()).set()
        if payload.get("gated"):
            self.gate.wait(WAIT)
        return name

    def wait_started(self, name: str) -> None:
        with self.lock:
            started = self.started.setdefault(name, threading.Event())
        assert started.wait(WAIT), f"{name} never started"


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


def test_a_store_made_read_only_while_in_use_loses_nothing_and_refuses_the_next_start(
    store: str, modes_enforced: None
) -> None:
    """A file's mode is checked when it is opened: the running owner goes on
    writing through the files it holds open (a chmod takes nothing from it),
    and the next start is refused with `StoreReadOnly`, the file untouched.
    (A connection that can no longer write is the ``read_only`` fault below.)"""
    ran = Ran()
    with scheduler(store, ran) as sched:
        before = sched.submit("work", {"name": "before"})
        assert before.result(timeout=WAIT) == "before"
        for name in os.listdir(os.path.dirname(store)):
            if name.startswith("jobs.db") and not name.endswith(".lock"):
                os.chmod(os.path.join(os.path.dirname(store), name), 0o444)
        after = sched.submit("work", {"name": "after"}, delay=3600)
        assert sched.job(after.id).status is JobStatus.SCHEDULED
    closed = _stored_bytes(store)
    sched = Scheduler(workers=2, store=store, busy_timeout=BUSY)
    sched.register("work", ran.work)
    try:
        with pytest.raises(StoreReadOnly):
            sched.start()
        assert _stored_bytes(store) == closed
        os.chmod(store, 0o644)
        sched.start()
        assert sched.job(before.id).status is JobStatus.COMPLETED
        assert sched.job(after.id).status is JobStatus.SCHEDULED
    finally:
        sched.shutdown(graceful=False, timeout=0.0)


@pytest.mark.parametrize("damage", ["not_a_database", "damaged_page"])
def test_a_corrupt_file_at_start_is_store_corrupt_and_never_written(
    store: str, damage: str
) -> None:
    """A file that is not a store, or a store with a damaged page, is refused
    at start (`StoreCorrupt`) and left byte for byte as it was; once a good
    copy is put back, the same scheduler starts on it."""
    ran = Ran()
    with scheduler(store, ran) as sched:
        kept = sched.submit("work", {"name": "kept"}, delay=3600)
        for i in range(200):  # pages enough to damage one in the middle
            sched.submit("work", {"name": f"filler-{i}", "text": "x" * 200}, delay=3600)
    backup = _stored_bytes(store)
    if damage == "not_a_database":
        Path(store).write_bytes(b"this is not a database, it is a shopping list\n" * 200)
    else:
        page = 4096
        middle = len(backup) // page // 2 * page
        garbage = b"\xde\xad" * (page // 2)
        Path(store).write_bytes(backup[:middle] + garbage + backup[middle + page :])
    before = _stored_bytes(store)
    sched = Scheduler(workers=2, store=store, busy_timeout=BUSY)
    sched.register("work", ran.work)
    try:
        with pytest.raises(StoreCorrupt):
            sched.start()
        assert not sched.running
        assert _stored_bytes(store) == before
        Path(store).write_bytes(backup)  # the operator restores a backup
        sched.start()
        assert sched.job(kept.id).status is JobStatus.SCHEDULED
    finally:
        sched.shutdown(graceful=False, timeout=0.0)
    assert not ran.counts


def test_a_second_scheduler_on_a_store_in_use_is_store_locked(store: str) -> None:
    """The owner keeps running what it has, and keeps its store: a failed
    second start does not let the lock go (a third is refused too); once the
    owner is gone, the same second scheduler starts and finds its jobs."""
    ran = Ran()
    second = Scheduler(workers=1, store=store, busy_timeout=BUSY)
    second.register("work", ran.work)
    third = Scheduler(workers=1, store=store, busy_timeout=BUSY)
    third.register("work", ran.work)
    try:
        with scheduler(store, ran) as owner:
            left = owner.submit("work", {"name": "left"}, delay=3600)
            with pytest.raises(StoreLocked, match=f"pid {os.getpid()}"):
                second.start()
            with pytest.raises(StoreLocked):
                third.start()
            assert owner.submit("work", {"name": "after"}).result(timeout=WAIT) == "after"
        second.start()
        assert second.job(left.id).status is JobStatus.SCHEDULED
    finally:
        second.shutdown(graceful=False, timeout=0.0)
        third.shutdown(graceful=False, timeout=0.0)


_OWNER = textwrap.dedent(
    """
    import sys
    from actors import Scheduler

    sched = Scheduler(workers=1, store=sys.argv[1])
    sched.register("work", lambda ctx, payload: payload["name"])
    sched.start()
    print(sched.submit("work", {"name": "theirs"}, delay=3600).id, flush=True)
    sys.stdin.read()  # until the test lets go
    sched.shutdown()
    """
)


def test_a_store_owned_by_another_process_is_store_locked(store: str) -> None:
    """Another process owns the store: start() says so, naming it; once that
    process has gone, the same scheduler starts and finds its job."""
    owner = subprocess.Popen(
        [sys.executable, "-c", _OWNER, store],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    ran = Ran()
    sched = Scheduler(workers=1, store=store, busy_timeout=BUSY)
    sched.register("work", ran.work)
    try:
        assert owner.stdout is not None and owner.stdin is not None
        theirs = owner.stdout.readline().strip()  # it owns the store from here
        assert theirs, "the owner process did not start"
        with pytest.raises(StoreLocked, match=f"pid {owner.pid}"):
            sched.start()
        owner.stdin.close()
        assert owner.wait(timeout=WAIT) == 0
        sched.start()
        assert sched.job(theirs).status is JobStatus.SCHEDULED
    finally:
        sched.shutdown(graceful=False, timeout=0.0)
        if owner.poll() is None:
            owner.kill()
            owner.wait()


# --- while running ---------------------------------------------------------------------------


class OnJournalThread:
    """Runs an action on the owner's connection from the Journal's own thread,
    as its next transaction begins: the connection is used by one thread at
    a time, as the store's docstring requires (a test-side hook, like the
    store's ``before_commit``)."""

    def __init__(self, sched: Scheduler) -> None:
        durable = sched._durable
        assert durable is not None
        self.store = durable.store
        self.actions: list[Callable[[sqlite3.Connection], None]] = []
        original = self.store.transaction

        def transaction(work: Any, doing: str) -> Any:
            while self.actions:
                self.actions.pop(0)(self.store._conn)  # type: ignore[arg-type]
            return original(work, doing)

        self.store.transaction = transaction  # type: ignore[method-assign]

    def next(self, action: Callable[[sqlite3.Connection], None]) -> None:
        self.actions.append(action)


@dataclass(frozen=True)
class Fault:
    """A store fault a running scheduler meets: `begin` makes it (before
    the next transaction), and returns what ends it."""

    error: type[StoreError]
    begin: Callable[[Scheduler, str], Callable[[], None]]


def _full(sched: Scheduler, store: str) -> Callable[[], None]:
    # The store may not grow past the pages it has: the next write that
    # needs a page fails with SQLITE_FULL, as on a full disk.
    hook = OnJournalThread(sched)
    limit: list[int] = []

    def fill(conn: sqlite3.Connection) -> None:
        limit.append(conn.execute("PRAGMA max_page_count").fetchone()[0])
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")

    hook.next(fill)
    return lambda: hook.next(lambda conn: conn.execute(f"PRAGMA max_page_count = {limit[0]}"))


def _read_only(sched: Scheduler, store: str) -> Callable[[], None]:
    # The owner's connection may not write: SQLITE_READONLY, as on a file
    # or mount made read-only under a running process.
    hook = OnJournalThread(sched)
    hook.next(lambda conn: conn.execute("PRAGMA query_only = ON"))
    return lambda: hook.next(lambda conn: conn.execute("PRAGMA query_only = OFF"))


def _locked(sched: Scheduler, store: str) -> Callable[[], None]:
    # Another program holds the database's write lock (SQLite's, not the
    # owner's lock file): every write waits busy_timeout, then SQLITE_BUSY.
    other = sqlite3.connect(store, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")

    def release() -> None:
        other.execute("ROLLBACK")
        other.close()

    return release


FAULTS = {
    "full": Fault(StoreFull, _full),
    "read_only": Fault(StoreReadOnly, _read_only),
    "locked": Fault(StoreBusy, _locked),
}


@dataclass
class Faulted:
    """A scheduler that met a fault: the jobs it acknowledged (by name), the
    name (and key) of the job it refused."""

    acknowledged: dict[str, JobHandle]
    refused: str
    submitted: int
    """`Stats.submitted` once the fault refused a job."""


def _meet(
    sched: Scheduler, fault: Fault, store: str, ran: Ran
) -> tuple[Faulted, Callable[[], None]]:
    """Acknowledged jobs (two running, one waiting for its time), then the
    fault, then submits until one is refused: it raises the fault's error,
    and moves no counter."""
    acknowledged = {
        name: sched.submit("work", {"name": name, "gated": True}, max_retries=1)
        for name in ("running-0", "running-1")
    }
    acknowledged["waiting"] = sched.submit("work", {"name": "waiting"}, delay=10)
    for name in ("running-0", "running-1"):
        ran.wait_started(name)
    end = fault.begin(sched, store)
    for i in range(500):  # a full store takes a few more rows first
        name = f"pad-{i}"
        before = sched.stats().submitted
        try:
            acknowledged[name] = sched.submit(
                "work", {"name": name}, idempotency_key=name, delay=10
            )
        except StoreError as exc:
            assert isinstance(exc, fault.error), repr(exc)
            assert sched.stats().submitted == before
            return Faulted(acknowledged, name, before), end
    end()
    raise AssertionError(f"no submit met the fault ({fault.error.__name__})")


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_a_fault_refuses_the_new_job_and_loses_nothing_once_it_clears(
    store: str, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    fault = FAULTS[name]
    ran = Ran()
    clock = ManualClock()
    with scheduler(store, ran, clock=clock) as sched:
        faulted, end = _meet(sched, fault, store, ran)
        try:
            # It says what it cannot do...
            said = [r for r in caplog.records if r.name == "postroom.journal"]
            assert any("cannot be written" in r.getMessage() for r in said), said
            # ...and keeps running what it has.
            ran.gate.set()
            clock.advance(10)
            for job, handle in faulted.acknowledged.items():
                assert handle.result(timeout=WAIT) == job
            # Their ends wait in memory: a read of the store, which commits
            # first, says why it cannot. (A full store may take rows that
            # need no new page.)
            with contextlib.suppress(StoreFull) if fault.error is StoreFull else pytest.raises(
                fault.error
            ):
                sched.jobs()
        finally:
            end()
        assert ran.counts[faulted.refused] == 0
        stats = sched.stats()
        assert stats.submitted == faulted.submitted == len(faulted.acknowledged)
        assert (stats.completed, stats.failed) == (len(faulted.acknowledged), 0)
        # Once it clears, everything is written: each job, completed, with its run.
        ids = {handle.id for handle in faulted.acknowledged.values()}
        stored = {info.id: info for info in sched.jobs(limit=1000)}
        assert set(stored) == ids
        for handle in faulted.acknowledged.values():
            assert stored[handle.id].status is JobStatus.COMPLETED
            assert [r.outcome for r in sched.runs(handle.id)] == [RunOutcome.COMPLETED]
        # The refused job's key was never taken.
        again = sched.submit("work", {"name": faulted.refused}, idempotency_key=faulted.refused)
        assert again.id not in ids
        assert again.result(timeout=WAIT) == faulted.refused
    with scheduler(store, ran, clock=clock) as sched:
        for handle in faulted.acknowledged.values():
            assert sched.job(handle.id).status is JobStatus.COMPLETED
    assert set(ran.counts.values()) == {1}  # nothing ran twice


@pytest.mark.parametrize("graceful", [True, False])
@pytest.mark.parametrize("name", sorted(FAULTS))
def test_a_restart_while_the_store_fails_brings_back_every_acknowledged_job(
    store: str, name: str, graceful: bool
) -> None:
    """The scheduler stops while its store still fails: what it could not
    write is lost with it, but every job acknowledged before is in the store
    and runs after the restart. A job whose end was lost runs again, after
    an ``interrupted`` run: at least once."""
    fault = FAULTS[name]
    ran = Ran()
    clock = ManualClock()
    with scheduler(store, ran, clock=clock) as sched:
        faulted, end = _meet(sched, fault, store, ran)
        try:
            ran.gate.set()
            for job in ("running-0", "running-1"):
                assert faulted.acknowledged[job].result(timeout=WAIT) == job
            sched.shutdown(graceful=graceful, timeout=0.0)
        finally:
            end()
    with scheduler(store, ran, clock=clock) as sched:
        clock.advance(10)
        for job, handle in faulted.acknowledged.items():
            wait_until(
                lambda h=handle: sched.job(h.id).status is JobStatus.COMPLETED,
                f"{job} completed after the restart",
            )
            runs = [r.outcome for r in sched.runs(handle.id)]
            if ran.counts[job] == 2:  # its end was lost with the first scheduler
                assert runs == [RunOutcome.INTERRUPTED, RunOutcome.COMPLETED], job
            else:
                assert ran.counts[job] == 1 and runs == [RunOutcome.COMPLETED], job
        if fault.error is not StoreFull:
            # Nothing could be written: both ends were lost. (A full store may
            # still take an update that needs no new page.)
            assert ran.counts["running-0"] == ran.counts["running-1"] == 2
    assert ran.counts[faulted.refused] == 0


# --- an ambiguous commit ------------------------------------------------------------------


def _commit_then_fail(sched: Scheduler, times: int = 1) -> list[int]:
    """The next ``times`` commits happen, then report an error: the
    submitter cannot tell that its job was committed. The list counts them."""
    durable = sched._durable
    assert durable is not None
    store = durable.store
    done: list[int] = []

    def after_commit() -> None:
        done.append(1)
        if len(done) >= times:
            store.after_commit = None
        raise sqlite3.OperationalError("disk I/O error (after COMMIT)")

    store.after_commit = after_commit
    return done


def test_an_ambiguous_commit_retried_with_its_key_is_one_job_run_once(store: str) -> None:
    """The commit of a job's row succeeds, then fails to say so: the
    submitter gets a `StoreError` and retries with the same idempotency key.
    It gets the one job (found in the store), which runs once; a restart
    does not run it again."""
    ran = Ran()
    with scheduler(store, ran) as sched:
        before = sched.stats().submitted
        _commit_then_fail(sched)
        with pytest.raises(StoreError):
            sched.submit("work", {"name": "once"}, idempotency_key="once")
        assert sched.stats().submitted == before  # withdrawn from memory...
        handle = sched.submit("work", {"name": "once"}, idempotency_key="once")
        assert handle.result(timeout=WAIT) == "once"  # ...and adopted from the store
        assert sched.submit("work", {"name": "once"}, idempotency_key="once").id == handle.id
        assert sched.stats().submitted == before + 1
        keyed = [info for info in sched.jobs() if info.idempotency_key == "once"]
        assert [(info.id, info.status) for info in keyed] == [(handle.id, JobStatus.COMPLETED)]
        assert [r.outcome for r in sched.runs(handle.id)] == [RunOutcome.COMPLETED]
    with scheduler(store, ran) as sched:
        assert sched.submit("work", {"name": "once"}, idempotency_key="once").id == handle.id
        keyed = [info for info in sched.jobs() if info.idempotency_key == "once"]
        assert [info.id for info in keyed] == [handle.id]
    assert ran.counts == {"once": 1}


def test_an_ambiguous_commit_never_retried_runs_after_the_next_start(store: str) -> None:
    """Without a retry the job stays in the store, unknown to the scheduler
    that refused it, and runs after the next start: what an ambiguous commit
    leaves runs at least once (never silently zero times)."""
    ran = Ran()
    with scheduler(store, ran) as sched:
        _commit_then_fail(sched)
        with pytest.raises(StoreError):
            sched.submit("work", {"name": "unsure"}, idempotency_key="unsure")
        assert sched.submit("work", {"name": "after"}).result(timeout=WAIT) == "after"
        assert ran.counts["unsure"] == 0
    with scheduler(store, ran) as sched:
        handle = sched.submit("work", {"name": "unsure"}, idempotency_key="unsure")
        assert handle.result(timeout=WAIT) == "unsure"
    assert ran.counts == {"unsure": 1, "after": 1}


def test_clients_retrying_an_ambiguous_commit_at_once_get_one_job(store: str) -> None:
    """Eight clients submit with one key at the same moment, and the commit
    of the job's row reports an error after it happened: every client that
    gets an error (or a handle of the withdrawn job) retries with the key.
    All of them end with the same job, and it runs once."""
    ran = Ran()
    clients = 8
    with scheduler(store, ran) as sched:
        _commit_then_fail(sched)
        start = threading.Barrier(clients)
        got: list[str] = []
        errors: list[BaseException] = []
        seen: Counter[str] = Counter()

        def client() -> None:
            try:
                start.wait(WAIT)
                for _ in range(20):
                    try:
                        handle = sched.submit("work", {"name": "shared"}, idempotency_key="k")
                        handle.result(timeout=WAIT)
                    except StoreError:
                        seen["refused"] += 1  # its commit failed, or so it seemed
                        continue
                    except JobFailed as exc:
                        # A handle of the job another client's submit withdrew.
                        assert exc.error is not None and exc.error.type == "postroom.StoreError"
                        seen["withdrawn"] += 1
                        continue
                    got.append(handle.id)
                    return
                raise AssertionError("no submit got a job in 20 tries")
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=client) for _ in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT * 2)
        assert not errors, errors
        assert len(got) == clients and len(set(got)) == 1, got
        keyed = [info for info in sched.jobs() if info.idempotency_key == "k"]
        assert [info.id for info in keyed] == got[:1]
        assert seen["refused"] >= 1, seen  # the ambiguous commit reached a client
    assert ran.counts == {"shared": 1}
