"""The job query behind `Scheduler.jobs`: filters, newest first, one page at a time.

What it costs: O(jobs known). Every unfinished job and every finished one still in
the history is looked at once (a few attribute reads each), the matches are
sorted by submission, and only the page asked for is snapshotted (`JobInfo`).
With the default ``history=10_000`` a call takes a few milliseconds: fine for a
dashboard, an operator or a test; not for a hot loop. A larger ``history``
costs proportionally more per call.

A page is not one atomic picture: each job is snapshotted as the page is built,
while jobs go on moving. A job whose status changed between the filter and its
snapshot is left out rather than shown with a status that was not asked for.
Paging by ``offset`` while jobs are submitted shifts the pages (newest first):
a job may then appear on two pages, or a finished one age out of the history
between them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from operator import attrgetter
from typing import TYPE_CHECKING

from actors._errors import InvalidArgument
from actors._jobs.status import JobStatus
from actors._policy.checks import check_int, unknown_handler, unknown_queue

if TYPE_CHECKING:
    from actors._jobs.info import JobInfo
    from actors._jobs.state import JobState

__all__ = ["JobQuery", "check_status"]


def check_status(value: object) -> JobStatus | None:
    """None, or the `JobStatus` that ``value`` is or names (``"failed"``).

    Raises:
        InvalidArgument: ``value`` is neither a `JobStatus` nor one's string value.
    """
    if value is None or isinstance(value, JobStatus):
        return value
    if isinstance(value, str):
        try:
            return JobStatus(value)
        except ValueError:
            pass
    names = ", ".join(repr(s.value) for s in JobStatus)
    msg = f"status must be a JobStatus, one of {names}, or None; not {value!r}"
    raise InvalidArgument(msg)


def _check_name(name: str, value: object) -> None:
    if value is not None and not isinstance(value, str):
        msg = f"{name} must be a str or None, not {value!r}"
        raise InvalidArgument(msg)


@dataclass(frozen=True, slots=True)
class JobQuery:
    """Checked filters and a page: what `Scheduler.jobs` asks of the job table.

    Build it with `checked`, then `select` from the table's states.
    """

    status: JobStatus | None
    queue: str | None
    repo: str | None
    handler: str | None
    limit: int
    """The most jobs in the page (0: an empty page)."""
    offset: int
    """Matching jobs skipped, newest first, before the page starts."""

    @classmethod
    def checked(
        cls,
        *,
        status: JobStatus | str | None,
        queue: str | None,
        repo: str | None,
        handler: str | None,
        limit: int,
        offset: int,
        queues: Mapping[str, object],
        handlers: Mapping[str, object],
    ) -> JobQuery:
        """The query for these arguments of `Scheduler.jobs`, checked.

        ``queues`` and ``handlers`` are the scheduler's: a filter on a name it
        does not know can match no job, so it is reported, not answered with [].

        Raises:
            InvalidArgument: a filter of the wrong type, an unknown status, or
                ``limit`` / ``offset`` not an int >= 0; the message names the value.
            UnknownQueue: ``queue`` is not one of the scheduler's queues.
            UnknownHandler: ``handler`` is not a registered handler.
        """
        # Types first (the arguments come from callers that may not type-check).
        checked_status = check_status(status)
        _check_name("queue", queue)
        _check_name("repo", repo)
        _check_name("handler", handler)
        check_int("limit", limit, 0)
        check_int("offset", offset, 0)
        if queue is not None and queue not in queues:
            raise unknown_queue(queue, queues)
        if handler is not None and handler not in handlers:
            raise unknown_handler(handler, handlers)
        return cls(checked_status, queue, repo, handler, limit, offset)

    def select(self, states: Iterable[JobState]) -> list[JobInfo]:
        """The page of matching jobs, newest (by submission order) first."""
        if not self.limit:
            return []
        # One tight pass per filter given (no call per job): the whole cost of
        # a query is these passes and the sort.
        matching = list(states)
        status, queue, repo, handler = self.status, self.queue, self.repo, self.handler
        if status is not None:
            matching = [state for state in matching if state.status is status]
        if queue is not None:
            matching = [state for state in matching if state.job.queue == queue]
        if repo is not None:
            matching = [state for state in matching if state.job.repo == repo]
        if handler is not None:
            matching = [state for state in matching if state.job.handler == handler]
        # ``seq`` is the submission order; wall-clock times can go backwards.
        matching.sort(key=_SEQ, reverse=True)
        end = self.offset + self.limit
        if status is None:
            # Handler, repo and queue never change: the filter still holds.
            return [state.snapshot() for state in matching[self.offset : end]]
        # A status may have moved on since the filter: check it on the snapshot.
        page: list[JobInfo] = []
        skip = self.offset
        for state in matching:
            info = state.snapshot()
            if info.status is not status:
                continue
            if skip:
                skip -= 1
                continue
            page.append(info)
            if len(page) == self.limit:
                break
        return page


_SEQ = attrgetter("job.seq")
