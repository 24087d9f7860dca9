"""Worker nodes as real processes: end to end, killed, paused.

A scheduler in the test's process listens on loopback; nodes are real
``postroom worker`` processes running `tests.node_app`. What the jobs did is
read from a side file each handler appends to, so the checks do not trust the
scheduler's own account.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actors import Scheduler
from tests.helpers import wait_until
from tests.node_app import handlers
from transport.listener import Listener

ROOT = Path(__file__).resolve().parent.parent
HEARTBEAT = 0.25
MISSES = 3
LEASE = HEARTBEAT * MISSES
"""Seconds of silence after which a node is declared dead."""
WAIT = 60.0


class Nodes:
    """The node processes of one test; every one is stopped and reaped at the end."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, node_id: str, capacity: int = 1, *extra: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "actors.cli", "worker",
                "--app", "tests.node_app:handlers", "--connect", self.endpoint,
                "--insecure", "--capacity", str(capacity), "--node-id", node_id, *extra,
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
            proc.wait(30)


@pytest.fixture
def sched() -> Iterator[Scheduler]:
    sched = Scheduler(workers=0, handlers=handlers, metrics=False, max_pending=100_000)
    sched.start()
    yield sched
    sched.shutdown(graceful=False, cancel_grace=2)


@pytest.fixture
def listener(sched: Scheduler) -> Listener:
    return sched.listen("tcp://127.0.0.1:0", insecure=True, heartbeat=HEARTBEAT, misses=MISSES)


@pytest.fixture
def nodes(listener: Listener) -> Iterator[Nodes]:
    nodes = Nodes(listener.endpoint)
    yield nodes
    nodes.close()


def _connected(sched: Scheduler, *node_ids: str) -> None:
    wait_until(
        lambda: {n.node_id for n in sched.nodes()} >= set(node_ids),
        f"nodes {node_ids} connected",
        timeout=WAIT,
    )


def test_two_node_processes_run_2000_jobs_over_50_repos_in_order_and_alone(
    sched: Scheduler, nodes: Nodes, tmp_path: Path
) -> None:
    side = tmp_path / "events"
    nodes.start("a", 4)
    nodes.start("b", 4)
    _connected(sched, "a", "b")
    handles = [
        sched.submit(
            "record", {"file": str(side), "repo": f"r{i % 50}", "seq": i // 50}, repo=f"r{i % 50}"
        )
        for i in range(2000)
    ]
    pids = {h.result(WAIT) for h in handles}
    assert len(pids) == 2  # both node processes ran jobs, and only they did
    assert os.getpid() not in pids
    events: dict[str, list[tuple[str, int, str, int]]] = defaultdict(list)
    for line in side.read_text().splitlines():
        kind, repo, seq, job_id, _pid, at = line.split()
        events[repo].append((kind, int(seq), job_id, int(at)))
    assert len(events) == 50
    for repo, seen in events.items():
        # Alone: each start is followed by its own end before anything else of
        # the repo happens. In order: the starts come in submission order.
        assert len(seen) == 80, repo
        starts, ends = seen[0::2], seen[1::2]
        assert [kind for kind, *_ in starts] == ["start"] * 40, repo
        assert [kind for kind, *_ in ends] == ["end"] * 40, repo
        assert [seq for _, seq, _, _ in starts] == list(range(40)), repo
        for (_, _, job, began), (_, _, same, ended) in zip(starts, ends, strict=True):
            assert job == same and began <= ended, repo
        # And by the clock (one system-wide monotonic clock on Linux).
        times = [at for *_, at in seen]
        assert times == sorted(times), repo


def test_killed_nodes_lose_no_job_and_their_runs_go_elsewhere_within_the_lease(
    sched: Scheduler, nodes: Nodes, tmp_path: Path
) -> None:
    started = tmp_path / "started"
    victim = nodes.start("victim", 2)
    nodes.start("steady", 2)
    _connected(sched, "victim", "steady")
    handles = [
        sched.submit("hold", {"seconds": 0.05, "started": str(started)}) for _ in range(300)
    ]
    kills: list[float] = []
    for _ in range(4):
        wait_until(
            lambda: any(n.node_id == "victim" and n.in_flight for n in sched.nodes()),
            "the victim holds a run",
            timeout=WAIT,
        )
        victim.kill()
        kills.append(time.time())
        victim.wait(WAIT)
        wait_until(
            lambda: "victim" not in {n.node_id for n in sched.nodes()},
            "the victim declared dead",
            timeout=WAIT,
        )
        victim = nodes.start("victim", 2)  # restarted under the same id
        _connected(sched, "victim")
    results = [h.result(WAIT) for h in handles]
    stats = sched.stats()
    # Nothing acknowledged is lost; each job ended once, completed.
    assert (stats.submitted, stats.completed, stats.failed, stats.cancelled) == (300, 300, 0, 0)
    assert all(sched.job(h.id).status == "completed" for h in handles)
    lost = 0
    for handle, result in zip(handles, results, strict=True):
        runs = sched.runs(handle.id)
        assert result["attempt"] == len(runs)
        for run, after in itertools.pairwise(runs):
            assert run.outcome == "interrupted" and run.worker == "node:victim"
            assert run.error is not None and run.error.type == "postroom.NodeLost"
            lost += 1
            # Sent again within the lease and a second of the kill that cut it.
            killed = max(k for k in kills if k <= after.started_at)
            assert after.started_at - killed <= LEASE + 1.0, (handle.id, after.started_at - killed)
        assert runs[-1].outcome == "completed"
    assert lost >= len(kills)  # each kill cut at least the run it waited for


def test_a_paused_node_is_declared_dead_and_its_late_result_is_fenced(
    sched: Scheduler, listener: Listener, nodes: Nodes, tmp_path: Path
) -> None:
    started = tmp_path / "started"
    sleeper = nodes.start("sleeper", 1)
    _connected(sched, "sleeper")
    handle = sched.submit("hold", {"seconds": 1.0, "started": str(started)})
    wait_until(lambda: started.exists() and started.read_text(), "the run started", timeout=WAIT)
    sleeper.send_signal(signal.SIGSTOP)
    try:
        wait_until(
            lambda: "sleeper" not in {n.node_id for n in sched.nodes()},
            "the paused node declared dead",
            timeout=WAIT,
        )
        backup = nodes.start("backup", 1)
        result: dict[str, Any] = handle.result(WAIT)
        assert result["pid"] == backup.pid
    finally:
        sleeper.send_signal(signal.SIGCONT)
    # The sleeper wakes, finishes its run and reports it under its old lease.
    wait_until(lambda: listener.totals()["sleeper"].stale >= 1, "the late result", timeout=WAIT)
    assert sched.job(handle.id).result == result  # never applied
    first, second = sched.runs(handle.id)
    assert (first.outcome, first.worker) == ("interrupted", "node:sleeper")
    assert (second.outcome, second.worker) == ("completed", "node:backup")
    # Told it has no session, the sleeper says Hello again and serves once more.
    _connected(sched, "sleeper", "backup")
    assert sched.submit("hold", {"seconds": 0.0}).result(WAIT)["attempt"] == 1
