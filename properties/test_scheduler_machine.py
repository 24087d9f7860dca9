"""Hypothesis drives a real scheduler and checks the rules of docs/guarantees.md on the trace.

The machine submits jobs (with repos, priorities, delays, idempotency keys, and
handlers that complete, fail, fail once, fail fatally, hang until their
timeout, overrun their timeout until let go, or hold the worker until the test
opens a gate) to a ``default`` queue and to a ``bounded`` one whose small
``max_pending`` engages, under a reject, drop or wait policy; it cancels them
(queued ones, and running ones that wait for their signal), opens gates, lets
overrunning jobs go, moves a manual clock, waits for jobs that need no help,
and shuts the scheduler down, gracefully or not. At the end
it lets every job finish, shuts down, and `check_trace` holds the run to rules
1 to 11.

Seeded bugs it catches (``test_machine_catches_seeded_bug`` checks each one):

- ``release_early``: the RepoLock lets the repo go when a job becomes ready,
  not when its handler returns: runs overlap (rule 1), attempts interleave
  (rule 2), or the confused lock never lets jobs finish (rule 5).
- ``retry_once_more``: one retry more than ``max_retries`` allows (rule 4).
- ``timer_early``: the Timer fires every entry 2 s before its due time (rule 11).
- ``fifo_ready``: the ready queue ignores priority (rule 3).
- ``cancel_unsignalled``: cancelling a running job reports it signalled but
  never tells the handler, which runs on until its timeout (rule 7). (Bugs that
  leave a cancelled job queued are masked by design: a worker never runs a job
  that is already finished, so they are not seeded here.)
- ``keys_ignored``: idempotency keys are not looked up (rule 10).
- ``lifo_repo``: a repo starts its newest job first (rule 2).
- ``lost_resolution``: a failed job's handle is never resolved (rule 5).
- ``deadline_ignored``: the Dispatcher drops a deadline's fire, so an attempt
  runs on past its timeout (rule 6).
- ``timeout_completes``: an attempt stopped by its deadline ends ``completed``
  (rule 6).
- ``repo_freed_at_deadline``: the Dispatcher lets a repo go when an attempt's
  deadline passes, not when its handler returns: the next job of the repo
  starts while the overrunning one runs (rule 1), its handle resolves first
  (rule 6).
- ``slots_never_freed``: a finished job never gives its slot back (rule 8).
- ``unbounded``: submit takes a slot even when the bound is reached (rule 8).
- ``shutdown_loses_handles``: the handles of jobs cancelled by shutdown never
  resolve (rule 9).
- ``shutdown_leaves_threads``: shutdown asks every thread to stop but returns
  without joining them (rule 9).
- ``stale_final_figures``: the figures `stats` keeps after shutdown are the
  ones from before the drain (rule 9).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
)

from properties.profiles import examples
from properties.scheduler_model import (
    BOUNDED,
    BOUNDED_MODES,
    BURST,
    MODES,
    POLICIES,
    WAIT,
    Run,
    Submitted,
)
from properties.scheduler_rules import check_trace
from properties.seeded import failure_of, patched

JOBS = st.tuples(
    st.sampled_from(MODES),
    st.sampled_from([None, "a", "b", "c"]),  # repo
    st.integers(1, 10),  # priority
    st.sampled_from([0.0, 0.0, 1.0, 5.0]),  # delay
    st.integers(0, 2),  # max_retries
    st.sampled_from([0.0, 2.0]),  # backoff
    st.sampled_from([None, None, "k1", "k2"]),  # idempotency key
)
BOUNDED_JOBS = st.tuples(
    st.sampled_from(BOUNDED_MODES),
    st.integers(1, 10),  # priority
    st.sampled_from([0.0, 0.0, 1.0]),  # delay
    st.integers(0, 2),  # max_retries
    st.sampled_from([0.0, 2.0]),  # backoff
)
SHUTDOWN_AFTER = 8
"""Steps before the machine may shut the scheduler down: most runs get well
under way first, and some end with the teardown's shutdown only."""


class SchedulerMachine(RuleBasedStateMachine):
    """Random traffic against one real scheduler."""

    jobs = Bundle("jobs")

    def __init__(self) -> None:
        super().__init__()
        self.run: Run | None = None
        self.steps = 0

    @property
    def live(self) -> Run:
        assert self.run is not None
        return self.run

    @initialize(
        workers=st.sampled_from([1, 3]),
        bound=st.integers(1, 3),
        policy=st.sampled_from(POLICIES),
    )
    def start(self, workers: int, bound: int, policy: str) -> None:
        self.run = Run(workers, bound, policy)

    @rule(target=jobs, batch=st.lists(JOBS, min_size=1, max_size=3))
    def submit(self, batch: list[tuple[Any, ...]]) -> object:
        # None (refused, or closed) goes into the bundle too: what is drawn
        # next must not depend on how the scheduler answered.
        return multiple(*(self.live.submit(*job) for job in batch))

    @rule(target=jobs, batch=st.lists(BOUNDED_JOBS, min_size=1, max_size=4))
    def submit_bounded(self, batch: list[tuple[str, int, float, int, float]]) -> object:
        # To the queue whose bound engages: refused, dropped or waited for by
        # policy once it is full (rule 8).
        return multiple(
            *(
                self.live.submit(mode, None, priority, delay, retries, backoff, None, BOUNDED)
                for mode, priority, delay, retries, backoff in batch
            )
        )

    @rule(entry=jobs)
    def cancel(self, entry: Submitted | None) -> None:
        if entry is not None:
            self.live.cancel(entry)

    @rule(pick=st.integers(0, 1 << 16))
    def cancel_running(self, pick: int) -> None:
        # A running job that waits for its signal (a gate, a hang, a stubborn
        # one, maybe past its deadline already): the cancel must reach it
        # (rule 7), and not turn a timeout into a cancel (rule 6). Picked here,
        # not drawn: which jobs run depends on the threads.
        running = self.live.listening_jobs()
        event(f"cancel_running: {'a' if running else 'no'} job running")
        if running:
            self.live.cancel(running[pick % len(running)])

    @rule(seconds=st.sampled_from([0.5, 1.0, 2.0, 6.0]))
    def advance(self, seconds: float) -> None:
        self.live.advance(seconds)

    @rule(priorities=st.lists(st.integers(1, 10), min_size=2, max_size=5))
    def burst(self, priorities: list[int]) -> None:
        # A burst of jobs arrives while a gate job holds the burst queue's one
        # worker; then the gate opens. They must start best priority first
        # (rule 3). Nothing else runs on that queue, so the gate job starts.
        run = self.live
        gate = run.submit("gate", None, 5, 0.0, 0, 0.0, None, queue=BURST)
        if gate is None:
            return  # shut down: the submit raised SchedulerClosed, as it must
        assert run.started[gate.order].wait(WAIT), "rule 3: the burst's gate job never started"
        for priority in priorities:
            run.submit("ok", None, priority, 0.0, 0, 0.0, None, queue=BURST)
        run.open_gate()

    @rule()
    def open_gate(self) -> None:
        self.live.open_gate()

    @rule()
    def let_go(self) -> None:
        # Stubborn jobs that overran their deadline return now; their repos
        # were held till then (rules 1 and 6).
        self.live.let_go()

    @rule(pick=st.integers(0, 1 << 16))
    def wait_for(self, pick: int) -> None:
        # A job that needs nothing from the test must resolve: meanwhile,
        # running and queued jobs interleave with the next steps' submits.
        # (Which jobs those are depends on the threads, so it is picked here,
        # not drawn: what hypothesis draws must not depend on them.)
        alone = self.live.settles_alone()
        if alone:
            self.live.wait_for(alone[pick % len(alone)])

    @rule(graceful=st.booleans(), timeout=st.sampled_from([0.0, 0.05, 0.2]))
    def shutdown(self, graceful: bool, timeout: float) -> None:
        # Then every handle has resolved, no thread is left, the final figures
        # stay answerable and submits raise SchedulerClosed (rule 9). The
        # machine goes on: what it does next must find a closed scheduler.
        # (Not in the first steps, so that most runs get well under way; a
        # step count, not a precondition: a rule that is often disabled makes
        # hypothesis give up on examples.)
        if self.steps >= SHUTDOWN_AFTER:
            self.live.shut_down(graceful, timeout)

    @invariant()
    def nothing_broke(self) -> None:
        self.steps += 1
        if self.run is not None:
            assert not self.run.violations, "\n".join(self.run.violations)

    def teardown(self) -> None:
        if self.run is None:
            return
        try:
            self.run.finish()
        finally:
            self.run.close()
        _count_what_happened(self.run)
        check_trace(self.run)


def _count_what_happened(run: Run) -> None:
    # Shown by --hypothesis-show-statistics: how often each new rule applied.
    kinds = {(e.kind, e.detail) for e in run.trace if e.kind in ("refused", "end", "shutdown")}
    for kind, detail in sorted(kinds, key=str):
        event(f"{kind} {detail}")
    if run.bounded and len(run.bounded) > run.bound:
        event("more jobs accepted in the bounded queue than its bound")


SchedulerMachine.TestCase.settings = settings(
    max_examples=examples(100),
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestSchedulerMachine = SchedulerMachine.TestCase


# --- seeded bugs: the machine must catch each one ------------------------------------


def _release_early() -> contextmanager[None]:  # type: ignore[type-arg]
    from actors import _repo_lock

    original = _repo_lock.RepoLock._advance

    def advance(self: _repo_lock.RepoLock) -> None:
        original(self)
        if self._active is not None and not self._held_for_retry:
            self._active = None  # BUG: the repo is free while its job runs
            original(self)

    return patched(_repo_lock.RepoLock, "_advance", advance)


def _retry_once_more() -> contextmanager[None]:  # type: ignore[type-arg]
    from actors import _repo_lock
    from actors._dispatcher import dispatcher as _dispatcher
    from actors._policy import attempts as _attempts
    from actors.messages import Job, Outcome

    def next_attempt(job: Job, outcome: Outcome, now: float) -> Job | None:
        if outcome.status != "failed" or not outcome.retryable:
            return None
        if job.attempt > job.max_retries + 1:  # BUG: off by one
            return None
        delay = job.retry.delay(job.attempt)
        return job.next_attempt(now + delay if delay > 0 else None)

    @contextmanager
    def both() -> Iterator[None]:
        with (
            patched(_repo_lock, "next_attempt", next_attempt),
            patched(_dispatcher, "next_attempt", next_attempt),
            patched(_attempts, "next_attempt", next_attempt),
        ):
            yield

    return both()


def _timer_early() -> contextmanager[None]:  # type: ignore[type-arg]
    from dataclasses import replace

    from actors._timer import timer as _timer
    from actors.messages import After

    original = _timer.Timer._add  # where every entry, told or posted, is filed

    def add(self: _timer.Timer, entry: After) -> Any:
        return original(self, replace(entry, due=entry.due - 2.0))  # BUG: 2 s early

    return patched(_timer.Timer, "_add", add)


def _fifo_ready() -> contextmanager[None]:  # type: ignore[type-arg]
    from heapq import heappush

    from actors._jobs import ready as _ready
    from actors.messages import Job

    def key(job: Job) -> int:
        return 5 << _ready.SEQ_BITS | job.seq  # BUG: priority ignored

    def put(self: _ready.ReadyQueue, job: Job) -> None:
        self._jobs[key(job)] = job
        heappush(self._heap, key(job))
        self._tokens.put(True)
        self.settled(job)  # it is here: no worker waits for it any more

    @contextmanager
    def both() -> Iterator[None]:
        with patched(_ready.ReadyQueue, "put", put), patched(_ready, "_key", key):
            yield

    return both()


def _cancel_unsignalled() -> contextmanager[None]:  # type: ignore[type-arg]
    from actors._jobs import ready as _ready
    from actors._worker.cancel import CancelReason

    def signal(self: _ready.ReadyQueue, job_id: str, attempt: int, reason: CancelReason) -> bool:
        entry = self._taken.get(job_id)
        if entry is None:
            return False
        if reason == "cancel":
            return True  # BUG: reported signalled, but the handler is never told
        return entry[1].fire(job_id, attempt, reason)

    return patched(_ready.ReadyQueue, "signal", signal)


def _keys_ignored() -> contextmanager[None]:  # type: ignore[type-arg]
    from actors._jobs.state import JobState
    from actors._jobs.table import JobTable

    def holder(self: JobTable, key: str) -> JobState | None:
        return None  # BUG: no idempotency lookup

    return patched(JobTable, "holder", holder)


def _lifo_repo() -> contextmanager[None]:  # type: ignore[type-arg]
    from actors import _repo_lock
    from actors.messages import Job

    original = _repo_lock.RepoLock._enqueue

    def enqueue(self: _repo_lock.RepoLock, job: Job) -> None:
        active = self._active
        if active is not None and active.id == job.id:
            original(self, job)
            return
        self._waiting[job.id] = job
        self._order.add((job.priority, -job.seq, job.id))  # BUG: newest first

    original_withdraw = _repo_lock.RepoLock._withdraw

    def withdraw(self: _repo_lock.RepoLock, job_id: str) -> None:
        job = self._waiting.pop(job_id, None)
        if job is not None:
            self._order.remove((job.priority, -job.seq, job.id))
        else:
            original_withdraw(self, job_id)

    @contextmanager
    def both() -> Iterator[None]:
        with (
            patched(_repo_lock.RepoLock, "_enqueue", enqueue),
            patched(_repo_lock.RepoLock, "_withdraw", withdraw),
        ):
            yield

    return both()


def _lost_resolution() -> contextmanager[None]:  # type: ignore[type-arg]
    from actors._jobs.state import JobState
    from actors._jobs.status import JobStatus
    from actors._jobs.table import JobTable

    original = JobTable.finish

    def finish(
        self: JobTable,
        state: JobState,
        status: JobStatus,
        *args: object,
        **kwargs: object,
    ) -> bool:
        if status is JobStatus.FAILED:
            if self.active.pop(state.job.id, None) is not None:
                with self._lock:
                    self._capacities[state.job.queue].given += 1
                    self._resolved += 1
            return True  # BUG: the handle never resolves
        return original(self, state, status, *args, **kwargs)  # type: ignore[arg-type]

    return patched(JobTable, "finish", finish)


def _deadline_ignored() -> contextmanager[None]:  # type: ignore[type-arg]
    from actors._dispatcher.dispatcher import Dispatcher
    from actors.messages import Fire

    original = Dispatcher._on_fire

    def on_fire(self: Dispatcher, message: Fire) -> None:
        if message.kind == "deadline":
            return  # BUG: a deadline never stops its attempt
        original(self, message)

    return patched(Dispatcher, "_on_fire", on_fire)


def _timeout_completes() -> contextmanager[None]:  # type: ignore[type-arg]
    from dataclasses import replace

    from actors._worker.attempt import AttemptRunner
    from actors.messages import Job, Outcome

    original = AttemptRunner.stopped

    def stopped(
        self: AttemptRunner,
        job: Job,
        exc: BaseException | None,
        started_at: float,
        run_time: float,
    ) -> Outcome:
        outcome = original(self, job, exc, started_at, run_time)
        if outcome.timed_out:  # BUG: an attempt stopped by its deadline completes
            return replace(outcome, status="completed", error=None, timed_out=False)
        return outcome

    return patched(AttemptRunner, "stopped", stopped)


def _repo_freed_at_deadline() -> contextmanager[None]:  # type: ignore[type-arg]
    from actors._dispatcher.dispatcher import Dispatcher
    from actors.messages import ErrorInfo, Finished, Fire, Outcome

    original = Dispatcher._on_fire
    timed_out = Outcome(
        "failed", error=ErrorInfo("postroom.JobTimedOut", "past its deadline"), timed_out=True
    )

    def on_fire(self: Dispatcher, message: Fire) -> None:
        original(self, message)
        state = self._states.get(message.key)
        if message.kind == "deadline" and state is not None and state.job.repo is not None:
            # BUG: the repo is let go at the deadline, not when the handler returns.
            self._to_repo(state.job.repo, Finished(state.job, timed_out))

    return patched(Dispatcher, "_on_fire", on_fire)


def _slots_never_freed() -> contextmanager[None]:  # type: ignore[type-arg]
    from actors._jobs.capacity import Capacity

    @contextmanager
    def lost() -> Iterator[None]:
        # BUG: a finished job's `given += 1` is lost: no slot ever comes back.
        Capacity.given = property(lambda _self: 0, lambda _self, _value: None)  # type: ignore[assignment]
        try:
            yield
        finally:
            del Capacity.given

    return lost()


def _unbounded() -> contextmanager[None]:  # type: ignore[type-arg]
    from actors._jobs.capacity import Capacity

    def try_take(self: Capacity) -> bool:
        if self._closed:
            return False
        self._taken += 1  # BUG: the limit is never looked at
        return True

    def take(self: Capacity, timeout: float | None) -> bool:
        return try_take(self)

    @contextmanager
    def both() -> Iterator[None]:
        with patched(Capacity, "try_take", try_take), patched(Capacity, "take", take):
            yield

    return both()


def _shutdown_loses_handles() -> contextmanager[None]:  # type: ignore[type-arg]
    from actors._jobs.state import JobState
    from actors._jobs.status import JobStatus
    from actors._jobs.table import JobTable
    from actors.messages import ErrorInfo, JSONValue

    original = JobTable.finish

    def finish(
        self: JobTable,
        state: JobState,
        status: JobStatus,
        result: JSONValue = None,
        error: ErrorInfo | None = None,
        run_time: float | None = None,
    ) -> bool:
        if error is not None and "shutdown" in error.message:
            if self.active.pop(state.job.id, None) is not None:
                with self._lock:
                    self._capacities[state.job.queue].given += 1
                    self._cancelled += 1
            return True  # BUG: a job cancelled by shutdown never resolves
        return original(self, state, status, result, error, run_time)

    return patched(JobTable, "finish", finish)


def _shutdown_leaves_threads() -> contextmanager[None]:  # type: ignore[type-arg]
    from actors._runtime.reaper import Reaper

    def join(self: Reaper, timeout: float) -> list[threading.Thread]:
        return self.alive()  # BUG: threads asked to stop, never waited for

    return patched(Reaper, "join", join)


def _stale_final_figures() -> contextmanager[None]:  # type: ignore[type-arg]
    from dataclasses import replace

    from actors._facade.lifecycle import Shutdown
    from actors._runtime.refs import ask
    from actors.messages import GET_STATS

    original = Shutdown._drain

    def drain(
        self: Shutdown, dispatcher: Any, graceful: bool, timeout: float, grace: float
    ) -> None:
        before = ask(dispatcher, GET_STATS, timeout=WAIT)
        original(self, dispatcher, graceful, timeout, grace)
        self.final_stats = replace(before, running=0, pending=0)  # BUG: before the drain

    return patched(Shutdown, "_drain", drain)


SEEDED_BUGS: dict[str, tuple[Callable[[], contextmanager[None]], tuple[str, ...]]] = {  # type: ignore[type-arg]
    # bug: (how to seed it, the failure messages that count as catching it)
    "release_early": (_release_early, ("rule 1", "rule 2", "never finished")),
    "retry_once_more": (_retry_once_more, ("rule 4",)),
    "timer_early": (_timer_early, ("rule 11",)),
    "fifo_ready": (_fifo_ready, ("rule 3",)),
    "cancel_unsignalled": (_cancel_unsignalled, ("rule 7",)),
    "keys_ignored": (_keys_ignored, ("rule 10",)),
    "lifo_repo": (_lifo_repo, ("rule 2",)),
    "lost_resolution": (_lost_resolution, ("never finished", "rule 5")),
    "deadline_ignored": (_deadline_ignored, ("rule 6",)),
    "timeout_completes": (_timeout_completes, ("rule 6",)),
    "repo_freed_at_deadline": (_repo_freed_at_deadline, ("rule 1", "rule 6")),
    "slots_never_freed": (_slots_never_freed, ("rule 8",)),
    "unbounded": (_unbounded, ("rule 8",)),
    "shutdown_loses_handles": (_shutdown_loses_handles, ("rule 9",)),
    "shutdown_leaves_threads": (_shutdown_leaves_threads, ("rule 9",)),
    "stale_final_figures": (_stale_final_figures, ("rule 9",)),
}


@pytest.mark.parametrize("bug", sorted(SEEDED_BUGS))
def test_machine_catches_seeded_bug(bug: str) -> None:
    """The machine is only worth something if it fails on a broken scheduler."""
    seed, rules = SEEDED_BUGS[bug]
    with seed():
        message = failure_of(SchedulerMachine, max_examples=300, steps=25)
    # Caught for the right reason: the rule the bug breaks, not some other failure.
    assert any(rule in message for rule in rules), message[:500]
