"""The Dispatcher's figures: `Stats` for `Scheduler.stats`, and the snapshot the
Prometheus collector reads (`actors._metrics.collector`).

A mixin of `Dispatcher`: the figures are read on the actor loop, from the
job table's counters (raised by whichever thread ends a job), the ready
queues, the capacities and the Dispatcher's own counts, so one answer is
consistent with itself.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from actors._jobs.capacity import Capacity
from actors._jobs.info import QueueStats, Stats
from actors._jobs.ready import ReadyQueue
from actors._jobs.state import JobState, LabelCounts
from actors._jobs.table import JobTable
from actors._metrics.collector import MetricsSnapshot
from actors._metrics.histogram import HistogramData, RunHistogram, merge_histograms
from actors._repo_lock import RepoWaits
from actors._schedules.book import ScheduleBook
from actors._timer.timer import TimerGauge

__all__ = ["DispatcherFigures"]


class DispatcherFigures:
    """Statistics and metrics, as the Dispatcher reads them."""

    _table: JobTable
    _readies: Mapping[str, ReadyQueue]
    _capacities: Mapping[str, Capacity]
    _workers: dict[str, int]
    _states: dict[str, JobState]
    _repos: dict[str, Any]
    _counts: Callable[[], tuple[int, int]]
    _retried: int
    _retries_by: Counter[tuple[str, str]]
    _run_times: dict[int, dict[LabelCounts, RunHistogram]]
    _repo_waits: RepoWaits
    _timer_gauge: TimerGauge
    _schedules: ScheduleBook

    def _stats(self) -> Stats:
        counts = self._table.counts()
        queues = tuple(
            _queue_stats(name, self._workers[name], ready, self._capacities[name])
            for name, ready in self._readies.items()
        )
        running = sum(q.running for q in queues)
        dropped, rejected = self._counts()
        return Stats(
            submitted=counts.submitted,
            completed=counts.completed,
            failed=counts.failed,
            cancelled=counts.cancelled,
            retried=self._retried,
            dropped=dropped,
            rejected=rejected,
            running=running,
            pending=max(len(self._states) - running, 0),
            workers=sum(self._workers.values()),
            repo_locks=len(self._repos),
            avg_run_time=counts.run_time / counts.runs if counts.runs else 0.0,
            queues=queues,
        )

    def _metrics(self) -> MetricsSnapshot:
        """The figures the Prometheus collector exposes (see `actors._metrics.collector`)."""
        stats = self._stats()
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
            repo_waits=self._repo_waits.count,
            repo_locks=stats.repo_locks,
            timer_entries=self._timer_gauge.entries,
            schedule_fires=self._schedules.fires_by.copy(),
            schedule_misfires=self._schedules.misfires_by.copy(),
            schedule_skips=self._schedules.skips_by.copy(),
            dropped=stats.dropped,
            rejected=stats.rejected,
        )


def _queue_stats(name: str, workers: int, ready: ReadyQueue, capacity: Capacity) -> QueueStats:
    running = ready.running
    return QueueStats(name, workers, running, max(capacity.used - running, 0), capacity.limit)
