"""Tests for `actors._metrics.collector`: histograms, exposition over HTTP, the server thread."""

from __future__ import annotations

import dataclasses
import math
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, Counter, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from actors import InvalidArgument
from actors._metrics.collector import MetricsSnapshot, NodeFigures, register_metrics
from actors._metrics.histogram import RUN_BUCKETS, HistogramData, RunHistogram, merge_histograms
from actors._metrics.server import MetricsServer
from tests.helpers import WAIT

# --- helpers ------------------------------------------------------------------------------


def _histogram(*values: float) -> HistogramData:
    histogram = RunHistogram()
    for value in values:
        histogram.observe(value)
    return histogram.read()


def _snapshot(**changes: Any) -> MetricsSnapshot:
    """A snapshot with a distinct value in every field (sums exact in binary)."""
    snap = MetricsSnapshot(
        submitted={("default", "build"): 11, ("high", "deploy"): 3},
        finished={
            ("default", "build", "completed"): 7,
            ("default", "build", "failed"): 2,
            ("default", "build", "cancelled"): 1,
            ("high", "deploy", "completed"): 3,
            ("high", "deploy", "failed"): 0,
            ("high", "deploy", "cancelled"): 0,
        },
        retries={("default", "build"): 4, ("high", "deploy"): 0},
        run_seconds={
            ("default", "build"): _histogram(0.001, 0.005, 0.5, 0.5, 2.0, 1000.0),
            ("high", "deploy"): _histogram(0.25),
        },
        queue_jobs={
            ("default", "pending"): 5,
            ("default", "scheduled"): 2,
            ("default", "retrying"): 1,
            ("high", "pending"): 0,
            ("high", "scheduled"): 0,
            ("high", "retrying"): 0,
        },
        running={"default": 4, "high": 1},
        workers={"default": 4, "high": 2},
        repo_waits=9,
        repo_locks=6,
        timer_entries=8,
        schedule_fires={"nightly": 12},
        schedule_misfires={"nightly": 2},
        schedule_skips={"nightly": 1},
        dropped=13,
        rejected=14,
        nodes={
            "node-a": NodeFigures(True, 2, 30, 1, 3, 4),
            "node-b": NodeFigures(False, 0, 5, 0, 0, 6),
        },
    )
    return dataclasses.replace(snap, **changes)


class Source:
    """A fake scheduler: the snapshot function `register_metrics` calls at each scrape."""

    def __init__(self, snap: MetricsSnapshot | None = None) -> None:
        self.snap = snap if snap is not None else _snapshot()
        self.calls = 0

    def __call__(self) -> MetricsSnapshot:
        self.calls += 1
        return self.snap


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in samples, f"duplicate series {key}"
            samples[key] = sample.value
    return samples


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=WAIT) as response:
        assert response.status == 200
        body: bytes = response.read()
    return body.decode()


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def _series_of(samples: Samples, scheduler: str) -> Samples:
    return {k: v for k, v in samples.items() if ("scheduler", scheduler) in k[1]}


def _metrics_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("postroom-Metrics-")}


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def server(registry: CollectorRegistry) -> Iterator[MetricsServer]:
    with MetricsServer(0, registry=registry) as server:
        yield server


def _assert_matches(samples: Samples, scheduler: str, snap: MetricsSnapshot) -> None:
    """Every figure of ``snap`` is in ``samples`` under ``scheduler``, with its value."""
    s = scheduler
    for (queue, handler), n in snap.submitted.items():
        got = _value(
            samples, "postroom_jobs_submitted_total", scheduler=s, queue=queue, handler=handler
        )
        assert got == n
    for (queue, handler, status), n in snap.finished.items():
        labels = {"scheduler": s, "queue": queue, "handler": handler, "status": status}
        assert _value(samples, "postroom_jobs_finished_total", **labels) == n
    for (queue, handler), n in snap.retries.items():
        got = _value(
            samples, "postroom_job_retries_total", scheduler=s, queue=queue, handler=handler
        )
        assert got == n
    for (queue, handler), histogram in snap.run_seconds.items():
        labels = {"scheduler": s, "queue": queue, "handler": handler}
        running_total = 0
        for bound, n in zip((*histogram.bounds, math.inf), histogram.counts, strict=True):
            running_total += n  # Prometheus buckets are cumulative
            le = "+Inf" if bound == math.inf else repr(bound)
            got = _value(samples, "postroom_job_run_seconds_bucket", le=le, **labels)
            assert got == running_total
        assert _value(samples, "postroom_job_run_seconds_count", **labels) == histogram.count
        assert _value(samples, "postroom_job_run_seconds_sum", **labels) == histogram.sum
    for (queue, state), n in snap.queue_jobs.items():
        assert _value(samples, "postroom_jobs_waiting", scheduler=s, queue=queue, state=state) == n
    for queue, n in snap.running.items():
        assert _value(samples, "postroom_jobs_running", scheduler=s, queue=queue) == n
    for queue, n in snap.workers.items():
        assert _value(samples, "postroom_workers", scheduler=s, queue=queue) == n
    for name, n in [
        ("postroom_repo_waits_total", snap.repo_waits),
        ("postroom_repo_locks", snap.repo_locks),
        ("postroom_timer_entries", snap.timer_entries),
        ("postroom_submissions_dropped_total", snap.dropped),
        ("postroom_submissions_rejected_total", snap.rejected),
    ]:
        assert _value(samples, name, scheduler=s) == n
    _assert_nodes_match(samples, s, snap)
    for name, counts in [
        ("postroom_schedule_fires_total", snap.schedule_fires),
        ("postroom_schedule_misfires_total", snap.schedule_misfires),
        ("postroom_schedule_skips_total", snap.schedule_skips),
    ]:
        for handler, n in counts.items():
            assert _value(samples, name, scheduler=s, handler=handler) == n


def _assert_nodes_match(samples: Samples, s: str, snap: MetricsSnapshot) -> None:
    connected = sum(f.connected for f in snap.nodes.values())
    assert _value(samples, "postroom_nodes_connected", scheduler=s) == connected
    for node, f in snap.nodes.items():
        for name, n in [
            ("postroom_node_jobs_in_flight", f.in_flight),
            ("postroom_node_runs_dispatched_total", f.dispatched),
            ("postroom_node_runs_redispatched_total", f.redispatched),
            ("postroom_node_stale_results_total", f.stale),
            ("postroom_node_heartbeat_misses_total", f.heartbeat_misses),
        ]:
            assert _value(samples, name, scheduler=s, node=node) == n


# --- exposition over HTTP -----------------------------------------------------------------


def test_a_scrape_shows_every_figure_of_the_snapshot(
    registry: CollectorRegistry, server: MetricsServer
) -> None:
    source = Source()
    unregister = register_metrics(source, name="main", registry=registry)
    try:
        text = _scrape(server.url)
    finally:
        unregister()
    samples = _parse(text)
    _assert_matches(samples, "main", source.snap)
    assert source.calls == 1  # one snapshot per scrape, every family built from it
    # Exactly the snapshot's series and nothing else: 2 (queue, handler) pairs x
    # (submitted + 3 finished + retries + 17 buckets + count + sum), 2 queues x
    # (3 waiting + running + workers), 5 scalars, 1 schedule handler x 3,
    # nodes connected, 2 nodes x 5.
    assert len(samples) == 2 * (5 + len(RUN_BUCKETS) + 1 + 2) + 2 * 5 + 5 + 3 + 1 + 2 * 5


def test_families_are_prefixed_typed_and_carry_no_repo_or_job_label(
    registry: CollectorRegistry, server: MetricsServer
) -> None:
    unregister = register_metrics(Source(), name="main", registry=registry)
    try:
        families = list(text_string_to_metric_families(_scrape(server.url)))
    finally:
        unregister()
    assert len(families) == 21
    # "node" is a key's name (bounded by the keys handed out), never a job or repo.
    allowed = {"scheduler", "queue", "handler", "status", "state", "le", "node"}
    for family in families:
        assert family.name.startswith("postroom_")
        assert family.documentation
        for sample in family.samples:
            assert set(sample.labels) <= allowed, sample
            assert sample.labels["scheduler"] == "main"
            if family.type == "counter":
                assert sample.name.endswith("_total"), sample.name


def test_known_label_combinations_are_filled_with_zeros(
    registry: CollectorRegistry, server: MetricsServer
) -> None:
    snap = _snapshot(
        submitted={("default", "build"): 2},
        finished={("default", "build", "completed"): 2},
        retries={},
        run_seconds={},
        queue_jobs={("default", "pending"): 3},
        running={},
        workers={"default": 4},
        schedule_fires={},
        schedule_misfires={"nightly": 1},
        schedule_skips={},
    )
    unregister = register_metrics(Source(snap), name="main", registry=registry)
    try:
        samples = _parse(_scrape(server.url))
    finally:
        unregister()
    job = {"scheduler": "main", "queue": "default", "handler": "build"}
    assert _value(samples, "postroom_jobs_finished_total", status="completed", **job) == 2
    assert _value(samples, "postroom_jobs_finished_total", status="failed", **job) == 0
    assert _value(samples, "postroom_jobs_finished_total", status="cancelled", **job) == 0
    assert _value(samples, "postroom_job_retries_total", **job) == 0
    queue = {"scheduler": "main", "queue": "default"}
    assert _value(samples, "postroom_jobs_waiting", state="pending", **queue) == 3
    assert _value(samples, "postroom_jobs_waiting", state="scheduled", **queue) == 0
    assert _value(samples, "postroom_jobs_waiting", state="retrying", **queue) == 0
    assert _value(samples, "postroom_jobs_running", **queue) == 0
    nightly = {"scheduler": "main", "handler": "nightly"}
    assert _value(samples, "postroom_schedule_fires_total", **nightly) == 0
    assert _value(samples, "postroom_schedule_misfires_total", **nightly) == 1
    assert not [k for k in samples if k[0].startswith("postroom_job_run_seconds")]


def test_a_scrape_takes_a_fresh_snapshot(
    registry: CollectorRegistry, server: MetricsServer
) -> None:
    source = Source()
    unregister = register_metrics(source, name="main", registry=registry)
    try:
        first = _parse(_scrape(server.url))
        source.snap = _snapshot(repo_locks=0, running={"default": 0, "high": 0})
        second = _parse(_scrape(server.url))
    finally:
        unregister()
    assert _value(first, "postroom_repo_locks", scheduler="main") == 6
    assert _value(second, "postroom_repo_locks", scheduler="main") == 0
    assert _value(second, "postroom_jobs_running", scheduler="main", queue="default") == 0
    assert source.calls == 2


def test_two_schedulers_share_one_registry(
    registry: CollectorRegistry, server: MetricsServer
) -> None:
    a = Source()
    b = Source(
        _snapshot(
            repo_waits=100,
            submitted={("default", "other"): 1},
            retries={},
            finished={},
            run_seconds={("default", "other"): _histogram(3.0)},
        )
    )
    unregister_a = register_metrics(a, name="a", registry=registry)
    unregister_b = register_metrics(b, name="b", registry=registry)  # does not raise
    try:
        samples = _parse(_scrape(server.url))
    finally:
        unregister_a()
        unregister_b()
    _assert_matches(samples, "a", a.snap)
    _assert_matches(samples, "b", b.snap)
    assert (a.calls, b.calls) == (1, 1)
    assert len(_series_of(samples, "a")) + len(_series_of(samples, "b")) == len(samples)


def test_schedulers_share_the_default_registry() -> None:
    unregister_a = register_metrics(Source(), name="default-a")
    unregister_b = register_metrics(Source(), name="default-b")
    try:
        samples = _parse(generate_latest(REGISTRY).decode())
        assert _series_of(samples, "default-a")
        assert _series_of(samples, "default-b")
    finally:
        unregister_a()
        unregister_b()
    samples = _parse(generate_latest(REGISTRY).decode())
    assert not _series_of(samples, "default-a")
    assert not _series_of(samples, "default-b")


def test_a_duplicate_scheduler_name_is_refused(registry: CollectorRegistry) -> None:
    first = Source()
    unregister = register_metrics(first, name="main", registry=registry)
    try:
        with pytest.raises(InvalidArgument, match="'main'"):
            register_metrics(Source(), name="main", registry=registry)
        samples = _parse(generate_latest(registry).decode())  # the first is untouched
        _assert_matches(samples, "main", first.snap)
    finally:
        unregister()
    # The same name on another registry is another scheduler's business.
    other = CollectorRegistry()
    register_metrics(Source(), name="main", registry=other)()


def test_unregister_removes_the_series_then_the_collector(registry: CollectorRegistry) -> None:
    unregister_a = register_metrics(Source(), name="a", registry=registry)
    unregister_b = register_metrics(Source(), name="b", registry=registry)
    unregister_a()
    samples = _parse(generate_latest(registry).decode())
    assert not _series_of(samples, "a")
    assert _series_of(samples, "b")
    unregister_a()  # twice: harmless, and b stays
    assert _series_of(_parse(generate_latest(registry).decode()), "b")
    unregister_b()
    assert list(registry.collect()) == []  # the shared collector left with the last one
    # The names are free again, for a new scheduler of either name.
    again = register_metrics(Source(), name="a", registry=registry)
    assert _series_of(_parse(generate_latest(registry).decode()), "a")
    again()
    assert list(registry.collect()) == []


def test_a_stale_unregister_leaves_a_new_registration_alone(
    registry: CollectorRegistry,
) -> None:
    source = Source()
    unregister_old = register_metrics(source, name="main", registry=registry)
    unregister_old()
    unregister_new = register_metrics(source, name="main", registry=registry)
    unregister_old()  # the old registration is gone already: the new one stays
    assert _series_of(_parse(generate_latest(registry).decode()), "main")
    unregister_new()
    assert list(registry.collect()) == []


def test_a_registry_that_owns_a_postroom_name_is_refused(registry: CollectorRegistry) -> None:
    Counter("postroom_jobs_submitted", "not ours", registry=registry)
    with pytest.raises(InvalidArgument, match="postroom") as caught:
        register_metrics(Source(), name="main", registry=registry)
    assert isinstance(caught.value.__cause__, ValueError)


def test_a_failing_snapshot_leaves_the_others_served(
    registry: CollectorRegistry, server: MetricsServer, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> MetricsSnapshot:
        raise RuntimeError("actor loop gone")

    unregister_ok = register_metrics(Source(), name="ok", registry=registry)
    unregister_broken = register_metrics(broken, name="broken", registry=registry)
    try:
        samples = _parse(_scrape(server.url))
    finally:
        unregister_ok()
        unregister_broken()
    assert _series_of(samples, "ok")
    assert not _series_of(samples, "broken")
    assert any("'broken'" in r.getMessage() and r.exc_info for r in caplog.records)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"name": ""}, "''"),
        ({"name": 3}, "3"),
        ({"name": "x", "snapshot": "not callable"}, "'not callable'"),
    ],
)
def test_register_checks_its_arguments(
    registry: CollectorRegistry, kwargs: dict[str, Any], named: str
) -> None:
    arguments: dict[str, Any] = {"snapshot": Source(), "registry": registry, **kwargs}
    snapshot = arguments.pop("snapshot")
    with pytest.raises(InvalidArgument, match=named):
        register_metrics(snapshot, **arguments)
    assert list(registry.collect()) == []


# --- the server ---------------------------------------------------------------------------


def test_the_server_thread_is_named_and_joined_by_stop(registry: CollectorRegistry) -> None:
    before = _metrics_threads()
    server = MetricsServer(0, registry=registry)
    assert server.port == 0
    server.start()
    try:
        (thread,) = _metrics_threads() - before
        assert thread.is_alive()
        assert server.port > 0  # the port bound
        assert server.url == f"http://127.0.0.1:{server.port}/metrics"
        _scrape(server.url)
    finally:
        server.stop()
    assert not thread.is_alive()  # joined, not merely asked to stop
    with pytest.raises(urllib.error.URLError):
        _scrape(server.url)
    server.stop()  # twice: harmless


def test_the_server_starts_again_after_stop(registry: CollectorRegistry) -> None:
    unregister = register_metrics(Source(), name="main", registry=registry)
    server = MetricsServer(0, registry=registry)
    try:
        for _ in range(2):
            server.start()
            server.start()  # already serving: nothing happens
            try:
                assert _series_of(_parse(_scrape(server.url)), "main")
            finally:
                server.stop()
    finally:
        unregister()


def test_only_metrics_is_served(server: MetricsServer) -> None:
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(server.url.removesuffix("metrics") + "other", timeout=WAIT)
    assert caught.value.code == 404
    caught.value.close()


def test_a_client_that_connects_and_leaves_does_not_stop_the_server(
    server: MetricsServer,
) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT):
        pass
    _scrape(server.url)


@pytest.mark.parametrize("port", [-1, 65536, "9187", 1.5, True, None])
def test_a_bad_port_is_refused(port: object) -> None:
    with pytest.raises(InvalidArgument, match="port") as caught:
        MetricsServer(port)  # type: ignore[arg-type]
    assert repr(port) in str(caught.value)


@pytest.mark.parametrize("addr", ["", None, 127])
def test_a_bad_addr_is_refused(addr: object) -> None:
    with pytest.raises(InvalidArgument, match="addr") as caught:
        MetricsServer(0, addr=addr)  # type: ignore[arg-type]
    assert repr(addr) in str(caught.value)


def _start_fails(make: Callable[[], MetricsServer], named: str) -> None:
    before = _metrics_threads()
    server = make()
    with pytest.raises(InvalidArgument, match=named) as caught:
        server.start()
    assert isinstance(caught.value.__cause__, OSError)
    assert _metrics_threads() == before  # no thread started
    server.stop()  # harmless: it never started


def test_an_address_that_cannot_be_bound_is_refused(registry: CollectorRegistry) -> None:
    # 203.0.113.0/24 is reserved for documentation: never an address of this host.
    _start_fails(lambda: MetricsServer(0, addr="203.0.113.7", registry=registry), "203.0.113.7")


def test_a_port_in_use_is_refused(server: MetricsServer, registry: CollectorRegistry) -> None:
    port = server.port
    _start_fails(lambda: MetricsServer(port, registry=registry), str(port))


# --- RunHistogram ---------------------------------------------------------------------------


def test_observations_land_in_le_buckets() -> None:
    histogram = RunHistogram()
    for value in (0.0, 0.005, 0.0051, 600.0, 600.5):
        histogram.observe(value)
    data = histogram.read()
    assert data.bounds == RUN_BUCKETS
    assert len(data.counts) == len(RUN_BUCKETS) + 1
    expected = [0] * (len(RUN_BUCKETS) + 1)
    expected[0] = 2  # 0 and exactly 0.005: "le" includes the bound
    expected[1] = 1  # 0.0051 <= 0.01
    expected[len(RUN_BUCKETS) - 1] = 1  # exactly 600
    expected[-1] = 1  # above every bound: +Inf only
    assert list(data.counts) == expected
    assert data.count == 5
    assert data.sum == pytest.approx(0.005 + 0.0051 + 600.0 + 600.5)
    cumulative = data.cumulative()
    assert cumulative[0] == (0.005, 2)
    assert cumulative[-1] == (math.inf, 5)
    assert [n for _, n in cumulative] == sorted(n for _, n in cumulative)


def test_read_is_a_copy() -> None:
    histogram = RunHistogram()
    histogram.observe(1.0)
    data = histogram.read()
    histogram.observe(1.0)
    assert data.count == 1
    assert histogram.read().count == 2


def test_merge_adds_bucket_by_bucket() -> None:
    a, b = _histogram(0.001, 2.0), _histogram(2.0, 1000.0, 0.5)
    merged = merge_histograms([a, b])
    assert merged.bounds == RUN_BUCKETS
    assert merged.counts == tuple(x + y for x, y in zip(a.counts, b.counts, strict=True))
    assert merged.count == 5
    assert merged.sum == a.sum + b.sum
    empty = merge_histograms([])
    assert (empty.count, empty.sum, set(empty.counts)) == (0, 0.0, {0})
    custom = RunHistogram((1.0, 2.0))
    custom.observe(1.5)
    assert merge_histograms([custom.read()], bounds=(1.0, 2.0)).counts == (0, 1, 0)
    with pytest.raises(InvalidArgument, match="merge"):
        merge_histograms([a, custom.read()])


@dataclasses.dataclass
class _Handshake:
    """The writer stops halfway until the reader has read, so a read lands mid-run."""

    halfway: threading.Event = dataclasses.field(default_factory=threading.Event)
    read_halfway: threading.Event = dataclasses.field(default_factory=threading.Event)
    done: threading.Event = dataclasses.field(default_factory=threading.Event)


def test_a_reader_while_one_thread_observes() -> None:
    histogram = RunHistogram()
    values = (0.5, 2.0, 1000.0)  # exact in binary: the final sum is exact
    rounds = 20_000
    sync = _Handshake()

    def write() -> None:
        for n in range(rounds):
            if n == rounds // 2:
                sync.halfway.set()
                assert sync.read_halfway.wait(WAIT)
            for value in values:
                histogram.observe(value)
        sync.done.set()

    writer = threading.Thread(target=write, name="test-histogram-writer")
    writer.start()
    reads = 0
    previous = histogram.read()
    try:
        while not sync.done.is_set():
            data = histogram.read()
            reads += 1
            assert data.count == sum(data.counts)  # buckets and count always agree
            assert all(n >= p for n, p in zip(data.counts, previous.counts, strict=True))
            assert data.sum >= previous.sum
            previous = data
            if sync.halfway.is_set() and not sync.read_halfway.is_set():
                assert 0 < data.count < rounds * len(values)
                sync.read_halfway.set()
    finally:
        sync.read_halfway.set()
        writer.join(WAIT)
    assert not writer.is_alive()
    assert reads >= 1
    final = histogram.read()
    assert final.count == rounds * len(values)
    assert final.sum == rounds * sum(values)
    per_value = [rounds if i in (6, 8, len(RUN_BUCKETS)) else 0 for i in range(len(final.counts))]
    assert list(final.counts) == per_value  # 0.5 -> le 0.5, 2.0 -> le 2.5, 1000 -> +Inf
