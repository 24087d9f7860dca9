"""Frozen snapshots the facade hands out: `JobInfo`, `Stats` and `QueueStats`."""

from __future__ import annotations

from dataclasses import dataclass

from actors._jobs.status import JobStatus
from actors.messages import ErrorInfo, JSONValue

__all__ = ["JobInfo", "Progress", "QueueStats", "Stats"]


@dataclass(frozen=True, slots=True)
class Progress:
    """The latest progress a handler reported with ``ctx.progress``."""

    fraction: float
    message: str


@dataclass(frozen=True, slots=True)
class JobInfo:
    """What is known about one job at the moment it was asked for."""

    id: str
    handler: str
    status: JobStatus
    repo: str | None
    priority: int
    attempts: int
    """Attempts started so far (every attempt counts, retries included)."""
    max_retries: int
    payload: JSONValue
    result: JSONValue
    """The handler's result, once completed."""
    error: ErrorInfo | None
    """The last attempt's error, once an attempt failed or the job was cancelled."""
    progress: Progress | None
    idempotency_key: str | None
    submitted_at: float
    """Wall-clock times, seconds since the epoch."""
    started_at: float | None
    """When the first attempt started."""
    finished_at: float | None
    queue: str = "default"
    """The named queue that runs it."""
    retry_of: str | None = None
    """The failed or cancelled job this one re-runs (`Scheduler.retry`), if any."""
    retried_as: str | None = None
    """The job that re-runs this one, once `Scheduler.retry` was called on it."""
    schedule_id: str | None = None
    """The schedule that created it, if one did."""
    fire_time: float | None = None
    """The schedule's fire time it stands for (seconds since the epoch)."""
    parent: str | None = None
    """The job it follows (`JobHandle.then`) or was submitted by (``ctx.submit``), if any."""
    children: tuple[str, ...] = ()
    """Ids of the jobs its handler submitted with ``ctx.submit``, in order."""
    followups: tuple[str, ...] = ()
    """Ids of the jobs `JobHandle.then` made to follow it, in order."""

    @property
    def queue_wait(self) -> float | None:
        """Seconds from submission to the first start, once it started."""
        if self.started_at is None:
            return None
        return max(0.0, self.started_at - self.submitted_at)


@dataclass(frozen=True, slots=True)
class QueueStats:
    """One named queue's figures, inside `Stats.queues`."""

    name: str
    workers: int
    """The queue's pool size."""
    running: int
    """Attempts of its jobs executing right now."""
    pending: int
    """Its accepted jobs not finished and not running."""
    max_pending: int
    """Its back-pressure bound."""


@dataclass(frozen=True, slots=True)
class Stats:
    """A snapshot of the scheduler's counters (`Scheduler.stats`)."""

    submitted: int
    """Jobs accepted (a resubmission that returned an existing handle is not counted)."""
    completed: int
    failed: int
    cancelled: int
    retried: int
    """Retries scheduled, over all jobs."""
    dropped: int
    """Submissions discarded under ``on_full="drop"``."""
    rejected: int
    """Submissions refused with `QueueFull`."""
    running: int
    """Attempts executing right now."""
    pending: int
    """Accepted jobs not finished and not running: scheduled, pending or retrying."""
    workers: int
    """Workers over all queues (each queue's pool size, summed)."""
    repo_locks: int
    """RepoLock actors alive (idle repos are retired)."""
    avg_run_time: float
    """Mean seconds per finished attempt."""
    queues: tuple[QueueStats, ...] = ()
    """Per named queue, ``default`` first."""

    def queue(self, name: str) -> QueueStats:
        """The figures of the queue called ``name``.

        Raises:
            KeyError: no such queue.
        """
        for figures in self.queues:
            if figures.name == name:
                return figures
        raise KeyError(name)

    @property
    def finished(self) -> int:
        """Jobs in a terminal state."""
        return self.completed + self.failed + self.cancelled


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """One connected worker node, as `Scheduler.nodes` shows it."""

    node_id: str
    """The id the node gave when it connected."""
    key: str | None
    """The name of the key it connected with (CURVE), or None on plain loopback;
    its metrics go by this name."""
    queue: str
    """The named queue whose jobs it takes."""
    handlers: tuple[str, ...]
    """The handlers it offered that this scheduler has: only their jobs go to it."""
    capacity: int
    """How many jobs it says it runs at once."""
    in_flight: int
    """Jobs sent to it whose lease is not resolved yet."""
    credit: int
    """Jobs it asked for that were not sent yet."""
    connected_at: float
    """Wall-clock time its session began."""
    last_heard: float
    """Wall-clock time of its last message (a heartbeat at least every interval)."""
    draining: bool
    """It said it is leaving (or was told to): no more jobs go to it."""
    dispatched: int
    """Runs sent to it, over all its sessions with this listener."""
    completed: int
    """Of those, runs it reported completed."""
    failed: int
    """Runs it reported failed, cancelled or timed out."""
    redispatched: int
    """Runs ended because its session ended (interrupted), to run again or fail."""
    stale_rejected: int
    """Results and progress it sent under a lease it no longer held: rejected."""
    heartbeat_misses: int
    """Heartbeat intervals that passed without a word from it."""
