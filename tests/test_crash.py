"""Rule 12 (docs/guarantees.md) with real processes: a durable scheduler killed
with SIGKILL, again and again.

A child process (``tests/crash_child.py``) runs a scheduler with
``store=`` and ``durability="commit"``, fed 5,000 jobs over 100 repos; its
handlers write a line as they begin and one as they end. The test kills it at
seeded random moments (as it starts and recovers, while it submits, and once
everything is submitted and only runs) and starts it again, until every job
ended. The restarted child resubmits only the jobs it had not acknowledged,
with the same idempotency keys, so the jobs the store must hold are exactly
the acknowledged ones. Then the store (read with ``sqlite3``) and the side
files must agree:

- no acknowledged job is missing, and the store holds no other;
- every job ended once, ``completed``, with one completed run, its last;
- no attempt ran twice; an attempt cut short by a kill (begun, never ended),
  and every attempt but the completed one, is an ``interrupted`` run, and no
  kill left more interrupted runs than the child had workers;
- no two runs of one repo overlap, and a repo's jobs start in submission order;
- every kill that caught a handler running left that attempt ``interrupted``.

The moments are drawn from ``POSTROOM_CRASH_SEED`` if set, else from a seed of
its own, which every failure names: ``POSTROOM_CRASH_SEED=<seed> pytest
tests/test_crash.py`` draws the same moments again (a process's timing is its own).
"""

from __future__ import annotations

import bisect
import itertools
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tests.crash_child import WORKERS

JOBS = 5_000
REPOS = 100
SUBMIT_KILLS = 6
"""Kills while the child submits: each once it acknowledged a drawn number of jobs."""
RUN_KILLS = 6
"""Kills once every job is acknowledged: each once a drawn number of jobs ended."""
START_KILLS = 2
"""Kills at a drawn moment of a child's start (its recovery, jobs brought back)."""
START_TIME = 0.1
"""Seconds after a child began to start that such a kill may come: a start
takes some 30-200 ms, so most land within it."""
MIN_KILLS = 10
LEFT = 200
"""Jobs a kill's trigger always leaves to acknowledge (or to end): the phase it
is meant for does not end before the kill comes."""
MAX_DELAY = 0.015
"""Seconds after its trigger a kill may come, drawn: a moment, not a fixed point."""
LIMIT = 90.0
"""Seconds a child may take to reach its kill, or to finish."""
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class Kill:
    """A planned kill: once ``what`` (jobs ``acked``, jobs ``ended``, or ``opening``:
    the child began to start) reaches ``at``, and ``delay`` seconds more."""

    what: str
    at: float
    delay: float


@dataclass(slots=True)
class Killed:
    """A kill as it happened."""

    incarnation: int
    at_ns: int
    """``time.monotonic_ns`` once the child was reaped: it ran no later."""
    wall: float
    """``time.time`` then (the store's times are wall-clock)."""
    acked: int
    """Jobs acknowledged when it died."""
    ended: int
    """Jobs whose handler had ended at least once when it died."""
    started: bool
    """Whether its scheduler had started (else it died in `Scheduler.start`)."""

    @property
    def phase(self) -> str:
        """What the child was doing: ``starting``, ``submitting`` or ``running``."""
        if not self.started:
            return "starting"
        return "submitting" if self.acked < JOBS else "running"


@dataclass(slots=True)
class Progress:
    """What the side files say so far, read as they grow."""

    side: Path
    acked: int = 0
    ended: set[str] = field(default_factory=set)
    opened: set[int] = field(default_factory=set)
    ready: set[int] = field(default_factory=set)
    _files: dict[str, IO[str]] = field(default_factory=dict)
    _partial: dict[str, str] = field(default_factory=dict)

    def _lines(self, name: str) -> list[str]:
        f = self._files.get(name)
        if f is None:
            path = self.side / name
            if not path.exists():
                return []
            f = self._files[name] = path.open(encoding="ascii")
        text = self._partial.get(name, "") + f.read()
        *lines, self._partial[name] = text.split("\n")
        return lines

    def read(self) -> None:
        self.acked += len(self._lines("acked"))
        for line in self._lines("runs"):
            kind, _, job_id, *_ = line.split()
            if kind == "E":
                self.ended.add(job_id)
        for line in self._lines("life"):
            what, incarnation = line.split()
            (self.opened if what == "open" else self.ready).add(int(incarnation))

    def close(self) -> None:
        for f in self._files.values():
            f.close()


def _plan(rng: random.Random) -> list[Kill]:
    submit = sorted(rng.sample(range(1, JOBS - LEFT), SUBMIT_KILLS))
    plan = [Kill("acked", n, rng.uniform(0, MAX_DELAY)) for n in submit]
    # Where the running kills fall is drawn once everything is acknowledged (`_draw_ends`).
    plan += [Kill("ended", -1, rng.uniform(0, MAX_DELAY)) for _ in range(RUN_KILLS)]
    for _ in range(START_KILLS):
        plan.insert(rng.randrange(len(plan) + 1), Kill("opening", 0, rng.uniform(0, START_TIME)))
    return plan


def _draw_ends(rng: random.Random, plan: list[Kill], ended: int) -> list[Kill]:
    """The running kills' thresholds, spread over the jobs not ended yet."""
    running = [k for k in plan if k.what == "ended"]
    if not running or running[0].at >= 0:
        return plan
    room = range(ended + 1, JOBS - LEFT)
    assert len(room) >= len(running), (
        f"only {JOBS - ended} jobs were left to run once all were acknowledged: "
        "the child ran them as fast as it submitted them"
    )
    ats = iter(sorted(rng.sample(room, len(running))))
    return [Kill(k.what, next(ats), k.delay) if k.what == "ended" else k for k in plan]


def _due(kill: Kill, progress: Progress, incarnation: int, acked: int, ended: int) -> bool:
    """Whether ``kill``'s trigger came, in the child ``incarnation``, which began
    with ``acked`` jobs acknowledged and ``ended`` ended."""
    if kill.what == "opening":
        return incarnation in progress.opened
    # A kill meant for submitting (running) comes only once this child started
    # and acknowledged (ended) a job of its own: the last kill may have overshot
    # the next one's threshold, and jobs brought back run while `start` works.
    if incarnation not in progress.ready:
        return False
    if kill.what == "acked":
        return progress.acked >= max(kill.at, acked + 1)
    return 0 <= kill.at <= len(progress.ended) and len(progress.ended) > ended


def _spawn(store: Path, side: Path, incarnation: int, log: IO[bytes]) -> subprocess.Popen[bytes]:
    args = (store, side, JOBS, REPOS, incarnation)
    return subprocess.Popen(
        [sys.executable, "-m", "tests.crash_child", *map(str, args)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]


def _crash_until_done(
    store: Path, side: Path, rng: random.Random, where: str
) -> tuple[list[Killed], int]:
    """Run the child, killing it as planned, until one run ends every job; the
    kills, and how many children ran."""
    plan = _plan(rng)
    progress = Progress(side)
    kills: list[Killed] = []
    incarnation = 0
    try:
        while True:
            log_path = side / f"child-{incarnation}.log"
            with log_path.open("wb") as log:
                child = _spawn(store, side, incarnation, log)
            try:
                spawned = time.monotonic()
                kill = plan[0] if plan else None
                before = (progress.acked, len(progress.ended))
                while child.poll() is None:
                    progress.read()
                    if kill is not None and kill.what == "ended" and progress.acked == JOBS:
                        plan = _draw_ends(rng, plan, len(progress.ended))
                        kill = plan[0]
                    if kill is not None and _due(kill, progress, incarnation, *before):
                        # A drawn moment after the trigger (not a wait for anything).
                        time.sleep(kill.delay)
                        child.send_signal(signal.SIGKILL)
                        break
                    assert time.monotonic() - spawned < LIMIT, (
                        f"{where}: child {incarnation} took over {LIMIT}s\n"
                        + _tail(log_path)
                    )
                    # Another process's progress: nothing to await but its files.
                    time.sleep(0.001)
                code = child.wait(timeout=LIMIT)
            finally:
                if child.poll() is None:
                    child.kill()
                    child.wait()
            died_ns, wall = time.monotonic_ns(), time.time()
            progress.read()
            if code == -signal.SIGKILL:
                ended, started = len(progress.ended), incarnation in progress.ready
                kills.append(Killed(incarnation, died_ns, wall, progress.acked, ended, started))
                plan.pop(0)
                incarnation += 1
                continue
            assert code == 0, f"{where}: child {incarnation} exited {code}\n" + _tail(log_path)
            done = (side / "done").read_text(encoding="ascii").split()
            assert done == [str(incarnation)], f"{where}: children that said done: {done}"
            return kills, incarnation + 1
    finally:
        progress.close()


@dataclass(frozen=True, slots=True)
class Line:
    """A line of the ``runs`` side file: a handler began (``S``) or ended (``E``)."""

    kind: str
    incarnation: int
    job_id: str
    attempt: int
    repo: str
    at_ns: int


@dataclass(frozen=True, slots=True)
class Stored:
    """The store after the last child, as ``sqlite3`` reads it."""

    jobs: dict[str, tuple[int, str, int, str, str]]
    """id -> (seq, status, attempts, repo, idempotency_key)."""
    runs: dict[tuple[str, int], tuple[str | None, float]]
    """(job id, attempt) -> (outcome, started_at)."""
    keys: dict[str, str]
    """idempotency key -> job id."""


def _read_store(store: Path) -> Stored:
    conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    try:
        jobs = {
            row[0]: row[1:]
            for row in conn.execute(
                "SELECT id, seq, status, attempts, repo, idempotency_key FROM jobs"
            )
        }
        runs = {
            (job_id, attempt): (outcome, started_at)
            for job_id, attempt, outcome, started_at in conn.execute(
                "SELECT job_id, attempt, outcome, started_at FROM runs"
            )
        }
        keys = dict(conn.execute("SELECT key, job_id FROM idempotency_keys").fetchall())
    finally:
        conn.close()
    return Stored(jobs, runs, keys)


def _read_acked(side: Path, where: str) -> dict[int, str]:
    acked: dict[int, str] = {}
    for text in (side / "acked").read_text(encoding="ascii").splitlines():
        n, job_id = text.split()
        assert int(n) not in acked, f"{where}: job {n} acknowledged twice"
        acked[int(n)] = job_id
    return acked


def _read_lines(side: Path) -> list[Line]:
    lines = []
    for text in (side / "runs").read_text(encoding="ascii").splitlines():
        kind, incarnation, job_id, attempt, repo, at_ns = text.split()
        lines.append(Line(kind, int(incarnation), job_id, int(attempt), repo, int(at_ns)))
    return lines


def _check_acknowledged(acked: dict[int, str], stored: Stored, where: str) -> None:
    """Every job acknowledged, each once; the store holds those and no other."""
    assert sorted(acked) == list(range(JOBS)), where
    assert len(set(acked.values())) == JOBS, f"{where}: two numbers acknowledged as one job"
    missing = set(acked.values()) - set(stored.jobs)
    assert not missing, f"{where}: {len(missing)} acknowledged jobs missing: {sorted(missing)[:5]}"
    extra = set(stored.jobs) - set(acked.values())
    assert not extra, f"{where}: {len(extra)} jobs nobody acknowledged: {sorted(extra)[:5]}"
    assert len(stored.keys) == JOBS, f"{where}: {len(stored.keys)} idempotency keys held"
    for n, job_id in acked.items():
        _, _, _, repo, key = stored.jobs[job_id]
        assert (repo, key, stored.keys.get(key)) == (f"repo-{n % REPOS}", f"job-{n}", job_id), (
            where,
            n,
        )


def _check_one_end(stored: Stored, where: str) -> None:
    """Each job completed once: its runs are its attempts, the last one completed,
    every other interrupted (the handlers never fail)."""
    by_job: dict[str, dict[int, str | None]] = defaultdict(dict)
    for (job_id, attempt), (outcome, _) in stored.runs.items():
        by_job[job_id][attempt] = outcome
    assert set(by_job) <= set(stored.jobs), f"{where}: runs of jobs the store has not"
    for job_id, (_, status, attempts, _, _) in stored.jobs.items():
        outcomes = by_job.get(job_id, {})
        assert status == "completed", f"{where}: job {job_id} ended {status}: {outcomes}"
        assert sorted(outcomes) == list(range(1, attempts + 1)), (where, job_id, outcomes)
        assert outcomes[attempts] == "completed", (where, job_id, outcomes)
        earlier = [outcome for attempt, outcome in outcomes.items() if attempt != attempts]
        assert all(o == "interrupted" for o in earlier), (where, job_id, outcomes)


def _check_executions(
    lines: list[Line], stored: Stored, kills: list[Killed], where: str
) -> dict[str, int]:
    """Each attempt ran at most once, and only those a kill cut short ran again;
    the figures for the report."""
    starts = Counter((ln.job_id, ln.attempt) for ln in lines if ln.kind == "S")
    ends = Counter((ln.job_id, ln.attempt) for ln in lines if ln.kind == "E")
    twice = {run: count for run, count in starts.items() if count > 1}
    assert not twice, f"{where}: attempts run more than once: {twice}"
    assert set(ends) <= set(starts), f"{where}: a handler ended that never began"
    unknown = set(starts) - set(stored.runs)
    assert not unknown, f"{where}: handlers ran attempts the store has no run of: {unknown}"
    for run, (outcome, _) in stored.runs.items():
        if outcome == "completed":
            assert starts[run] == ends[run] == 1, f"{where}: {run} completed, its handler did not"

    # Every kill that caught a handler running left that attempt interrupted, and
    # only a killed child left a handler running.
    killed = {k.incarnation for k in kills}
    open_runs: dict[int, set[tuple[str, int]]] = defaultdict(set)
    for ln in lines:
        if ln.kind == "S":
            open_runs[ln.incarnation].add((ln.job_id, ln.attempt))
        else:
            open_runs[ln.incarnation].discard((ln.job_id, ln.attempt))
    caught = 0
    for incarnation, cut_short in open_runs.items():
        if not cut_short:
            continue
        assert incarnation in killed, f"{where}: child {incarnation} left {cut_short} running"
        caught += 1
        for run in cut_short:
            assert stored.runs[run][0] == "interrupted", (where, incarnation, run)
    assert caught >= 1, f"{where}: no kill caught a handler running"

    # Each interrupted run began before a kill, and no kill interrupted more
    # attempts than the child had workers: a run is never marked interrupted
    # but by the kill that cut it short.
    walls = sorted(k.wall for k in kills)
    per_kill: Counter[int] = Counter()
    for run, (outcome, started_at) in stored.runs.items():
        if outcome == "interrupted":
            index = bisect.bisect_left(walls, started_at)
            assert index < len(walls), f"{where}: {run} interrupted after the last kill"
            per_kill[index] += 1
    assert max(per_kill.values(), default=0) <= WORKERS, (where, per_kill)
    return {
        "caught": caught,
        "interrupted": sum(per_kill.values()),
        "reruns": sum(starts.values()) - len({job_id for job_id, _ in starts}),
        "cut_short": len(set(starts) - set(ends)),
    }


def _check_repos(
    lines: list[Line], stored: Stored, acked: dict[int, str], kills: list[Killed], where: str
) -> None:
    """No two runs of a repo overlap (a run cut short lasts until its child
    died), and a repo's jobs start in submission order."""
    died = {k.incarnation: k.at_ns for k in kills}
    spans: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
    begun: dict[tuple[str, int], Line] = {}
    for ln in lines:
        if ln.kind == "S":
            begun[ln.job_id, ln.attempt] = ln
        else:
            start = begun.pop((ln.job_id, ln.attempt))
            spans[ln.repo].append((start.at_ns, ln.at_ns, ln.job_id))
    for start in begun.values():
        spans[start.repo].append((start.at_ns, died[start.incarnation], start.job_id))
    numbers = {job_id: n for n, job_id in acked.items()}
    for repo, ran in spans.items():
        ran.sort()
        for (_, end, before), (start, _, after) in itertools.pairwise(ran):
            assert end < start, f"{where}: {repo}: {after} began before {before} ended"
        # A job's attempts follow each other, then the next job's begin.
        order = [job_id for _, _, job_id in ran]
        order = [job_id for i, job_id in enumerate(order) if i == 0 or job_id != order[i - 1]]
        seqs = [stored.jobs[job_id][0] for job_id in order]
        assert seqs == sorted(set(seqs)), f"{where}: {repo} ran out of submission order: {order}"
        # And the store's submission order is the order the child submitted in.
        submitted = [numbers[job_id] for job_id in order]
        assert submitted == sorted(submitted), f"{where}: {repo}: {submitted}"


def test_kill_9_loses_nothing_acknowledged_and_reruns_only_what_it_cut_short(
    tmp_path: Path,
) -> None:
    seed = int(os.environ.get("POSTROOM_CRASH_SEED") or random.SystemRandom().randrange(2**32))
    where = f"seed {seed}"
    store, side = tmp_path / "jobs.db", tmp_path / "side"
    side.mkdir()
    began = time.monotonic()
    kills, children = _crash_until_done(store, side, random.Random(seed), where)
    took = time.monotonic() - began

    phases = Counter(k.phase for k in kills)
    assert len(kills) >= MIN_KILLS, (where, kills)
    assert phases["submitting"] >= SUBMIT_KILLS, (where, kills)
    assert phases["running"] >= RUN_KILLS, (where, kills)
    assert all(k.ended < JOBS for k in kills), f"{where}: a kill came after the last job"

    stored = _read_store(store)
    acked = _read_acked(side, where)
    lines = _read_lines(side)
    _check_acknowledged(acked, stored, where)
    _check_one_end(stored, where)
    figures = _check_executions(lines, stored, kills, where)
    _check_repos(lines, stored, acked, kills, where)
    print(
        f"\n{where}: {len(kills)} kills ({phases['starting']} starting, "
        f"{phases['submitting']} submitting, {phases['running']} running) "
        f"over {children} children, {figures['caught']} caught handlers running; "
        f"{figures['interrupted']} interrupted runs, {figures['cut_short']} handlers cut "
        f"short, {figures['reruns']} re-executions; {took:.1f}s"
    )
