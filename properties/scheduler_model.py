"""A recorded run of a real scheduler, for the rules to be checked on.

`Run` owns a scheduler on a `ManualClock` with one handler, ``work``, whose
behaviour each job's payload picks (complete, fail, fail once, fail fatally,
hang until told to stop, overrun its deadline until the test lets it go, or
hold its worker until the test opens a gate). Every start and end of an
attempt, every submit, cancel and resolution is appended to one trace under one
lock, so the trace is a total order of what happened. `check_trace`
(``scheduler_rules.py``) then holds the run to the rules of docs/guarantees.md.
The stateful machine in ``test_scheduler_machine.py`` drives it.

The scheduler has three queues: ``default`` (one or three workers, jobs with
repos, timeouts, keys), ``burst`` (one worker, for the machine's priority
bursts) and ``bounded`` (one worker and a small ``max_pending``, so that the
back-pressure bound engages: rule 8). Some rules are checked at the moment they
apply, not on the trace afterwards: that a deadline the clock passed stops its
attempt (rule 6), what a submit to a full queue does (rule 8), and what holds
once `shutdown` returns (rule 9). A broken one is recorded in ``violations``,
which the machine asserts empty after every step.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from actors import (
    CancelResult,
    Fatal,
    JobContext,
    JobHandle,
    JobNotFound,
    JobStatus,
    ManualClock,
    Queue,
    QueueFull,
    RetryPolicy,
    Scheduler,
    SchedulerClosed,
    Stats,
)

MODES = ("ok", "fail", "fail_once", "fatal", "hang", "stubborn", "gate")
"""What a job of the ``default`` queue does (see `Run._work`)."""
BOUNDED_MODES = ("ok", "fail_once", "gate")
"""What a job of the ``bounded`` queue does."""
TIMED_MODES = ("hang", "stubborn")
"""Modes that run until told to stop, with a deadline of `HANG_TIMEOUT`."""
LISTENING_MODES = (*TIMED_MODES, "gate")
"""Modes whose handler watches for the signal to stop until it comes."""
HANG_TIMEOUT = 5.0
"""Manual seconds a ``hang`` or ``stubborn`` job may run before its deadline stops it."""
POLICIES = ("reject", "drop", "wait", "wait_briefly")
"""``on_full`` for the run: ``wait`` waits without a limit, ``wait_briefly``
for `FULL_TIMEOUT`."""
FULL_TIMEOUT = 0.05
"""Real seconds a submit to a full queue waits under ``wait_briefly``."""
DEFAULT, BURST, BOUNDED = "default", "burst", "bounded"
WAIT = 5.0
"""Real seconds any wait for something that must happen may take."""
START_PAUSE = 0.05
"""Real seconds `Run.listening_jobs` gives a due job to start."""
DRIVE_PAUSE = 0.01
"""Real seconds `Run._drive` gives each move of the clock to show its effects."""
CANCEL_GRACE = 3.0
"""Real seconds running handlers get at shutdown (every handler here returns
at once when told to stop, so a passing run never reaches it)."""


@dataclass
class Submitted:
    """What the test asked for, and what submit returned."""

    index: int
    """Position of the submit in the trace."""
    order: int
    """Number of the submit call (refused ones count too): among accepted jobs,
    the scheduler's ``seq`` order."""
    handle: JobHandle
    mode: str
    repo: str | None
    priority: int
    due: float
    """Clock time before which the job must not start."""
    delay: float
    max_retries: int
    backoff: float
    key: str | None
    new: bool
    """False when the submit returned an existing job's handle (idempotency)."""
    returned: int = 0
    """Trace length when submit returned: the key lookup happened before it (and
    after ``index``), so a holder that ended in between may have let the key go."""
    queue: str = DEFAULT
    callbacks: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Event:
    kind: str
    """"submit", "start", "end", "cancelling", "cancel", "resolved", "open",
    "let_go", "refused", "waited", "shutdown" or "shut"."""
    job_id: str
    attempt: int = 0
    repo: str | None = None
    now: float = 0.0
    detail: Any = None
    """"start": the attempt's deadline; "end": why it was told to stop, if it
    was; "cancel": the `CancelResult`; "shutdown": graceful or not."""


def postroom_threads() -> set[threading.Thread]:
    """The postroom threads alive now."""
    return {t for t in threading.enumerate() if t.name.startswith("postroom-") and t.is_alive()}


class Run:
    """One scheduler under test, with its trace."""

    def __init__(self, workers: int, bound: int = 2, policy: str = "reject") -> None:
        self.workers = {DEFAULT: workers, BURST: 1, BOUNDED: 1}
        """Workers per queue."""
        self.bound = bound
        """The ``bounded`` queue's ``max_pending``."""
        self.policy = policy
        self.clock = ManualClock()
        self.threads_before = postroom_threads()
        self.sched = Scheduler(
            workers=workers,
            clock=self.clock,
            max_pending=10_000,
            on_full="wait" if policy.startswith("wait") else policy,
            full_timeout=FULL_TIMEOUT if policy == "wait_briefly" else None,
            queues={BURST: Queue(workers=1), BOUNDED: Queue(workers=1, max_pending=bound)},
        )
        self.sched.register("work", self._work)
        self._lock = threading.Lock()
        self._grew = threading.Condition(self._lock)
        self.trace: list[Event] = []
        self.jobs: dict[str, Submitted] = {}
        self.order: list[Submitted] = []
        self.bounded: list[Submitted] = []
        """Accepted jobs of the ``bounded`` queue."""
        self.rejected = 0
        """`QueueFull` raised at the test."""
        self.dropped = 0
        """Handles returned already dropped."""
        self.unfinished: list[JobHandle] = []
        self.violations: list[str] = []
        self.gate = threading.Event()
        self.let_go_event = threading.Event()
        self.releasing = False
        """Set at shutdown: ``stubborn`` handlers stop ignoring their deadline."""
        self.closing = False
        """Set when the run is over: every handler returns (a seeded bug may
        leave one that nobody can stop otherwise)."""
        self.closed = False
        self.started: dict[int, threading.Event] = {}
        """Set when the attempt of the job submitted as number n starts."""
        self.listening: dict[tuple[str, int], tuple[float | None, threading.Event]] = {}
        """Running attempts that watch for a signal to stop: (job, attempt) ->
        (deadline, set once told to stop)."""
        self.cancel_began: dict[int, int] = {}
        """Trace index of each "cancel" event -> index of its "cancelling" event."""
        self.shutdown_at: tuple[int, int] | None = None
        """Trace indexes of the first shutdown's start and return."""
        self.cut: set[str] = set()
        """Jobs unresolved when the first shutdown began: their outcome was
        shutdown's to decide."""
        self.final: Stats | None = None
        self.helpers: list[threading.Thread] = []
        self._numbers = itertools.count()
        self.sched.start()

    # --- the trace ------------------------------------------------------------------

    def _record(self, event: Event) -> int:
        with self._lock:
            self.trace.append(event)
            self._grew.notify_all()
            return len(self.trace) - 1

    def _drive(self, done: Callable[[], bool], budget: float) -> bool:
        """Open gates, let stubborn jobs go and move the clock on until ``done()``;
        False if it is still not done after ``budget`` real seconds.

        After each move it waits while the trace grows (what the move set
        going: starts, ends, resolutions), and moves the clock again once
        nothing more happened for `DRIVE_PAUSE`: a retry the Dispatcher
        schedules after a move is only due at the next one. This is a deadline
        on a condition, as `tests.helpers.wait_until` is.
        """
        deadline = time.monotonic() + budget
        while not done():
            if time.monotonic() > deadline:
                return False
            self.open_gate()
            self.let_go()
            cursor = len(self.trace)
            self.advance(2 * HANG_TIMEOUT)
            while not done() and time.monotonic() < deadline and self._grown(cursor, DRIVE_PAUSE):
                cursor = len(self.trace)
        return True

    def _grown(self, cursor: int, timeout: float) -> bool:
        """Wait until the trace is longer than ``cursor``; False if it is not in time."""
        with self._grew:
            return self._grew.wait_for(lambda: len(self.trace) > cursor, timeout)

    def _violate(self, message: str) -> None:
        self.violations.append(message)

    # --- the handler ----------------------------------------------------------------

    def _work(self, ctx: JobContext, payload: dict[str, Any]) -> Any:
        mode, n = payload["mode"], payload["n"]
        key = (ctx.job_id, ctx.attempt)
        told = threading.Event()
        if mode in LISTENING_MODES:
            with self._lock:
                self.listening[key] = (ctx.deadline, told)
        start = Event("start", ctx.job_id, ctx.attempt, ctx.repo, self.clock.now(), ctx.deadline)
        self._record(start)
        started = self.started.get(n)
        if started is not None:
            started.set()
        try:
            if mode in TIMED_MODES:
                self._until_told(ctx, told, overrun=mode == "stubborn")
                return None
            if mode == "gate":
                # Hold the worker until the test opens the gate (or cancels us).
                gate = self.gate
                while not self.closing and not gate.wait(0.005):
                    if ctx.cancelled:
                        told.set()
                        return None
                return n
            if mode == "ok" and ctx.wait(0.002):
                # A moment of real work, so that jobs queue up behind each
                # other, cut short if the attempt is told to stop.
                return None
            if mode == "fail" or (mode == "fail_once" and ctx.attempt == 1):
                raise RuntimeError(f"{mode} on attempt {ctx.attempt}")
            if mode == "fatal":
                raise Fatal("no retry can help")
            return n
        finally:
            if ctx.cancelled:
                told.set()  # a gate may have opened as the signal came: heard or not
            why = "timeout" if ctx.timed_out else "stop" if ctx.cancelled else None
            self._record(Event("end", ctx.job_id, ctx.attempt, ctx.repo, self.clock.now(), why))
            with self._lock:
                self.listening.pop(key, None)

    def _until_told(self, ctx: JobContext, told: threading.Event, *, overrun: bool) -> None:
        # Until cancelled or past its deadline (or the run is over: a seeded
        # bug may leave a hang job that nobody can signal).
        while not self.closing and not ctx.wait(0.01):
            pass
        if ctx.cancelled:
            told.set()
        if overrun and ctx.timed_out:
            # Ignore the deadline until the test lets go: the repo must stay
            # held, and the handle unresolved, till then.
            let_go = self.let_go_event
            while not (self.closing or self.releasing or let_go.wait(0.005)):
                pass

    # --- what the machine does --------------------------------------------------------

    def submit(
        self,
        mode: str,
        repo: str | None,
        priority: int,
        delay: float,
        max_retries: int,
        backoff: float,
        key: str | None,
        queue: str = DEFAULT,
    ) -> Submitted | None:
        """Submit a job; None if it was not accepted (refused, dropped, closed)."""
        n = next(self._numbers)
        payload = {"mode": mode, "n": n}
        options: dict[str, Any] = {
            "repo": repo,
            "priority": priority,
            "delay": delay,
            "max_retries": max_retries,
            "retry": RetryPolicy.fixed(backoff),
            "timeout": HANG_TIMEOUT if mode in TIMED_MODES else None,
            "idempotency_key": key,
            "queue": queue,
        }
        if self.closed:
            self._submit_when_closed(payload, options)
            return None
        self.started[n] = threading.Event()
        index = self._record(Event("submit", "", detail=n))
        due = self.clock.now() + delay
        if queue == BOUNDED:
            handle = self._submit_bounded(payload, options)
            if handle is None:
                return None
        else:
            handle = self.sched.submit("work", payload, **options)
        returned = len(self.trace)
        new = handle.id not in self.jobs
        entry = Submitted(
            index, n, handle, mode, repo, priority, due, delay, max_retries, backoff, key, new,
            returned, queue,
        )  # fmt: skip
        if new:
            self.jobs[handle.id] = entry
            handle.add_done_callback(lambda _h, e=entry: self._resolved(e))
        self.order.append(entry)
        if queue == BOUNDED:
            self.bounded.append(entry)
            self._check_bound()
        return entry

    def _resolved(self, entry: Submitted) -> None:
        entry.callbacks.append(1)
        self._record(Event("resolved", entry.handle.id))

    def open_gate(self) -> None:
        """Release the jobs waiting at the gate, once the Dispatcher has seen
        every earlier submit (`stats` is answered after them: one mailbox)."""
        self.sched.stats()
        self._record(Event("open", ""))
        gate, self.gate = self.gate, threading.Event()
        gate.set()

    def let_go(self) -> None:
        """Let the ``stubborn`` attempts that overran their deadline return."""
        self._record(Event("let_go", ""))
        event, self.let_go_event = self.let_go_event, threading.Event()
        event.set()

    def cancel(self, entry: Submitted) -> CancelResult:
        # Recorded before and after: the cancel takes effect somewhere between
        # the two (rule 7 in scheduler_rules.py says what may happen meanwhile).
        before = self._record(Event("cancelling", entry.handle.id, now=self.clock.now()))
        result = entry.handle.cancel()
        after = self._record(Event("cancel", entry.handle.id, detail=result))
        self.cancel_began[after] = before
        if self.closed and result is not CancelResult.ALREADY_FINISHED:
            self._violate(f"rule 9: cancel of {entry.handle.id} after shutdown said {result}")
        if result is CancelResult.SIGNALLED:
            # A handler that watches for the signal, running when the cancel
            # said it signalled it, hears it.
            with self._lock:
                running = [
                    (attempt, told)
                    for (job_id, attempt), (_, told) in self.listening.items()
                    if job_id == entry.handle.id
                ]
            for attempt, told in running:
                if self.violations:
                    break  # failed already: no need to wait for a second proof
                if not told.wait(WAIT):
                    self._violate(
                        f"rule 7: {entry.handle.id} attempt {attempt} was signalled, "
                        f"and not told to stop within {WAIT}s"
                    )
        return result

    def listening_jobs(self) -> list[Submitted]:
        """Jobs with an attempt running that watches for its signal to stop
        (not the burst's gates: each burst opens its own before it ends).

        When none runs yet but one is due, it gives the workers `START_PAUSE`
        to start one (the machine's steps follow each other far quicker).
        """
        now = self.clock.now()
        candidates = {
            job_id
            for job_id, e in self.jobs.items()
            if e.mode in LISTENING_MODES and e.queue != BURST and not e.handle.done()
        }
        due = any(self.jobs[job_id].due <= now for job_id in candidates)
        with self._grew:
            if due:
                self._grew.wait_for(
                    lambda: any(job_id in candidates for job_id, _ in self.listening),
                    START_PAUSE,
                )
            ids = sorted({job_id for job_id, _ in self.listening} & candidates)
        return [self.jobs[job_id] for job_id in ids]

    def advance(self, seconds: float) -> None:
        """Move the clock; every running attempt whose deadline it passed must be
        told to stop (rule 6)."""
        self.clock.advance(seconds)
        now = self.clock.now()
        with self._lock:
            overdue = [
                (key, deadline, told)
                for key, (deadline, told) in self.listening.items()
                if deadline is not None and deadline <= now
            ]
        for (job_id, attempt), deadline, told in overdue:
            if self.violations:
                break  # failed already: no need to wait for a second proof
            if not told.wait(WAIT):
                self._violate(
                    f"rule 6: {job_id} attempt {attempt} was not told to stop {WAIT}s after "
                    f"the clock ({now}) passed its deadline ({deadline})"
                )
        if self.closed:
            self._check_final("the clock moved")

    def settles_alone(self) -> list[Submitted]:
        """Unresolved jobs that resolve with no help from the test: every
        unresolved job of their queue runs to its end by itself (no gate, no
        deadline, nothing due later on the clock, no backoff to wait out)."""
        now = self.clock.now()
        by_queue: dict[str, list[Submitted]] = defaultdict(list)
        for entry in self.jobs.values():
            if not entry.handle.done():
                by_queue[entry.queue].append(entry)
        alone = []
        for entries in by_queue.values():
            if all(_runs_alone(entry, now) for entry in entries):
                alone.extend(entries)
        return alone

    def wait_for(self, entry: Submitted) -> None:
        """Wait for a job that `settles_alone` says needs no help."""
        if not entry.handle.wait(WAIT):
            self._violate(
                f"rule 5: {entry.handle.id} ({entry.mode}) did not resolve within {WAIT}s, "
                "though nothing held it"
            )

    # --- back-pressure (rule 8) -------------------------------------------------------

    def _submit_bounded(self, payload: dict[str, Any], options: dict[str, Any]) -> JobHandle | None:
        # Jobs whose handle had resolved before the call had given their slot
        # back by then: with fewer than `bound` others, a slot is free.
        unresolved = sum(1 for e in self.bounded if not e.handle.done())
        began = time.monotonic()
        try:
            if self.policy == "wait":
                handle = self._submit_waiting(payload, options, unresolved)
                if handle is None:
                    return None
            else:
                handle = self.sched.submit("work", payload, **options)
        except QueueFull:
            waited = time.monotonic() - began
            self.rejected += 1
            self._record(Event("refused", "", detail="QueueFull"))
            if self.policy in ("drop", "wait"):
                self._violate(f"rule 8: QueueFull under on_full={self.policy!r}")
            if unresolved < self.bound:
                self._violate(
                    f"rule 8: QueueFull with {unresolved} job(s) of max_pending={self.bound} "
                    "unresolved: a resolved job still held its slot"
                )
            if self.policy == "wait_briefly" and waited < FULL_TIMEOUT:
                self._violate(f"rule 8: gave up waiting after {waited:.3f}s of {FULL_TIMEOUT}s")
            return None
        if not _dropped(handle):
            return handle
        self.dropped += 1
        self._record(Event("refused", handle.id, detail="dropped"))
        if self.policy != "drop":
            self._violate(f"rule 8: a submit was dropped under on_full={self.policy!r}")
        if unresolved < self.bound:
            self._violate(
                f"rule 8: dropped with {unresolved} job(s) of max_pending={self.bound} "
                "unresolved: a resolved job still held its slot"
            )
        try:
            self.sched.job(handle.id)
        except JobNotFound:
            pass
        else:
            self._violate(f"rule 8: the dropped job {handle.id} is known to job()")
        return None

    def _submit_waiting(
        self, payload: dict[str, Any], options: dict[str, Any], unresolved: int
    ) -> JobHandle | None:
        """Submit under ``on_full="wait"`` (no time limit) from a thread of its own,
        so that the test can free a slot while it waits."""
        box: list[Any] = []

        def submit() -> None:
            try:
                box.append(self.sched.submit("work", payload, **options))
            except Exception as exc:  # noqa: BLE001 - the test thread re-raises it
                box.append(exc)
            self._record(Event("waited", ""))

        thread = threading.Thread(target=submit, name="machine-waiting-submit")
        self.helpers.append(thread)
        thread.start()
        if unresolved < self.bound:
            # A slot is free: the submit must not wait for one.
            thread.join(WAIT)
            if thread.is_alive():
                self._violate(
                    f"rule 8: a submit waits with {unresolved} job(s) of "
                    f"max_pending={self.bound} unresolved"
                )
                return None
        else:
            # The queue may be full: let its jobs go on (gates open, the clock
            # past delays and backoffs) until one ends and frees a slot.
            self._drive(lambda: bool(box), WAIT)
            thread.join(WAIT)
            if thread.is_alive():
                if all(e.handle.done() for e in self.bounded):
                    self._violate(
                        "rule 8: a submit still waits though every job of its queue resolved"
                    )
                else:
                    self._violate(f"rule 5: jobs of queue {BOUNDED!r} never finished")
                return None
        if isinstance(box[0], Exception):
            raise box[0]
        handle: JobHandle = box[0]
        return handle

    def _check_bound(self) -> None:
        """Accepted jobs of the bounded queue that surely still hold a slot
        (none of their attempts ended, none was cancelled) fit in the bound."""
        with self._lock:
            over = {e.job_id for e in self.trace if e.kind in ("end", "cancelling")}
        held = [e.handle.id for e in self.bounded if e.handle.id not in over]
        if len(held) > self.bound:
            self._violate(
                f"rule 8: {len(held)} accepted jobs unfinished in queue {BOUNDED!r} "
                f"with max_pending={self.bound}: {held}"
            )

    # --- shutdown (rule 9) ----------------------------------------------------------------

    def shut_down(self, graceful: bool, timeout: float) -> None:
        """Shut the scheduler down, then check what must hold once it returned."""
        first = not self.closed
        if first:
            self.cut = {job_id for job_id, e in self.jobs.items() if not e.handle.done()}
        self.releasing = True  # stubborn handlers told to stop now return at once
        self.let_go()
        began = self._record(Event("shutdown", "", detail=graceful))
        self.sched.shutdown(graceful=graceful, timeout=timeout, cancel_grace=CANCEL_GRACE)
        ended = self._record(Event("shut", ""))
        if first:
            self.shutdown_at = (began, ended)
        self.closed = True
        unresolved = [e.handle.id for e in self.jobs.values() if not e.handle.done()]
        if unresolved:
            self._violate(
                f"rule 9: {len(unresolved)} handle(s) unresolved after shutdown: {unresolved[:5]}"
            )
        left = sorted(t.name for t in postroom_threads() - self.threads_before)
        if left:
            self._violate(f"rule 9: thread(s) left running after shutdown: {left}")
        self._check_final("shutdown returned")
        for entry in self.jobs.values():
            try:
                status = self.sched.job(entry.handle.id).status
            except JobNotFound:
                self._violate(f"rule 9: job() forgot {entry.handle.id} at shutdown")
                continue
            if status is not entry.handle.status:
                self._violate(
                    f"rule 9: job() says {entry.handle.id} is {status}, "
                    f"its handle {entry.handle.status}"
                )
        self._submit_when_closed({"mode": "ok", "n": -1}, {"queue": BOUNDED})

    def _check_final(self, when: str) -> None:
        """`stats` after shutdown: the final figures, agreeing with the handles."""
        stats = self.sched.stats()
        ended: Counter[JobStatus] = Counter(e.handle.status for e in self.jobs.values())
        seen = (stats.submitted, stats.completed, stats.failed, stats.cancelled)
        expected = (
            len(self.jobs),
            ended[JobStatus.COMPLETED],
            ended[JobStatus.FAILED],
            ended[JobStatus.CANCELLED],
        )
        if seen != expected:
            self._violate(
                f"rule 9: after {when}, stats say (submitted, completed, failed, cancelled) "
                f"= {seen}, the handles {expected}"
            )
        running = [(q.name, q.running) for q in stats.queues if q.running]
        if stats.running or stats.pending or running:
            self._violate(
                f"rule 9: after {when}, stats say running={stats.running}, "
                f"pending={stats.pending}, queues (name, running) {running}"
            )
        # A queue's pending figure is what counts against its bound: with every
        # handle resolved, nothing may count any more.
        counted = [(q.name, q.pending) for q in stats.queues if q.pending]
        if counted:
            self._violate(
                f"rule 8: after {when}, with every handle resolved, jobs still count "
                f"against their queue's bound: {counted}"
            )
        if (stats.rejected, stats.dropped) != (self.rejected, self.dropped):
            self._violate(
                f"rule 8: stats count {stats.rejected} rejected and {stats.dropped} dropped, "
                f"the test saw {self.rejected} and {self.dropped}"
            )
        if self.final is not None and stats != self.final:
            self._violate(f"rule 9: the final figures changed after {when}: {stats}")
        self.final = stats

    def _submit_when_closed(self, payload: dict[str, Any], options: dict[str, Any]) -> None:
        try:
            handle = self.sched.submit("work", payload, **options)
        except SchedulerClosed:
            return
        self._violate(f"rule 9: a submit after shutdown was accepted: {handle}")

    # --- the end -----------------------------------------------------------------------

    def finish(self, budget: float = 5.0) -> None:
        """Let every job finish (gates open, stubborn jobs let go, the clock moved
        on while anything still happens, for up to ``budget`` real seconds), then
        shut down. Jobs still unfinished are kept in ``unfinished``."""
        if self.violations:
            budget = 0.5  # failed already: what follows is no longer checked
        if not self.closed:
            self._drive(lambda: all(e.handle.done() for e in self.jobs.values()), budget)
        self.unfinished = [e.handle for e in self.jobs.values() if not e.handle.done()]
        if not self.closed:
            if self.unfinished:
                self.closing = True  # let a handler nobody told to stop return
            # Graceful, and nothing is left to wait for (else it failed already).
            self.shut_down(graceful=not self.unfinished, timeout=5.0)

    def close(self) -> None:
        """Whatever happened, leave no thread behind: every handler returns, the
        scheduler stops, and the test's own threads are joined."""
        self.closing = True
        self.gate.set()
        self.let_go_event.set()
        if self.sched.running:
            self.sched.shutdown(graceful=False)
        # A handler shutdown gave up on returns now: its end is in the trace.
        for thread in postroom_threads() - self.threads_before:
            thread.join(WAIT)
        for helper in self.helpers:
            # A submit still waiting for a slot got SchedulerClosed at shutdown.
            helper.join(WAIT)
            if helper.is_alive():
                self._violate("rule 9: a submit waiting for a slot outlived shutdown")


def _runs_alone(entry: Submitted, now: float) -> bool:
    if entry.mode not in ("ok", "fail", "fail_once", "fatal") or entry.due > now:
        return False
    retries = entry.mode in ("fail", "fail_once") and entry.max_retries > 0
    return not retries or entry.backoff == 0.0


def _dropped(handle: JobHandle) -> bool:
    if not handle.done() or handle.status is not JobStatus.CANCELLED:
        return False
    error = handle.info().error
    return error is not None and error.type == "postroom.Dropped"
