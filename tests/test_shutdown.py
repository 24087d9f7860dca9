"""Tests for shutdown (rule 9, docs/guarantees.md): graceful, forceful, and what keeps answering
after."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
from prometheus_client import CollectorRegistry

from actors import (
    CancelResult,
    JobCancelled,
    JobHandle,
    JobNotFound,
    JobStatus,
    ManualClock,
    RetryPolicy,
    Scheduler,
    SchedulerAlreadyStarted,
    SchedulerClosed,
)
from tests.helpers import WAIT


def _postroom_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("postroom-") and t.is_alive()}


class Probe:
    """Handlers whose runs the tests can observe and steer."""

    def __init__(self, sched: Scheduler) -> None:
        self.calls = Counter[str]()
        self.started = threading.Event()
        self.saw_cancel = threading.Event()
        self.release = threading.Event()
        self._lock = threading.Lock()

        @sched.handler("work")
        def work(ctx, payload):
            time.sleep(0.005)  # simulated work
            with self._lock:
                self.calls[str(payload)] += 1
            return payload

        @sched.handler("until_cancelled")
        def until_cancelled(ctx, payload):
            self.started.set()
            if ctx.wait(30):
                self.saw_cancel.set()
            return "finished"

        @sched.handler("block")
        def block(ctx, payload):
            self.started.set()
            assert self.release.wait(10)
            return "released"


# --- graceful -----------------------------------------------------------------------


def test_graceful_shutdown_finishes_queued_and_running_jobs() -> None:
    before = _postroom_threads()
    sched = Scheduler(workers=2)
    probe = Probe(sched)
    sched.start()
    handles = [sched.submit("work", i, repo=f"r{i % 3}" if i % 2 else None) for i in range(30)]
    sched.shutdown(graceful=True, timeout=10)

    assert all(h.done() for h in handles)
    assert [h.result(timeout=0) for h in handles] == list(range(30))
    assert sum(probe.calls.values()) == 30
    assert not sched.running
    assert _postroom_threads() - before == set()
    stats = sched.stats()
    assert stats.completed == 30
    assert stats.cancelled == 0


def test_graceful_shutdown_waits_for_a_running_job() -> None:
    sched = Scheduler(workers=1)
    probe = Probe(sched)
    sched.start()
    handle = sched.submit("block")
    assert probe.started.wait(10)
    stopper = threading.Thread(target=sched.shutdown, kwargs={"timeout": 10})
    stopper.start()
    stopper.join(0.1)
    assert stopper.is_alive()  # waiting for the job
    assert not handle.done()
    with pytest.raises(SchedulerClosed):
        sched.submit("work", 1)
    probe.release.set()
    stopper.join(10)
    assert not stopper.is_alive()
    assert handle.result(timeout=0) == "released"


def test_graceful_shutdown_past_its_timeout_cancels_what_is_left() -> None:
    clock = ManualClock()
    sched = Scheduler(workers=1, clock=clock)
    probe = Probe(sched)
    sched.start()
    running = sched.submit("until_cancelled")
    assert probe.started.wait(10)
    queued = [sched.submit("work", i) for i in range(5)]
    in_repo = sched.submit("work", "repo", repo="r")
    delayed = sched.submit("work", "delayed", delay=1000)
    t0 = time.monotonic()
    sched.shutdown(graceful=True, timeout=0.2)
    assert time.monotonic() - t0 < 15

    assert probe.saw_cancel.is_set()
    for h in [running, *queued, in_repo, delayed]:
        assert h.done()
        with pytest.raises(JobCancelled):
            h.result(timeout=0)
    assert not probe.calls
    stats = sched.stats()
    assert stats.cancelled == 8
    assert stats.completed == 0
    assert stats.running == 0
    assert stats.pending == 0


# --- forceful ------------------------------------------------------------------------


def test_forceful_shutdown_cancels_at_once() -> None:
    sched = Scheduler(workers=1)
    probe = Probe(sched)
    sched.start()
    running = sched.submit("until_cancelled")
    assert probe.started.wait(10)
    queued = [sched.submit("work", i, repo="r") for i in range(10)]
    t0 = time.monotonic()
    sched.shutdown(graceful=False)
    # Well under the 30 s the running handler would otherwise wait.
    assert time.monotonic() - t0 < 15
    assert probe.saw_cancel.is_set()
    assert running.status is JobStatus.CANCELLED
    assert all(h.status is JobStatus.CANCELLED for h in queued)
    assert not probe.calls
    assert sched.stats().cancelled == 11


def test_with_block_left_by_an_exception_cancels() -> None:
    sched = Scheduler(workers=1)
    probe = Probe(sched)
    handles: list[JobHandle] = []
    with pytest.raises(RuntimeError, match="caller failed"), sched:
        handles.append(sched.submit("until_cancelled"))
        assert probe.started.wait(10)
        handles.append(sched.submit("work", "queued"))
        raise RuntimeError("caller failed")
    assert probe.saw_cancel.is_set()
    assert [h.status for h in handles] == [JobStatus.CANCELLED, JobStatus.CANCELLED]
    assert not probe.calls
    assert not sched.running


def test_with_block_left_normally_is_graceful() -> None:
    sched = Scheduler(workers=1)
    probe = Probe(sched)
    with sched:
        handles = [sched.submit("work", i) for i in range(10)]
    assert [h.result(timeout=0) for h in handles] == list(range(10))
    assert sum(probe.calls.values()) == 10


# --- closed means closed ---------------------------------------------------------------


def test_submit_before_start_raises_scheduler_closed() -> None:
    sched = Scheduler(workers=1)
    Probe(sched)
    with pytest.raises(SchedulerClosed):
        sched.submit("work", 1)
    assert not sched.running
    # It can still start and work afterwards.
    with sched:
        assert sched.submit("work", 2).result(timeout=10) == 2


def test_submit_after_shutdown_raises_scheduler_closed() -> None:
    sched = Scheduler(workers=1)
    Probe(sched)
    with sched:
        sched.submit("work", 1).result(timeout=10)
    with pytest.raises(SchedulerClosed):
        sched.submit("work", 2)
    with pytest.raises(SchedulerClosed):
        sched.resize(2)
    with pytest.raises(SchedulerClosed):
        sched.start()


def test_shutdown_twice_is_harmless() -> None:
    sched = Scheduler(workers=1)
    Probe(sched)
    sched.start()
    h = sched.submit("work", 1)
    sched.shutdown()
    stats = sched.stats()
    sched.shutdown()
    sched.shutdown(graceful=False)
    assert h.result(timeout=0) == 1
    assert sched.stats() == stats


def test_shutdown_of_a_never_started_scheduler() -> None:
    before = _postroom_threads()
    sched = Scheduler(workers=3)
    Probe(sched)
    sched.shutdown()
    sched.shutdown(graceful=False)
    assert not sched.running
    with pytest.raises(SchedulerClosed):
        sched.submit("work", 1)
    with pytest.raises(SchedulerClosed):
        sched.start()
    stats = sched.stats()
    assert stats.submitted == 0
    assert stats.workers == 3
    assert _postroom_threads() - before == set()


def test_start_on_a_running_scheduler_raises_already_started() -> None:
    sched = Scheduler(workers=1)
    Probe(sched)
    with sched:
        with pytest.raises(SchedulerAlreadyStarted, match="already running") as caught:
            sched.start()
        # Its name says what happened: it is running, not closed.
        assert not isinstance(caught.value, SchedulerClosed)
        assert isinstance(caught.value, RuntimeError)
        assert sched.running  # nothing changed
        assert sched.submit("work", 1).result(timeout=WAIT) == 1
    # Once it is shut down, it is closed.
    with pytest.raises(SchedulerClosed):
        sched.start()


# --- answers after shutdown ----------------------------------------------------------


def test_stats_and_job_keep_answering_after_shutdown() -> None:
    clock = ManualClock()
    sched = Scheduler(workers=2, clock=clock)
    Probe(sched)

    @sched.handler("bad")
    def bad(ctx, payload):
        raise ValueError("bad")

    sched.start()
    ok = [sched.submit("work", i) for i in range(4)]
    failed = sched.submit("bad")
    for h in ok:
        h.result(timeout=10)
    failed.wait(10)
    left = sched.submit("work", "left", delay=100)
    sched.shutdown(graceful=False)

    stats = sched.stats()
    assert (stats.submitted, stats.completed, stats.failed, stats.cancelled) == (6, 4, 1, 1)
    assert stats.running == 0
    assert stats.pending == 0
    assert sched.stats() == stats
    assert sched.job(ok[0].id).status is JobStatus.COMPLETED
    assert sched.job(ok[0].id).result == 0
    assert sched.job(failed.id).status is JobStatus.FAILED
    assert sched.job(left.id).status is JobStatus.CANCELLED
    assert left.info().error is not None
    # Cancelling after shutdown is harmless too, and still knows its jobs.
    assert sched.cancel(ok[0].id) is CancelResult.ALREADY_FINISHED
    assert left.cancel() is CancelResult.ALREADY_FINISHED
    with pytest.raises(JobNotFound):
        sched.cancel("no-such-job")
    with pytest.raises(JobNotFound):
        sched.job("no-such-job")


def test_no_thread_is_left_behind() -> None:
    before = _postroom_threads()
    sched = Scheduler(workers=4)
    probe = Probe(sched)
    sched.start()
    during = _postroom_threads() - before
    assert during  # the actors run on postroom threads
    running = sched.submit("until_cancelled")
    assert probe.started.wait(10)
    for i in range(20):
        sched.submit("work", i, repo=f"r{i}")
    sched.resize(8)
    sched.shutdown(graceful=False)
    assert running.done()
    assert _postroom_threads() - before == set()


def test_waiting_submitter_is_released_by_graceful_shutdown() -> None:
    sched = Scheduler(workers=1, max_pending=1, on_full="wait")
    probe = Probe(sched)
    errors: list[BaseException] = []

    def submit_waiting() -> None:
        try:
            sched.submit("work", "never")
        except BaseException as exc:
            errors.append(exc)

    sched.start()
    first = sched.submit("block")
    assert probe.started.wait(10)
    submitter = threading.Thread(target=submit_waiting)
    submitter.start()
    submitter.join(0.1)
    assert submitter.is_alive()
    stopper = threading.Thread(target=sched.shutdown, kwargs={"timeout": 10})
    stopper.start()
    # Stopping accepting releases the waiting submitter before the running job ends.
    submitter.join(5)
    assert not submitter.is_alive()
    assert not first.done()
    probe.release.set()
    stopper.join(10)
    assert [type(e) for e in errors] == [SchedulerClosed]
    assert first.result(timeout=0) == "released"
    assert "never" not in probe.calls


def test_graceful_shutdown_lets_retries_finish() -> None:
    sched = Scheduler(workers=2)
    attempts: list[int] = []

    @sched.handler("flaky", max_retries=3, retry=RetryPolicy.fixed(0.01))
    def flaky(ctx, payload):
        attempts.append(ctx.attempt)
        if ctx.attempt < 3:
            raise RuntimeError("not yet")
        return "third time"

    sched.start()
    handle = sched.submit("flaky", repo="r")
    sched.shutdown(graceful=True, timeout=10)
    assert handle.result(timeout=0) == "third time"
    assert attempts == [1, 2, 3]
    assert sched.stats().retried == 2


@pytest.mark.parametrize(
    ("repo", "mode"),
    [(None, "ordered"), ("r", "ordered"), ("r", "mutex")],
    ids=["no-repo", "ordered-repo", "mutex-repo"],
)
def test_graceful_shutdown_lets_a_delayed_job_due_within_its_timeout_run(
    repo: str | None, mode: str
) -> None:
    # Real time, on purpose: what is under test is how the delay's due time and
    # shutdown's own timeout (always real seconds) meet. The job is due 0.3 s
    # after the shutdown began, well inside its 5 s: it must run, as a retry
    # would. Each repo mode reaches its due time by another path (the Timer
    # queueing the job itself; a tick of the repo's lock; a Fire to the
    # Dispatcher).
    sched = Scheduler(workers=1, repo_mode=mode)  # type: ignore[arg-type]
    started_at: list[float] = []

    @sched.handler("delayed")
    def delayed(ctx, payload):
        started_at.append(time.monotonic())
        return payload

    sched.start()
    submitted_at = time.monotonic()
    handle = sched.submit("delayed", "ran", repo=repo, delay=0.3)
    sched.shutdown(graceful=True, timeout=WAIT)
    ended_at = time.monotonic()

    assert handle.result(timeout=0) == "ran"
    assert started_at[0] >= submitted_at + 0.3  # not started early to beat the shutdown
    assert ended_at - submitted_at < WAIT  # it ended the drain; no timeout ran out
    stats = sched.stats()
    assert (stats.completed, stats.cancelled) == (1, 0)


def test_graceful_shutdown_cancels_a_job_stuck_in_backoff() -> None:
    clock = ManualClock()  # never advanced: the retry never comes due
    sched = Scheduler(workers=1, clock=clock)

    @sched.handler("flaky", max_retries=3, retry=RetryPolicy.fixed(100))
    def flaky(ctx, payload):
        raise RuntimeError("later")

    sched.start()
    handle = sched.submit("flaky", repo="r")
    sched.shutdown(graceful=True, timeout=0.2)
    with pytest.raises(JobCancelled) as caught:
        handle.result(timeout=0)
    assert caught.value.error is not None
    assert caught.value.error.type == "postroom.JobCancelled"
    assert handle.info().attempts == 1


def test_cancel_during_graceful_shutdown_ends_the_wait() -> None:
    sched = Scheduler(workers=1)
    probe = Probe(sched)
    sched.start()
    handle = sched.submit("until_cancelled")
    assert probe.started.wait(10)
    stopper = threading.Thread(target=sched.shutdown, kwargs={"timeout": 30})
    stopper.start()
    stopper.join(0.1)
    assert stopper.is_alive()
    assert handle.cancel() is CancelResult.SIGNALLED
    stopper.join(10)
    assert not stopper.is_alive()
    assert probe.saw_cancel.is_set()
    assert handle.status is JobStatus.CANCELLED


def test_a_handler_that_ignores_its_stop_signal_is_reported_and_counted() -> None:
    # A sync handler that never looks at ctx.cancelled outlives cancel_grace: its
    # handle still resolves (cancelled), the final figures count it, and the
    # thread is left to finish on its own (the test then lets it go).
    sched = Scheduler(workers=1)
    started, release = threading.Event(), threading.Event()

    @sched.handler("stubborn")
    def stubborn(ctx: object, payload: None) -> None:
        started.set()
        release.wait(10)

    sched.start()
    handle = sched.submit("stubborn")
    assert started.wait(WAIT)
    try:
        sched.shutdown(graceful=False, cancel_grace=0.2)
        assert handle.done()
        assert handle.status is JobStatus.CANCELLED
        stats = sched.stats()
        assert (stats.cancelled, stats.running, stats.pending) == (1, 0, 0)
    finally:
        release.set()
    for thread in threading.enumerate():
        if thread.name.startswith("postroom-"):
            thread.join(WAIT)


def test_a_forceful_close_blames_only_handlers_that_did_not_return(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # ``cancel_grace`` is the time running handlers get once told to stop; it
    # must not run out while the Dispatcher is still cancelling thousands of
    # waiting jobs, or those get reported as handlers that did not return.
    sched = Scheduler(workers=1, max_pending=50_000)
    started, release = threading.Event(), threading.Event()

    @sched.handler("stubborn")
    def stubborn(ctx: object, payload: None) -> None:
        started.set()
        release.wait(WAIT)

    sched.register("later", lambda ctx, payload: None)
    sched.start()
    running = sched.submit("stubborn")
    assert started.wait(WAIT)
    waiting = [sched.submit("later", i, delay=3600) for i in range(20_000)]
    try:
        sched.shutdown(graceful=False, cancel_grace=0.05)
    finally:
        release.set()
    assert running.info().error is not None
    assert running.info().error.message == "cancelled by shutdown; the handler did not return"
    messages = Counter(h.info().error.message for h in waiting)  # type: ignore[union-attr]
    assert messages == {"cancelled by shutdown": len(waiting)}
    stuck = [r.getMessage() for r in caplog.records if "did not stop" in r.getMessage()]
    assert len(stuck) == 1 and stuck[0].startswith("shutdown: 1 job(s) did not stop"), stuck
    for thread in threading.enumerate():
        if thread.name.startswith("postroom-"):
            thread.join(WAIT)


# --- shutdown from the scheduler's own threads ------------------------------------------


def test_shutdown_from_a_handler_returns_and_its_own_job_completes() -> None:
    # It once raised "cannot join current thread", left the scheduler stuck in
    # `closing`, and ended the calling job "cancelled ... did not return".
    sched = Scheduler(workers=2, registry=CollectorRegistry())
    returned = threading.Event()

    @sched.handler("closer")
    def closer(ctx: object, payload: None) -> str:
        sched.shutdown()
        returned.set()
        return "closed it"

    sched.start()
    try:
        handle = sched.submit("closer")
        assert handle.result(timeout=WAIT) == "closed it"
        assert returned.is_set()
    finally:
        sched.shutdown()  # waits for the shutdown under way, joins its thread
    assert sched.job(handle.id).status is JobStatus.COMPLETED
    assert not sched.running
    assert sched._life.state == "closed"
    # The metrics were unregistered: a new scheduler can take the same name.
    Scheduler(name=sched.name, registry=sched._metrics.registry).start().shutdown()


def test_shutdown_from_a_done_callback_ends_the_scheduler() -> None:
    sched = Scheduler(workers=1, registry=CollectorRegistry())
    errors: list[BaseException] = []
    called = threading.Event()

    @sched.handler("work")
    def work(ctx: object, payload: int) -> int:
        return payload

    def close_it(_handle: JobHandle) -> None:
        try:
            sched.shutdown(graceful=False)
        except BaseException as exc:
            errors.append(exc)
        called.set()

    sched.start()
    try:
        sched.submit("work", 1).add_done_callback(close_it)
        assert called.wait(WAIT)
        assert errors == []
    finally:
        sched.shutdown()
    assert sched._life.state == "closed"
    assert not any(t.name.startswith("postroom-Shutdown") for t in threading.enumerate())


def test_a_later_shutdown_waits_for_the_one_a_handler_started() -> None:
    sched = Scheduler(workers=2)
    release = threading.Event()
    asked = threading.Event()

    @sched.handler("closer")
    def closer(ctx: object, payload: None) -> None:
        sched.shutdown(timeout=WAIT)
        asked.set()

    @sched.handler("block")
    def block(ctx: object, payload: None) -> str:
        assert release.wait(WAIT)
        return "released"

    sched.start()
    blocked = sched.submit("block")
    sched.submit("closer")
    assert asked.wait(WAIT)
    assert not blocked.done()  # graceful: the running job is let finish
    release.set()
    sched.shutdown()
    # When the second call returns, the first has ended: the job ran to the end.
    assert blocked.status is JobStatus.COMPLETED
    assert sched._life.state == "closed"


# --- shutdown keeps to its limits -------------------------------------------------------


def test_shutdown_with_a_stuck_handler_keeps_within_its_limits() -> None:
    # timeout=0.2, cancel_grace=0.3 once returned after about 1.5 s: joining
    # the stuck handler's thread waited a fixed max(cancel_grace, 1.0) more.
    sched = Scheduler(workers=1)
    started, release = threading.Event(), threading.Event()

    @sched.handler("stubborn")
    def stubborn(ctx: object, payload: None) -> None:
        started.set()
        release.wait(WAIT)

    sched.start()
    sched.submit("stubborn")
    assert started.wait(WAIT)
    try:
        began = time.monotonic()
        sched.shutdown(timeout=0.2, cancel_grace=0.3)
        took = time.monotonic() - began
    finally:
        release.set()
    for thread in threading.enumerate():
        if thread.name.startswith("postroom-"):
            thread.join(WAIT)
    # The limits, plus JOIN_FLOOR (0.1 s) and a margin for a loaded machine.
    assert took < 0.2 + 0.3 + 0.1 + 0.3


def test_final_figures_after_a_forceful_shutdown_with_stuck_handlers_agree() -> None:
    # stats().running was 0 while stats().queues[0].running was 2 and
    # repo_locks 1: only the totals were set at rest.
    sched = Scheduler(workers=2)
    started = threading.Barrier(3)
    release = threading.Event()

    @sched.handler("stubborn")
    def stubborn(ctx: object, payload: None) -> None:
        started.wait(WAIT)
        release.wait(WAIT)

    sched.start()
    sched.submit("stubborn", repo="r1")
    sched.submit("stubborn")
    started.wait(WAIT)
    try:
        sched.shutdown(graceful=False, cancel_grace=0.1)
    finally:
        release.set()
    for thread in threading.enumerate():
        if thread.name.startswith("postroom-"):
            thread.join(WAIT)
    stats = sched.stats()
    assert (stats.running, stats.pending, stats.repo_locks) == (0, 0, 0)
    assert [(q.running, q.pending) for q in stats.queues] == [(0, 0)]
    assert stats.cancelled == 2
