"""A scheduler with a store, restarted: what the next start finds and answers.

Each test here pins down a bug the journal's state machine
(``properties/test_journal_machine.py``) found, in a few lines.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actors import CancelResult, JobContext, JobStatus, ManualClock, Scheduler
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

    return sched


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
