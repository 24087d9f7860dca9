"""`Node`: a worker node, which runs jobs a scheduler in another process lends it.

One thread does the node's work (the one that calls `Node.run`, its "main
loop"); it alone decides what to send: `Hello`, `Credit`, `Progress`,
`NodeFinished`, `Heartbeat`, `Drain`, `Bye`. Heartbeats come from that loop, not
from the I/O thread, so a loop that hangs stops them and the scheduler notices.
Around it:

- a `NodeIO` thread owns the DEALER socket and hands each message from the
  scheduler to the main loop's inbox (never blocking);
- ``capacity`` slot threads each own a runner (`ThreadRunner`, or with a hard
  time limit a process runner) and a `CancelScope`; they take runs from a
  local queue and post their outcome (and their handler's progress) to the
  inbox.

Credit: after `Welcome` the node offers ``capacity + prefetch`` minus the runs
it holds, then one more as each run ends; it never offers more, so the
scheduler can never have sent more runs than there are slots and the prefetch
queue. A `CancelRun` fires the scope of the slot running it (or marks a run not
yet started, which then ends without calling its handler). A run past its
deadline (``time.monotonic()`` at its start + ``job.timeout``) is told to stop
here too, as ``"timeout"``, so the deadline holds even while the scheduler's
``CancelRun`` is on the way.

Ending: `Drain` from the scheduler, or `stop` (SIGTERM in ``postroom worker``),
stops the credit; the runs held are finished and their `NodeFinished` sent,
then `Bye`, and `run` returns.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from queue import Empty, Queue
from typing import TYPE_CHECKING, Any, Self, cast

from actors._errors import InvalidArgument, NodeRefused
from actors._log import nodes_logger as logger
from actors._policy.handlers import HandlerSpec
from actors._policy.payloads import DEFAULT_MAX_PAYLOAD_BYTES, check_max_payload_bytes
from actors._policy.registry import Handlers, handler_specs
from actors._worker.cancel import CancelReason, CancelScope
from actors.messages import (
    Bye,
    CancelRun,
    Credit,
    Drain,
    Heartbeat,
    Hello,
    NodeFinished,
    Outcome,
    Progress,
    Refused,
    Run,
    Welcome,
)
from transport.app import app_path
from transport.io import MAX_BATCH, NodeIO
from transport.process_runner import ProcessRunner
from transport.protocol import PROTOCOL_VERSION, NodeMessage, SchedulerMessage
from transport.runner import Runner, ThreadRunner
from transport.security import ClientSecurity, is_loopback

if TYPE_CHECKING:
    from os import PathLike

    from actors._scheduler import Scheduler

__all__ = ["Node", "NodeStats"]

DEFAULT_HEARTBEAT = 1.0
"""Seconds between heartbeats until the scheduler's `Welcome` says otherwise."""
MISSED_HEARTBEATS = 3
"""Heartbeat intervals of silence after which the peer counts as gone."""
_POLL = 0.25
"""The longest the main loop waits without looking at `stop`'s flag (a signal
handler on the loop's own thread cannot wake it through the inbox's lock)."""
_FLUSH = 1.0
"""The longest `run` waits for the I/O thread to hand `Bye` to ZeroMQ."""
_FLUSH_GRACE = 0.1
"""Then, time for ZeroMQ to write it: closing the socket drops what is unsent."""
_REASONS: frozenset[str] = frozenset(("cancel", "timeout", "shutdown", "parent"))


@dataclasses.dataclass(frozen=True, slots=True)
class NodeStats:
    """A snapshot of a node's counters."""

    node_id: str
    connected: bool
    """Whether the scheduler has welcomed it (and not gone silent since)."""
    capacity: int
    running: int
    """Runs whose handler is running now."""
    queued: int
    """Runs received and not started yet (the prefetch)."""
    runs: int
    """Runs received."""
    completed: int
    failed: int
    """Runs that ended failed, timed out ones included."""
    timed_out: int
    cancelled: int
    hellos: int
    """`Hello` messages sent: 1, plus one each time the scheduler was lost."""
    heartbeat_misses: int
    """Times the scheduler went silent for three heartbeats."""
    progress: int
    """`Progress` messages sent."""


class _Loop:
    """The main loop's own state (read and written by that thread alone)."""

    __slots__ = (
        "drain_sent",
        "draining",
        "heartbeat",
        "last_heard",
        "next_beat",
        "next_hello",
        "offered",
        "session",
        "welcomed",
    )

    def __init__(self, now: float) -> None:
        self.heartbeat = DEFAULT_HEARTBEAT
        self.welcomed = False
        """Welcomed at least once: a Refused after that asks for a new Hello."""
        self.session = False
        """Welcomed, and neither refused nor silent since."""
        self.draining = False
        self.drain_sent = False
        self.offered = 0
        """Credit offered in this session and not used by a Run yet."""
        self.last_heard = now
        self.next_beat = now
        self.next_hello = now


class _Held:
    """One run the node holds, from its `Run` to its `NodeFinished`."""

    __slots__ = ("cancel", "deadline", "run", "scope")

    def __init__(self, run: Run) -> None:
        self.run = run
        self.scope: CancelScope | None = None
        """The scope of the slot running it, once one has started it."""
        self.cancel: CancelReason | None = None
        """A stop asked for before a slot started it."""
        self.deadline: float | None = None


class Node:
    """A worker node: serves a scheduler's jobs from this process.

    Args:
        endpoint: the scheduler's endpoint, e.g. ``"tcp://sched.example:7555"``.
        handlers: the registrations to run: a `Handlers`, or a `Scheduler`
            (its handlers), as the scheduler's process has them.
        node_id: its name among the scheduler's nodes (default
            ``"{hostname}-{pid}"``).
        capacity: slots: how many jobs run at once (>= 1).
        queue: the scheduler's named queue whose jobs it takes.
        prefetch: runs it asks for beyond its slots, queued here (>= 0).
        key: the node's secret key file (``NAME.key_secret``, `postroom keys`).
        server_key: the scheduler's public key file (``NAME.key``).
        insecure: no keys: plain TCP, only to a loopback endpoint (logged as
            a warning).
        hard_timeout: GRACE seconds: run each handler in a child process,
            killed and replaced GRACE seconds past its attempt's deadline.
            The children import ``handlers`` by its module-level name
            (`transport.app.app_path`); one bound to none is refused.
        max_payload_bytes: the most bytes a result may take, encoded.

    Raises:
        InvalidArgument: a bad argument; keys missing without ``insecure``,
            or given with it; ``insecure`` to an endpoint that is not loopback;
            an unusable key file; no handlers.
    """

    def __init__(
        self,
        endpoint: str,
        handlers: Handlers | Scheduler,
        *,
        node_id: str | None = None,
        capacity: int = 1,
        queue: str = "default",
        prefetch: int = 0,
        key: str | PathLike[str] | None = None,
        server_key: str | PathLike[str] | None = None,
        insecure: bool = False,
        hard_timeout: float | None = None,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    ) -> None:
        if not isinstance(endpoint, str) or "://" not in endpoint:
            msg = f"a ZeroMQ endpoint such as 'tcp://127.0.0.1:7555', not {endpoint!r:.100}"
            raise InvalidArgument(msg)
        self._specs = _specs_of(handlers)
        if not self._specs:
            msg = "a node needs at least one handler to offer"
            raise InvalidArgument(msg)
        if node_id is None:
            node_id = f"{socket.gethostname()}-{os.getpid()}"
        if not isinstance(node_id, str) or not node_id or len(node_id) > 255:
            msg = f"node_id must be a str of 1 to 255 characters, not {node_id!r:.80}"
            raise InvalidArgument(msg)
        _check_count("capacity", capacity, 1)
        _check_count("prefetch", prefetch, 0)
        if not isinstance(queue, str) or not queue:
            msg = f"queue must be a non-empty str, not {queue!r}"
            raise InvalidArgument(msg)
        self._max_result_bytes = check_max_payload_bytes(max_payload_bytes)
        self._security = _security(endpoint, key, server_key, insecure)
        self._runner_factory = self._runners(handlers, hard_timeout)
        self._endpoint = endpoint
        self._node_id = node_id
        self._capacity = capacity
        self._queue = queue
        self._prefetch = prefetch
        self._inbox: Queue[tuple[Any, ...]] = Queue()
        self._work: Queue[_Held | None] = Queue()
        self._limit = capacity + prefetch
        """The most runs held at once: the credit never goes beyond it."""
        self._send: Callable[[NodeMessage], None] = _not_started
        self._outbox: list[NodeMessage] = []
        """What the main loop sends at the end of its pass (`_flush_outbox`)."""
        self._lock = threading.Lock()  # guards each _Held's scope/cancel/deadline
        self._held: dict[int, _Held] = {}
        """By lease: the runs this node holds (queued or running)."""
        self._slots: list[threading.Thread] = []
        self._io: NodeIO | None = None
        self._stopping = False
        self._run_ident: int | None = None
        self._state = "new"  # new, running, closed
        self._state_lock = threading.Lock()
        self._done = threading.Event()
        self._connected = False
        self._counts = dict.fromkeys(
            (
                "runs",
                "completed",
                "failed",
                "timed_out",
                "cancelled",
                "hellos",
                "heartbeat_misses",
                "progress",
            ),
            0,
        )
        self._running = 0

    # --- the public surface ---------------------------------------------------

    @property
    def node_id(self) -> str:
        """The node's id, as it says it in `Hello`."""
        return self._node_id

    def stats(self) -> NodeStats:
        """A snapshot of the node's counters (see `NodeStats`)."""
        counts = self._counts
        with self._lock:
            running = self._running
            held = len(self._held)
        return NodeStats(
            node_id=self._node_id,
            connected=self._connected,
            capacity=self._capacity,
            running=running,
            queued=held - running,
            runs=counts["runs"],
            completed=counts["completed"],
            failed=counts["failed"],
            timed_out=counts["timed_out"],
            cancelled=counts["cancelled"],
            hellos=counts["hellos"],
            heartbeat_misses=counts["heartbeat_misses"],
            progress=counts["progress"],
        )

    def run(self) -> None:
        """Connect, serve the scheduler's runs, and return once drained.

        Blocks until `stop` (or the scheduler's `Drain`) has been honoured:
        the runs held finished, their results and `Bye` sent. Every thread the
        node started is joined before it returns.

        Raises:
            NodeRefused: the scheduler refused the node's first `Hello`.
            InvalidArgument: the endpoint cannot be used, or the node ran already.
            SchedulerClosed: the node's I/O failed (the log says why).
        """
        with self._state_lock:
            if self._state != "new":
                msg = f"a Node runs once; this one is {self._state}"
                raise InvalidArgument(msg)
            self._state = "running"
            self._run_ident = threading.get_ident()
        try:
            self._start()
            self._serve()
        finally:
            self._teardown()
            self._done.set()

    def stop(self) -> None:
        """Drain: ask for no more work, finish the runs held, send `Bye`; then
        `run` returns. From any thread, or a signal handler. Idempotent."""
        # A plain store is all a signal handler on run()'s own thread may do:
        # the inbox's lock may be held by the very frame it interrupted.
        self._stopping = True
        if threading.get_ident() != self._run_ident:
            self._inbox.put(("stop",))

    def close(self) -> None:
        """Stop the node and wait until every thread it started is joined.

        If `run` is running in another thread, this drains as `stop` does and
        waits for `run` to return. Idempotent; a node never run closes at once.
        """
        with self._state_lock:
            state = self._state
            if state == "new":
                self._state = "closed"
                self._done.set()
                return
        if state == "running" and threading.get_ident() != self._run_ident:
            self.stop()
            self._done.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- setup and teardown ---------------------------------------------------

    def _runners(
        self, handlers: Handlers | Scheduler, hard_timeout: float | None
    ) -> Callable[[], Runner]:
        if hard_timeout is None:
            specs, limit = self._specs, self._max_result_bytes
            return lambda: ThreadRunner(specs, max_result_bytes=limit)
        if (
            not isinstance(hard_timeout, int | float)
            or isinstance(hard_timeout, bool)
            or not 0 < hard_timeout < float("inf")
        ):
            msg = f"hard_timeout must be a number of seconds > 0, not {hard_timeout!r}"
            raise InvalidArgument(msg)
        # The children import the registrations themselves (nothing is
        # pickled): found now, so a registry they cannot import fails Node().
        app, limit, grace = app_path(handlers), self._max_result_bytes, float(hard_timeout)
        return lambda: ProcessRunner(app, grace, limit)

    def _start(self) -> None:
        security = self._security
        self._io = NodeIO(
            self._endpoint,
            self._on_message,
            on_undeliverable=self._on_undeliverable,
            configure=security.apply if security is not None else None,
        )
        for number in range(1, self._capacity + 1):
            slot = threading.Thread(
                target=self._slot,
                args=(self._runner_factory(),),
                name=f"postroom-node-slot-{number}",
                daemon=True,
            )
            slot.start()
            self._slots.append(slot)

    def _teardown(self) -> None:
        with self._lock:
            # Only when run() ends abnormally are runs still held: stop those
            # running, and let those queued end without calling their handler.
            for held in self._held.values():
                if held.scope is not None:
                    held.scope.fire(held.run.job.id, held.run.job.attempt, "shutdown")
                else:
                    held.cancel = "shutdown"
        for _ in self._slots:
            self._work.put(None)
        for slot in self._slots:
            slot.join()
        self._slots.clear()
        if self._io is not None:
            self._io.close()
        self._connected = False
        with self._state_lock:
            self._state = "closed"

    # --- the I/O thread's side (must not block) --------------------------------

    def _on_message(self, msg: SchedulerMessage) -> None:
        self._inbox.put(("msg", msg))

    def _on_undeliverable(self, msg: NodeMessage, reason: str) -> None:
        logger.warning("node %s: the scheduler could not take %s (%s)",
                       self._node_id, type(msg).__name__, reason)

    # --- the slots ------------------------------------------------------------

    def _slot(self, runner: Runner) -> None:
        scope = CancelScope()
        inbox = self._inbox
        try:
            while (held := self._work.get()) is not None:

                def progress(_job_id: str, fraction: float, message: str, of: _Held = held) -> None:
                    inbox.put(("progress", of, fraction, message))

                job = held.run.job
                with self._lock:
                    scope.arm(job.id, job.attempt)
                    held.scope = scope
                    if held.cancel is not None:
                        scope.fire(job.id, job.attempt, held.cancel)
                    deadline = None if job.timeout is None else time.monotonic() + job.timeout
                    held.deadline = deadline
                    self._running += 1
                outcome = runner.run(job, scope, progress, deadline)
                inbox.put(("done", held, outcome))
        finally:
            runner.close()

    # --- the main loop --------------------------------------------------------

    def _serve(self) -> None:
        io = self._io
        assert io is not None
        # What the loop sends goes out as one multipart message per pass
        # (`_flush`): the results of runs that ended together, and one Credit
        # for all the slots they freed, cost the scheduler one receive.
        outbox = self._outbox
        self._send = outbox.append
        loop = _Loop(time.monotonic())
        while not self._tick(loop, time.monotonic()):
            self._flush_outbox(io, outbox)
            wake = min(
                loop.next_beat if loop.session else loop.next_hello,
                self._next_deadline(),
                time.monotonic() + _POLL,
            )
            try:
                event = self._inbox.get(timeout=max(0.0, wake - time.monotonic()))
            except Empty:
                continue
            self._handle(loop, event)
            # Whatever else has come meanwhile, handled before anything is sent.
            for _ in range(MAX_BATCH):
                try:
                    event = self._inbox.get_nowait()
                except Empty:
                    break
                self._handle(loop, event)
        self._flush_outbox(io, outbox)

    def _flush_outbox(self, io: NodeIO, outbox: list[NodeMessage]) -> None:
        """Send what the loop queued: credits merged into one, last."""
        if not outbox:
            return
        credit = sum(m.slots for m in outbox if type(m) is Credit)
        messages = [m for m in outbox if type(m) is not Credit]
        if credit:
            messages.append(Credit(credit))
        outbox.clear()
        for start in range(0, len(messages), MAX_BATCH):
            io.send_many(messages[start : start + MAX_BATCH])

    def _handle(self, loop: _Loop, event: tuple[Any, ...]) -> None:
        kind = event[0]
        if kind == "msg":
            self._on_scheduler(loop, event[1])
        elif kind == "progress":
            held, fraction, message = event[1], event[2], event[3]
            if loop.session and held.run.lease in self._held:
                job = held.run.job
                self._send(Progress(job.id, job.attempt, held.run.lease, fraction, message))
                self._counts["progress"] += 1
        elif kind == "done":
            self._on_done(loop, event[1], event[2])
        # "stop" only wakes the loop: _tick reads the flag.

    def _tick(self, loop: _Loop, now: float) -> bool:
        """What time and the stop flag ask for; True once drained (Bye sent)."""
        if self._stopping and not loop.draining:
            loop.draining = True
            logger.info("node %s: draining", self._node_id)
        if loop.draining and loop.session and not loop.drain_sent:
            self._send(Drain())
            loop.drain_sent = True
        if loop.draining and not self._held:
            if loop.session:
                self._send(Bye(self._node_id))
                assert self._io is not None
                target = self._io.stats().sent + 1  # the outbox goes as one message
                self._flush_outbox(self._io, self._outbox)
                self._flush(self._io, target)
            logger.info("node %s: drained", self._node_id)
            return True
        if not loop.session:
            # Before the first Welcome, and after the scheduler was lost; not to
            # start a session only to end it at once.
            if now >= loop.next_hello and (loop.welcomed or not loop.draining):
                self._hello(loop, now)
        elif now - loop.last_heard > MISSED_HEARTBEATS * loop.heartbeat:
            self._counts["heartbeat_misses"] += 1
            logger.warning(
                "node %s: no word from the scheduler for %.1f s; saying Hello again",
                self._node_id,
                now - loop.last_heard,
            )
            self._lose_session(loop, now)
            self._hello(loop, now)
        elif now >= loop.next_beat:
            self._send(Heartbeat(time.time()))
            loop.next_beat = now + loop.heartbeat
        self._fire_deadlines(now)
        return False

    def _hello(self, loop: _Loop, now: float) -> None:
        names = tuple(sorted(self._specs))
        self._send(Hello(self._node_id, names, self._capacity, PROTOCOL_VERSION, self._queue))
        self._counts["hellos"] += 1
        loop.next_hello = now + MISSED_HEARTBEATS * loop.heartbeat
        loop.last_heard = now

    def _lose_session(self, loop: _Loop, now: float) -> None:
        loop.session = False
        loop.offered = 0
        loop.next_hello = now
        self._connected = False

    def _on_scheduler(self, loop: _Loop, msg: SchedulerMessage) -> None:
        now = loop.last_heard = time.monotonic()
        if isinstance(msg, Welcome):
            loop.heartbeat = msg.heartbeat if msg.heartbeat > 0 else DEFAULT_HEARTBEAT
            loop.session = loop.welcomed = True
            loop.drain_sent = False
            loop.next_beat = now + loop.heartbeat
            self._connected = True
            logger.info(
                "node %s: welcomed (heartbeat %.3g s)", self._node_id, loop.heartbeat
            )
            loop.offered = 0 if loop.draining else max(0, self._limit - len(self._held))
            if loop.offered:
                self._send(Credit(loop.offered))
        elif isinstance(msg, Refused):
            if not loop.welcomed:
                raise NodeRefused(msg.reason)
            logger.warning(
                "node %s: the scheduler says %r; saying Hello again", self._node_id, msg.reason
            )
            if loop.session:
                self._lose_session(loop, now)
            else:
                # Refused again: do not hammer it; once per heartbeat.
                loop.next_hello = now + loop.heartbeat
        elif isinstance(msg, Run):
            self._take(msg, loop.offered)
            loop.offered = max(0, loop.offered - 1)
        elif isinstance(msg, CancelRun):
            self._cancel(msg)
        elif isinstance(msg, Drain):
            if not loop.draining:
                logger.info("node %s: the scheduler asks it to drain", self._node_id)
            loop.draining = loop.drain_sent = True
        # A Heartbeat: its arrival is all that counts.

    def _on_done(self, loop: _Loop, held: _Held, outcome: Outcome) -> None:
        self._finish(held, outcome)
        job = held.run.job
        # Sent even without a session: the scheduler fences it by its lease.
        self._send(NodeFinished(job.id, job.attempt, held.run.lease, outcome))
        if loop.session and not loop.draining and len(self._held) + loop.offered < self._limit:
            self._send(Credit(1))
            loop.offered += 1

    def _take(self, run: Run, offered: int) -> None:
        if offered <= 0:
            logger.warning(
                "node %s: the scheduler sent job %s beyond the credit it was given",
                self._node_id, run.job.id,
            )
        if run.lease in self._held:
            logger.warning("node %s: lease %d sent twice; ignored", self._node_id, run.lease)
            return
        held = _Held(run)
        with self._lock:
            self._held[run.lease] = held
        self._counts["runs"] += 1
        self._work.put(held)

    def _cancel(self, msg: CancelRun) -> None:
        reason = cast(CancelReason, msg.reason if msg.reason in _REASONS else "cancel")
        with self._lock:
            held = self._held.get(msg.lease)
            if held is None or held.run.job.id != msg.job_id:
                logger.debug("node %s: cancel of lease %d it does not hold", self._node_id,
                              msg.lease)
                return
            if held.scope is None:
                if held.cancel is None:
                    held.cancel = reason
                logger.debug(
                    "node %s: job %s cancelled before it started (%s)",
                    self._node_id,
                    msg.job_id,
                    reason,
                )
                return
            held.scope.fire(msg.job_id, msg.attempt, reason)

    def _finish(self, held: _Held, outcome: Outcome) -> None:
        with self._lock:
            self._held.pop(held.run.lease, None)
            self._running -= 1
        counts = self._counts
        if outcome.status == "completed":
            counts["completed"] += 1
        elif outcome.status == "cancelled":
            counts["cancelled"] += 1
        else:
            counts["failed"] += 1
            if outcome.timed_out:
                counts["timed_out"] += 1

    def _fire_deadlines(self, now: float) -> None:
        with self._lock:
            for held in self._held.values():
                if held.deadline is not None and held.deadline <= now and held.scope is not None:
                    job = held.run.job
                    held.scope.fire(job.id, job.attempt, "timeout")
                    held.deadline = None  # told once

    def _next_deadline(self) -> float:
        with self._lock:
            deadlines = [h.deadline for h in self._held.values() if h.deadline is not None]
        return min(deadlines, default=float("inf"))

    def _flush(self, io: NodeIO, target: int) -> None:
        # NodeIO.close drops what ZeroMQ has not written yet: give Bye its chance.
        until = time.monotonic() + _FLUSH
        while io.stats().sent < target and time.monotonic() < until:
            self._done.wait(0.005)
        self._done.wait(_FLUSH_GRACE)


def _not_started(msg: NodeMessage) -> None:
    raise AssertionError(f"{type(msg).__name__} sent before the node's I/O started")


def _check_count(name: str, value: object, least: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        msg = f"{name} must be an int >= {least}, not {value!r}"
        raise InvalidArgument(msg)


def _specs_of(handlers: object) -> Mapping[str, HandlerSpec]:
    if isinstance(handlers, Handlers):
        return handler_specs(handlers)
    from actors._scheduler import Scheduler

    if isinstance(handlers, Scheduler):
        return dict(handlers._handlers)  # noqa: SLF001 - the same package's registrations
    msg = f"handlers must be a Handlers or a Scheduler, not {type(handlers).__name__}"
    raise InvalidArgument(msg)


def _security(
    endpoint: str,
    key: str | PathLike[str] | None,
    server_key: str | PathLike[str] | None,
    insecure: bool,
) -> ClientSecurity | None:
    if insecure:
        if key is not None or server_key is not None:
            msg = "insecure=True takes no keys: drop key and server_key, or insecure"
            raise InvalidArgument(msg)
        if not is_loopback(endpoint):
            msg = (
                f"refusing plain (insecure) TCP to {endpoint}: it is not a loopback "
                "address; give key and server_key (CURVE) for other addresses"
            )
            raise InvalidArgument(msg)
        logger.warning(
            "connecting to %s WITHOUT authentication or encryption (insecure=True)", endpoint
        )
        return None
    if key is None or server_key is None:
        msg = (
            "a node needs key= (its secret key file) and server_key= (the scheduler's "
            "public key file); plain TCP only with insecure=True to loopback"
        )
        raise InvalidArgument(msg)
    return ClientSecurity(secret_key=key, server_key=server_key)

