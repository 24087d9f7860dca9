"""`Scheduler.retry`: run a failed or cancelled job again, as a new job.

The new job goes through the facade's own submit; `RetryLinks`
(``actors/_jobs/resubmit.py``) claims the original while it does, and links
the two once it has.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from actors._facade.life import Life
from actors._facade.submit import Submitter
from actors._jobs.resubmit import RetryLinks
from actors._jobs.table import JobTable
from actors._policy.options import options_of

if TYPE_CHECKING:
    from actors._jobs.handle import JobHandle

__all__ = ["ManualRetry"]


class ManualRetry:
    """Runs jobs again on request, each at most once."""

    def __init__(self, life: Life, table: JobTable, submitter: Submitter) -> None:
        """Retry the jobs of one scheduler.

        Args:
            life: the scheduler's life (a retry needs it running).
            table: where the original is found.
            submitter: submits the new job, linked to the original.
        """
        self._life = life
        self._table = table
        self._submitter = submitter
        self._links = RetryLinks()

    def retry(self, job_id: str) -> JobHandle:
        """`Scheduler.retry`."""
        if not self._life.running:
            raise self._life.closed_error()
        original = self._table.get(job_id)
        self._links.claim(original)
        retried_as = None
        try:
            job = original.job
            options = options_of(job)
            handle = self._submitter.submit(job.handler, job.payload, options, retry_of=job.id)
            # A dropped submission (on_full="drop") is not in the table: no link.
            if handle.info().retry_of == job.id:
                retried_as = handle.id
        finally:
            self._links.release(original, retried_as)
        return handle
