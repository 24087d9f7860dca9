"""What the admin API reads and does: a running `Scheduler`, or a store file alone.

`SchedulerSource` answers from a scheduler's public calls; `StoreSource` from a
journal file read through `connect_readonly` (``postroom dashboard --store``:
a post-mortem, no scheduler running), and refuses every mutation. The app
(``api.py``) talks to either through `Source`, so the two serve the same JSON.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

from actors._errors import JobNotFound, ScheduleNotFound, StoreError
from actors._jobs.cancel_result import CancelResult
from actors._jobs.info import JobInfo, NodeInfo, QueueStats, Stats
from actors._jobs.runs import RunInfo
from actors._jobs.status import JobStatus
from actors._journal import reader
from actors._journal.schedules import StoredSchedule, load_schedules
from actors._journal.store import connect_readonly
from actors._schedules.book import ScheduleInfo

if TYPE_CHECKING:
    from actors._scheduler import Scheduler

__all__ = ["ReadOnlySource", "SchedulerSource", "Source", "StoreSource"]

T = TypeVar("T")


class ReadOnlySource(Exception):
    """A mutation was asked of a source that has none (a store read alone)."""


class Source(Protocol):
    """What the admin app reads and does; every call may raise postroom's errors."""

    read_only: bool
    """Whether the source can do nothing but read (the app then serves no mutation)."""

    def not_ready(self) -> str | None:
        """Why it cannot serve now (``/readyz`` answers 503 with it), or None."""
        ...

    def stats(self) -> Stats:
        """The counters, with the queues'."""
        ...

    def jobs(self, **filters: Any) -> list[JobInfo]:
        """A page of jobs: `Scheduler.jobs`'s filters and paging."""
        ...

    def job(self, job_id: str) -> JobInfo:
        """One job. Raises `JobNotFound`."""
        ...

    def runs(self, job_id: str) -> list[RunInfo]:
        """A job's attempts, oldest first."""
        ...

    def schedules(self) -> list[ScheduleInfo]:
        """Every schedule, oldest first."""
        ...

    def schedule(self, schedule_id: str) -> ScheduleInfo:
        """One schedule. Raises `ScheduleNotFound`."""
        ...

    def nodes(self) -> list[NodeInfo]:
        """The worker nodes connected now."""
        ...

    def cancel(self, job_id: str) -> CancelResult:
        """`Scheduler.cancel`."""
        ...

    def retry(self, job_id: str) -> JobInfo:
        """`Scheduler.retry`: the new job."""
        ...

    def pause(self, schedule_id: str) -> ScheduleInfo:
        """`Scheduler.pause`."""
        ...

    def resume(self, schedule_id: str) -> ScheduleInfo:
        """`Scheduler.resume`."""
        ...

    def trigger(self, schedule_id: str) -> JobInfo | None:
        """`Scheduler.trigger`: the job it made, or None (the queue was full)."""
        ...

    def remove(self, schedule_id: str) -> ScheduleInfo:
        """`Scheduler.remove`."""
        ...

    def resize(self, queue: str, workers: int) -> QueueStats:
        """`Scheduler.resize`: the queue's figures after it."""
        ...


class SchedulerSource:
    """A running scheduler, through its public calls."""

    read_only = False

    def __init__(self, scheduler: Scheduler) -> None:
        self._sched = scheduler

    def not_ready(self) -> str | None:
        return self._sched._not_ready()  # noqa: SLF001 - the scheduler's own readiness

    def stats(self) -> Stats:
        return self._sched.stats()

    def jobs(self, **filters: Any) -> list[JobInfo]:
        return self._sched.jobs(**filters)

    def job(self, job_id: str) -> JobInfo:
        return self._sched.job(job_id)

    def runs(self, job_id: str) -> list[RunInfo]:
        return self._sched.runs(job_id)

    def schedules(self) -> list[ScheduleInfo]:
        return self._sched.schedules()

    def schedule(self, schedule_id: str) -> ScheduleInfo:
        return self._sched.schedule(schedule_id)

    def nodes(self) -> list[NodeInfo]:
        return self._sched.nodes()

    def cancel(self, job_id: str) -> CancelResult:
        return self._sched.cancel(job_id)

    def retry(self, job_id: str) -> JobInfo:
        handle = self._sched.retry(job_id)
        return self._sched.job(handle.id)

    def pause(self, schedule_id: str) -> ScheduleInfo:
        return self._sched.pause(schedule_id)

    def resume(self, schedule_id: str) -> ScheduleInfo:
        return self._sched.resume(schedule_id)

    def trigger(self, schedule_id: str) -> JobInfo | None:
        handle = self._sched.trigger(schedule_id)
        return None if handle is None else self._sched.job(handle.id)

    def remove(self, schedule_id: str) -> ScheduleInfo:
        return self._sched.remove(schedule_id)

    def resize(self, queue: str, workers: int) -> QueueStats:
        # Checked first: resize's own UnknownQueue is the same, but stats' lookup
        # of a queue that vanished is not expected.
        self._sched.resize(workers, queue=queue)
        return self._sched.stats().queue(queue)


_UNFINISHED = ("scheduled", "pending", "retrying")


class StoreSource:
    """A store file read alone (no scheduler running): every call opens a
    read-only connection, so a store a scheduler still writes reads too."""

    read_only = True

    def __init__(self, path: str) -> None:
        self.path = path

    def _read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        with connect_readonly(self.path) as conn:
            reader.check_readable(conn, self.path)
            return query(conn)

    def not_ready(self) -> str | None:
        if not os.path.isfile(self.path):
            return f"no store at {self.path}"
        try:
            self._read(lambda conn: None)
        except StoreError as exc:
            return str(exc)
        return None

    def stats(self) -> Stats:
        return self._read(_stats)

    def jobs(self, **filters: Any) -> list[JobInfo]:
        return self._read(lambda conn: reader.job_infos(conn, **filters))

    def job(self, job_id: str) -> JobInfo:
        info = self._read(lambda conn: reader.job_info(conn, job_id))
        if info is None:
            msg = f"no job {job_id!r} in {self.path}"
            raise JobNotFound(msg)
        return info

    def runs(self, job_id: str) -> list[RunInfo]:
        return self._read(lambda conn: reader.run_infos(conn, job_id))

    def schedules(self) -> list[ScheduleInfo]:
        return [_schedule_info(saved) for saved in self._read(load_schedules)]

    def schedule(self, schedule_id: str) -> ScheduleInfo:
        for info in self.schedules():
            if info.id == schedule_id:
                return info
        msg = f"no schedule {schedule_id!r} in {self.path}"
        raise ScheduleNotFound(msg)

    def nodes(self) -> list[NodeInfo]:
        return []  # nodes are connections, never stored

    def _refuse(self, *_args: object) -> Any:
        msg = f"{self.path} is read alone: nothing can be changed"
        raise ReadOnlySource(msg)

    cancel = retry = pause = resume = trigger = remove = resize = _refuse


def _stats(conn: sqlite3.Connection) -> Stats:
    """The counters a store can give: its jobs counted by queue and status."""
    by_queue: dict[str, dict[str, int]] = {}
    totals: dict[str, int] = {}
    for queue, status, count in conn.execute(
        "SELECT queue, status, count(*) FROM jobs GROUP BY queue, status"
    ):
        by_queue.setdefault(str(queue), {})[str(status)] = int(count)
        totals[str(status)] = totals.get(str(status), 0) + int(count)
    retried, average = conn.execute(
        "SELECT (SELECT coalesce(sum(max(attempts - 1, 0)), 0) FROM jobs), "
        "(SELECT avg(finished_at - started_at) FROM runs WHERE finished_at IS NOT NULL)"
    ).fetchone()
    names = sorted(by_queue, key=lambda name: (name != "default", name))
    queues = tuple(
        QueueStats(
            name=name,
            workers=0,
            running=by_queue[name].get(JobStatus.RUNNING.value, 0),
            pending=sum(by_queue[name].get(status, 0) for status in _UNFINISHED),
            max_pending=0,
        )
        for name in names
    )
    return Stats(
        submitted=sum(totals.values()),
        completed=totals.get("completed", 0),
        failed=totals.get("failed", 0),
        cancelled=totals.get("cancelled", 0),
        retried=int(retried),
        dropped=0,
        rejected=0,
        running=totals.get(JobStatus.RUNNING.value, 0),
        pending=sum(totals.get(status, 0) for status in _UNFINISHED),
        workers=0,
        repo_locks=0,
        avg_run_time=float(average or 0.0),
        queues=queues,
    )


def _utc(t: float | None) -> datetime | None:
    return None if t is None else datetime.fromtimestamp(t, UTC)


def _schedule_info(saved: StoredSchedule) -> ScheduleInfo:
    """A stored schedule as `Scheduler.schedules` shows one."""
    return ScheduleInfo(
        id=saved.id,
        handler=saved.handler,
        kind=cast(Any, saved.kind),
        description=saved.description,
        paused=saved.paused,
        next_fire=None if saved.paused else _utc(saved.next_fire),
        last_fire=_utc(saved.last_fire),
        last_job=saved.last_job,
        fires=saved.fires,
        misfires=saved.misfires,
        skips=saved.skips,
        overlap=cast(Any, saved.overlap),
        misfire=cast(Any, saved.misfire),
        misfire_grace=saved.misfire_grace,
    )
