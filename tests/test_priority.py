"""Start order: (priority, submission) within a repo (rule 2, docs/guarantees.md), and across
the pool (rule 3)."""

from __future__ import annotations

import threading

import pytest

from actors import InvalidArgument, JobContext, JobStatus, Priority, Scheduler
from actors._dispatcher.dispatcher import Dispatcher
from actors._repo_lock import RepoMode
from actors.messages import Job
from tests.helpers import WAIT, Runs, quiet, settle


def _blocking_scheduler(
    workers: int, repo_mode: RepoMode = "ordered"
) -> tuple[Scheduler, Runs, threading.Event]:
    """A scheduler whose "block" job holds a worker until the returned event is set."""
    runs = Runs()
    release = threading.Event()
    sched = Scheduler(workers=workers, repo_mode=repo_mode)

    @sched.handler("block")
    def block(ctx: JobContext, payload: None) -> None:
        with runs.run("block", ctx.repo):
            release.wait(WAIT)

    @sched.handler("job")
    def job(ctx: JobContext, payload: str) -> str:
        with runs.run(payload, ctx.repo):
            return payload.upper()

    return sched, runs, release


def test_global_priority_picks_the_most_urgent_then_the_oldest() -> None:
    sched, runs, release = _blocking_scheduler(workers=1)
    with sched:
        try:
            sched.submit("block")
            assert runs.started("block").wait(WAIT)
            submitted = [("p10", 10), ("p5-first", 5), ("p1", 1), ("p5-second", 5)]
            handles = [sched.submit("job", label, priority=p) for label, p in submitted]
            settle(sched)  # all four are in the ready queue before the worker frees up
        finally:
            release.set()
        assert [h.result(timeout=WAIT) for h in handles] == [
            label.upper() for label, _ in submitted
        ]
    assert runs.order == ["block", "p1", "p5-first", "p5-second", "p10"]


def test_named_priorities_order_like_their_numbers() -> None:
    sched, runs, release = _blocking_scheduler(workers=1)
    with sched:
        try:
            sched.submit("block")
            assert runs.started("block").wait(WAIT)
            handles = [
                sched.submit("job", "best-effort", priority=Priority.BEST_EFFORT),
                sched.submit("job", "default"),
                sched.submit("job", "blocking", priority=Priority.USER_BLOCKING),
            ]
            settle(sched)
        finally:
            release.set()
        for h in handles:
            h.result(timeout=WAIT)
        assert [sched.job(h.id).priority for h in handles] == [10, 5, 1]
    assert runs.order == ["block", "blocking", "default", "best-effort"]


def test_jobs_of_one_repo_start_in_priority_then_submission_order() -> None:
    # Several free workers, yet the repo's jobs run one by one, best priority first.
    sched, runs, release = _blocking_scheduler(workers=3)
    priorities = [5, 1, 10, 1, 5, 3, 10, 2]
    with sched:
        try:
            sched.submit("block", repo="r")
            assert runs.started("block").wait(WAIT)
            handles = [
                sched.submit("job", f"j{i}", repo="r", priority=p)
                for i, p in enumerate(priorities)
            ]
            assert all(h.status is JobStatus.PENDING for h in handles)
        finally:
            release.set()
        for h in handles:
            h.result(timeout=WAIT)
    expected = [f"j{i}" for _, i in sorted((p, i) for i, p in enumerate(priorities))]
    assert runs.order == ["block", *expected]
    assert runs.max_active("r") == 1
    assert runs.overlaps() == []


def test_priority_order_holds_per_repo_while_other_repos_run_alongside() -> None:
    sched, runs, release = _blocking_scheduler(workers=4)
    with sched:
        try:
            for repo in ("x", "y"):
                sched.submit("block", repo=repo)
            handles = []
            for repo in ("x", "y"):
                handles += [
                    sched.submit("job", f"{repo}{p}", repo=repo, priority=p) for p in (9, 2, 6)
                ]
        finally:
            release.set()
        for h in handles:
            h.result(timeout=WAIT)
    for repo in ("x", "y"):
        assert [label for label in runs.order if label.startswith(repo)] == [
            f"{repo}2", f"{repo}6", f"{repo}9",
        ]
    assert runs.overlaps() == []


@pytest.mark.parametrize("priority", [0, 11, -1, 5.0, "1", True, None])
def test_priority_out_of_range_is_rejected(priority: object) -> None:
    sched, _, _ = _blocking_scheduler(workers=1)
    with sched:
        with pytest.raises(InvalidArgument):
            sched.submit("job", "x", priority=priority)  # type: ignore[arg-type]
        assert sched.stats().submitted == 0


# --- rule 3 across the two paths: with a repo and without ------------------------------


def _hold_the_way_of(monkeypatch: pytest.MonkeyPatch, payload: str) -> threading.Event:
    """Hold the Dispatcher before it routes the job whose payload is ``payload``,
    until the returned event is set (the actor loop made slow, on purpose)."""
    on_its_way = threading.Event()
    original = Dispatcher._on_submit

    def slow_submit(self: Dispatcher, job: Job) -> None:
        if job.payload == payload:
            assert on_its_way.wait(WAIT)
        original(self, job)

    monkeypatch.setattr(Dispatcher, "_on_submit", slow_submit)
    return on_its_way


@pytest.mark.parametrize("repo", ["new", "mutex-with-a-delayed-job"])
def test_a_job_with_a_free_repo_competes_with_jobs_submitted_after_it(
    monkeypatch: pytest.MonkeyPatch, repo: str
) -> None:
    # A job with a repo reaches the ready queue through the Dispatcher and its
    # RepoLock; jobs without one go straight in. A worker that freed up while
    # it was on its way once took a later, less urgent job first (2 runs in 11
    # with a busy pool). Here its way is held open on purpose: the worker must
    # wait for it, not pass it by. A mutex repo whose only other job waits for
    # its time is free too.
    mode: RepoMode = "mutex" if repo.startswith("mutex") else "ordered"
    sched, runs, release = _blocking_scheduler(workers=1, repo_mode=mode)
    on_its_way = _hold_the_way_of(monkeypatch, "p4-repo")
    with sched:
        try:
            # In mutex mode, a job of r that waits for its time leaves r free.
            delayed = None
            if mode == "mutex":
                delayed = sched.submit("job", "delayed", repo="r", delay=60)
            blocker = sched.submit("block")
            assert runs.started("block").wait(WAIT)
            urgent = sched.submit("job", "p4-repo", repo="r", priority=4)
            later = [sched.submit("job", f"p5-{i}", priority=5) for i in range(3)]
            release.set()
            assert blocker.wait(WAIT)
            # The worker is free now: nothing submitted later may start first.
            assert quiet(runs.started("p5-0"))
        finally:
            release.set()
            on_its_way.set()
        assert urgent.result(timeout=WAIT) == "P4-REPO"
        for handle in later:
            handle.result(timeout=WAIT)
        if delayed is not None:
            delayed.cancel()
    assert runs.order == ["block", "p4-repo", "p5-0", "p5-1", "p5-2"]


def test_a_job_waiting_for_its_busy_repo_holds_no_later_job_back() -> None:
    sched, runs, release = _blocking_scheduler(workers=2)
    with sched:
        try:
            holder = sched.submit("block", repo="r")  # holds repo r
            assert runs.started("block").wait(WAIT)
            waiting = sched.submit("job", "p4-repo", repo="r", priority=4)
            later = sched.submit("job", "p5", priority=5)
            # The second worker runs p5 while p4-repo waits for its repo.
            assert later.result(timeout=WAIT) == "P5"
            assert not waiting.done()
        finally:
            release.set()
        assert holder.result(timeout=WAIT) is None
        assert waiting.result(timeout=WAIT) == "P4-REPO"
    assert runs.order == ["block", "p5", "p4-repo"]


def test_a_job_cancelled_on_its_way_holds_no_later_job_back() -> None:
    sched, runs, release = _blocking_scheduler(workers=1)
    with sched:
        try:
            sched.submit("block")
            assert runs.started("block").wait(WAIT)
            urgent = sched.submit("job", "p4-repo", repo="r", priority=4)
            urgent.cancel()
            later = sched.submit("job", "p5", priority=5)
        finally:
            release.set()
        assert later.result(timeout=WAIT) == "P5"
    assert urgent.status is JobStatus.CANCELLED
    assert runs.order == ["block", "p5"]
