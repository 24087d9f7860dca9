"""A real scheduler's metrics, scraped over HTTP and checked against `stats()`."""

from __future__ import annotations

import threading
import urllib.request
from collections import defaultdict
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from actors import (
    Fatal,
    InvalidArgument,
    Queue,
    RetryPolicy,
    Scheduler,
    SchedulerClosed,
)
from tests.helpers import WAIT, wait_until

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> tuple[str, Series]:
    with urllib.request.urlopen(url, timeout=WAIT) as response:
        assert response.status == 200
        text: str = response.read().decode()
    series: Series = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            series[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return text, series


def total(series: Series, name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in series.items() if n == name and want <= ls)


def by_label(series: Series, name: str, label: str) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for (n, ls), v in series.items():
        if n == name:
            out[dict(ls)[label]] += v
    return dict(out)


def test_scraped_metrics_agree_with_stats() -> None:
    registry = CollectorRegistry()
    sched = Scheduler(workers=2, name="m1", registry=registry, queues={"high": Queue(workers=1)})
    release = threading.Event()
    held = threading.Event()

    @sched.handler("ok")
    def ok(ctx: Any, payload: Any) -> Any:
        return payload

    @sched.handler("flaky", max_retries=2, retry=RetryPolicy.fixed(0.001))
    def flaky(ctx: Any, payload: Any) -> None:
        raise RuntimeError("again")

    @sched.handler("fatal")
    def fatal(ctx: Any, payload: Any) -> None:
        raise Fatal(ValueError("no"))

    @sched.handler("hold")
    def hold(ctx: Any, payload: Any) -> None:
        held.set()
        assert release.wait(WAIT)

    with sched:
        server = sched.serve_metrics(0)
        done = [sched.submit("ok", i) for i in range(5)]
        done += [sched.submit("ok", "h", queue="high")]
        done += [sched.submit("flaky", None), sched.submit("fatal", None)]
        # Repo contention: the second job of r1 has to wait for the first.
        first = sched.submit("hold", None, repo="r1")
        assert held.wait(WAIT)
        second = sched.submit("ok", "after", repo="r1")
        # A far-future delayed job is a pending timer entry; then cancelled.
        later = sched.submit("ok", "later", delay=3600)
        for handle in done:
            assert handle.wait(WAIT)
        wait_until(
            lambda: total(scrape(server.url)[1], "postroom_timer_entries") == 1,
            "the delayed job's timer entry",
        )
        later.cancel()
        release.set()
        assert first.wait(WAIT) and second.wait(WAIT)
        stats = sched.stats()
        text, series = scrape(server.url)

    mine = {k: v for k, v in series.items() if ("scheduler", "m1") in k[1]}
    assert mine == series  # only this scheduler is on this registry
    assert total(series, "postroom_jobs_submitted_total") == stats.submitted == 11
    finished = by_label(series, "postroom_jobs_finished_total", "status")
    assert finished == {
        "completed": stats.completed,
        "failed": stats.failed,
        "cancelled": stats.cancelled,
    }
    assert (stats.completed, stats.failed, stats.cancelled) == (8, 2, 1)
    assert total(series, "postroom_job_retries_total") == stats.retried == 2
    assert total(series, "postroom_job_retries_total", handler="flaky", queue="default") == 2
    # One observation per attempt that ran: 7 ok + 3 flaky + 1 fatal + 1 hold.
    assert total(series, "postroom_job_run_seconds_count") == 12
    assert total(series, "postroom_jobs_submitted_total", queue="high", handler="ok") == 1
    assert by_label(series, "postroom_workers", "queue") == {"default": 2, "high": 1}
    assert total(series, "postroom_repo_waits_total") == 1
    assert total(series, "postroom_jobs_running") == stats.running == 0
    # Cardinality: no repo name and no job id anywhere in the exposition.
    assert "r1" not in text
    assert all(h.id not in text for h in [*done, first, second, later])
    assert all(label not in ("repo", "job_id") for _, ls in series for label, _ in ls)


def test_two_schedulers_share_the_global_registry_and_leave_it_clean() -> None:
    a = Scheduler(workers=1, name="metrics-a")
    b = Scheduler(workers=1, name="metrics-b")
    for sched in (a, b):
        sched.register("ok", lambda ctx, payload: payload)
    with a, b:
        assert a.submit("ok", 1).wait(WAIT)
        assert b.submit("ok", 2).wait(WAIT) and b.submit("ok", 3).wait(WAIT)
        server = a.serve_metrics(0)
        _, series = scrape(server.url)
        assert total(series, "postroom_jobs_submitted_total", scheduler="metrics-a") == 1
        assert total(series, "postroom_jobs_submitted_total", scheduler="metrics-b") == 2
        with pytest.raises(InvalidArgument, match="metrics-a"):
            Scheduler(workers=1, name="metrics-a").start()
    from prometheus_client import REGISTRY

    after = REGISTRY.get_sample_value(
        "postroom_jobs_submitted_total",
        {"scheduler": "metrics-a", "queue": "default", "handler": "ok"},
    )
    assert after is None


def test_serve_metrics_needs_a_running_scheduler_with_metrics() -> None:
    quiet = Scheduler(workers=1, metrics=False)
    with quiet, pytest.raises(InvalidArgument, match="metrics=False"):
        quiet.serve_metrics(0)
    sched = Scheduler(workers=1, registry=CollectorRegistry())
    with sched, pytest.raises(InvalidArgument, match="port"):
        sched.serve_metrics(70_000)
    with pytest.raises(SchedulerClosed):
        sched.serve_metrics(0)


def test_schedule_fires_misfires_and_skips_are_scraped_per_handler() -> None:
    from actors import ManualClock

    registry = CollectorRegistry()
    clock = ManualClock()
    sched = Scheduler(workers=1, name="m-sched", registry=registry, clock=clock)
    release = threading.Event()

    @sched.handler("tick")
    def tick(ctx: Any, payload: Any) -> None:
        assert release.wait(WAIT)

    with sched:
        server = sched.serve_metrics(0)
        # Fires every minute; the first job holds the worker, so the next fire
        # is skipped (overlap="skip"); then ten minutes pass at once (misfires).
        handle = sched.cron("tick", "* * * * *", misfire_grace=5)
        clock.advance(60)
        wait_until(lambda: handle.info().fires == 1, "the first fire")
        clock.advance(60)
        wait_until(lambda: handle.info().skips == 1, "the skipped fire")
        release.set()
        wait_until(lambda: sched.stats().running == 0, "the job to end")
        clock.advance(10 * 60 + 30)
        wait_until(lambda: handle.info().misfires == 9, "nine coalesced misfires")
        info = handle.info()
        _, series = scrape(server.url)
        handle.remove()
    assert total(series, "postroom_schedule_fires_total", handler="tick") == info.fires == 2
    assert total(series, "postroom_schedule_skips_total", handler="tick") == info.skips == 1
    assert total(series, "postroom_schedule_misfires_total", handler="tick") == 9


def test_timer_entries_count_every_delayed_job_at_once() -> None:
    # The Timer is not woken for each delayed submit, nor for a cancel: the
    # gauge still says how many wait, at the moment it is read.
    from actors import ManualClock

    registry = CollectorRegistry()
    clock = ManualClock()
    sched = Scheduler(workers=2, name="m-timer", registry=registry, clock=clock)

    def entries() -> float | None:
        return registry.get_sample_value("postroom_timer_entries", {"scheduler": "m-timer"})

    @sched.handler("ok")
    def ok(ctx: Any, payload: Any) -> Any:
        return payload

    with sched:
        handles = [sched.submit("ok", i, delay=10 + i) for i in range(100)]
        assert entries() == 100
        for handle in handles[:40]:
            handle.cancel()
        assert entries() == 60
        clock.advance(200)
        assert [h.result(timeout=WAIT) for h in handles[40:]] == list(range(40, 100))
        assert entries() == 0
