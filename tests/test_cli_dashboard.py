"""``postroom dashboard --store PATH`` as a real process: the admin API, read-only,
over a store a scheduler wrote and left, stopped by SIGINT or SIGTERM."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from actors import Scheduler
from tests.helpers import WAIT

ROOT = Path(__file__).resolve().parent.parent
URL = re.compile(r"at (http://127\.0\.0\.1:(\d+)/)$")


def _dashboard(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "actors.cli", "dashboard", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def _get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=WAIT) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _post(url: str, token: str) -> tuple[int, Any]:
    request = urllib.request.Request(
        url, data=b"{}", method="POST", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=WAIT) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _written_store(path: Path) -> dict[str, str]:
    """A store with a completed job, a failed one and a paused schedule, left closed."""
    sched = Scheduler(store=str(path))

    @sched.handler("work")
    def work(ctx: Any, payload: Any) -> Any:
        return payload

    @sched.handler("boom")
    def boom(ctx: Any, payload: Any) -> None:
        raise ValueError("post-mortem material")

    with sched:
        done = sched.submit("work", {"n": 1}, repo="r1")
        done.result(WAIT)
        failed = sched.submit("boom")
        with pytest.raises(Exception, match="post-mortem material"):
            failed.result(WAIT)
        schedule = sched.every("work", 3600, start=time.time() + 3600, id="hourly")
        sched.pause(schedule.id)
    return {"done": done.id, "failed": failed.id, "schedule": schedule.id}


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_dashboard_serves_a_store_read_only(tmp_path: Path, stop: signal.Signals) -> None:
    store = tmp_path / "jobs.db"
    ids = _written_store(store)
    process = _dashboard("--store", str(store), "--port", "0")
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        match = URL.search(line)
        assert match, (line, process.stderr.read() if process.poll() is not None else "")
        url = match[1]

        assert _get(url + "readyz") == (200, {"status": "ready"})
        status, stats = _get(url + "api/v1/stats")
        assert status == 200
        assert (stats["submitted"], stats["completed"], stats["failed"]) == (2, 1, 1)
        assert stats["queues"][0]["name"] == "default"
        status, jobs = _get(url + "api/v1/jobs?status=failed")
        assert [job["id"] for job in jobs["jobs"]] == [ids["failed"]]
        status, one = _get(url + f"api/v1/jobs/{ids['failed']}")
        assert "post-mortem material" in one["runs"][0]["error"]["traceback"]
        status, schedules = _get(url + "api/v1/schedules")
        (schedule,) = schedules["schedules"]
        assert (schedule["id"], schedule["paused"], schedule["next_fire"]) == ("hourly", True, None)
        assert _get(url + "api/v1/schedules/hourly")[1]["schedule"]["kind"] == "every"
        assert _get(url + "api/v1/jobs/nope")[0] == 404
        assert _get(url + "api/v1/schedules/nope")[0] == 404
        assert _get(url + "api/v1/jobs?limit=abc")[0] == 400
        assert _get(url + "api/v1/nodes") == (200, {"nodes": []})
        for path in (
            f"api/v1/jobs/{ids['failed']}/retry",
            f"api/v1/jobs/{ids['done']}/cancel",
            "api/v1/schedules/hourly/resume",
            "api/v1/queues/default/resize",
        ):
            status, body = _post(url + path, "any-token-at-all-here")
            assert (status, body["error"]) == (403, "read_only")
        assert _get(url + "metrics")[0] == 404  # no scheduler, no metrics

        process.send_signal(stop)
        out, err = process.communicate(timeout=WAIT)
        assert process.returncode == 0, err
        assert "stopped" in out
        assert "Traceback" not in err
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_dashboard_refuses_a_missing_store(tmp_path: Path) -> None:
    process = _dashboard("--store", str(tmp_path / "missing.db"), "--port", "0")
    _out, err = process.communicate(timeout=WAIT * 2)
    assert process.returncode == 2
    assert err.startswith("postroom dashboard: no store at")
    assert len(err.splitlines()) == 1
