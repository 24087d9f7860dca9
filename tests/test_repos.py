"""Repos: mutual exclusion (rule 1, docs/guarantees.md), the ordered and mutex modes (rule 2),
`RepoLock`."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from actors import (
    JobCancelled,
    JobContext,
    JobStatus,
    JobTimedOut,
    ManualClock,
    RetryPolicy,
    Scheduler,
)
from actors._repo_lock import RepoLock
from actors._runtime.loop import ActorLoop
from actors.messages import (
    Done,
    Enqueue,
    ErrorInfo,
    Finished,
    Idle,
    Job,
    Outcome,
    Ready,
    Retry,
    Tick,
    Wake,
    Withdraw,
)
from tests.helpers import WAIT, Runs, barrier, collector, quiet, wait_until

# --- rule 1: mutual exclusion -----------------------------------------------------------


def test_jobs_of_one_repo_never_overlap() -> None:
    runs = Runs()
    sched = Scheduler(workers=6)

    @sched.handler("work")
    def work(ctx: JobContext, payload: dict[str, Any]) -> int:
        with runs.run(payload["label"], ctx.repo):
            time.sleep(0.002)  # simulated work, long enough for a clash to show
        return payload["n"] * 2

    repos = ["r0", "r1", "r2"]
    with sched:
        handles = [
            sched.submit("work", {"label": f"{i}", "n": i}, repo=repos[i % 3]) for i in range(60)
        ]
        results = [h.result(timeout=WAIT) for h in handles]

    assert results == [i * 2 for i in range(60)]
    assert len(runs.runs) == 60
    assert runs.overlaps() == []
    assert all(runs.max_active(repo) == 1 for repo in repos)
    # And each repo's jobs started in submission order (all have the same priority).
    for k, repo in enumerate(repos):
        started = [int(label) for label in runs.order if int(label) % 3 == k]
        assert started == sorted(started), repo


def test_jobs_of_different_repos_run_at_the_same_time() -> None:
    # Both jobs must be inside the handler at once to pass the barrier: the
    # exclusion is per repo, not global.
    meet = threading.Barrier(2, timeout=WAIT)
    sched = Scheduler(workers=2)

    @sched.handler("meet")
    def meet_up(ctx: JobContext, payload: None) -> str | None:
        meet.wait()
        return ctx.repo

    with sched:
        a = sched.submit("meet", repo="a")
        b = sched.submit("meet", repo="b")
        assert (a.result(timeout=WAIT), b.result(timeout=WAIT)) == ("a", "b")


@pytest.mark.parametrize("stop", ["timeout", "cancel"])
def test_repo_stays_held_until_a_stopped_handler_returns(stop: str) -> None:
    # A sync handler told to stop (deadline or cancel) that keeps running still
    # holds its repo: the next job of the repo waits until it really returns.
    clock = ManualClock()
    runs = Runs()
    signalled = threading.Event()
    release = threading.Event()
    seen: dict[str, bool] = {}
    sched = Scheduler(workers=2, clock=clock)

    @sched.handler("stubborn", timeout=5)
    def stubborn(ctx: JobContext, payload: None) -> str:
        with runs.run("stubborn", ctx.repo):
            assert ctx.wait(WAIT), "never told to stop"
            seen["timed_out"] = ctx.timed_out
            signalled.set()
            release.wait(WAIT)  # ignores the signal for as long as the test says
        return "done anyway"

    @sched.handler("next")
    def next_job(ctx: JobContext, payload: None) -> str:
        with runs.run("next", ctx.repo):
            return "next ran"

    with sched:
        try:
            a = sched.submit("stubborn", repo="r")
            assert runs.started("stubborn").wait(WAIT)
            b = sched.submit("next", repo="r")
            if stop == "timeout":
                clock.advance(5)
            else:
                assert a.cancel() == "signalled"
            assert signalled.wait(WAIT)
            assert seen["timed_out"] is (stop == "timeout")

            assert quiet(runs.started("next"))
            assert sched.job(b.id).status is JobStatus.PENDING
            assert sched.job(a.id).status is JobStatus.RUNNING
            assert not a.done()
        finally:
            release.set()

        assert b.result(timeout=WAIT) == "next ran"
        expected = JobTimedOut if stop == "timeout" else JobCancelled
        with pytest.raises(expected):
            a.result(timeout=WAIT)

    [first], [second] = runs.of("stubborn"), runs.of("next")
    assert second.start >= first.end
    assert runs.overlaps() == []


def test_a_job_cancelled_while_waiting_lets_the_repo_go_on() -> None:
    runs = Runs()
    release = threading.Event()
    sched = Scheduler(workers=2)

    @sched.handler("job")
    def job(ctx: JobContext, payload: str) -> str:
        with runs.run(payload, ctx.repo):
            if payload == "first":
                release.wait(WAIT)
        return payload

    with sched:
        try:
            first = sched.submit("job", "first", repo="r")
            assert runs.started("first").wait(WAIT)
            second = sched.submit("job", "second", repo="r")
            third = sched.submit("job", "third", repo="r")
            assert second.cancel() == "cancelled"
            assert second.status is JobStatus.CANCELLED
        finally:
            release.set()
        assert third.result(timeout=WAIT) == "third"
        assert first.result(timeout=WAIT) == "first"
    assert runs.order == ["first", "third"]


# --- rule 2: ordered and mutex repos ---------------------------------------------------


def _flaky_and_later(repo_mode: str, per_repo: bool) -> tuple[Scheduler, ManualClock, Runs]:
    """A scheduler with "flaky" (fails once, then retries after 10s) and "later"."""
    clock = ManualClock()
    runs = Runs()
    if per_repo:
        sched = Scheduler(workers=2, clock=clock, repo_modes={"r": repo_mode})  # type: ignore[dict-item]
    else:
        sched = Scheduler(workers=2, clock=clock, repo_mode=repo_mode)  # type: ignore[arg-type]

    @sched.handler("flaky", max_retries=1, retry=RetryPolicy.fixed(10))
    def flaky(ctx: JobContext, payload: None) -> int:
        with runs.run(f"flaky{ctx.attempt}", ctx.repo):
            if ctx.attempt == 1:
                raise ConnectionError("try again")
        return ctx.attempt

    @sched.handler("later")
    def later(ctx: JobContext, payload: None) -> float:
        with runs.run("later", ctx.repo):
            return clock.now()

    return sched, clock, runs


@pytest.mark.parametrize("per_repo", [False, True], ids=["repo_mode", "repo_modes"])
def test_ordered_repo_holds_later_jobs_while_its_head_waits_for_a_retry(per_repo: bool) -> None:
    sched, clock, runs = _flaky_and_later("ordered", per_repo)
    with sched:
        flaky = sched.submit("flaky", repo="r")
        assert runs.started("flaky1").wait(WAIT)
        # More urgent than the retrying job, and still it waits its turn.
        later = sched.submit("later", repo="r", priority=1)
        wait_until(lambda: flaky.status is JobStatus.RETRYING, "the retry")

        assert quiet(runs.started("later"))
        assert later.status is JobStatus.PENDING

        clock.advance(10)
        assert flaky.result(timeout=WAIT) == 2
        assert later.result(timeout=WAIT) == 10
    assert runs.order == ["flaky1", "flaky2", "later"]


@pytest.mark.parametrize("per_repo", [False, True], ids=["repo_mode", "repo_modes"])
def test_mutex_repo_runs_later_jobs_during_a_backoff(per_repo: bool) -> None:
    sched, clock, runs = _flaky_and_later("mutex", per_repo)
    with sched:
        flaky = sched.submit("flaky", repo="r")
        assert runs.started("flaky1").wait(WAIT)
        later = sched.submit("later", repo="r")
        # It runs while the first job waits for its backoff (the clock is still at 0).
        assert later.result(timeout=WAIT) == 0
        assert flaky.status is JobStatus.RETRYING

        clock.advance(10)
        assert flaky.result(timeout=WAIT) == 2
    assert runs.order == ["flaky1", "later", "flaky2"]
    assert runs.overlaps() == []


def test_repo_modes_override_only_their_repo() -> None:
    # Default ordered, "m" mutex: during the backoff the job behind the retry runs
    # in "m" and waits in "o".
    clock = ManualClock()
    runs = Runs()
    sched = Scheduler(workers=2, clock=clock, repo_modes={"m": "mutex"})

    @sched.handler("flaky", max_retries=1, retry=RetryPolicy.fixed(10))
    def flaky(ctx: JobContext, payload: None) -> int:
        if ctx.attempt == 1:
            raise ConnectionError("try again")
        return ctx.attempt

    @sched.handler("later")
    def later(ctx: JobContext, payload: None) -> str | None:
        with runs.run(f"later-{ctx.repo}", ctx.repo):
            return ctx.repo

    with sched:
        flaky_o = sched.submit("flaky", repo="o")
        flaky_m = sched.submit("flaky", repo="m")
        wait_until(
            lambda: flaky_o.status is JobStatus.RETRYING and flaky_m.status is JobStatus.RETRYING,
            "both retries",
        )
        later_o = sched.submit("later", repo="o")
        later_m = sched.submit("later", repo="m")
        assert later_m.result(timeout=WAIT) == "m"
        assert quiet(runs.started("later-o"))
        assert later_o.status is JobStatus.PENDING

        clock.advance(10)
        assert later_o.result(timeout=WAIT) == "o"
        assert (flaky_o.result(timeout=WAIT), flaky_m.result(timeout=WAIT)) == (2, 2)


@pytest.mark.parametrize("mode", ["ordered", "mutex"])
def test_delayed_head_holds_the_repo_only_in_ordered_mode(mode: str) -> None:
    clock = ManualClock()
    runs = Runs()
    sched = Scheduler(workers=2, clock=clock, repo_mode=mode)  # type: ignore[arg-type]

    @sched.handler("job")
    def job(ctx: JobContext, payload: str) -> float:
        with runs.run(payload, ctx.repo):
            return clock.now()

    with sched:
        delayed = sched.submit("job", "delayed", repo="r", delay=10)
        later = sched.submit("job", "later", repo="r")
        assert delayed.status is JobStatus.SCHEDULED
        if mode == "ordered":
            assert quiet(runs.started("later"))
            assert later.status is JobStatus.PENDING
        else:
            assert later.result(timeout=WAIT) == 0
            assert delayed.status is JobStatus.SCHEDULED

        clock.advance(10)
        assert delayed.result(timeout=WAIT) >= 10
        assert later.result(timeout=WAIT) >= (10 if mode == "ordered" else 0)
    expected = ["delayed", "later"] if mode == "ordered" else ["later", "delayed"]
    assert runs.order == expected


@pytest.mark.parametrize("waiting", ["delay", "retry"])
def test_cancelling_the_waiting_head_of_an_ordered_repo_lets_the_next_job_run(
    waiting: str,
) -> None:
    # The head holds the repo (for its delay, or for its retry's backoff); once
    # cancelled it lets go at once, without the clock moving.
    clock = ManualClock()
    runs = Runs()
    sched = Scheduler(workers=1, clock=clock)

    @sched.handler("head", max_retries=1, retry=RetryPolicy.fixed(10))
    def head(ctx: JobContext, payload: None) -> None:
        with runs.run(f"head{ctx.attempt}", ctx.repo):
            raise ConnectionError("fails, to wait for a retry")

    @sched.handler("later")
    def later(ctx: JobContext, payload: None) -> float:
        with runs.run("later", ctx.repo):
            return clock.now()

    with sched:
        h = sched.submit("head", repo="r", delay=10 if waiting == "delay" else 0)
        b = sched.submit("later", repo="r")
        expected = JobStatus.SCHEDULED if waiting == "delay" else JobStatus.RETRYING
        wait_until(lambda: h.status is expected, str(expected))
        assert quiet(runs.started("later"))
        assert h.cancel() == "cancelled"
        assert b.result(timeout=WAIT) == 0
        with pytest.raises(JobCancelled):
            h.result(timeout=WAIT)
    assert runs.order == (["later"] if waiting == "delay" else ["head1", "later"])


# --- RepoLock, directly ------------------------------------------------------------------


def _job(n: int, *, priority: int = 5, max_retries: int = 0, **kwargs: Any) -> Job:
    return Job(
        id=f"j{n}", handler="h", payload=None, seq=n, priority=priority, repo="r",
        max_retries=max_retries, **kwargs,
    )


FAILED = Outcome("failed", error=ErrorInfo("ValueError", "boom"))
COMPLETED = Outcome("completed", 1)


class _Lock:
    """A RepoLock wired to a collector, with a barrier before every look."""

    def __init__(
        self, ref: Any, dispatcher: Any, received: queue.Queue[Any], clock: ManualClock
    ) -> None:
        self.ref, self.dispatcher, self.received, self.clock = ref, dispatcher, received, clock

    def tell(self, *messages: Any) -> None:
        for message in messages:
            self.ref.tell(message)

    def mail(self) -> list[Any]:
        """Everything the lock has sent so far."""
        barrier(self.ref)
        barrier(self.dispatcher)
        out = []
        while True:
            try:
                out.append(self.received.get_nowait())
            except queue.Empty:
                return out


@pytest.fixture
def repo_lock(request: pytest.FixtureRequest) -> Iterator[_Lock]:
    mode = getattr(request, "param", "ordered")
    clock = ManualClock()
    with collector() as (dispatcher, received):
        loop = ActorLoop("postroom-test-loop")
        try:
            spawned = RepoLock.spawn(loop, "r", 7, mode, clock, dispatcher)
            yield _Lock(spawned.ref, dispatcher, received, clock)
            spawned.ref.stop(block=True, timeout=WAIT)
        finally:
            loop.close()
            loop.thread.join(WAIT)


def test_repo_lock_readies_one_job_at_a_time_in_priority_then_submission_order(
    repo_lock: _Lock,
) -> None:
    j1, j2, j3, j4 = _job(1), _job(2), _job(3, priority=1), _job(4, priority=1)
    repo_lock.tell(Enqueue(j1), Enqueue(j2), Enqueue(j3), Enqueue(j4))
    assert repo_lock.mail() == [Ready(j1)]
    repo_lock.tell(Finished(j1, COMPLETED))
    assert repo_lock.mail() == [Done(j1, COMPLETED), Ready(j3)]
    repo_lock.tell(Finished(j3, COMPLETED))
    assert repo_lock.mail() == [Done(j3, COMPLETED), Ready(j4)]
    repo_lock.tell(Finished(j4, COMPLETED))
    assert repo_lock.mail() == [Done(j4, COMPLETED), Ready(j2)]
    repo_lock.tell(Finished(j2, COMPLETED))
    # Empty: it reports idle with the count of messages it has seen (8).
    assert repo_lock.mail() == [Done(j2, COMPLETED), Idle("r", 7, 8)]


def test_repo_lock_withdraw_removes_a_waiting_job_but_not_the_running_one(
    repo_lock: _Lock,
) -> None:
    j1, j2, j3 = _job(1), _job(2), _job(3)
    repo_lock.tell(Enqueue(j1), Enqueue(j2), Enqueue(j3), Withdraw("j2"), Withdraw("j1"))
    assert repo_lock.mail() == [Ready(j1)]
    repo_lock.tell(Finished(j1, COMPLETED))
    assert repo_lock.mail() == [Done(j1, COMPLETED), Ready(j3)]


def test_repo_lock_ordered_holds_the_repo_for_a_retry(repo_lock: _Lock) -> None:
    j1 = _job(1, max_retries=1, retry=RetryPolicy.fixed(10))
    j2 = _job(2, priority=1)
    repo_lock.tell(Enqueue(j1), Enqueue(j2))
    assert repo_lock.mail() == [Ready(j1)]
    repo_lock.tell(Finished(j1, FAILED))
    retry = j1.next_attempt(10.0)
    assert repo_lock.mail() == [Retry(retry, FAILED, hold=True)]
    # Its backoff over, the retry comes back and is ready at once: j2 still waits.
    repo_lock.tell(Enqueue(retry))
    assert repo_lock.mail() == [Ready(retry)]
    repo_lock.tell(Finished(retry, FAILED))
    assert repo_lock.mail() == [Done(retry, FAILED), Ready(j2)]


@pytest.mark.parametrize("repo_lock", ["mutex"], indirect=True)
def test_repo_lock_mutex_lets_the_repo_go_during_a_backoff(repo_lock: _Lock) -> None:
    j1 = _job(1, max_retries=1, retry=RetryPolicy.fixed(10))
    j2 = _job(2)
    repo_lock.tell(Enqueue(j1), Enqueue(j2))
    assert repo_lock.mail() == [Ready(j1)]
    repo_lock.tell(Finished(j1, FAILED))
    retry = j1.next_attempt(10.0)
    assert repo_lock.mail() == [Retry(retry, FAILED, hold=False), Ready(j2)]


def test_repo_lock_delayed_head_asks_for_a_wake_and_waits(repo_lock: _Lock) -> None:
    clock = repo_lock.clock
    j1, j2 = _job(1, not_before=10.0), _job(2)
    repo_lock.tell(Enqueue(j1), Enqueue(j2))
    assert repo_lock.mail() == [Wake("r", 10.0)]
    clock.advance(9.5)
    repo_lock.tell(Tick("r"))
    assert repo_lock.mail() == [Wake("r", 10.0)]  # too early: asks again, readies nothing
    clock.advance(0.5)
    repo_lock.tell(Tick("r"))
    assert repo_lock.mail() == [Ready(j1)]
