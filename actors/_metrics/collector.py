"""Prometheus metrics: run-time histograms, the scheduler's snapshot, exposition, a server.

The scheduler hands its figures over as a `MetricsSnapshot`, through a function
this module calls at scrape time; nothing here runs on a job's path except
`RunHistogram.observe`, a few list increments with no lock. Exposition goes
through ``prometheus_client``: `register_metrics` puts a scheduler on a
``CollectorRegistry`` (the global one by default) and `MetricsServer` serves a
registry's ``/metrics`` over HTTP on a thread it owns and joins.

Every series carries a ``scheduler`` label, so several schedulers share one
registry: a registry holds one postroom collector, which asks every scheduler
registered on it for a snapshot. Other labels are ``queue``, ``handler``,
``status`` and ``state``, whose values are few and fixed by the code, and
``node``, a worker node's key name (or its id on plain loopback): bounded by
the keys an operator hands out.

Cardinality rule: no repo name and no job id is ever a label. Both are
unbounded (a repo per customer, an id per job): each value would create series
that Prometheus keeps in memory and on disk long after the repo fell idle or
the job ended. Per-repo and per-job detail belongs in logs (their records carry
``repo`` and ``job_id``) and in `Scheduler.job`.
"""

from __future__ import annotations

import math
import os
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from actors._errors import InvalidArgument
from actors._log import metrics_logger as logger
from actors._metrics.histogram import HistogramData

__all__ = ["MetricsSnapshot", "NodeFigures", "register_metrics"]

# --- the snapshot -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    """The scheduler's figures at one moment, handed to the collector at each scrape.

    Counters only ever grow over a scheduler's life; the rest are gauges. Keys
    are label values, never a repo or a job id (see the module docstring).
    """

    submitted: Mapping[tuple[str, str], int]
    """(queue, handler) -> jobs accepted."""
    finished: Mapping[tuple[str, str, str], int]
    """(queue, handler, status) -> jobs ended; status is completed, failed or cancelled."""
    retries: Mapping[tuple[str, str], int]
    """(queue, handler) -> retries scheduled."""
    run_seconds: Mapping[tuple[str, str], HistogramData]
    """(queue, handler) -> the attempts' run times, merged over the workers."""
    queue_jobs: Mapping[tuple[str, str], int]
    """(queue, state) -> jobs waiting; state is pending, scheduled or retrying."""
    running: Mapping[str, int]
    """queue -> attempts running now."""
    workers: Mapping[str, int]
    """queue -> the pool's size."""
    repo_waits: int
    """Jobs that had to wait for their repo, held by another job (a counter)."""
    repo_locks: int
    """RepoLock actors alive now."""
    timer_entries: int
    """Entries pending in the Timer: delays, backoffs, deadlines, schedules."""
    schedule_fires: Mapping[str, int]
    """handler -> scheduled runs fired."""
    schedule_misfires: Mapping[str, int]
    """handler -> fire times handled more than misfire_grace late."""
    schedule_skips: Mapping[str, int]
    """handler -> scheduled runs skipped."""
    dropped: int
    """Submissions dropped by back-pressure (``on_full="drop"``)."""
    rejected: int
    """Submissions refused by back-pressure (`QueueFull`)."""
    nodes: Mapping[str, NodeFigures] = field(default_factory=dict)
    """node label -> its figures: worker nodes this scheduler has had, by the
    name of their key (CURVE) or their id (plain loopback)."""


@dataclass(frozen=True, slots=True)
class NodeFigures:
    """One worker node's figures (its label is the key's name under CURVE)."""

    connected: bool
    in_flight: int
    """Jobs sent to it whose lease is unresolved."""
    dispatched: int
    """Runs sent to it (a counter)."""
    redispatched: int
    """Runs ended by the loss of its session, to run again or fail (a counter)."""
    stale: int
    """Results it sent under a lease no longer held, rejected (a counter)."""
    heartbeat_misses: int
    """Heartbeat intervals that passed without a word from it (a counter)."""


# --- exposition ---------------------------------------------------------------------------

_FINISHED_STATUSES = ("completed", "failed", "cancelled")
_WAITING_STATES = ("pending", "scheduled", "retrying")


def _le(bound: float) -> str:
    return "+Inf" if bound == math.inf else repr(float(bound))


class _Exposition:
    """Every postroom family, filled with the series of one scheduler after another.

    A (queue, handler) or a queue that a snapshot knows of gets every status
    and state, zero where the snapshot has none: the series exists before its
    first event, so ``rate()`` and ``increase()`` see that event.
    """

    def __init__(self) -> None:
        s, q, h = "scheduler", "queue", "handler"
        counter, gauge = CounterMetricFamily, GaugeMetricFamily
        # Counter names are given without "_total": the family adds it to the sample.
        self.submitted = counter("postroom_jobs_submitted", "Jobs accepted.", labels=[s, q, h])
        self.finished = counter(
            "postroom_jobs_finished", "Jobs ended, by final status.", labels=[s, q, h, "status"]
        )
        self.retries = counter("postroom_job_retries", "Retries scheduled.", labels=[s, q, h])
        self.run_seconds = HistogramMetricFamily(
            "postroom_job_run_seconds", "Seconds each attempt ran.", labels=[s, q, h]
        )
        self.waiting = gauge(
            "postroom_jobs_waiting", "Jobs waiting to run, by state.", labels=[s, q, "state"]
        )
        self.running = gauge("postroom_jobs_running", "Attempts running now.", labels=[s, q])
        self.workers = gauge("postroom_workers", "Workers in the pool.", labels=[s, q])
        self.repo_waits = counter(
            "postroom_repo_waits", "Jobs that waited for their repo, held by another.", labels=[s]
        )
        self.repo_locks = gauge("postroom_repo_locks", "RepoLock actors alive.", labels=[s])
        self.timer_entries = gauge("postroom_timer_entries", "Timer entries pending.", labels=[s])
        self.fires = counter("postroom_schedule_fires", "Scheduled runs fired.", labels=[s, h])
        self.misfires = counter(
            "postroom_schedule_misfires",
            "Schedule fire times handled more than misfire_grace late.",
            labels=[s, h],
        )
        self.skips = counter("postroom_schedule_skips", "Scheduled runs skipped.", labels=[s, h])
        self.dropped = counter(
            "postroom_submissions_dropped", "Submissions dropped by back-pressure.", labels=[s]
        )
        self.rejected = counter(
            "postroom_submissions_rejected", "Submissions refused by back-pressure.", labels=[s]
        )
        n = "node"
        self.nodes = gauge("postroom_nodes_connected", "Worker nodes in session.", labels=[s])
        self.node_in_flight = gauge(
            "postroom_node_jobs_in_flight", "Jobs leased to a node, unresolved.", labels=[s, n]
        )
        self.node_dispatched = counter(
            "postroom_node_runs_dispatched", "Runs sent to a node.", labels=[s, n]
        )
        self.node_redispatched = counter(
            "postroom_node_runs_redispatched",
            "Runs ended by the loss of a node's session (interrupted), to run again or fail.",
            labels=[s, n],
        )
        self.node_stale = counter(
            "postroom_node_stale_results",
            "Results a node sent under a lease no longer held: rejected.",
            labels=[s, n],
        )
        self.node_misses = counter(
            "postroom_node_heartbeat_misses",
            "Heartbeat intervals without a word from a node.",
            labels=[s, n],
        )

    def families(self) -> list[Metric]:
        """The families, in a fixed order."""
        return [
            self.submitted, self.finished, self.retries, self.run_seconds, self.waiting,
            self.running, self.workers, self.repo_waits, self.repo_locks, self.timer_entries,
            self.fires, self.misfires, self.skips, self.dropped, self.rejected,
            self.nodes, self.node_in_flight, self.node_dispatched, self.node_redispatched,
            self.node_stale, self.node_misses,
        ]  # fmt: skip

    def add(self, name: str, snap: MetricsSnapshot) -> None:
        """Add the series of the scheduler called ``name``."""
        self._add_jobs(name, snap)
        self._add_queues(name, snap)
        self.repo_waits.add_metric([name], snap.repo_waits)
        self.repo_locks.add_metric([name], snap.repo_locks)
        self.timer_entries.add_metric([name], snap.timer_entries)
        handlers = {*snap.schedule_fires, *snap.schedule_misfires, *snap.schedule_skips}
        for handler in sorted(handlers):
            self.fires.add_metric([name, handler], snap.schedule_fires.get(handler, 0))
            self.misfires.add_metric([name, handler], snap.schedule_misfires.get(handler, 0))
            self.skips.add_metric([name, handler], snap.schedule_skips.get(handler, 0))
        self.dropped.add_metric([name], snap.dropped)
        self.rejected.add_metric([name], snap.rejected)
        self._add_nodes(name, snap)

    def _add_nodes(self, name: str, snap: MetricsSnapshot) -> None:
        self.nodes.add_metric([name], sum(f.connected for f in snap.nodes.values()))
        for node, figures in sorted(snap.nodes.items()):
            labels = [name, node]
            self.node_in_flight.add_metric(labels, figures.in_flight)
            self.node_dispatched.add_metric(labels, figures.dispatched)
            self.node_redispatched.add_metric(labels, figures.redispatched)
            self.node_stale.add_metric(labels, figures.stale)
            self.node_misses.add_metric(labels, figures.heartbeat_misses)

    def _add_jobs(self, name: str, snap: MetricsSnapshot) -> None:
        pairs = {*snap.submitted, *snap.retries, *(key[:2] for key in snap.finished)}
        for queue, handler in sorted(pairs):
            labels = [name, queue, handler]
            self.submitted.add_metric(labels, snap.submitted.get((queue, handler), 0))
            self.retries.add_metric(labels, snap.retries.get((queue, handler), 0))
            for status in _FINISHED_STATUSES:
                count = snap.finished.get((queue, handler, status), 0)
                self.finished.add_metric([*labels, status], count)
        for (queue, handler, status), count in sorted(snap.finished.items()):
            if status not in _FINISHED_STATUSES:  # unknown to us: shown as given
                self.finished.add_metric([name, queue, handler, status], count)
        for (queue, handler), histogram in sorted(snap.run_seconds.items()):
            buckets = [(_le(bound), float(n)) for bound, n in histogram.cumulative()]
            self.run_seconds.add_metric([name, queue, handler], buckets, histogram.sum)

    def _add_queues(self, name: str, snap: MetricsSnapshot) -> None:
        queues = {*snap.workers, *snap.running, *(queue for queue, _ in snap.queue_jobs)}
        for queue in sorted(queues):
            for state in _WAITING_STATES:
                count = snap.queue_jobs.get((queue, state), 0)
                self.waiting.add_metric([name, queue, state], count)
            self.running.add_metric([name, queue], snap.running.get(queue, 0))
            self.workers.add_metric([name, queue], snap.workers.get(queue, 0))
        for (queue, state), count in sorted(snap.queue_jobs.items()):
            if state not in _WAITING_STATES:
                self.waiting.add_metric([name, queue, state], count)


@dataclass(frozen=True, slots=True, eq=False)
class _Source:
    """One registration: compared by identity, so a stale unregister finds it gone."""

    snapshot: Callable[[], MetricsSnapshot]


class _PostroomCollector:
    """The one postroom collector of a registry: every scheduler registered on it."""

    def __init__(self) -> None:
        self.sources: Mapping[str, _Source] = {}
        """Scheduler name -> snapshot function. Replaced, never changed in place,
        so a scrape reads it without a lock while schedulers come and go."""

    def describe(self) -> list[Metric]:
        """The families without samples: how the registry learns our names."""
        return _Exposition().families()

    def collect(self) -> Iterator[Metric]:
        """One snapshot per scheduler, taken now; a scheduler that fails to answer is left
        out of this scrape (and logged) rather than failing the others'."""
        snapshots: dict[str, MetricsSnapshot] = {}
        for name, source in self.sources.items():
            try:
                snapshots[name] = source.snapshot()
            except Exception:  # noqa: BLE001 - one scheduler's failure must not blank the rest
                logger.exception("metrics: scheduler %r gave no snapshot", name)
        exposition = _Exposition()
        for name, snap in sorted(snapshots.items()):
            exposition.add(name, snap)
        yield from exposition.families()


_collectors: weakref.WeakKeyDictionary[CollectorRegistry, _PostroomCollector] = (
    weakref.WeakKeyDictionary()
)
"""Each registry's postroom collector. The registry has no lookup by kind, and
registering a second collector with the same names would clash."""
_collectors_lock = threading.Lock()


def _forget_in_child() -> None:
    """After os.fork(), in the child: a new lock (a thread of the parent may
    have held the old one, and none frees it here), and no scheduler on any
    registry. Every scheduler registered at the fork had started in the parent
    and is of no use here (actors/_runtime/fork.py): its series would go on showing its
    last figures, and its name would stay taken for the child's own scheduler.
    The collectors stay on their registries (taking one off takes the
    registry's lock) and serve the schedulers the child registers next."""
    global _collectors_lock  # noqa: PLW0603 - rebuilt once per fork, in the child
    _collectors_lock = threading.Lock()
    for collector in list(_collectors.values()):
        collector.sources = {}


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


def register_metrics(
    snapshot: Callable[[], MetricsSnapshot],
    *,
    name: str,
    registry: CollectorRegistry | None = None,
) -> Callable[[], None]:
    """Expose a scheduler's metrics on ``registry`` (None: ``prometheus_client.REGISTRY``).

    ``snapshot`` is called at every scrape, on the scraping thread; ``name``
    becomes the ``scheduler`` label of the scheduler's series. Returns the
    function that unregisters them (calling it again does nothing); the last
    scheduler to leave a registry takes postroom's collector off it.

    Raises:
        InvalidArgument: ``name`` is not a non-empty str, ``snapshot`` is not
            callable, a scheduler of that name is already on the registry
            (give each scheduler its own name), or another collector on the
            registry already owns a ``postroom_`` metric name.
    """
    if not isinstance(name, str) or not name:
        msg = f"name must be a non-empty str, not {name!r}"
        raise InvalidArgument(msg)
    if not callable(snapshot):
        msg = f"snapshot must be callable, not {snapshot!r}"
        raise InvalidArgument(msg)
    target = REGISTRY if registry is None else registry
    with _collectors_lock:
        collector = _collectors.get(target)
        if collector is None:
            collector = _PostroomCollector()
            try:
                target.register(collector)
            except ValueError as exc:  # DuplicateTimeseries
                msg = f"the registry already has postroom metric names: {exc}"
                raise InvalidArgument(msg) from exc
            _collectors[target] = collector
        elif name in collector.sources:
            msg = f"a scheduler named {name!r} already registers metrics on this registry"
            raise InvalidArgument(msg)
        source = _Source(snapshot)
        collector.sources = {**collector.sources, name: source}

    def unregister() -> None:
        with _collectors_lock:
            if collector.sources.get(name) is not source:
                return  # already gone (and the name perhaps taken again since)
            collector.sources = {k: v for k, v in collector.sources.items() if k != name}
            if not collector.sources and _collectors.get(target) is collector:
                target.unregister(collector)
                del _collectors[target]

    return unregister
