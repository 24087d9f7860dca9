"""Tests for supervision: postroom bugs fail loudly, handler errors never crash actors."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from typing import Any

import pytest

import actors._repo_lock
import actors._worker.attempt
from actors import (
    JobFailed,
    JobStatus,
    ManualClock,
    Scheduler,
    SchedulerClosed,
    SchedulerError,
    SchedulerUnresponsive,
)


def _postroom_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("postroom-") and t.is_alive()}


def _crash_worker_on(monkeypatch: pytest.MonkeyPatch, marker: str) -> None:
    """Make the worker's attempt (`AttemptRunner.run`) raise (a postroom bug) for
    jobs whose payload is ``marker``."""
    original = actors._worker.attempt.AttemptRunner.run

    def run(self: Any, job: Any, *args: Any) -> Any:
        if job.payload == marker:
            raise RuntimeError(f"worker bug on {marker}")
        return original(self, job, *args)

    monkeypatch.setattr(actors._worker.attempt.AttemptRunner, "run", run)


def _work_scheduler(**options: Any) -> tuple[Scheduler, Counter[str]]:
    sched = Scheduler(**options)
    calls = Counter[str]()
    lock = threading.Lock()

    @sched.handler("work", max_retries=3)
    def work(ctx, payload):
        with lock:
            calls[str(payload)] += 1
        return payload

    return sched, calls


# --- an actor bug: the scheduler fails loudly ------------------------------------------


def _crash_via_repo_lock(monkeypatch: pytest.MonkeyPatch, sched: Scheduler) -> None:
    """Make the next job with a repo crash its RepoLock (a postroom bug)."""

    def broken_enqueue(self: Any, job: Any) -> None:
        raise RuntimeError("repo lock bug")

    monkeypatch.setattr(actors._repo_lock.RepoLock, "_enqueue", broken_enqueue)


def _crashing_scheduler() -> tuple[Scheduler, threading.Event, threading.Event]:
    sched = Scheduler(workers=2)
    started, release = threading.Event(), threading.Event()

    @sched.handler("block")
    def block(ctx, payload):
        started.set()
        release.wait(10)
        return "late"

    @sched.handler("work")
    def work(ctx, payload):
        return payload

    return sched, started, release


def test_repo_lock_bug_crashes_the_scheduler_and_resolves_every_handle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sched, started, release = _crashing_scheduler()
    sched.start()
    try:
        running = sched.submit("block")
        assert started.wait(10)
        _crash_via_repo_lock(monkeypatch, sched)
        victim = sched.submit("work", "v", repo="r")
        for handle in (victim, running):
            with pytest.raises(JobFailed) as caught:
                handle.result(timeout=10)
            assert caught.value.error is not None
            assert caught.value.error.type == "postroom.SchedulerCrashed"
            assert handle.status is JobStatus.FAILED
        assert not sched.running
        with pytest.raises(SchedulerClosed):
            sched.submit("work", "after")
    finally:
        release.set()
        sched.shutdown()
    # Still answers after the crash.
    assert sched.job(victim.id).status is JobStatus.FAILED
    sched.shutdown()


def test_shutdown_after_a_repo_lock_crash_joins_every_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = _postroom_threads()
    sched, _started, _release = _crashing_scheduler()
    sched.start()
    try:
        _crash_via_repo_lock(monkeypatch, sched)
        victim = sched.submit("work", "v", repo="r")
        assert victim.wait(10)
        assert victim.status is JobStatus.FAILED
        sched.shutdown()
        assert _postroom_threads() - before == set()
    finally:
        sched.shutdown()  # harmless if already done


def test_stats_keep_the_final_figures_after_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    # A short ask timeout keeps the test fast; a correct answer needs no ask at all.
    monkeypatch.setattr(Scheduler, "_ask_timeout", 1.0)
    sched, _started, _release = _crashing_scheduler()
    sched.start()
    try:
        for i in range(5):
            assert sched.submit("work", i).result(timeout=10) == i
        assert sched.stats().completed == 5
        _crash_via_repo_lock(monkeypatch, sched)
        victim = sched.submit("work", "v", repo="r")
        assert victim.wait(10)
        assert not sched.running
    finally:
        sched.shutdown()
    t0 = time.monotonic()
    stats = sched.stats()
    assert time.monotonic() - t0 < 0.9  # answered, not timed out
    assert stats.submitted == 6
    assert stats.completed == 5
    # The crashed job is resolved (failed), so it is counted as finished.
    assert stats.finished == 6


def test_worker_bug_fails_that_job_and_replaces_the_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _crash_worker_on(monkeypatch, "boom")
    sched, calls = _work_scheduler(workers=2)
    with sched:
        bad = sched.submit("work", "boom", repo="r")
        with pytest.raises(JobFailed) as caught:
            bad.result(timeout=10)
        assert caught.value.error is not None
        assert caught.value.error.type == "postroom.WorkerCrashed"
        assert "worker bug on boom" in caught.value.error.message
        # Not retried, though the handler allows 3 retries.
        assert bad.info().attempts == 1
        # The repo is released and the pool is whole again.
        assert sched.submit("work", "next", repo="r").result(timeout=10) == "next"
        assert sched.stats().workers == 2
        barrier = threading.Barrier(2, timeout=10)

        @sched.handler("meet")
        def meet(ctx, payload):
            return barrier.wait()

        pair = [sched.submit("meet") for _ in range(2)]
        assert sorted(h.result(timeout=10) for h in pair) == [0, 1]
        handles = [sched.submit("work", i) for i in range(20)]
        assert [h.result(timeout=10) for h in handles] == list(range(20))
        assert sched.running
    assert "boom" not in calls


def test_too_many_worker_crashes_crash_the_scheduler(monkeypatch: pytest.MonkeyPatch) -> None:
    _crash_worker_on(monkeypatch, "boom")
    sched, _calls = _work_scheduler(workers=1, restart_limit=2, restart_window=60.0)
    sched.start()
    try:
        for _ in range(2):
            with pytest.raises(JobFailed) as caught:
                sched.submit("work", "boom").result(timeout=10)
            assert caught.value.error is not None
            assert caught.value.error.type == "postroom.WorkerCrashed"
        assert sched.running
        last = sched.submit("work", "boom")
        with pytest.raises(JobFailed) as caught:
            last.result(timeout=10)
        assert caught.value.error is not None
        assert caught.value.error.type == "postroom.SchedulerCrashed"
        assert not sched.running
        with pytest.raises(SchedulerClosed):
            sched.submit("work", "after")
    finally:
        sched.shutdown()


def test_shutdown_after_too_many_worker_crashes_joins_every_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = _postroom_threads()
    _crash_worker_on(monkeypatch, "boom")
    sched, _calls = _work_scheduler(workers=2, restart_limit=0)
    sched.start()
    try:
        handle = sched.submit("work", "boom")
        assert handle.wait(10)
        assert handle.info().error.type == "postroom.SchedulerCrashed"  # type: ignore[union-attr]
        sched.shutdown()
        assert _postroom_threads() - before == set()
    finally:
        sched.shutdown()  # harmless if already done


def test_crashes_outside_the_window_are_forgiven(monkeypatch: pytest.MonkeyPatch) -> None:
    _crash_worker_on(monkeypatch, "boom")
    clock = ManualClock()
    sched, _calls = _work_scheduler(workers=1, restart_limit=1, restart_window=60.0, clock=clock)
    with sched:
        for _ in range(3):
            with pytest.raises(JobFailed) as caught:
                sched.submit("work", "boom").result(timeout=10)
            assert caught.value.error is not None
            assert caught.value.error.type == "postroom.WorkerCrashed"
            # The crash was counted before the handle resolved; the window is on
            # the scheduler's clock, so moving it past the window forgives it.
            clock.advance(60.5)
        assert sched.running
        assert sched.submit("work", "ok").result(timeout=10) == "ok"


def test_crash_of_a_scheduler_with_many_waiting_jobs_resolves_them_all(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sched = Scheduler(workers=1)
    started, release = threading.Event(), threading.Event()

    @sched.handler("block")
    def block(ctx, payload):
        started.set()
        release.wait(10)

    @sched.handler("work")
    def work(ctx, payload):
        return payload

    sched.start()
    try:
        handles = [sched.submit("block")]
        assert started.wait(10)
        handles += [sched.submit("work", i) for i in range(30)]
        handles += [sched.submit("work", i, delay=60) for i in range(5)]
        monkeypatch.setattr(
            actors._repo_lock.RepoLock,
            "_enqueue",
            lambda self, job: (_ for _ in ()).throw(RuntimeError("bug")),
        )
        handles.append(sched.submit("work", "v", repo="r"))
        assert all(h.wait(10) for h in handles)
        assert {h.status for h in handles} == {JobStatus.FAILED}
        assert {h.info().error.type for h in handles} == {"postroom.SchedulerCrashed"}  # type: ignore[union-attr]
    finally:
        release.set()
        sched.shutdown()


# --- a crashed actor's traceback: on postroom's logger, never Pykka's -------------------


def _tracebacks_of(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.exc_info and text in str(r.exc_info[1])]


def _pykka_says(caplog: pytest.LogCaptureFixture) -> list[str]:
    # Pykka logs "Stopped <actor>" at DEBUG for every stop: harmless chatter.
    # A traceback, or anything at INFO or above, is what must never land there.
    return [
        f"{r.levelname} {r.getMessage()}"
        for r in caplog.records
        if r.name.startswith("pykka") and (r.exc_info or r.levelno >= logging.INFO)
    ]


def test_a_crashed_repo_lock_logs_its_traceback_on_postroom_and_nothing_on_pykka(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # docs/supervision.md: an application that listens to ``postroom`` sees
    # every crashed actor's traceback; Pykka's own handler logs on ``pykka``.
    sched, _started, _release = _crashing_scheduler()
    with caplog.at_level(logging.DEBUG):
        sched.start()
        try:
            _crash_via_repo_lock(monkeypatch, sched)
            victim = sched.submit("work", "v", repo="r")
            assert victim.wait(10)
        finally:
            sched.shutdown()
    tracebacks = _tracebacks_of(caplog, "repo lock bug")
    assert tracebacks, "the RepoLock's traceback was logged nowhere"
    assert {r.name for r in tracebacks} == {"postroom.runtime"}
    assert "RepoLock" in tracebacks[0].getMessage()
    assert _pykka_says(caplog) == []


def test_a_crashed_worker_logs_its_traceback_on_postroom_and_nothing_on_pykka(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _crash_worker_on(monkeypatch, "boom")
    sched, _calls = _work_scheduler(workers=1)
    with caplog.at_level(logging.DEBUG), sched:
        handle = sched.submit("work", "boom")
        assert handle.wait(10)
        assert handle.info().error.type == "postroom.WorkerCrashed"  # type: ignore[union-attr]
    tracebacks = _tracebacks_of(caplog, "worker bug on boom")
    assert tracebacks, "the Worker's traceback was logged nowhere"
    assert {r.name for r in tracebacks} == {"postroom.runtime"}
    assert "Worker" in tracebacks[0].getMessage()
    assert _pykka_says(caplog) == []


# --- handler errors are the job's, never the actor's ------------------------------------


@pytest.mark.parametrize("error", [SystemExit, KeyboardInterrupt, GeneratorExit])
def test_base_exceptions_from_a_handler_fail_the_job_only(error: type[BaseException]) -> None:
    sched = Scheduler(workers=1)
    calls = Counter[str]()

    @sched.handler("exit", max_retries=3)
    def exit_(ctx, payload):
        calls["exit"] += 1
        raise error("from handler")

    @sched.handler("work")
    def work(ctx, payload):
        return payload

    with sched:
        handle = sched.submit("exit", repo="r")
        with pytest.raises(JobFailed) as caught:
            handle.result(timeout=10)
        assert caught.value.error is not None
        assert caught.value.error.type == error.__name__
        assert isinstance(caught.value.__cause__, error)
        assert calls["exit"] == 1  # not retried
        assert sched.running
        assert sched.submit("work", 1, repo="r").result(timeout=10) == 1
        assert sched.stats().workers == 1
    assert sched.stats().retried == 0


def test_handler_errors_do_not_count_as_worker_crashes() -> None:
    sched = Scheduler(workers=1, restart_limit=0)

    @sched.handler("bad")
    def bad(ctx, payload):
        raise RuntimeError("handler error")

    with sched:
        for _ in range(5):
            with pytest.raises(JobFailed) as caught:
                sched.submit("bad").result(timeout=10)
            assert caught.value.error is not None
            assert caught.value.error.type == "RuntimeError"
        assert sched.running


# --- the Timer's loop: a failure anywhere in it crashes the scheduler loudly -----------


class _BreakingClock(ManualClock):
    """A manual clock whose `wait_hint` raises once ``broken`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.broken = threading.Event()

    def wait_hint(self, due: float) -> float | None:
        if self.broken.is_set():
            raise RuntimeError("clock bug")
        return super().wait_hint(due)


def test_a_failure_while_the_timer_waits_crashes_the_scheduler_loudly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The Timer's wait once sat outside the code that reports an actor's crash:
    # its thread died in silence, `running` stayed True, and no timer fired again.
    clock = _BreakingClock()
    sched = Scheduler(workers=1, clock=clock)

    @sched.handler("work")
    def work(ctx, payload):
        return payload

    sched.start()
    try:
        clock.broken.set()
        with caplog.at_level(logging.ERROR, logger="postroom"):
            delayed = sched.submit("work", "d", delay=5)
            with pytest.raises(JobFailed) as caught:
                delayed.result(timeout=10)
        assert caught.value.error is not None
        assert caught.value.error.type == "postroom.SchedulerCrashed"
        assert "timer" in caught.value.error.message
        assert not sched.running
        failures = [r for r in caplog.records if r.name.startswith("postroom.") and r.exc_info]
        assert any("clock bug" in str(r.exc_info[1]) for r in failures if r.exc_info)
    finally:
        clock.broken.clear()
        sched.shutdown()


# --- a Dispatcher that does not answer: a public error, never Pykka's ------------------


def test_a_call_the_dispatcher_does_not_answer_raises_scheduler_unresponsive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Scheduler.cancel once raised pykka.Timeout: neither a SchedulerError nor
    # a TimeoutError, and nothing docs/errors.md lists.
    from actors._dispatcher.dispatcher import Dispatcher

    stuck = threading.Event()
    original = Dispatcher._on_cancel

    def slow_cancel(self: Dispatcher, message: Any) -> Any:
        stuck.wait(10)
        return original(self, message)

    monkeypatch.setattr(Dispatcher, "_on_cancel", slow_cancel)
    monkeypatch.setattr(Scheduler, "_ask_timeout", 0.2)
    sched = Scheduler(workers=1)

    @sched.handler("work")
    def work(ctx, payload):
        return payload

    sched.start()
    try:
        handle = sched.submit("work", "x", delay=60)
        with pytest.raises(SchedulerUnresponsive) as caught:
            sched.cancel(handle.id)
        assert isinstance(caught.value, TimeoutError)
        assert isinstance(caught.value, SchedulerError)
    finally:
        stuck.set()
        sched.shutdown(graceful=False)


class _Die(BaseException):
    """A bug that is no `Exception`: the Dispatcher dies of it even while answering an ask."""


def _dispatcher_dies_on(monkeypatch: pytest.MonkeyPatch, marker: str) -> tuple[Any, Any]:
    """Make the Dispatcher fail on a job whose payload is ``marker``, and hold
    the report of its failure until released: the window in which the
    Dispatcher is dead but the scheduler has not crashed yet.

    Returns the events (dead, release).
    """
    from actors._dispatcher.dispatcher import Dispatcher
    from actors._facade.lifecycle import Shutdown

    on_submit = Dispatcher._on_submit

    def failing_submit(self: Dispatcher, job: Any) -> None:
        if job.payload == marker:
            raise RuntimeError(f"dispatcher bug on {marker}")
        on_submit(self, job)

    dead, release = threading.Event(), threading.Event()
    failed = Shutdown.dispatcher_failed

    def held_report(self: Shutdown, *args: Any) -> None:
        dead.set()
        release.wait(10)
        failed(self, *args)

    monkeypatch.setattr(Dispatcher, "_on_submit", failing_submit)
    monkeypatch.setattr(Shutdown, "dispatcher_failed", held_report)
    return dead, release


def test_a_submit_as_the_dispatcher_dies_returns_a_handle_the_crash_resolves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # submit told the Dispatcher with Pykka's tell, whose ActorDeadError
    # reached the caller: neither a SchedulerError nor anything documented.
    dead, release = _dispatcher_dies_on(monkeypatch, "bug")
    sched, _calls = _work_scheduler(workers=1)
    sched.start()
    try:
        sched.submit("work", "bug", repo="r")
        assert dead.wait(10)
        late = sched.submit("work", "late", repo="other")
        release.set()
        assert late.wait(10)
        assert late.info().error.type == "postroom.SchedulerCrashed"  # type: ignore[union-attr]
        assert not sched.running
    finally:
        release.set()
        sched.shutdown()


def test_a_shutdown_as_the_dispatcher_dies_raises_nothing_and_resolves_every_job(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dead, release = _dispatcher_dies_on(monkeypatch, "bug")
    sched, _calls = _work_scheduler(workers=1)
    sched.start()
    try:
        victim = sched.submit("work", "bug", repo="r")
        assert dead.wait(10)
        # The Dispatcher is gone and its failure not yet reported: shutdown can
        # neither tell it to close nor wait for it (the limits keep this short).
        sched.shutdown(timeout=0.2, cancel_grace=0.2)
        assert victim.done
        assert not sched.running
    finally:
        release.set()
        sched.shutdown()


def test_a_dispatcher_that_dies_as_it_boots_makes_start_raise_scheduler_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from actors._dispatcher.dispatcher import Dispatcher

    def boot(self: Dispatcher) -> None:
        raise _Die("boot bug")

    monkeypatch.setattr(Dispatcher, "_boot", boot)
    sched, _calls = _work_scheduler(workers=1)
    try:
        with pytest.raises(SchedulerClosed) as caught:
            sched.start()
        assert "boot" in str(caught.value) or "dispatcher" in str(caught.value)
    finally:
        sched.shutdown()
