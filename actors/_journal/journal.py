"""The Journal actor: one owner of the store, committing what every part records in groups.

Every part posts its records (``actors/messages.py``: `JobAccepted`,
`RunStarted`...) to the Journal's inbox as the change happens, on its own
thread, and goes on. The Journal folds them into a `Batch` and commits it:

- at once, once the inbox is empty, when a record in the batch is *waited*
  for (``durability="commit"``: a submitter, or a worker about to call a
  handler): everything that arrived while the last commit ran shares this
  one, which is what makes commits cheap per job (group commit);
- else ``batch_interval`` seconds after the batch's first record;
- and always before it stops.

A commit that fails (`StoreError`: full, read-only, busy) is rolled back
whole. The jobs whose submitters wait for it are taken out of the batch and
their submitters told (their submit raises; the job was never accepted);
the rest of the batch (records of jobs acknowledged before) is kept and
written again after `RETRY_AFTER` seconds, or at the next waited commit.
Nothing acknowledged is dropped while the process lives. The log says when
the store fails and when it works again.

Commit numbers: the inbox numbers what it is given (`TimedInbox.posted`);
after a commit, everything taken from the inbox so far is *settled*
(`JournalLink.settled`), and a waiting thread whose record's number is at
most that goes on.
"""

from __future__ import annotations

import time
from typing import Any

from actors._errors import StoreError
from actors._journal.batch import Batch
from actors._journal.link import JournalLink
from actors._journal.options import PRUNE_EVERY, KeepFinished
from actors._journal.reader import prune
from actors._journal.store import Store
from actors._log import journal_logger as logger
from actors._runtime.actor import FailureReport
from actors._runtime.timed import TimedActor
from actors._timer.clock import MonotonicClock
from actors.messages import Flush, JobAccepted, RunStarted

__all__ = ["MAX_BATCH", "RETRY_AFTER", "Journal"]

MAX_BATCH = 5_000
"""Records one transaction takes at most: a flood of records still commits often."""

RETRY_AFTER = (0.1, 0.5, 1.0, 2.0, 5.0)
"""Seconds before a failed commit is tried again, growing with each failure in a row."""


class Journal(TimedActor):
    """Folds the records it is posted and commits them (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        link: JournalLink,
        batch_interval: float,
        on_failure: FailureReport | None = None,
        keep: KeepFinished | None = None,
    ) -> None:
        clock = MonotonicClock()  # real time always: a test's ManualClock must not hold commits
        super().__init__(clock, on_failure)
        self._clock = clock
        self._store = store
        self._link = link
        self._interval = batch_interval
        self._batch = Batch()
        self._since = 0.0
        """When the batch's first record came (clock time)."""
        self._urgent = False
        """A record in the batch is waited for: commit as soon as the inbox is empty."""
        self._failures = 0
        """Failed commits in a row."""
        self._retry_at: float | None = None
        self._keep = keep
        self._prune_at: float | None = clock.now() + PRUNE_EVERY if keep else None
        """When to prune finished jobs next (``keep_finished``), if ever."""

    # --- records ----------------------------------------------------------------------

    def on_posted(self, message: Any) -> None:
        """Fold a record into the batch."""
        batch = self._batch
        if not batch:
            self._since = self._clock.now()
        batch.fold(message)
        kind = type(message)
        if (kind is JobAccepted or kind is RunStarted) and message.waited:
            self._urgent = True

    def on_receive(self, message: Any) -> Any:
        """`Flush`: commit now; raises the `StoreError` if the commit fails."""
        if isinstance(message, Flush):
            if self._batch:
                error = self._commit()
                if error is not None:
                    raise error
            return None
        return super().on_receive(message)

    # --- commits ----------------------------------------------------------------------

    def next_due(self) -> float | None:
        """When to commit the batch (see the module docstring), or to prune, next."""
        due = self._commit_due()
        prune_at = self._prune_at
        if prune_at is not None and (due is None or prune_at < due):
            return prune_at if not (self._urgent and due is None) else None
        return due

    def _commit_due(self) -> float | None:
        batch = self._batch
        if not batch:
            return None
        now = self._clock.now()
        if self._urgent or batch.records >= MAX_BATCH:
            # Take what is queued first: it shares this commit.
            return now if self._inbox.empty() or batch.records >= MAX_BATCH else None
        if self._retry_at is not None:
            return self._retry_at
        return self._since + self._interval

    def on_due(self) -> None:
        """Commit the batch; prune, when it is time."""
        if self._batch:
            self._commit()
        prune_at = self._prune_at
        if prune_at is not None and self._clock.now() >= prune_at:
            self._prune_at = self._clock.now() + PRUNE_EVERY
            self._prune()

    def _prune(self) -> None:
        """Delete the finished jobs ``keep_finished`` no longer keeps, with their runs."""
        keep = self._keep
        assert keep is not None
        age, count = keep.get("age"), keep.get("count")
        now = time.time()
        try:
            pruned = self._store.transaction(
                lambda conn: prune(conn, older_than=age, keep=count, now=now), "cannot prune"
            )
        except StoreError as exc:
            logger.error("pruning finished jobs failed: %s", exc)
            return
        if pruned:
            logger.info("pruned %d finished job(s) from %s", pruned, self._store.path)

    def _commit(self) -> StoreError | None:
        """Write the batch in one transaction; the error, if it failed."""
        batch = self._batch
        taken = self._inbox.taken
        try:
            self._store.transaction(batch.write, "cannot write to")
        except StoreError as exc:
            self._failed(batch, taken, exc)
            return exc
        if self._failures:
            logger.warning(
                "the store %s is written again, after %d failed commits",
                self._store.path,
                self._failures,
            )
        self._failures = 0
        self._retry_at = None
        self._urgent = False
        self._batch = Batch()
        self._link.settled(taken, (), None)
        return None

    def _failed(self, batch: Batch, taken: int, error: StoreError) -> None:
        refused = batch.drop_waited()
        if self._failures == 0:
            logger.error(
                "the store cannot be written: %s. Jobs submitted with "
                "durability='commit' are refused until it can; %d records of jobs "
                "accepted before are kept in memory and written again when it can",
                error,
                batch.records,
            )
        else:
            logger.debug("commit %d in a row failed: %s", self._failures + 1, error)
        delay = RETRY_AFTER[min(self._failures, len(RETRY_AFTER) - 1)]
        self._failures += 1
        self._retry_at = self._clock.now() + delay
        self._urgent = False
        self._link.settled(taken, refused, error)

    # --- lifecycle --------------------------------------------------------------------

    def on_stop(self) -> None:
        """Commit what is left, close the store, and let every waiter go."""
        try:
            if self._batch:
                error = self._commit()
                if error is not None:
                    logger.error(
                        "the journal stops with %d records it could not write: %s",
                        self._batch.records,
                        error,
                    )
        finally:
            self._store.close()
            self._link.close()
            super().on_stop()

    def on_failure(self, *exc_info: Any) -> None:
        """A bug in the journal: let every waiter go, close the store, then report."""
        self._link.close()
        try:
            self._store.close()
        finally:
            super().on_failure(*exc_info)
