"""A scheduler with a store, restarted: what the next start finds and answers.

Each test here pins down a bug the journal's state machine
(``properties/test_journal_machine.py``) found, in a few lines.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actors import (
    CancelResult,
    Fatal,
    JobContext,
    JobStatus,
    ManualClock,
    RunOutcome,
    Scheduler,
    StoreCorrupt,
)
from tests.helpers import WAIT


@pytest.fixture
def store(tmp_path: Path) -> str:
    return str(tmp_path / "jobs.db")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def _scheduler(store: str, clock: ManualClock, **options: Any) -> Scheduler:
    sched = Scheduler(workers=2, clock=clock, store=store, **options)

    @sched.handler("ok")
    def ok(ctx: JobContext, payload: Any) -> Any:
        return payload

    @sched.handler("boom")
    def boom(ctx: JobContext, payload: Any) -> Any:
        raise RuntimeError("boom")

    @sched.handler("boom_then_fatal", max_retries=3)
    def boom_then_fatal(ctx: JobContext, payload: Any) -> Any:
        if ctx.attempt == 1:
            raise RuntimeError("boom")
        raise Fatal("no retry can help")

    @sched.handler("refused", max_retries=3, throws=KeyError)
    def refused(ctx: JobContext, payload: Any) -> Any:
        raise KeyError("no such thing")

    @sched.handler("wrapped", max_retries=3)
    def wrapped(ctx: JobContext, payload: Any) -> Any:
        raise Fatal(ValueError("bad input"))

    return sched


def _lose_job_ends(sched: Scheduler) -> None:
    """From now on, a job's end never reaches the store (its attempts' ends
    do): as when the process dies between the two commits."""
    durable = sched._durable
    assert durable is not None
    durable.link.ended = lambda *args, **kwargs: None  # type: ignore[method-assign]


@pytest.fixture
def restarted(store: str, clock: ManualClock) -> Iterator[list[Scheduler]]:
    """Schedulers made on the store, shut down at the end of the test."""
    made: list[Scheduler] = []
    yield made
    for sched in made:
        sched.shutdown(graceful=False, timeout=0.0)


def test_cancel_of_a_job_finished_before_a_restart_says_already_finished(
    store: str, clock: ManualClock, restarted: list[Scheduler]
) -> None:
    """`job()` finds a job finished in an earlier run (in the store); `cancel()`
    of it is harmless and says so, as for a finished job still in memory
    (rule 7, docs/guarantees.md), instead of raising JobNotFound."""
    first = _scheduler(store, clock)
    restarted.append(first)
    first.start()
    done = first.submit("ok", 1)
    failed = first.submit("boom", 2)
    assert done.result(timeout=WAIT) == 1
    failed.wait(timeout=WAIT)
    first.shutdown()

    second = _scheduler(store, clock)
    restarted.append(second)
    second.start()
    assert second.job(done.id).status is JobStatus.COMPLETED
    assert second.cancel(done.id) is CancelResult.ALREADY_FINISHED
    assert second.cancel(failed.id) is CancelResult.ALREADY_FINISHED
    assert second.job(done.id).status is JobStatus.COMPLETED


def test_a_job_whose_failed_end_was_lost_is_failed_with_its_last_attempts_error(
    store: str, clock: ManualClock, restarted: list[Scheduler]
) -> None:
    """The store holds the failed run but not the job's end: the next start
    fails the job with the error its last attempt ended with, not with the
    error of an earlier attempt (here there is none: it had no error at all)."""
    first = _scheduler(store, clock)
    restarted.append(first)
    first.start()
    _lose_job_ends(first)
    handle = first.submit("boom", 1)
    handle.wait(timeout=WAIT)
    first.shutdown()

    second = _scheduler(store, clock)
    restarted.append(second)
    second.start()
    info = second.job(handle.id)
    assert info.status is JobStatus.FAILED
    assert info.error is not None
    assert (info.error.type, info.error.message) == ("RuntimeError", "boom")
    assert "RuntimeError: boom" in info.error.traceback
    assert [r.outcome for r in second.runs(handle.id)] == [RunOutcome.FAILED]


def test_a_fatal_last_attempt_whose_end_was_lost_is_not_retried(
    store: str, clock: ManualClock, restarted: list[Scheduler]
) -> None:
    """Attempt 1 failed (retried), attempt 2 raised Fatal, and the process
    died before the job's end was committed: the next start reads the last
    attempt's error and fails the job; it does not retry it by the error of
    attempt 1."""
    first = _scheduler(store, clock)
    restarted.append(first)
    first.start()
    _lose_job_ends(first)
    handle = first.submit("boom_then_fatal", 1)
    handle.wait(timeout=WAIT)
    assert first.job(handle.id).attempts == 2
    first.shutdown()

    second = _scheduler(store, clock)
    restarted.append(second)
    second.start()
    info = second.job(handle.id)  # decided as the store was opened, before any job ran
    assert info.status is JobStatus.FAILED
    assert info.error is not None and info.error.type == "postroom.Fatal"
    assert info.attempts == 2


@pytest.mark.parametrize(
    ("handler", "error_type"), [("refused", "KeyError"), ("wrapped", "ValueError")]
)
def test_a_final_error_whose_end_was_lost_is_not_retried(
    store: str, clock: ManualClock, restarted: list[Scheduler], handler: str, error_type: str
) -> None:
    """An error ``throws=`` names, or one `Fatal` wraps, is final though its
    type is not ``Fatal``: the run records that, and a start that finds the
    job's end missing fails the job instead of running it again."""
    first = _scheduler(store, clock)
    restarted.append(first)
    first.start()
    _lose_job_ends(first)
    handle = first.submit(handler, 1)
    handle.wait(timeout=WAIT)
    first.shutdown()

    second = _scheduler(store, clock)
    restarted.append(second)
    second.start()
    info = second.job(handle.id)
    assert info.status is JobStatus.FAILED
    assert info.error is not None and info.error.type == error_type
    assert info.attempts == 1
    assert [r.outcome for r in second.runs(handle.id)] == [RunOutcome.FAILED]


def test_a_row_changed_by_hand_fails_the_start_with_store_corrupt(
    store: str, clock: ManualClock, restarted: list[Scheduler]
) -> None:
    """A payload that is no longer JSON (the store edited by hand) is a typed
    `StoreCorrupt` at start, naming the job, not a JSON error from the depths."""
    first = _scheduler(store, clock)
    restarted.append(first)
    first.start()
    handle = first.submit("ok", {"n": 1}, delay=60)
    first.shutdown()
    conn = sqlite3.connect(store)
    with conn:
        conn.execute("UPDATE jobs SET payload = '{not json' WHERE id = ?", (handle.id,))
    conn.close()
    second = _scheduler(store, clock)
    restarted.append(second)
    with pytest.raises(StoreCorrupt, match=handle.id):
        second.start()
    assert not second.running
