"""Worker nodes, the scheduler's side: sessions, credit, leases, fencing, loss.

Each test runs a real scheduler listening on loopback and a `ScriptedNode`
that speaks the protocol over a real socket, message by message, so every
step of the exchange is something the test sees and could see go wrong.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from actors import (
    CancelResult,
    InvalidArgument,
    JobCancelled,
    JobFailed,
    JobTimedOut,
    Priority,
    Queue,
    Scheduler,
    SchedulerClosed,
)
from actors.messages import (
    CancelRun,
    Drain,
    Heartbeat,
    NodeFinished,
    Outcome,
    Progress,
    Refused,
    Run,
    Welcome,
)
from tests.helpers import WAIT, wait_until
from tests.nodes import ScriptedNode


@pytest.fixture
def sched() -> Iterator[Scheduler]:
    """No local worker: every job runs on a node."""
    sched = Scheduler(workers=0, metrics=False)

    @sched.handler("echo")
    def echo(ctx: Any, payload: Any) -> Any:
        return payload

    @sched.handler("other")
    def other(ctx: Any, payload: Any) -> Any:
        return payload

    @sched.handler("once", on_interrupt="fail")
    def once(ctx: Any, payload: Any) -> Any:
        return payload

    @sched.handler("slow", timeout=0.2)
    def slow(ctx: Any, payload: Any) -> Any:
        return payload

    sched.start()
    yield sched
    # Not graceful: a test may leave runs on a node it has closed.
    sched.shutdown(graceful=False, cancel_grace=2)


@pytest.fixture
def endpoint(sched: Scheduler) -> str:
    # A long heartbeat: only the tests about liveness want a node to die of silence.
    return sched.listen("tcp://127.0.0.1:0", insecure=True, heartbeat=30.0).endpoint


@pytest.fixture
def node(endpoint: str) -> Iterator[ScriptedNode]:
    node = ScriptedNode(endpoint)
    yield node
    node.close()


def test_a_node_is_welcomed_and_runs_jobs_sent_within_its_credit(
    sched: Scheduler, node: ScriptedNode
) -> None:
    welcome = node.hello(capacity=2)
    assert isinstance(welcome, Welcome)
    assert welcome.node_id == "n1"
    handles = [sched.submit("echo", i) for i in range(5)]
    node.credit(2)
    first, second = node.expect(Run), node.expect(Run)
    node.nothing_but_heartbeats(0.3)  # the credit is spent: nothing more comes
    assert {first.job.payload, second.job.payload} == {0, 1}
    assert first.lease != second.lease
    node.finish(first, "done")
    assert handles[first.job.payload].result(WAIT) == "done"
    node.credit(1)
    third = node.expect(Run)
    assert third.job.payload == 2
    [info] = sched.nodes()
    assert (info.node_id, info.queue, info.capacity) == ("n1", "default", 2)
    assert (info.in_flight, info.dispatched, info.completed) == (2, 3, 1)


def test_the_best_job_goes_first_and_only_to_a_node_that_offered_its_handler(
    sched: Scheduler, node: ScriptedNode
) -> None:
    low = sched.submit("echo", "low", priority=Priority.BEST_EFFORT)
    unoffered = sched.submit("other", "other", priority=Priority.USER_BLOCKING)
    high = sched.submit("echo", "high", priority=Priority.USER_VISIBLE)
    node.hello(handlers=("echo",))
    node.credit(3)
    assert node.expect(Run).job.id == high.id
    assert node.expect(Run).job.id == low.id
    node.nothing_but_heartbeats(0.3)
    assert sched.job(unoffered.id).status == "pending"


def test_a_repo_stays_held_while_a_lease_on_its_job_is_unresolved(
    sched: Scheduler, node: ScriptedNode
) -> None:
    first = sched.submit("echo", 1, repo="r")
    second = sched.submit("echo", 2, repo="r")
    node.hello(capacity=2)
    node.credit(2)
    run = node.expect(Run)
    assert run.job.id == first.id
    node.nothing_but_heartbeats(0.3)  # credit left, but the repo is held
    node.finish(run, 1)
    assert node.expect(Run).job.id == second.id


def test_a_result_under_a_lease_not_held_is_rejected_and_counted(
    sched: Scheduler, node: ScriptedNode
) -> None:
    handle = sched.submit("echo", "x")
    node.hello()
    node.credit(1)
    run = node.expect(Run)
    forged = Outcome("completed", "forged")
    node.send(NodeFinished(run.job.id, run.job.attempt, run.lease + 1, forged))
    wait_until(lambda: sched.nodes()[0].stale_rejected == 1, "the stale result counted")
    assert sched.job(handle.id).status == "running"  # never applied
    node.finish(run, "real")
    assert handle.result(WAIT) == "real"


def test_progress_from_the_node_shows_on_the_job(sched: Scheduler, node: ScriptedNode) -> None:
    handle = sched.submit("echo", None)
    node.hello()
    node.credit(1)
    run = node.expect(Run)
    node.send(Progress(run.job.id, run.job.attempt, run.lease, 0.5, "half"))
    wait_until(lambda: sched.job(handle.id).progress is not None, "progress")
    progress = sched.job(handle.id).progress
    assert progress is not None
    assert (progress.fraction, progress.message) == (0.5, "half")


def test_cancel_of_a_remote_run_is_sent_to_its_node(sched: Scheduler, node: ScriptedNode) -> None:
    handle = sched.submit("echo", None)
    node.hello()
    node.credit(1)
    run = node.expect(Run)
    assert sched.cancel(handle.id) is CancelResult.SIGNALLED
    cancel = node.expect(CancelRun)
    assert (cancel.job_id, cancel.lease, cancel.reason) == (run.job.id, run.lease, "cancel")
    # The handler returned anyway: the attempt still ends cancelled, as in process.
    node.finish(run, "too late")
    with pytest.raises(JobCancelled):
        handle.result(WAIT)


def test_a_deadline_stops_a_remote_run_and_it_ends_timed_out(
    sched: Scheduler, node: ScriptedNode
) -> None:
    handle = sched.submit("slow", None)
    node.hello(handlers=("slow",))
    node.credit(1)
    run = node.expect(Run)
    cancel = node.expect(CancelRun)
    assert cancel.reason == "timeout"
    node.finish(run, "late")
    with pytest.raises(JobTimedOut):
        handle.result(WAIT)


def test_bye_with_a_run_held_interrupts_it_and_it_runs_again_elsewhere(
    sched: Scheduler, endpoint: str, node: ScriptedNode
) -> None:
    handle = sched.submit("echo", "x", max_retries=1)
    node.hello()
    node.credit(1)
    run = node.expect(Run)
    node.bye()
    other = ScriptedNode(endpoint)
    try:
        other.hello(node_id="n2")
        other.credit(1)
        again = other.expect(Run)
        assert again.job.id == run.job.id
        assert again.job.attempt == run.job.attempt + 1
        assert again.lease != run.lease
        other.finish(again, "second")
        assert handle.result(WAIT) == "second"
    finally:
        other.close()


def test_an_interrupted_run_fails_the_job_when_its_handler_says_so(
    sched: Scheduler, node: ScriptedNode
) -> None:
    handle = sched.submit("once", "x", max_retries=3)
    node.hello(handlers=("once",))
    node.credit(1)
    node.expect(Run)
    node.bye()
    with pytest.raises(JobFailed) as failed:
        handle.result(WAIT)
    assert failed.value.error is not None
    assert failed.value.error.type == "postroom.NodeLost"


def test_a_silent_node_is_declared_dead_and_its_late_result_is_fenced(
    sched: Scheduler,
) -> None:
    # The healthy node beats every 0.05 s: a margin of 20 over the 1 s of silence
    # that kills, so a loaded machine does not kill it too.
    listener = sched.listen("tcp://127.0.0.1:0", insecure=True, heartbeat=0.25, misses=4)
    silent, healthy = ScriptedNode(listener.endpoint), ScriptedNode(listener.endpoint)
    try:
        handle = sched.submit("echo", "x", max_retries=1)
        assert isinstance(silent.hello(node_id="silent"), Welcome)
        silent.credit(1)
        run = silent.expect(Run)
        # The silent node says nothing more; the healthy one keeps talking.
        assert isinstance(healthy.hello(node_id="healthy"), Welcome)
        healthy.credit(1)
        stop = threading.Event()
        beating = threading.Thread(target=_beat, args=(healthy, stop))
        beating.start()
        try:
            again = healthy.expect(Run)
            assert again.job.id == run.job.id
            # The dead node wakes up and answers: its lease is gone.
            silent.finish(run, "stale")
            silent.expect(Refused)
            healthy.finish(again, "fresh")
            assert handle.result(WAIT) == "fresh"
        finally:
            stop.set()
            beating.join()
        wait_until(lambda: listener.totals()["silent"].stale == 1, "the late result counted")
        totals = listener.totals()["silent"]
        assert totals.redispatched == 1
        assert totals.heartbeat_misses >= 4
        assert [info.node_id for info in sched.nodes()] == ["healthy"]
    finally:
        silent.close()
        healthy.close()


def _beat(node: ScriptedNode, stop: threading.Event) -> None:
    while not stop.wait(0.05):
        node.send(Heartbeat(0.0))


@pytest.mark.parametrize(
    ("hello", "reason"),
    [
        ({"version": 99}, "version 99"),
        ({"queue": "nowhere"}, "no queue named 'nowhere'"),
        ({"handlers": ("unknown",)}, "none of this scheduler's handlers"),
        ({"capacity": 0}, "capacity 0"),
    ],
)
def test_a_node_that_cannot_serve_is_refused_with_the_reason(
    node: ScriptedNode, hello: dict[str, Any], reason: str
) -> None:
    refused = node.hello(**hello)
    assert isinstance(refused, Refused)
    assert reason in refused.reason


def test_a_node_id_in_session_elsewhere_is_refused(endpoint: str, node: ScriptedNode) -> None:
    assert isinstance(node.hello(node_id="same"), Welcome)
    twin = ScriptedNode(endpoint)
    try:
        refused = twin.hello(node_id="same")
        assert isinstance(refused, Refused)
        assert "in session" in refused.reason
    finally:
        twin.close()


def test_words_from_a_connection_without_a_session_are_refused(node: ScriptedNode) -> None:
    node.credit(1)
    refused = node.expect(Refused)
    assert "say Hello" in refused.reason


def test_a_second_hello_ends_the_first_session_and_interrupts_its_runs(
    sched: Scheduler, node: ScriptedNode
) -> None:
    handle = sched.submit("echo", "x", max_retries=1)
    node.hello()
    node.credit(1)
    first = node.expect(Run)
    node.hello()  # the node restarted behind the same connection
    node.credit(1)
    again = node.expect(Run)
    assert (again.job.id, again.job.attempt) == (first.job.id, first.job.attempt + 1)
    node.finish(again, "ok")
    assert handle.result(WAIT) == "ok"


def test_a_graceful_shutdown_lets_nodes_finish_then_drains_them() -> None:
    sched = Scheduler(workers=0, metrics=False)
    sched.register("echo", lambda ctx, payload: payload)
    sched.start()
    node = ScriptedNode(sched.listen("tcp://127.0.0.1:0", insecure=True).endpoint)
    try:
        node.hello()
        handle = sched.submit("echo", "x")
        node.credit(1)
        run = node.expect(Run)
        closer = threading.Thread(target=sched.shutdown, kwargs={"timeout": WAIT})
        closer.start()
        node.finish(run, "finished during shutdown")
        assert handle.result(WAIT) == "finished during shutdown"
        node.expect(Drain)
        closer.join()
        assert sched.nodes() == []
    finally:
        node.close()
        sched.shutdown()


def test_listen_needs_a_running_scheduler_and_keys_or_loopback(tmp_path: Path) -> None:
    sched = Scheduler(workers=0, metrics=False)
    with pytest.raises(SchedulerClosed):
        sched.listen("tcp://127.0.0.1:0", insecure=True)
    with sched:
        with pytest.raises(InvalidArgument):
            sched.listen("tcp://127.0.0.1:0")  # no keys, not insecure
        with pytest.raises(InvalidArgument):
            sched.listen("tcp://0.0.0.0:0", insecure=True)  # plain TCP off loopback
        with pytest.raises(InvalidArgument):
            sched.listen("nonsense", insecure=True)
        with pytest.raises(InvalidArgument):
            sched.listen("tcp://127.0.0.1:0", insecure=True, heartbeat=0)


def test_node_figures_reach_prometheus_by_node_label() -> None:
    registry = CollectorRegistry()
    sched = Scheduler(workers=0, name="metered", registry=registry)
    sched.register("echo", lambda ctx, payload: payload)
    sched.start()
    node = ScriptedNode(sched.listen("tcp://127.0.0.1:0", insecure=True).endpoint)
    try:
        node.hello(node_id="n7")
        node.credit(2)
        handles = [sched.submit("echo", i) for i in range(2)]
        first, second = node.expect(Run), node.expect(Run)
        node.finish(first, 0)
        forged = Outcome("completed", "forged")
        node.send(NodeFinished(second.job.id, second.job.attempt, second.lease + 7, forged))
        wait_until(lambda: sched.nodes()[0].stale_rejected == 1, "the forged result counted")
        labels = {"scheduler": "metered", "node": "n7"}
        assert registry.get_sample_value("postroom_nodes_connected", {"scheduler": "metered"}) == 1
        assert registry.get_sample_value("postroom_node_runs_dispatched_total", labels) == 2
        assert registry.get_sample_value("postroom_node_jobs_in_flight", labels) == 1
        assert registry.get_sample_value("postroom_node_stale_results_total", labels) == 1
        node.bye("n7")
        with pytest.raises(JobFailed):  # no retry left: the interrupted run fails it
            handles[1].result(WAIT)
        assert registry.get_sample_value("postroom_node_runs_redispatched_total", labels) == 1
        assert registry.get_sample_value("postroom_nodes_connected", {"scheduler": "metered"}) == 0
    finally:
        node.close()
        sched.shutdown()


def test_a_run_lost_with_its_node_is_on_record_as_interrupted(
    sched: Scheduler, endpoint: str, node: ScriptedNode
) -> None:
    handle = sched.submit("echo", "x", max_retries=1)
    node.hello()
    node.credit(1)
    node.expect(Run)
    node.bye()
    other = ScriptedNode(endpoint)
    try:
        other.hello(node_id="n2")
        other.credit(1)
        other.finish(other.expect(Run), "ok")
        assert handle.result(WAIT) == "ok"
    finally:
        other.close()
    first, second = sched.runs(handle.id)
    assert (first.outcome, first.worker) == ("interrupted", "node:n1")
    assert first.error is not None
    assert first.error.type == "postroom.NodeLost"
    assert (second.outcome, second.worker) == ("completed", "node:n2")


def _cpu_seconds(thread: threading.Thread) -> float:
    """CPU time a thread of this process has used (Linux: /proc)."""
    fields = Path(f"/proc/self/task/{thread.native_id}/stat").read_text().rsplit(")", 1)[1]
    utime, stime = fields.split()[11:13]
    return (int(utime) + int(stime)) / os.sysconf("SC_CLK_TCK")


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc")
def test_a_link_waits_quietly_while_its_node_is_silent(sched: Scheduler) -> None:
    # Silent well past one heartbeat, but not for long enough to be declared
    # dead: the link must sleep to its next due time, not spin on the missed one.
    listener = sched.listen("tcp://127.0.0.1:0", insecure=True, heartbeat=0.05, misses=100)
    node = ScriptedNode(listener.endpoint)
    try:
        node.hello()
        [link] = [t for t in threading.enumerate() if t.name.startswith("postroom-NodeLink")]
        before = _cpu_seconds(link)
        quiet = threading.Event()
        quiet.wait(1.0)  # the window measured, not a synchronisation
        assert _cpu_seconds(link) - before < 0.2
        assert [info.node_id for info in sched.nodes()] == ["n1"]
    finally:
        node.close()


def test_a_node_silent_from_its_hello_on_gets_heartbeats_and_is_declared_dead(
    sched: Scheduler,
) -> None:
    listener = sched.listen("tcp://127.0.0.1:0", insecure=True, heartbeat=0.1, misses=3)
    node = ScriptedNode(listener.endpoint)
    try:
        assert isinstance(node.hello(), Welcome)
        assert isinstance(node.next(), Heartbeat)
        wait_until(lambda: sched.nodes() == [], "the silent node declared dead")
        assert listener.totals()["n1"].heartbeat_misses >= 3
    finally:
        node.close()


def test_a_named_queue_is_served_by_the_nodes_that_name_it() -> None:
    sched = Scheduler(workers=0, metrics=False, queues={"gpu": Queue(workers=0)})
    sched.register("echo", lambda ctx, payload: payload)
    sched.start()
    listener = sched.listen("tcp://127.0.0.1:0", insecure=True, heartbeat=30.0)
    gpu, default = ScriptedNode(listener.endpoint), ScriptedNode(listener.endpoint)
    try:
        gpu.hello(node_id="gpu-1", queue="gpu")
        default.hello(node_id="cpu-1")
        on_gpu = sched.submit("echo", "g", queue="gpu")
        on_default = sched.submit("echo", "d")
        gpu.credit(2)
        default.credit(2)
        gpu_run, default_run = gpu.expect(Run), default.expect(Run)
        assert (gpu_run.job.id, default_run.job.id) == (on_gpu.id, on_default.id)
        gpu.nothing_but_heartbeats(0.2)
        default.nothing_but_heartbeats(0.2)
        gpu.finish(gpu_run, "g")
        default.finish(default_run, "d")
        assert (on_gpu.result(WAIT), on_default.result(WAIT)) == ("g", "d")
    finally:
        gpu.close()
        default.close()
        sched.shutdown()


def test_with_a_store_a_run_lost_with_its_node_is_recorded_interrupted(tmp_path: Path) -> None:
    sched = Scheduler(workers=0, metrics=False, store=tmp_path / "jobs.db")
    sched.register("echo", lambda ctx, payload: payload)
    sched.start()
    listener = sched.listen("tcp://127.0.0.1:0", insecure=True, heartbeat=30.0)
    first, second = ScriptedNode(listener.endpoint), ScriptedNode(listener.endpoint)
    try:
        handle = sched.submit("echo", "x", max_retries=1)
        first.hello(node_id="n1")
        first.credit(1)
        first.expect(Run)
        first.bye("n1")
        second.hello(node_id="n2")
        second.credit(1)
        second.finish(second.expect(Run), "ok")
        assert handle.result(WAIT) == "ok"
    finally:
        first.close()
        second.close()
        sched.shutdown()
    # Read back from the store, by a scheduler that never ran these jobs.
    again = Scheduler(workers=1, metrics=False, store=tmp_path / "jobs.db")
    again.register("echo", lambda ctx, payload: payload)
    with again:
        lost, done = again.runs(handle.id)
    assert (lost.outcome, lost.worker) == ("interrupted", "node:n1")
    assert lost.error is not None and lost.error.type == "postroom.NodeLost"
    assert (done.outcome, done.worker) == ("completed", "node:n2")
