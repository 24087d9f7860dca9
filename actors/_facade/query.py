"""`Scheduler.jobs` (the job query) and `Scheduler.retry` (run a job again)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from actors._facade.life import Life
from actors._jobs.info import JobInfo
from actors._jobs.query import JobQuery
from actors._jobs.resubmit import RetryLinks
from actors._jobs.status import JobStatus
from actors._jobs.table import JobTable
from actors._policy.handlers import HandlerSpec
from actors._policy.queue import Queue

if TYPE_CHECKING:
    from actors._jobs.handle import JobHandle

__all__ = ["JobQueryAPI"]


class JobQueryAPI:
    """The query and manual-retry half of `Scheduler` (a mixin)."""

    _table: JobTable
    _queues: dict[str, Queue]
    _handlers: dict[str, HandlerSpec]
    _retries: RetryLinks
    _life: Life
    submit: Callable[..., JobHandle]

    @property
    def running(self) -> bool:  # the facade's
        raise NotImplementedError

    def jobs(
        self,
        *,
        status: JobStatus | str | None = None,
        queue: str | None = None,
        repo: str | None = None,
        handler: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[JobInfo]:
        """Snapshots of the jobs `job` can find, newest (by submission) first.

        Those are the unfinished jobs and the last ``history`` finished ones.
        A job is listed if it matches every filter given. Each call costs
        O(jobs known), a few milliseconds with the default history of 10,000:
        made for dashboards and operators, not for hot loops. Each snapshot is
        taken as the page is built, so a page is not one atomic picture, and
        pages shift as new jobs are submitted (see ``actors/_jobs/query.py``).

        Args:
            status: a `JobStatus`, or its value (``"failed"``).
            queue: a queue's name.
            repo: a repo.
            handler: a handler's name.
            limit: the most jobs to return (an int >= 0).
            offset: how many matching jobs to skip first (an int >= 0): the
                next page starts at ``offset + limit``.

        Raises:
            InvalidArgument: a filter of the wrong type, an unknown status, or
                a bad ``limit`` or ``offset``; the message names the value.
            UnknownQueue: ``queue`` is not one of the scheduler's queues.
            UnknownHandler: ``handler`` is not a registered handler.
            SchedulerForked: the scheduler was started in the process this one
                was forked from.
        """
        self._life.check_process()
        query = JobQuery.checked(
            status=status,
            queue=queue,
            repo=repo,
            handler=handler,
            limit=limit,
            offset=offset,
            queues=self._queues,
            handlers=self._handlers,
        )
        return query.select(self._table.states())

    def retry(self, job_id: str) -> JobHandle:
        """Run a failed or cancelled job again, as a new job with a new id.

        The new job has the original's handler, payload, repo, priority, queue,
        ``max_retries``, ``timeout`` and backoff, no idempotency key, and starts
        at attempt 1. It goes through `submit`, so back-pressure applies. The
        two are linked: the new job's `JobInfo.retry_of` is the original's id,
        and the original's ``retried_as`` the new job's. A job is retried at
        most once; to try again, retry the retry.

        Returns:
            The new job's handle. Under ``on_full="drop"`` it may be a dropped
            one, already cancelled; the original then stays retryable.

        Raises:
            SchedulerClosed: the scheduler is not running.
            JobNotFound: no such job (or it aged out of the history).
            InvalidArgument: the job is not failed or cancelled (the message
                says its status), or it was retried already.
            QueueFull: as from `submit`: no room under ``on_full="reject"``, or
                none in time under ``"wait"``.
        """
        if not self.running:
            raise self._life.closed_error()
        original = self._table.get(job_id)
        self._retries.claim(original)
        retried_as = None
        try:
            job = original.job
            handle = self.submit(
                job.handler,
                job.payload,
                repo=job.repo,
                priority=job.priority,
                max_retries=job.max_retries,
                timeout=job.timeout,
                retry=job.retry,
                queue=job.queue,
                _retry_of=job.id,
            )
            # A dropped submission (on_full="drop") is not in the table: no link.
            if handle.info().retry_of == job.id:
                retried_as = handle.id
        finally:
            self._retries.release(original, retried_as)
        return handle
