"""The Dispatcher's figures: `Stats` for `Scheduler.stats`, and the snapshot the
Prometheus collector reads (`actors._metrics.collector`).

A component the Dispatcher owns, read on the actor loop: the figures come
from the job table's counters (raised by whichever thread ends a job), the
ready queues, the capacities, the pool, the schedule book and the counts kept
here, so one answer is consistent with itself.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping

from actors._jobs.capacity import Capacity
from actors._jobs.info import QueueStats, Stats
from actors._jobs.ready import ReadyQueue
from actors._jobs.state import LabelCounts
from actors._jobs.table import JobTable
from actors._metrics.collector import MetricsSnapshot
from actors._metrics.histogram import HistogramData, RunHistogram, merge_histograms
from actors._repo_lock import RepoWaits
from actors._schedules.book import ScheduleBook
from actors._timer.timer import TimerGauge
from actors.messages import Job

__all__ = ["DispatcherFigures"]


class DispatcherFigures:
    """Statistics and metrics, as the Dispatcher reads them."""

    def __init__(
        self,
        table: JobTable,
        readies: Mapping[str, ReadyQueue],
        capacities: Mapping[str, Capacity],
        workers: Mapping[str, int],
        run_times: Mapping[int, dict[LabelCounts, RunHistogram]],
        schedules: ScheduleBook,
        repo_locks: Callable[[], int],
        rejections: Callable[[], tuple[int, int]],
    ) -> None:
        """Build the figures over the parts they read.

        Args:
            table: the job table: its counters, and its unfinished jobs.
            readies: per named queue, its ready queue (running jobs).
            capacities: per named queue, its bound and how much of it is used.
            workers: per named queue, its pool size (the pool's, live).
            run_times: each worker's run-time histograms (the pool's, live).
            schedules: the schedule book, for its fire, misfire and skip counts.
            repo_locks: how many RepoLocks are alive.
            rejections: the facade's (dropped, rejected) submissions.
        """
        self._table = table
        self._active = table.active
        self._readies = readies
        self._capacities = capacities
        self._workers = workers
        self._run_times = run_times
        self._schedules = schedules
        self._repo_locks = repo_locks
        self._rejections = rejections
        self._retried = 0
        self._retries_by: Counter[tuple[str, str]] = Counter()
        """Retries per (queue, handler), for metrics."""
        self.repo_waits = RepoWaits()
        """Jobs that waited for their repo: counted by the RepoLocks, which get it."""
        self.timer_gauge = TimerGauge()
        """The Timer's entry count: kept by the Timer, which gets it."""

    def count_retry(self, job: Job) -> None:
        """Count a retry of ``job`` (its next attempt is scheduled)."""
        self._retried += 1
        self._retries_by[job.queue, job.handler] += 1

    def stats(self) -> Stats:
        """A `Stats` snapshot."""
        counts = self._table.counts()
        queues = tuple(
            _queue_stats(name, self._workers[name], ready, self._capacities[name])
            for name, ready in self._readies.items()
        )
        running = sum(q.running for q in queues)
        dropped, rejected = self._rejections()
        return Stats(
            submitted=counts.submitted,
            completed=counts.completed,
            failed=counts.failed,
            cancelled=counts.cancelled,
            retried=self._retried,
            dropped=dropped,
            rejected=rejected,
            running=running,
            pending=max(len(self._active) - running, 0),
            workers=sum(self._workers.values()),
            repo_locks=self._repo_locks(),
            avg_run_time=counts.run_time / counts.runs if counts.runs else 0.0,
            queues=queues,
        )

    def metrics(self) -> MetricsSnapshot:
        """The figures the Prometheus collector exposes (see `actors._metrics.collector`)."""
        stats = self.stats()
        histograms: dict[tuple[str, str], list[HistogramData]] = {}
        for per_worker in list(self._run_times.values()):
            for counts, histogram in per_worker.copy().items():
                key = (counts.queue, counts.handler)
                histograms.setdefault(key, []).append(histogram.read())
        labels = self._table.all_label_counts()
        finished: dict[tuple[str, str, str], int] = {}
        for c in labels:
            finished[c.queue, c.handler, "completed"] = c.completed
            finished[c.queue, c.handler, "failed"] = c.failed
            finished[c.queue, c.handler, "cancelled"] = c.cancelled
        return MetricsSnapshot(
            submitted={(c.queue, c.handler): c.submitted for c in labels},
            finished=finished,
            retries=self._retries_by.copy(),
            run_seconds={key: merge_histograms(parts) for key, parts in histograms.items()},
            queue_jobs=self._table.waiting_by_queue(),
            running={q.name: q.running for q in stats.queues},
            workers={q.name: q.workers for q in stats.queues},
            repo_waits=self.repo_waits.count,
            repo_locks=stats.repo_locks,
            timer_entries=self.timer_gauge.entries,
            schedule_fires=self._schedules.fires_by.copy(),
            schedule_misfires=self._schedules.misfires_by.copy(),
            schedule_skips=self._schedules.skips_by.copy(),
            dropped=stats.dropped,
            rejected=stats.rejected,
        )


def _queue_stats(name: str, workers: int, ready: ReadyQueue, capacity: Capacity) -> QueueStats:
    running = ready.running
    return QueueStats(name, workers, running, max(capacity.used - running, 0), capacity.limit)
