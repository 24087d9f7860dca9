"""How a scheduler ends: `Scheduler.shutdown`, and the crash path.

`Shutdown` moves the scheduler's `Life` from ``RUNNING`` to ``CLOSING`` and
``CLOSED`` as it drains, or to ``CRASHED`` when an actor it cannot do without
fails. Either end resolves every handle, stops every actor and keeps the
final figures answerable (rule 9, docs/guarantees.md).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from actors._facade.durable import Durable
from actors._facade.life import CLOSED, CLOSING, RUNNING, Life
from actors._facade.metrics import Metrics
from actors._jobs.capacity import Capacity
from actors._jobs.info import QueueStats, Stats
from actors._jobs.state import JobState
from actors._jobs.status import CANCELLED, FAILED
from actors._jobs.table import JobTable
from actors._log import scheduler_logger as logger
from actors._policy.checks import check_seconds
from actors._policy.queue import Queue
from actors._runtime.fork import FORKED
from actors._runtime.reaper import Reaper
from actors._runtime.refs import ActorDead, ActorRef, NoReply, ask, stop
from actors._timer.clock import wait_seconds
from actors.messages import GET_STATS, HALT, Close, ErrorInfo

__all__ = ["CANCEL_BOUND", "JOIN_FLOOR", "NODES_BYE", "Shutdown"]

JOIN_FLOOR = 0.1
"""Seconds shutdown gives threads already told to stop to end, even when the
caller's limits are used up (a stuck handler took the whole grace)."""

NODES_BYE = 2.0
"""Seconds a shutdown gives drained worker nodes to say Bye before their
sessions are ended anyway (nothing runs on them by then)."""

CANCEL_BOUND = 1e-4
"""Seconds per unfinished job a forceful close may take before shutdown gives
up on the Dispatcher (measured: about 10 us per job)."""


class Shutdown:
    """Ends a scheduler, by request or by crash, and keeps its final figures."""

    def __init__(
        self,
        life: Life,
        table: JobTable,
        capacities: Mapping[str, Capacity],
        queues: Mapping[str, Queue],
        reaper: Reaper,
        metrics: Metrics,
        rejections: Callable[[], tuple[int, int]],
        durable: Durable | None = None,
        close_nodes: Callable[[float], None] | None = None,
    ) -> None:
        """End one scheduler.

        Args:
            life: the scheduler's life, which a shutdown or a crash ends.
            table: the job table (what is left unfinished is resolved here).
            capacities: the queues' bounds, closed so no submit waits on.
            queues: the queues' configuration (for the figures of a scheduler
                that never ran).
            reaper: the scheduler's threads, stopped and joined.
            metrics: closed once the actors have stopped.
            rejections: the submits dropped and rejected so far.
            durable: the store, if the scheduler has one: a shutdown leaves
                the unfinished jobs in it for the next start, and stops the
                Journal last.
            close_nodes: ends the worker node sessions (with a time limit),
                once no job is left and before the Dispatcher stops.
        """
        self._durable = durable
        self._close_nodes = close_nodes
        self._life = life
        self._table = table
        self._capacities = capacities
        self._queues = queues
        self._reaper = reaper
        self._metrics = metrics
        self._rejections = rejections
        self.drained = threading.Event()
        """Set by the Dispatcher once no job is left, or by a crash."""
        self._closed = threading.Event()
        """Set when a shutdown has ended (threads joined, metrics unregistered)."""
        self._closer: threading.Thread | None = None
        """The thread a shutdown called from the scheduler's own thread runs on."""
        self.final_stats: Stats | None = None
        """The figures once it has ended, which `Scheduler.stats` then answers with."""

    def shutdown(self, graceful: bool, timeout: float, cancel_grace: float) -> None:
        """`Scheduler.shutdown`."""
        check_seconds("timeout", timeout, allow_zero=True)
        check_seconds("cancel_grace", cancel_grace, allow_zero=True)
        if self._life.state == FORKED:
            return  # the parent's scheduler: nothing of it runs in this process
        owned = self._reaper.owns(threading.current_thread())
        with self._life.gate:
            previous = self._life.closing()
            if previous not in (CLOSING, CLOSED) and owned:
                self._closer = threading.Thread(
                    target=self._close,
                    args=(previous, graceful, timeout, cancel_grace),
                    name=f"postroom-Shutdown-{id(self):x}",
                    daemon=False,
                )
                self._closer.start()
                return
        if previous in (CLOSING, CLOSED):
            if not owned:
                self._wait_closed()
            return
        self._close(previous, graceful, timeout, cancel_grace)

    def _wait_closed(self) -> None:
        """Wait for the shutdown another call started (its own limits bound it)."""
        self._closed.wait()
        closer = self._closer
        if closer is not None and closer is not threading.current_thread():
            closer.join()

    def _close(self, previous: str, graceful: bool, timeout: float, cancel_grace: float) -> None:
        try:
            deadline = time.monotonic() + (timeout if graceful else 0.0) + cancel_grace
            for capacity in self._capacities.values():
                capacity.close()
            dispatcher = self._life.dispatcher
            durable = self._durable
            if durable is not None and previous == RUNNING:
                durable.retain()  # the jobs this shutdown ends stay in the store
            if previous == RUNNING and dispatcher is not None:
                self._drain(dispatcher, graceful, timeout, cancel_grace)
            if durable is not None:
                # Last, once every other actor has stopped: their records are in.
                durable.stop(max(deadline - time.monotonic(), self._life.ask_timeout))
                if durable.link.left:
                    logger.warning(
                        "shutdown: %d unfinished job(s) left in the store %s for the next start",
                        durable.link.left,
                        durable.path,
                    )
            # Whatever is still alive (the actor loop, a crashed scheduler's actors)
            # is asked to stop; the dispatcher has already stopped its children.
            # Joining them takes what is left of the caller's limits; threads
            # told to stop end within milliseconds, so a floor covers them even
            # when a handler that ignores its cancel used up the grace.
            self._reaper.stop_all()
            left = self._reaper.join(timeout=max(deadline - time.monotonic(), JOIN_FLOOR))
            if left:
                logger.error(
                    "%d postroom thread(s) still running after shutdown: %s",
                    len(left),
                    ", ".join(t.name for t in left),
                )
            self._metrics.close()
        finally:
            self._life.closed()
            self._closed.set()

    def _drain(
        self, dispatcher: ActorRef[Any], graceful: bool, timeout: float, grace: float
    ) -> None:
        drained = self.drained
        if graceful:
            try:
                # With a store, what waits is left for the next start; what
                # runs may finish within the timeout.
                keep = self._durable is not None
                dispatcher.tell(Close(cancel=keep, keep_running=keep))
            except ActorDead:
                pass  # crashed meanwhile: nothing will drain; cancel what is left
            else:
                drained.wait(wait_seconds(timeout))
        if not drained.is_set():
            # The grace is for running handlers to return: it starts once the
            # Dispatcher has cancelled every waiting job and signalled the
            # running ones, which takes a while with a million jobs waiting.
            bound = self._life.ask_timeout + CANCEL_BOUND * len(self._table.active)
            try:
                ask(dispatcher, Close(cancel=True), timeout=bound)
            except NoReply:
                logger.error("shutdown: the dispatcher did not cancel the jobs within %.0fs", bound)
            except ActorDead:
                pass  # crashed meanwhile: the crash path resolves every job
            drained.wait(grace)
        stuck: list[JobState] = []
        if not drained.is_set():
            stuck = self._table.unfinished()
            logger.error(
                "shutdown: %d job(s) did not stop within %ss of being cancelled: %s",
                len(stuck),
                grace,
                ", ".join(s.job.id for s in stuck[:20]),
            )
            for state in stuck:
                self._table.finish(
                    state,
                    CANCELLED,
                    error=ErrorInfo(
                        "postroom.JobCancelled", "cancelled by shutdown; the handler did not return"
                    ),
                )
        if self._close_nodes is not None:
            # Nodes drain (nothing is left for them) and say Bye; their links
            # tell the Dispatcher how any last run ended, so it still listens.
            self._close_nodes(NODES_BYE)
        try:
            final: Stats = ask(dispatcher, GET_STATS, timeout=self._life.ask_timeout)
            self.final_stats = _at_rest(final)
            ask(dispatcher, HALT, timeout=self._life.ask_timeout)
            stop(dispatcher, timeout=self._life.ask_timeout)
        except (ActorDead, NoReply):
            logger.exception("shutdown: the dispatcher did not answer")
            self._reaper.stop_all()

    # --- failure --------------------------------------------------------------------

    def dispatcher_failed(
        self, actor: Any, _type: Any, exc: BaseException | None, _tb: Any
    ) -> None:
        # On the failed dispatcher's thread: its counters are still readable.
        try:
            stats: Stats | None = actor._stats()  # noqa: SLF001
        except Exception:  # noqa: BLE001 - the figures are a courtesy; the crash is not
            stats = None
        self.crash(f"the dispatcher failed: {exc!r}", stats)

    def journal_failed(self, _actor: Any, _type: Any, exc: BaseException | None, _tb: Any) -> None:
        """The Journal died of a bug: nothing more can be recorded, so the scheduler stops."""
        self.crash(f"the journal failed: {exc!r}", None)

    def crash(self, reason: str, stats: Stats | None) -> None:
        """Fail loudly: resolve every unfinished handle with an error, stop the actors.

        ``stats`` are the dispatcher's last figures; they stay answerable (rule 9),
        with the jobs failed here counted as failed.
        """
        if not self._life.crashed(reason):
            return
        logger.error("postroom scheduler crashed: %s", reason)
        if self._durable is not None:
            self._durable.freeze()  # the jobs are the next start's, not failed
        for capacity in self._capacities.values():
            capacity.close()
        error = ErrorInfo("postroom.SchedulerCrashed", reason)
        for state in self._table.unfinished():
            self._table.finish(state, FAILED, error=error)
        # The table counted the jobs failed here; the rest is the dispatcher's
        # last word (or nothing, if it could not give one).
        counts = self._table.counts()
        self.final_stats = replace(
            _at_rest(stats or self.empty_stats(), crashed=True),
            submitted=counts.submitted,
            completed=counts.completed,
            failed=counts.failed,
            cancelled=counts.cancelled,
        )
        self.drained.set()
        self._reaper.stop_all()

    def empty_stats(self) -> Stats:
        queues = tuple(
            QueueStats(name, queue.workers, 0, 0, queue.max_pending)
            for name, queue in self._queues.items()
        )
        workers = sum(queue.workers for queue in self._queues.values())
        dropped, rejected = self._rejections()
        return Stats(0, 0, 0, 0, 0, dropped, rejected, 0, 0, workers, 0, 0.0, queues)


def _at_rest(stats: Stats, *, crashed: bool = False) -> Stats:
    """The final figures of a scheduler that has ended: nothing runs or waits.

    A handler that ignored its cancel may still be on its thread, but its job
    is resolved: it is counted neither as running nor pending, in the totals
    or per queue, and no RepoLock is left. A crash also leaves no worker.
    """
    queues = tuple(
        replace(figures, running=0, pending=0, workers=0 if crashed else figures.workers)
        for figures in stats.queues
    )
    workers = 0 if crashed else stats.workers
    return replace(stats, running=0, pending=0, repo_locks=0, workers=workers, queues=queues)
