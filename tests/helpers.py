"""Shared test helpers: recording runs, waiting on conditions, collecting actor mail.

Tests synchronise on events, handles and actor replies, never on sleeps. Two
kinds of wait live here:

- `WAIT` bounds every wait for something that must happen (a generous limit that
  a passing test never reaches);
- `QUIET` is how long a test gives the scheduler to do something it must *not*
  do (start a job early, fire a timer early) before it concludes it did not.
"""

from __future__ import annotations

import contextlib
import itertools
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pykka
from pykka.messages import ProxyGetAttr

from actors import Scheduler
from actors._runtime.actor import PostroomActor

__all__ = [
    "QUIET",
    "WAIT",
    "Collector",
    "Run",
    "Runs",
    "barrier",
    "collector",
    "quiet",
    "settle",
    "wait_until",
]

WAIT = 5.0
"""Seconds any wait for something that must happen may take."""

QUIET = 0.15
"""Seconds a test watches for something that must not happen."""


# --- recording executions -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Run:
    """One execution of a handler, as the handler itself saw it."""

    label: str
    repo: str | None
    start: float
    """`time.perf_counter` when the handler started."""
    end: float
    """`time.perf_counter` when it returned (or raised)."""


@dataclass
class Runs:
    """A lock-protected record of handler executions, and per-label start events.

    Use it inside handlers::

        with runs.run("a", ctx.repo):
            ...   # the work

    It also tracks, per repo, how many executions are inside ``run`` at once, so a
    test can assert mutual exclusion directly (`max_active`) as well as from the
    recorded intervals (`overlaps`).
    """

    _lock: threading.Lock = field(default_factory=threading.Lock)
    _runs: list[Run] = field(default_factory=list)
    _order: list[str] = field(default_factory=list)
    _events: dict[str, threading.Event] = field(default_factory=dict)
    _active: dict[str | None, int] = field(default_factory=dict)
    _max_active: dict[str | None, int] = field(default_factory=dict)

    @contextlib.contextmanager
    def run(self, label: str, repo: str | None = None) -> Iterator[None]:
        """Record one execution of ``label`` (in ``repo``) around the block."""
        with self._lock:
            start = time.perf_counter()
            self._order.append(label)
            active = self._active[repo] = self._active.get(repo, 0) + 1
            self._max_active[repo] = max(self._max_active.get(repo, 0), active)
            event = self._events.setdefault(label, threading.Event())
        event.set()
        try:
            yield
        finally:
            with self._lock:
                self._active[repo] -= 1
                self._runs.append(Run(label, repo, start, time.perf_counter()))

    def started(self, label: str) -> threading.Event:
        """An event set when an execution of ``label`` starts."""
        with self._lock:
            return self._events.setdefault(label, threading.Event())

    @property
    def order(self) -> list[str]:
        """Labels in the order their executions started."""
        with self._lock:
            return list(self._order)

    @property
    def runs(self) -> list[Run]:
        """Finished executions, in the order they ended."""
        with self._lock:
            return list(self._runs)

    def of(self, label: str) -> list[Run]:
        """Finished executions of ``label``."""
        return [r for r in self.runs if r.label == label]

    def max_active(self, repo: str | None) -> int:
        """The most executions of ``repo`` that were ever running at once."""
        with self._lock:
            return self._max_active.get(repo, 0)

    def overlaps(self) -> list[tuple[Run, Run]]:
        """Pairs of executions of one repo whose intervals overlap (should be none)."""
        found = []
        by_repo: dict[str | None, list[Run]] = {}
        for r in self.runs:
            by_repo.setdefault(r.repo, []).append(r)
        for repo, runs in by_repo.items():
            if repo is None:
                continue
            runs.sort(key=lambda r: r.start)
            found += [(a, b) for a, b in itertools.pairwise(runs) if b.start < a.end]
        return found


# --- waiting --------------------------------------------------------------------------


def wait_until(
    predicate: Callable[[], bool], what: str = "condition", timeout: float = WAIT
) -> None:
    """Poll ``predicate`` until it is true; fail the test after ``timeout`` seconds.

    For states no event announces (a job's status moving to ``retrying``, say).
    The poll interval is short; this is a deadline on a condition, not a sleep
    standing in for one.
    """
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not predicate():
        if time.monotonic() > deadline:
            msg = f"timed out after {timeout}s waiting for {what}"
            raise AssertionError(msg)
        pause.wait(0.001)


def quiet(event: threading.Event, window: float = QUIET) -> bool:
    """True if ``event`` stays unset for ``window`` seconds (something did not happen)."""
    return not event.wait(window)


def settle(sched: Scheduler) -> None:
    """Wait until the Dispatcher has handled every message sent to it before this call.

    `Scheduler.stats` is an ask, and the Dispatcher's mailbox is FIFO: once it
    answers, every earlier ``submit`` has been routed (a job without a repo is in
    the ready queue).
    """
    sched.stats()


def barrier(ref: pykka.ActorRef[Any]) -> None:
    """Wait until the actor has handled every message sent to it before this call."""
    ref.ask(ProxyGetAttr(attr_path=("actor_urn",)), timeout=WAIT)


# --- collecting actor mail ------------------------------------------------------------


class Collector(PostroomActor):
    """An actor that stands in for another one and keeps every message it gets."""

    def __init__(self, inbox: queue.Queue[Any]) -> None:
        super().__init__()
        self.received = inbox

    def on_receive(self, message: Any) -> None:
        """Keep the message."""
        self.received.put(message)


@contextlib.contextmanager
def collector() -> Iterator[tuple[pykka.ActorRef[Any], queue.Queue[Any]]]:
    """A running `Collector` and the queue of messages it got; stopped on exit."""
    received: queue.Queue[Any] = queue.Queue()
    spawned = Collector.spawn(received)
    try:
        yield spawned.ref, received
    finally:
        spawned.ref.stop(block=True, timeout=WAIT)
        spawned.thread.join(WAIT)


@dataclass
class Gate:
    """A handler that blocks: ``started`` once it runs, returns on ``release``."""

    started: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)


def gated_scheduler(**options: Any) -> tuple[Scheduler, Gate, Counter[str]]:
    """A scheduler with a ``block`` handler held by a gate and a counting ``work``."""
    sched = Scheduler(**options)
    gate = Gate()
    calls = Counter[str]()
    lock = threading.Lock()

    @sched.handler("block")
    def block(ctx: Any, payload: Any) -> str:
        gate.started.set()
        assert gate.release.wait(10)
        return "released"

    @sched.handler("work")
    def work(ctx: Any, payload: Any) -> Any:
        with lock:
            calls[str(payload)] += 1
        return payload

    return sched, gate, calls
