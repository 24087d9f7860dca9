"""`Scheduler.listen` and `Scheduler.nodes`: the scheduler's side of worker nodes.

The ZeroMQ part (``transport/``) is imported only when a scheduler listens,
so a scheduler that never does loads no pyzmq, starts no I/O thread and
pays nothing for nodes. `Nodes` owns the listeners and ends them at
shutdown: after the jobs have drained (a graceful shutdown lets nodes run
queued jobs to the end, as local workers do) and before the Dispatcher
stops, since links tell it how their runs ended.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING

from actors._errors import InvalidArgument, SchedulerClosed
from actors._facade.life import RUNNING, Life
from actors._jobs.info import NodeInfo
from actors._jobs.ready import ReadyQueue
from actors._jobs.table import JobTable
from actors._metrics.collector import NodeFigures
from actors._policy.checks import check_int, check_seconds
from actors._policy.handlers import HandlerSpec
from actors._runtime.reaper import Reaper
from actors._timer.clock import Clock

if TYPE_CHECKING:
    from transport.listener import Listener

__all__ = ["Nodes"]


class Nodes:
    """The listeners of one scheduler (usually one)."""

    def __init__(
        self,
        life: Life,
        readies: Mapping[str, ReadyQueue],
        table: JobTable,
        handlers: Mapping[str, HandlerSpec],
        clock: Clock,
        tokens: Iterator[int],
        reaper: Reaper,
        crash: Callable[[str], None],
    ) -> None:
        self._life = life
        self._readies = readies
        self._table = table
        self._handlers = handlers
        self._clock = clock
        self._tokens = tokens
        self._reaper = reaper
        self._crash = crash
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []
        self._closed = False
        self._figures: dict[str, NodeFigures] = {}

    def listen(
        self,
        endpoint: str,
        *,
        keys: str | os.PathLike[str] | None,
        server_key: str | os.PathLike[str] | None,
        insecure: bool,
        heartbeat: float,
        misses: int,
    ) -> Listener:
        """`Scheduler.listen`."""
        self._life.check_process()
        if not isinstance(endpoint, str) or not endpoint:
            msg = f"endpoint must be a ZeroMQ endpoint like 'tcp://0.0.0.0:7555', not {endpoint!r}"
            raise InvalidArgument(msg)
        if not isinstance(insecure, bool):
            msg = f"insecure must be a bool, not {insecure!r}"
            raise InvalidArgument(msg)
        check_seconds("heartbeat", heartbeat)
        check_int("misses", misses, 1)
        from transport.listener import Listener

        with self._life.gate:
            if self._life.state != RUNNING or self._closed:
                msg = f"listen() needs a running scheduler; this one is {self._life.state}"
                raise SchedulerClosed(msg)
            dispatcher, timer = self._life.dispatcher, self._life.timer
            assert dispatcher is not None and timer is not None
        listener = Listener(
            endpoint,
            readies=self._readies,
            table=self._table,
            handlers=self._handlers,
            clock=self._clock,
            tokens=self._tokens,
            dispatcher=dispatcher,
            timer=timer,
            reaper=self._reaper,
            crash=self._crash,
            keys=keys,
            server_key=server_key,
            insecure=insecure,
            heartbeat=heartbeat,
            misses=misses,
        )
        with self._lock:
            if not self._closed:
                self._listeners.append(listener)
                return listener
        listener.close(0.0)  # the scheduler stopped as it bound
        msg = "the scheduler stopped while listen() bound its endpoint"
        raise SchedulerClosed(msg)

    def nodes(self) -> list[NodeInfo]:
        """`Scheduler.nodes`."""
        with self._lock:
            listeners = list(self._listeners)
        return [info for listener in listeners for info in listener.nodes()]

    def figures(self) -> dict[str, NodeFigures]:
        """Per node label, its figures over every listener (for the metrics);
        kept after shutdown, so counters never go back."""
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            connected = {info.key or info.node_id: info for info in listener.nodes()}
            for label, totals in listener.totals().items():
                info = connected.get(label)
                self._figures[label] = NodeFigures(
                    connected=info is not None,
                    in_flight=info.in_flight if info is not None else 0,
                    dispatched=totals.dispatched,
                    redispatched=totals.redispatched,
                    stale=totals.stale,
                    heartbeat_misses=totals.heartbeat_misses,
                )
        return dict(self._figures)

    def close(self, timeout: float) -> None:
        """End every listener (shutdown); nodes get ``timeout`` seconds to say Bye."""
        with self._lock:
            self._closed = True
            listeners, self._listeners = self._listeners, []
        for listener in listeners:
            listener.close(timeout)
        # The last figures stay, the sessions ended: nothing is connected or in flight.
        self._figures = {
            label: dataclasses.replace(f, connected=False, in_flight=0)
            for label, f in self._figures.items()
        }
