"""Tests for `Scheduler.jobs`: the query over unfinished jobs and the history."""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest

import actors._facade.submit
from actors import (
    InvalidArgument,
    JobHandle,
    JobInfo,
    JobNotFound,
    JobStatus,
    ManualClock,
    Queue,
    RetryPolicy,
    Scheduler,
    UnknownHandler,
    UnknownQueue,
)
from tests.helpers import WAIT, gated_scheduler, wait_until


class Boom(Exception):
    """A handler error the tests raise on purpose."""


def _ids(infos: list[JobInfo]) -> list[str]:
    return [info.id for info in infos]


def _newest_first(handles: list[JobHandle]) -> list[str]:
    return [h.id for h in reversed(handles)]


def _mixed_scheduler() -> Scheduler:
    """``ok`` returns its payload, ``bad`` fails; a ``slow`` queue besides ``default``."""
    sched = Scheduler(workers=2, queues={"slow": Queue(workers=1)})

    @sched.handler("ok")
    def ok(ctx: Any, payload: Any) -> Any:
        return payload

    @sched.handler("bad")
    def bad(ctx: Any, payload: Any) -> Any:
        raise Boom(str(payload))

    return sched


# --- what is listed, in which order ---------------------------------------------------


def test_lists_every_job_newest_first() -> None:
    sched = _mixed_scheduler()
    with sched:
        handles = [sched.submit("ok", i) for i in range(5)]
        assert all(h.wait(WAIT) for h in handles)
        infos = sched.jobs()
    assert _ids(infos) == _newest_first(handles)
    assert all(isinstance(info, JobInfo) for info in infos)
    assert [info.payload for info in infos] == [4, 3, 2, 1, 0]
    assert infos == [h.info() for h in reversed(handles)]


class _BackwardsTime:
    """The ``time`` module as `Scheduler.submit` sees it, with a wall clock that
    goes backwards (an NTP step, say)."""

    def __init__(self) -> None:
        self._seconds = itertools.count(2_000_000_000, -10)

    def time(self) -> float:
        return float(next(self._seconds))

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def test_newest_first_follows_submission_order_not_the_wall_clock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = ManualClock()
    sched = Scheduler(workers=1, clock=clock)
    sched.register("ok", lambda ctx, payload: payload)
    with sched:
        with monkeypatch.context() as patch:
            patch.setattr(actors._facade.submit, "time", _BackwardsTime())
            handles = [sched.submit("ok", i, delay=10) for i in range(4)]
        infos = sched.jobs()
        assert _ids(infos) == _newest_first(handles)
        # The newest job has the oldest wall-clock time: the order is not by time.
        stamps = [info.submitted_at for info in infos]
        assert stamps == sorted(stamps)
        assert stamps[0] < stamps[-1]
        clock.advance(10)
        assert all(h.wait(WAIT) for h in handles)


# --- filters --------------------------------------------------------------------------


def test_each_filter_alone_and_combined() -> None:
    sched = _mixed_scheduler()
    # (handler, repo, queue) of each job, in submission order.
    plan = [
        ("ok", "a", None),
        ("bad", "a", None),
        ("ok", "b", "slow"),
        ("ok", None, None),
        ("bad", None, "slow"),
        ("ok", "a", "slow"),
        ("bad", "b", None),
        ("ok", "a", None),
    ]
    with sched:
        handles = [
            sched.submit(handler, i, repo=repo, queue=queue)
            for i, (handler, repo, queue) in enumerate(plan)
        ]
        assert all(h.wait(WAIT) for h in handles)
        newest = [sched.job(h.id) for h in reversed(handles)]

        def expect(**want: Any) -> list[str]:
            return [
                info.id
                for info in newest
                if all(getattr(info, field) == value for field, value in want.items())
            ]

        failed = sched.jobs(status=JobStatus.FAILED)
        assert _ids(failed) == expect(handler="bad")
        assert {info.status for info in failed} == {JobStatus.FAILED}
        assert _ids(sched.jobs(status="completed")) == expect(handler="ok")
        assert sched.jobs(status="cancelled") == []
        assert _ids(sched.jobs(handler="bad")) == expect(handler="bad")
        assert _ids(sched.jobs(repo="a")) == expect(repo="a")
        assert _ids(sched.jobs(repo="nobody")) == []
        assert _ids(sched.jobs(queue="slow")) == expect(queue="slow")
        assert _ids(sched.jobs(queue="default")) == expect(queue="default")

        combined = sched.jobs(status="completed", repo="a", queue="default", handler="ok")
        assert _ids(combined) == expect(repo="a", queue="default", handler="ok")
        assert len(combined) == 2
        assert _ids(sched.jobs(repo="b", handler="bad")) == [handles[6].id]
        assert sched.jobs(repo="b", handler="bad", queue="slow") == []


def test_lists_jobs_in_every_status() -> None:
    clock = ManualClock()
    sched, gate, _calls = gated_scheduler(workers=1, clock=clock)

    @sched.handler("bad")
    def bad(ctx: Any, payload: Any) -> Any:
        raise Boom("no")

    @sched.handler("flaky", max_retries=1, retry=RetryPolicy.fixed(100))
    def flaky(ctx: Any, payload: Any) -> int:
        if ctx.attempt == 1:
            raise Boom("first attempt")
        return ctx.attempt

    with sched:
        completed = sched.submit("work", "done")
        failed = sched.submit("bad")
        cancelled = sched.submit("work", "never", delay=50)
        cancelled.cancel()
        assert all(h.wait(WAIT) for h in (completed, failed, cancelled))
        retrying = sched.submit("flaky")
        wait_until(lambda: retrying.status is JobStatus.RETRYING, "the first attempt to fail")
        running = sched.submit("block")  # takes the only worker
        assert gate.started.wait(WAIT)
        pending = sched.submit("work", "queued")
        scheduled = sched.submit("work", "later", delay=50)
        expected = {
            completed.id: JobStatus.COMPLETED,
            failed.id: JobStatus.FAILED,
            cancelled.id: JobStatus.CANCELLED,
            retrying.id: JobStatus.RETRYING,
            running.id: JobStatus.RUNNING,
            pending.id: JobStatus.PENDING,
            scheduled.id: JobStatus.SCHEDULED,
        }

        listed = sched.jobs()
        assert {info.id: info.status for info in listed} == expected
        assert _ids(listed) == list(reversed(expected))  # newest first
        for job_id, status in expected.items():
            assert _ids(sched.jobs(status=status)) == [job_id]
            assert _ids(sched.jobs(status=status.value)) == [job_id]
        assert _ids(sched.jobs(handler="work", status="pending")) == [pending.id]

        gate.release.set()
        clock.advance(100)
        handles = [retrying, running, pending, scheduled]
        assert all(h.wait(WAIT) for h in handles)
    assert {info.status for info in sched.jobs(limit=1000)} == {
        JobStatus.COMPLETED,
        JobStatus.FAILED,
        JobStatus.CANCELLED,
    }


# --- paging ---------------------------------------------------------------------------


def test_limit_and_offset_page_through_newest_first() -> None:
    sched = _mixed_scheduler()
    with sched:
        handles = [sched.submit("ok" if i % 4 else "bad", i) for i in range(25)]
        assert all(h.wait(WAIT) for h in handles)
        pages = [sched.jobs(limit=10, offset=offset) for offset in (0, 10, 20, 30)]
        assert [len(page) for page in pages] == [10, 10, 5, 0]
        assert _ids(pages[0] + pages[1] + pages[2]) == _newest_first(handles)
        assert sched.jobs(limit=0) == []
        assert _ids(sched.jobs(limit=1)) == [handles[-1].id]
        assert _ids(sched.jobs(offset=24)) == [handles[0].id]
        # Paging applies after the filters.
        failed = [h.id for h in reversed(handles) if h.status is JobStatus.FAILED]
        assert len(failed) == 7
        assert _ids(sched.jobs(status="failed", limit=3, offset=3)) == failed[3:6]
        assert _ids(sched.jobs(handler="bad", limit=3, offset=6)) == failed[6:]


def test_default_limit_is_100() -> None:
    sched = _mixed_scheduler()
    with sched:
        handles = [sched.submit("ok", i) for i in range(105)]
        assert all(h.wait(WAIT) for h in handles)
        infos = sched.jobs()
        assert len(infos) == 100
        assert _ids(infos) == _newest_first(handles)[:100]
        assert len(sched.jobs(limit=1000)) == 105


# --- the history bound ----------------------------------------------------------------


def test_a_job_beyond_history_is_gone_from_job_and_jobs() -> None:
    sched, gate, _calls = gated_scheduler(workers=1, history=3)
    with sched:
        finished = []
        for i in range(5):
            handle = sched.submit("work", i)
            assert handle.wait(WAIT)
            finished.append(handle)
        # Unfinished jobs do not count against the history.
        running = sched.submit("block")
        assert gate.started.wait(WAIT)

        gone, kept = finished[:2], finished[2:]
        for handle in gone:
            with pytest.raises(JobNotFound):
                sched.job(handle.id)
        assert _ids(sched.jobs()) == [running.id, *_newest_first(kept)]
        assert _ids(sched.jobs(status="completed")) == _newest_first(kept)

        gate.release.set()
        assert running.wait(WAIT)
        # The block job finished: the oldest kept one ages out in turn.
        assert _ids(sched.jobs()) == [running.id, *_newest_first(kept[1:])]
        with pytest.raises(JobNotFound):
            sched.job(kept[0].id)


def test_history_zero_lists_only_unfinished_jobs() -> None:
    sched, gate, _calls = gated_scheduler(workers=1, history=0)
    with sched:
        assert sched.submit("work", 1).wait(WAIT)
        running = sched.submit("block")
        assert gate.started.wait(WAIT)
        assert _ids(sched.jobs()) == [running.id]
        gate.release.set()
        assert running.wait(WAIT)
        assert sched.jobs() == []


def test_jobs_answers_before_start_and_after_shutdown() -> None:
    sched = _mixed_scheduler()
    assert sched.jobs() == []
    with sched:
        handle = sched.submit("ok", 1)
    assert handle.done()
    assert _ids(sched.jobs()) == [handle.id]
    assert _ids(sched.jobs(status="completed", handler="ok")) == [handle.id]


# --- bad input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"limit": -1}, "-1"),
        ({"limit": 1.5}, "1.5"),
        ({"limit": True}, "True"),
        ({"limit": "10"}, "'10'"),
        ({"limit": None}, "None"),
        ({"offset": -1}, "-1"),
        ({"offset": 2.0}, "2.0"),
        ({"status": "done"}, "'done'"),
        ({"status": "FAILED"}, "'FAILED'"),
        ({"status": 3}, "3"),
        ({"queue": 5}, "5"),
        ({"repo": 5}, "5"),
        ({"repo": ["a"]}, "['a']"),
        ({"handler": b"ok"}, "b'ok'"),
    ],
)
def test_bad_arguments_raise_invalid_argument_naming_the_value(
    options: dict[str, Any], named: str
) -> None:
    sched = _mixed_scheduler()
    with sched:
        with pytest.raises(InvalidArgument) as caught:
            sched.jobs(**options)
        message = str(caught.value)
        assert named in message
        assert next(iter(options)) in message


def test_an_unknown_status_lists_the_known_ones() -> None:
    sched = _mixed_scheduler()
    with pytest.raises(InvalidArgument, match="'retrying'"):
        sched.jobs(status="finished")


def test_unknown_queue_or_handler_is_reported_not_an_empty_list() -> None:
    sched = _mixed_scheduler()
    with sched:
        with pytest.raises(UnknownQueue, match="'fast'"):
            sched.jobs(queue="fast")
        with pytest.raises(UnknownHandler, match="'okk'"):
            sched.jobs(handler="okk")


def test_filters_are_keyword_only() -> None:
    sched = _mixed_scheduler()
    with pytest.raises(TypeError):
        sched.jobs("failed")  # type: ignore[misc]
