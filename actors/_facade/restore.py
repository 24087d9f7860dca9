"""Jobs brought back from the store: `Restorer`.

At start, after `recover` settled what the last run left
(``actors/_journal/recovery.py``), `restore` brings the unfinished jobs back
into the job table in submission order, each sent on its way as a submit
sends it, and links children and follow-ups to their parents again. Later,
`adopt` brings back the job that holds an idempotency key only the store
knows: a completed job of an earlier run (its handle resolves with its
result), or one whose submitter never learned that its commit succeeded.
"""

from __future__ import annotations

from actors._errors import StoreError
from actors._facade.life import Life
from actors._facade.submit import Submitter
from actors._jobs.links import Links
from actors._jobs.state import PARKED, JobState
from actors._jobs.status import COMPLETED
from actors._jobs.table import JobTable
from actors._journal.recovery import Recovery, find_key
from actors._journal.store import connect_readonly
from actors._log import journal_logger as logger
from actors.messages import Job

__all__ = ["Restorer"]


class Restorer:
    """Brings jobs back from the store (see the module docstring)."""

    def __init__(
        self, life: Life, submitter: Submitter, table: JobTable, links: Links, path: str
    ) -> None:
        """The restorer of one scheduler with a store at ``path``."""
        self._life = life
        self._submitter = submitter
        self._table = table
        self._links = links
        self._path = path

    def bring_back(self, recovery: Recovery) -> list[JobState]:
        """Bring back what `recover` found, before anyone else can submit (the
        gate held): new jobs are numbered after the store's."""
        submitter = self._submitter
        submitter.resume_seq(recovery.max_seq)
        return [submitter.restore(row) for row in recovery.jobs]

    def relink(self, states: list[JobState], recovery: Recovery) -> None:
        """Link the jobs brought back to their parents again (the gate released):
        a held follow-up whose parent had ended is released or cancelled now."""
        active = self._table.active
        for state in states:
            links = state.links
            if links is None or links.parent is None:
                continue
            parent = active.get(links.parent)
            if parent is not None:
                self._links.relink(state, parent)
            elif state.where == PARKED:
                status, result, error = recovery.parents.get(
                    links.parent, ("cancelled", None, None)
                )
                self._links.settle_orphan(state, status, result, error)
        if states or recovery.interrupted or recovery.failed:  # said once, at start
            logger.warning(
                "recovered from %s: %d unfinished job(s) back, %d interrupted run(s), "
                "%d job(s) failed by recovery",
                self._path,
                len(states),
                recovery.interrupted,
                recovery.failed,
            )

    def adopt(self, key: str) -> JobState | None:
        """The job holding ``key`` in the store, if this process does not know
        it (the gate held): brought back if unfinished, or a resolved record of
        it if completed. None if the store holds the key for no such job."""
        try:
            with connect_readonly(self._path) as conn:
                found = find_key(conn, key)
        except StoreError as exc:
            logger.error("cannot look idempotency key %r up in the store: %s", key, exc)
            return None
        if found is None:
            return None
        row, status, result = found
        try:
            self._table.get(row.id)
        except KeyError:
            pass
        else:
            return None  # known here: the table's own answer stands (its key was let go)
        if status == COMPLETED.value:
            job = Job(row.id, row.handler, row.payload, row.seq, submitted_at=row.submitted_at)
            state = JobState(job, COMPLETED)
            state.recovered(row.attempts, row.started_at, None, None)
            state.resolve(COMPLETED, result)
            return state
        if status not in ("pending", "scheduled", "retrying"):
            return None  # failed or cancelled: the key is free; running: the next start's
        return self._submitter.restore(row)
