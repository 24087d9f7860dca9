"""A scheduler's store, as the facade runs it: `Durable`.

`Durable` owns what a scheduler made with ``store=`` adds: the `Store`
(opened at `start`), the `JournalLink` every part posts through, the
Journal actor, the recovery at start (the jobs, and the stored schedules
for `Schedules.restore`), and the reads (`job`, `jobs`, `runs`) that
answer from the store. A scheduler without a store has none
(``Scheduler._durable`` is None) and pays nothing.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any

from actors._facade.restore import Restorer
from actors._jobs.info import JobInfo
from actors._jobs.runs import RunInfo
from actors._journal.journal import Journal
from actors._journal.link import Durability, JournalLink
from actors._journal.options import KeepFinished
from actors._journal.reader import job_info, job_infos, run_infos
from actors._journal.recovery import Recovery, recover
from actors._journal.schedules import StoredSchedule, load_schedules
from actors._journal.store import Store, Synchronous, connect_readonly
from actors._log import journal_logger as logger
from actors._policy.handlers import HandlerSpec
from actors._runtime.reaper import Reaper
from actors._runtime.refs import ActorDead, ActorRef, NoReply, ask, stop
from actors._timer.clock import Clock
from actors.messages import FLUSH

__all__ = ["Durable"]


class Durable:
    """The store of one scheduler (see the module docstring)."""

    def __init__(
        self,
        path: str,
        durability: Durability,
        synchronous: Synchronous,
        batch_interval: float,
        busy_timeout: float,
        keep_finished: KeepFinished | None,
        clock: Clock,
    ) -> None:
        """Describe the store; nothing is opened until `open`."""
        self.path = path
        self._store = Store(path, synchronous=synchronous, busy_timeout=busy_timeout)
        self.link = JournalLink(durability, clock)
        self._batch_interval = batch_interval
        self._keep_finished = keep_finished
        self._clock = clock
        self._journal: ActorRef[Any] | None = None
        self._recovery: Recovery | None = None
        self._schedules: list[StoredSchedule] = []

    @property
    def store(self) -> Store:
        """The store (tests inject faults through it)."""
        return self._store

    # --- start ------------------------------------------------------------------------

    def open(self, handlers: Mapping[str, HandlerSpec], queues: Collection[str]) -> None:
        """Open the store and settle what the last run left (`recover`), before
        any actor starts.

        Raises:
            StoreLocked, StoreCorrupt, StoreReadOnly, StoreFull, StoreBusy,
            StoreError: the store cannot be opened or recovered; nothing runs.
        """
        self._store.open()
        wall = self._clock.wall()
        try:
            self._recovery = self._store.transaction(
                lambda conn: recover(conn, handlers, queues, wall), "cannot recover from"
            )
            # Read with the owner's connection, before the Journal takes it over.
            self._schedules = self._store.read(load_schedules, "cannot read the schedules of")
        except BaseException:
            self._store.close()
            raise

    def start_journal(self, reaper: Reaper, on_failure: Callable[..., None]) -> None:
        """Hand the store to a Journal actor of its own (after `open`)."""
        spawned = Journal.spawn(
            self._store, self.link, self._batch_interval, on_failure, self._keep_finished
        )
        reaper.add(spawned.thread)
        self._journal = spawned.ref
        self.link.connect(spawned.ref)

    def restore(self, restorer: Restorer) -> list[Any]:
        """Bring the recovered jobs back (the gate held); see `Restorer`."""
        recovery = self._recovery
        if recovery is None:
            return []
        return restorer.bring_back(recovery)

    def relink(self, restorer: Restorer, states: list[Any]) -> None:
        """Link the recovered jobs to their parents again (the gate released)."""
        recovery, self._recovery = self._recovery, None
        if recovery is not None:
            restorer.relink(states, recovery)

    def stored_schedules(self) -> list[StoredSchedule]:
        """The schedules the store held at `open`, once (for `Schedules.restore`)."""
        stored, self._schedules = self._schedules, []
        return stored

    def close_unstarted(self) -> None:
        """A start that failed after `open`: let the store go."""
        if self._journal is None:
            self._store.close()

    # --- reads ------------------------------------------------------------------------

    def flush(self, timeout: float) -> None:
        """Commit what the Journal holds, so a read of the store sees it.

        Raises:
            StoreError: the commit failed (the read may lag what memory says).
        """
        journal = self._journal
        if journal is None:
            return
        # Stopped (the store is closed and final) or stuck: read what is there.
        with contextlib.suppress(ActorDead, NoReply):
            ask(journal, FLUSH, timeout=timeout)

    def job(self, job_id: str) -> JobInfo | None:
        """The stored job with this id (None if the store has none).

        Raises:
            StoreError: the store cannot be read.
        """
        with connect_readonly(self.path) as conn:
            return job_info(conn, job_id)

    def jobs(self, timeout: float, **filters: Any) -> list[JobInfo]:
        """`Scheduler.jobs` from the store, once what the Journal holds is committed.

        Raises:
            InvalidArgument: a bad filter (the reader checks them).
            StoreError: the store cannot be read.
        """
        self.flush(timeout)
        with connect_readonly(self.path) as conn:
            return job_infos(conn, **filters)

    def runs(self, job_id: str, timeout: float) -> list[RunInfo] | None:
        """The job's runs from the store; None if the store has no such job.

        Raises:
            StoreError: the store cannot be read.
        """
        self.flush(timeout)
        with connect_readonly(self.path) as conn:
            runs = run_infos(conn, job_id)
            if runs or conn.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone():
                return runs
        return None

    # --- stop ---------------------------------------------------------------------------

    def stop(self, timeout: float) -> None:
        """Stop the Journal: what it holds is committed and the store closed."""
        journal, self._journal = self._journal, None
        if journal is None:
            return
        started = time.monotonic()
        try:
            stop(journal, timeout=timeout)
        except (ActorDead, NoReply):
            logger.error(
                "the journal did not stop within %.1fs; records it held may be lost",
                time.monotonic() - started,
            )

    def retain(self) -> None:
        """A shutdown begins: the jobs it ends from here stay unfinished in the store."""
        self.link.retaining = True

    def freeze(self) -> None:
        """A crash: record no more job endings (the next start recovers them)."""
        self.link.frozen = True
