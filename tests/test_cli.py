"""`postroom demo`: its output on a pipe and on a TTY, and the pieces of its live line.

The demo runs for real (a small workload: well under two seconds); the tests read
what it printed. They wait on nothing but the demo itself returning.
"""

from __future__ import annotations

import io
import json
import re
import threading
import urllib.error
import urllib.request

import pytest

from actors import JobContext, Scheduler
from actors.cli import ROLLUP_CRON, demo, fit, furthest, main, parser, progress_text
from tests.helpers import WAIT

DEMO = ["demo", "--jobs", "30", "--seed", "7"]
ROW = re.compile(r"^  (\S.*?)\s{2,}(\S.*)$")


def summary_rows(out: str) -> dict[str, str]:
    """The summary table's rows, by name."""
    rows = {}
    for line in out.splitlines():
        match = ROW.match(line)
        if match:
            rows[match[1]] = match[2]
    return rows


def counts(text: str) -> int:
    """The sum of the counts in ``"3 completed, 1 cancelled"`` (0 for ``"none"``)."""
    return sum(int(n) for n in re.findall(r"(\d+) \w+", text))


def test_demo_on_a_pipe_prints_live_lines_and_the_new_summary_rows(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(DEMO) == 0
    out = capsys.readouterr().out
    assert "\r" not in out
    assert out.startswith("postroom demo: 30 jobs, 12 repos, 8 workers, 2 more on queue 'high'")

    lines = [line for line in out.splitlines() if line.startswith("done ")]
    assert lines, out
    # Progress lines ("furthest: build repo-03 50% ...") depend on when the display
    # polls; what they show is tested without timing in test_furthest_* below.
    progress = [line for line in lines if "furthest: " in line]
    assert all(re.search(r"furthest: \w+ .*\d+% \S", line) for line in progress), out
    assert all("default " in line and "high " in line for line in lines), out
    last = re.match(r"done (\d+)/(\d+)", lines[-1])
    assert last is not None
    assert last[1] == last[2], lines[-1]

    rows = summary_rows(out)
    submitted = re.fullmatch(
        r"(\d+) \((\d+) CI jobs?, (\d+) deploys?, (\d+) by schedules\)", rows["submitted"]
    )
    assert submitted is not None, rows["submitted"]
    total, ci, deploys, scheduled = map(int, submitted.groups())
    assert ci == 30
    assert deploys >= 1
    assert total == ci + deploys + scheduled
    finished = [int(rows[name].split()[0]) for name in ("completed", "failed", "cancelled")]
    assert sum(finished) == total  # every job ended before the summary

    high = re.fullmatch(r"2 workers: (\d+) of (\d+) jobs? ran, wait p50 .*", rows["queue high"])
    assert high is not None, rows["queue high"]
    ran, on_high = map(int, high.groups())
    assert on_high == 2 * deploys  # each hotfix build and its deploy
    assert ran >= deploys  # the hotfix builds ran, at least (a deploy may never have)
    default = re.fullmatch(r"8 workers: (\d+) of (\d+) jobs? ran, .*", rows["queue default"])
    assert default is not None, rows["queue default"]
    assert int(default[2]) + on_high == total

    after = re.fullmatch(r"(\d+) after hotfix builds: (.*)", rows["deploys"])
    assert after is not None, rows["deploys"]
    assert int(after[1]) == deploys
    assert counts(after[2]) == deploys

    fires = 0
    for name, what in (("rollup", f"cron '{ROLLUP_CRON}'"), ("probe", "every 0.25s")):
        row = rows[f"schedule {name}"]
        match = re.fullmatch(
            rf"{re.escape(what)}: (\d+) fires?, (\d+) misfires?, (\d+) skips?; its jobs: (.*)",
            row,
        )
        assert match is not None, row
        assert int(match[1]) >= 1, row
        assert int(match[2]) == 0, row  # fires are never a minute late here
        assert counts(match[4]) == int(match[1]), row  # a job per fire, found by schedule_id
        assert "completed" in match[4], row
        fires += int(match[1])
    assert fires == scheduled


def test_demo_on_a_tty_rewrites_one_live_line(monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setenv("COLUMNS", "100")
    out = Terminal()
    assert demo(parser().parse_args(DEMO), out) == 0
    text = out.getvalue()
    header, live, summary = text.split("\n", 2)
    assert header.startswith("postroom demo:")
    frames = live.split("\r")[1:]
    assert frames, text
    assert all(len(frame) <= 99 for frame in frames)  # never wraps a 100-column terminal
    shown = [frame for frame in frames if "furthest: " in frame]
    assert all("%" in frame for frame in shown), frames
    assert frames[-1].startswith("done ")
    assert "schedule rollup" in summary
    assert "queue high" in summary


def test_the_live_line_drops_the_least_telling_pieces_to_fit() -> None:
    pieces = [(0, "done 1/9"), (2, "default 1/8 busy"), (5, "9 jobs/s"), (1, "furthest: x 50%")]
    assert fit(pieces, None) == "done 1/9  default 1/8 busy  9 jobs/s  furthest: x 50%"
    assert fit(pieces, 44) == "done 1/9  default 1/8 busy  furthest: x 50%"
    assert fit(pieces, 30) == "done 1/9  furthest: x 50%"
    assert fit(pieces, 5) == "done "  # the last piece is cut rather than dropped


def test_furthest_is_the_running_job_with_the_most_progress() -> None:
    reported = {n: threading.Event() for n in (1, 2, 3)}
    release = threading.Event()

    def step(ctx: JobContext, payload: dict[str, int]) -> None:
        if payload["n"] != 3:  # job 3 reports nothing
            ctx.progress(payload["n"] / 4, f"part {payload['n']}")
        reported[payload["n"]].set()
        release.wait(WAIT)

    with Scheduler(workers=3, metrics=False) as sched:
        sched.register("step", step)
        assert furthest(sched) is None
        handles = [sched.submit("step", {"n": n}, repo=f"r{n}") for n in (1, 2, 3)]
        for event in reported.values():
            assert event.wait(WAIT)
        lead = furthest(sched)
        release.set()
        for handle in handles:
            assert handle.wait(WAIT)
    assert lead is not None
    assert lead.id == handles[1].id
    assert progress_text(lead) == "step r2 50% part 2"


def test_demo_options_are_still_checked(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["demo", "--jobs", "-1"])
    assert exit_.value.code == 2
    assert "--jobs: must be an integer >= 0, not '-1'" in capsys.readouterr().err


LINGER_JOBS = 10
"""Jobs the --serve test makes while the demo lingers."""


def test_demo_serve_prints_the_url_and_token_and_keeps_the_dashboard_live() -> None:
    """``--serve``: the page and the API answer on the printed URL while the demo
    runs and after its jobs are done; the printed token mutates; after the demo
    the server is gone."""
    seen: dict[str, object] = {}

    def stay(url: str, out: io.StringIO) -> None:
        # Called once the jobs are done: the dashboard is still live.
        printed = re.search(r"^dashboard: (\S+)  admin token: (\S+)$", out.getvalue(), re.M)
        assert printed is not None, out.getvalue()
        assert printed[1] == url
        with urllib.request.urlopen(url, timeout=WAIT) as page:
            seen["page"] = page.read()
        with urllib.request.urlopen(url + "api/v1/stats", timeout=WAIT) as stats:
            seen["stats"] = json.load(stats)
        pause = urllib.request.Request(url + "api/v1/schedules/probe/pause", method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(pause, timeout=WAIT)
        seen["no token"] = refused.value.code
        pause.add_header("Authorization", f"Bearer {printed[2]}")
        with urllib.request.urlopen(pause, timeout=WAIT) as paused:
            seen["paused"] = json.load(paused)["schedule"]["paused"]
        # Jobs made while it lingers (a paused schedule still triggers) do not
        # count in the workload's throughput.
        trigger = urllib.request.Request(url + "api/v1/schedules/probe/trigger", method="POST")
        trigger.add_header("Authorization", f"Bearer {printed[2]}")
        for _ in range(LINGER_JOBS):
            with urllib.request.urlopen(trigger, timeout=WAIT) as triggered:
                job = json.load(triggered)["job"]
            assert job is not None
            while job["finished_at"] is None:  # a probe: a few ms
                with urllib.request.urlopen(f"{url}api/v1/jobs/{job['id']}", timeout=WAIT) as r:
                    job = json.load(r)["job"]
        seen["url"] = url

    out = io.StringIO()
    assert demo(parser().parse_args([*DEMO, "--serve", "0"]), out, stay=stay) == 0
    assert b"<title>postroom</title>" in seen["page"]  # type: ignore[operator]
    stats = seen["stats"]
    assert isinstance(stats, dict)
    assert stats["submitted"] >= 30
    assert seen["no token"] == 401
    assert seen["paused"] is True
    rows = summary_rows(out.getvalue())
    submitted = int(rows["submitted"].split()[0])
    throughput = float(rows["throughput"].split()[0].replace(",", ""))
    wall = float(rows["wall time"].split()[0])
    # Rounded as printed (to a job/s and 10 ms), throughput x wall time is off the
    # count it was made of by less than the slack; the lingering jobs are beyond it.
    slack = 1 + 0.5 * wall + 0.005 * throughput
    assert throughput * wall < submitted - LINGER_JOBS + slack
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(str(seen["url"]) + "healthz", timeout=WAIT)


def test_demo_serve_takes_a_port() -> None:
    assert parser().parse_args([*DEMO, "--serve", "8080"]).serve == 8080
    assert parser().parse_args(DEMO).serve is None
    with pytest.raises(SystemExit):
        parser().parse_args([*DEMO, "--serve", "65536"])
