"""`Scheduler.serve_metrics` and the snapshot the metrics collector reads.

The scheduler registers `_metrics_snapshot` with `actors._metrics.collector` when it
starts; a scrape calls it, and it asks the Dispatcher for its figures (the
last ones it gave, once it has stopped).
"""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry

from actors._dispatcher.dispatcher import GET_METRICS
from actors._errors import InvalidArgument, SchedulerClosed, SchedulerUnresponsive
from actors._facade.life import Life
from actors._metrics.collector import MetricsSnapshot
from actors._metrics.server import MetricsServer

__all__ = ["MetricsAPI"]


class MetricsAPI:
    """The metrics half of `Scheduler` (a mixin: it uses the facade's state)."""

    _metrics: bool
    _registry: CollectorRegistry | None
    _life: Life
    _metric_servers: list[MetricsServer]
    _last_metrics: MetricsSnapshot | None

    @property
    def running(self) -> bool:  # the facade's
        raise NotImplementedError

    def serve_metrics(self, port: int, addr: str = "127.0.0.1") -> MetricsServer:
        """Serve this scheduler's metrics registry at ``http://addr:port/metrics``.

        The server runs on a thread of its own until `shutdown`. Port 0 picks a
        free port: read it from the returned server's ``port``.

        Raises:
            InvalidArgument: a bad port or address, or one that cannot be bound;
                or the scheduler was made with ``metrics=False``.
            SchedulerClosed: the scheduler is not running.
        """
        if not self._metrics:
            msg = "this scheduler was made with metrics=False: there is nothing to serve"
            raise InvalidArgument(msg)
        if not self.running:
            # Also before the gate, which a forked child's copy must not take.
            raise self._life.closed_error()
        server = MetricsServer(port, addr=addr, registry=self._registry)
        with self._life.gate:
            if not self.running:
                raise self._life.closed_error()
            server.start()
            self._metric_servers.append(server)
        return server

    def _metrics_snapshot(self) -> MetricsSnapshot:
        """The dispatcher's figures; its last ones once it has stopped."""
        if self.running:
            with contextlib.suppress(SchedulerClosed, SchedulerUnresponsive):
                self._last_metrics = self._life.ask(GET_METRICS)
        return self._last_metrics or _EMPTY_METRICS


_EMPTY_METRICS = MetricsSnapshot(
    submitted={},
    finished={},
    retries={},
    run_seconds={},
    queue_jobs={},
    running={},
    workers={},
    repo_waits=0,
    repo_locks=0,
    timer_entries=0,
    schedule_fires={},
    schedule_misfires={},
    schedule_skips={},
    dropped=0,
    rejected=0,
)
