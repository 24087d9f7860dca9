"""``postroom serve``: a scheduler as a process of its own, with a node process.

Both are real processes: the scheduler's jobs come from a schedule its app
declares, run on a ``postroom worker`` node, and write a side file; SIGTERM
ends both cleanly.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import wait_until

ROOT = Path(__file__).resolve().parent.parent
WAIT = 30.0


def _postroom(*args: str, side: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "actors.cli", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "POSTROOM_TEST_SIDE": str(side)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_serve_runs_a_scheduler_whose_jobs_run_on_a_node_and_stops_on_sigterm(
    tmp_path: Path,
) -> None:
    side = tmp_path / "events"
    serve = _postroom(
        "serve", "--app", "tests.serve_app:make", "--listen", "tcp://127.0.0.1:0", "--insecure",
        side=side,
    )  # fmt: skip
    node = None
    try:
        assert serve.stdout is not None
        line = serve.stdout.readline()
        found = re.search(r"nodes on (tcp://\S+)", line)
        assert found, line
        node = _postroom(
            "worker", "--app", "tests.node_app:handlers", "--connect", found.group(1),
            "--insecure", "--node-id", "n1",
            side=side,
        )  # fmt: skip
        wait_until(
            lambda: side.exists() and side.read_text().count("end ") >= 3,
            "three scheduled jobs run on the node",
            timeout=WAIT,
        )
        pids = {int(line.split()[4]) for line in side.read_text().splitlines()}
        assert pids == {node.pid}  # on the node, not in the scheduler's process
        serve.send_signal(signal.SIGTERM)
        out, err = serve.communicate(timeout=WAIT)
        assert serve.returncode == 0, err
        assert "stopped" in out
        # The scheduler drained its node on the way out: it exits 0 too.
        assert node.wait(WAIT) == 0
    finally:
        for proc in (serve, node):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.communicate()


@pytest.mark.parametrize(
    ("app", "says"),
    [
        ("tests.serve_app", "MODULE:ATTR"),
        ("tests.serve_app:not_a_scheduler", "is a int, not a Scheduler"),
        ("tests.no_such_module:make", "cannot import module"),
    ],
)
def test_serve_refuses_a_bad_app_in_one_line(tmp_path: Path, app: str, says: str) -> None:
    serve = _postroom("serve", "--app", app, side=tmp_path / "events")
    _out, err = serve.communicate(timeout=WAIT)
    assert serve.returncode == 2
    assert says in err
    assert len(err.strip().splitlines()) == 1, err


def test_serve_refuses_plain_tcp_off_loopback(tmp_path: Path) -> None:
    serve = _postroom(
        "serve", "--app", "tests.serve_app:make", "--listen", "tcp://0.0.0.0:0", "--insecure",
        side=tmp_path / "events",
    )  # fmt: skip
    _out, err = serve.communicate(timeout=WAIT)
    assert serve.returncode == 2
    assert "loopback" in err
