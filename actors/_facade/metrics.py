"""The scheduler's metrics: `Scheduler.serve_metrics`, and the snapshot a scrape reads.

`Metrics.register` registers `Metrics.snapshot` with `actors._metrics.collector`
when the scheduler starts; a scrape calls it, and it asks the Dispatcher for
its figures (the last ones it gave, once it has stopped).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable

from prometheus_client import CollectorRegistry

from actors._errors import InvalidArgument, SchedulerClosed, SchedulerUnresponsive
from actors._facade.life import Life
from actors._metrics.collector import MetricsSnapshot, NodeFigures, register_metrics
from actors._metrics.server import MetricsServer
from actors.messages import GET_METRICS

__all__ = ["Metrics"]


class Metrics:
    """A scheduler's metrics: its registration and its servers."""

    def __init__(self, life: Life, *, enabled: bool, registry: CollectorRegistry | None) -> None:
        """Keep the metrics of one scheduler.

        Args:
            life: the scheduler's life (its name labels the metrics).
            enabled: whether to register metrics at all (``Scheduler(metrics=)``).
            registry: where to register (None: ``prometheus_client``'s global one).
        """
        self._life = life
        self.enabled = enabled
        self.registry = registry
        self._servers: list[MetricsServer] = []
        self._unregister: Callable[[], None] | None = None
        self._last: MetricsSnapshot | None = None
        self.nodes: Callable[[], dict[str, NodeFigures]] | None = None
        """The worker nodes' figures, once the scheduler can listen (set by it)."""

    def register(self) -> None:
        """Register the scheduler's metrics (at start, the gate held).

        Raises:
            InvalidArgument: the registry has a scheduler of that name already.
        """
        if self.enabled:
            self._unregister = register_metrics(
                self.snapshot, name=self._life.name, registry=self.registry
            )

    def serve(self, port: int, addr: str) -> MetricsServer:
        """`Scheduler.serve_metrics`."""
        if not self.enabled:
            msg = "this scheduler was made with metrics=False: there is nothing to serve"
            raise InvalidArgument(msg)
        server = MetricsServer(port, addr=addr, registry=self.registry)
        self.start(server)
        return server

    def start(self, server: MetricsServer) -> None:
        """Start ``server`` (a `MetricsServer` or an `AdminServer`); shutdown stops it.

        Raises:
            InvalidArgument: its address cannot be bound.
            SchedulerClosed: the scheduler is not running.
        """
        life = self._life
        if not life.running:
            # Also before the gate, which a forked child's copy must not take.
            raise life.closed_error()
        with life.gate:
            if not life.running:
                raise life.closed_error()
            server.start()
            self._servers.append(server)

    def snapshot(self) -> MetricsSnapshot:
        """The dispatcher's figures; its last ones once it has stopped."""
        if self._life.running:
            with contextlib.suppress(SchedulerClosed, SchedulerUnresponsive):
                self._last = self._life.ask(GET_METRICS)
        snapshot = self._last or _EMPTY_METRICS
        nodes = self.nodes() if self.nodes is not None else None
        return dataclasses.replace(snapshot, nodes=nodes) if nodes else snapshot

    def close(self) -> None:
        """Stop the servers and unregister (at shutdown)."""
        for server in self._servers:
            server.stop()
        if self._unregister is not None:
            self._unregister()
            self._unregister = None

    def close_in_child(self) -> None:
        """In a child just forked: close the servers' copies of the parent's sockets."""
        for server in self._servers:
            server._close_in_child()  # noqa: SLF001 - the server's own fork hook


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
