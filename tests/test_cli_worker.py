"""``postroom worker``: real node processes against a fake scheduler on loopback.

A wrong --app is one line and exit 2; a node process says Hello, runs a job and,
on SIGTERM, drains: Bye, exit 0. ``--processes 2`` brings two nodes with ids
ID-1 and ID-2; SIGTERM to the supervisor ends both, and a child killed
unexpectedly is started again.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from actors.cli import main
from actors.messages import (
    Bye,
    Credit,
    Drain,
    Heartbeat,
    Hello,
    Job,
    NodeFinished,
    Progress,
    Run,
    Welcome,
)
from tests import node_app
from tests.helpers import wait_until
from transport.io import SchedulerIO
from transport.protocol import NodeMessage

ROOT = Path(__file__).resolve().parent.parent
PROCESS_WAIT = 30.0
"""A Python process that imports postroom may take long to start on a busy machine."""
M = TypeVar("M")


class Fake:
    """A scheduler socket that several nodes can reach; messages come with their peer."""

    def __init__(self) -> None:
        self.got: queue.Queue[tuple[bytes, NodeMessage]] = queue.Queue()
        self.io = SchedulerIO("tcp://127.0.0.1:*", lambda peer, msg: self.got.put((peer, msg)))

    def next(self) -> tuple[bytes, NodeMessage]:
        while True:
            peer, msg = self.got.get(timeout=PROCESS_WAIT)
            if not isinstance(msg, Heartbeat):
                return peer, msg

    def expect(self, kind: type[M]) -> tuple[bytes, M]:
        peer, msg = self.next()
        assert isinstance(msg, kind), f"expected {kind.__name__}, got {msg!r}"
        return peer, msg


@pytest.fixture
def fake() -> Iterator[Fake]:
    sched = Fake()
    yield sched
    sched.io.close()


def _worker(fake: Fake, *extra: str, app: str = "tests.node_app:handlers") -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "actors.cli", "worker", "--app", app]
    argv += ["--connect", fake.io.endpoint, "--insecure", *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(argv, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)


def _ended(process: subprocess.Popen[str]) -> tuple[int, str]:
    try:
        _, err = process.communicate(timeout=PROCESS_WAIT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    return process.returncode, err


@pytest.mark.parametrize(
    ("app", "says"),
    [
        ("tests.node_app", "MODULE:ATTR"),
        ("tests.no_such_module:handlers", "cannot import module 'tests.no_such_module'"),
        ("tests.node_app_broken:handlers", "raised RuntimeError: the app's own bug"),
        ("tests.node_app:missing", "has no attribute 'missing'"),
        ("tests.node_app:not_an_app", "is a int, not a Handlers or a Scheduler"),
    ],
)
def test_a_wrong_app_is_one_line_and_exit_2(
    app: str, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["worker", "--app", app, "--connect", "tcp://127.0.0.1:9", "--insecure"])
    captured = capsys.readouterr()
    assert code == 2
    assert says in captured.err
    assert captured.err.count("\n") == 1 and captured.err.startswith("postroom worker: ")


def test_keys_missing_or_insecure_off_loopback_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    base = ["worker", "--app", "tests.node_app:handlers"]
    assert main([*base, "--connect", "tcp://127.0.0.1:9"]) == 2
    assert "key" in capsys.readouterr().err
    assert main([*base, "--connect", "tcp://10.9.9.9:9", "--insecure"]) == 2
    assert "loopback" in capsys.readouterr().err
    assert main([*base, "--connect", "tcp://127.0.0.1:9", "--insecure", "--processes", "0"]) == 2
    assert "--processes" in capsys.readouterr().err


def test_a_node_process_runs_a_job_and_drains_on_sigterm(fake: Fake) -> None:
    # A Scheduler as the app: its handlers are the node's.
    process = _worker(fake, "--node-id", "w", "--capacity", "2", app="tests.node_app:scheduler")
    try:
        peer, hello = fake.expect(Hello)
        names = tuple(node_app.handlers.names())
        assert (hello.node_id, hello.handlers, hello.capacity) == ("w", names, 2)
        fake.io.send(peer, Welcome("w", 30.0, 10.0))
        assert fake.expect(Credit)[1].slots == 2
        fake.io.send(peer, Run(Job("j1", "echo", {"x": 1}, 1), 1))
        _, done = fake.expect(NodeFinished)
        assert (done.job_id, done.outcome.status, done.outcome.result) == (
            "j1",
            "completed",
            {"x": 1},
        )
        assert fake.expect(Credit)[1].slots == 1
        process.send_signal(signal.SIGTERM)
        fake.expect(Drain)
        assert fake.expect(Bye)[1] == Bye("w")
        code, err = _ended(process)
        assert code == 0, err
        assert "draining" in err
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc for child pids")
def test_processes_2_brings_two_nodes_restarts_a_killed_one_and_sigterm_ends_both(
    fake: Fake,
) -> None:
    supervisor = _worker(fake, "--processes", "2", "--node-id", "w")
    try:
        peers: dict[str, bytes] = {}
        while len(peers) < 2:
            peer, hello = fake.expect(Hello)
            peers[hello.node_id] = peer
        assert sorted(peers) == ["w-1", "w-2"]
        assert peers["w-1"] != peers["w-2"]
        for node_id, peer in peers.items():
            fake.io.send(peer, Welcome(node_id, 30.0, 10.0))
        assert [fake.expect(Credit)[1].slots for _ in peers] == [1, 1]
        # A child killed unexpectedly is started again, with its id.
        children = _children(supervisor.pid)
        assert len(children) == 2
        os.kill(children[0], signal.SIGKILL)
        peer, hello = fake.expect(Hello)
        again = hello.node_id
        assert again in peers
        peers[again] = peer
        fake.io.send(peer, Welcome(again, 30.0, 10.0))
        fake.expect(Credit)
        assert len(_children(supervisor.pid)) == 2
        supervisor.send_signal(signal.SIGTERM)
        byes: set[str] = set()
        drains = 0
        while len(byes) < 2:
            _, msg = fake.next()
            if isinstance(msg, Drain):
                drains += 1
            elif isinstance(msg, Bye):
                byes.add(msg.node_id)
            else:
                pytest.fail(f"unexpected {msg!r}")
        assert (byes, drains) == ({"w-1", "w-2"}, 2)
        code, err = _ended(supervisor)
        assert code == 0, err
        assert "starting it again" in err
    finally:
        if supervisor.poll() is None:
            for pid in _children(supervisor.pid):
                os.kill(pid, signal.SIGKILL)
            supervisor.kill()
            supervisor.communicate()



def test_hard_timeout_kills_a_stuck_handler_and_the_node_process_serves_on(fake: Fake) -> None:
    app = "tests.slot_apps:handlers"
    process = _worker(fake, "--node-id", "h", "--hard-timeout", "0.2", app=app)
    try:
        peer, _ = fake.expect(Hello)
        fake.io.send(peer, Welcome("h", 30.0, 10.0))
        fake.expect(Credit)
        # Spins past its timeout, deaf to its cancel: only a kill ends it.
        fake.io.send(peer, Run(Job("j1", "stuck_spin", None, 1, timeout=0.3), 1))
        _, msg = fake.next()
        while not isinstance(msg, NodeFinished):
            _, msg = fake.next()
        assert (msg.job_id, msg.outcome.status, msg.outcome.timed_out) == ("j1", "failed", True)
        assert msg.outcome.error is not None
        assert "killed 0.2s past its deadline" in msg.outcome.error.message
        fake.expect(Credit)
        fake.io.send(peer, Run(Job("j2", "echo", 5, 2), 2))
        _, done = fake.expect(NodeFinished)
        assert done.outcome.status == "completed"
        child = done.outcome.result["pid"]  # type: ignore[index]
        assert child not in (process.pid, os.getpid())
        process.send_signal(signal.SIGTERM)
        code, err = _ended(process)
        assert code == 0, err
        with pytest.raises(ProcessLookupError):  # the slot's process ended with the node
            os.kill(child, 0)
    finally:
        if process.poll() is None:
            process.kill()


def test_a_node_killed_outright_takes_its_stuck_slot_process_with_it(fake: Fake) -> None:
    app = "tests.slot_apps:handlers"
    process = _worker(fake, "--node-id", "k", "--hard-timeout", "30", app=app)
    try:
        peer, _ = fake.expect(Hello)
        fake.io.send(peer, Welcome("k", 30.0, 10.0))
        fake.expect(Credit)
        fake.io.send(peer, Run(Job("j1", "echo", 5, 1), 1))
        _, done = fake.expect(NodeFinished)
        child = done.outcome.result["pid"]  # type: ignore[index]
        # Stuck in C code holding the GIL, deaf to everything but a kill, with
        # no deadline near: it cannot even notice its node is gone.
        fake.io.send(peer, Run(Job("j2", "stuck_in_c", None, 2), 2))
        _, msg = fake.next()
        while not isinstance(msg, Progress):  # credit for the slot j1 freed, first
            _, msg = fake.next()
        assert msg.job_id == "j2"  # it is in the C call now
        process.kill()  # SIGKILL: the node cannot tell its child anything
        process.wait(PROCESS_WAIT)
        gone = "the slot process gone with its node"
        wait_until(lambda: not _alive(child), gone, timeout=PROCESS_WAIT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(PROCESS_WAIT)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie waits for its reaper: it runs no more
