"""The process that ``tests/test_crash.py`` kills: a durable scheduler fed numbered jobs.

Run as ``python -m tests.crash_child STORE DIR JOBS REPOS INCARNATION``. It starts
a scheduler on ``STORE`` (``durability="commit"``), which recovers what the last
incarnation left, then submits every job ``0 <= n < JOBS`` that ``DIR/acked`` does
not list yet (from a few threads, each in order of ``n``), each to repo
``repo-{n % REPOS}`` with the idempotency key ``job-{n}``. The key is what
makes a resubmission safe: a job whose commit went through but whose submitter
was killed before it wrote its acknowledgement is found by its key (in memory
if it came back unfinished, in the store if it completed) and acknowledged
then, so the jobs the store holds are exactly the acknowledged ones.

Four side files, each appended with one ``os.write`` per line on an
``O_APPEND`` descriptor (a line is never torn, whenever the process is killed):

``acked``
    ``n job_id`` once `Scheduler.submit` returned for job ``n``.
``runs``
    ``S|E incarnation job_id attempt repo monotonic_ns``: the handler began
    (``S``) or is about to return (``E``). ``time.monotonic_ns`` is the
    system-wide monotonic clock, so the test compares it with its kill times.
``life``
    ``open incarnation`` as the scheduler starts (opens the store, recovers
    what the last incarnation left, brings its jobs back), ``ready
    incarnation`` once it has started.
``done``
    ``incarnation``, once every job ended; the process then shuts down
    gracefully and exits 0.
"""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from actors import JobContext, Scheduler
from actors.testing import wait_idle

WORK = (0.002, 0.003, 0.004)
"""Seconds a job's handler takes, by its number: short, and not all alike."""

WORKERS = 4
"""Fewer workers than submitters can feed: jobs are left to run once all are submitted."""

SUBMITTERS = 4
"""Threads submitting at once (their commits are shared), each with its own repos."""

MAX_RETRIES = 100
"""Far more than the kills a run sees: an interrupted attempt is always retried."""


def _append(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


def _acked(path: Path) -> set[int]:
    if not path.exists():
        return set()
    return {int(line.split()[0]) for line in path.read_text().splitlines() if line}


def main(argv: list[str]) -> int:
    store, side, jobs, repos, incarnation = argv
    side_dir = Path(side)
    total, repo_count = int(jobs), int(repos)
    runs_fd = _append(side_dir / "runs")

    def work(ctx: JobContext, payload: dict[str, int | str]) -> None:
        what = f"{incarnation} {ctx.job_id} {ctx.attempt} {payload['repo']}"
        os.write(runs_fd, f"S {what} {time.monotonic_ns()}\n".encode())
        time.sleep(WORK[int(payload["n"]) % len(WORK)])
        os.write(runs_fd, f"E {what} {time.monotonic_ns()}\n".encode())

    sched = Scheduler(
        workers=WORKERS,
        max_pending=total + 1,
        store=store,
        durability="commit",
        metrics=False,
        keep_finished=None,
    )
    sched.register("work", work, max_retries=MAX_RETRIES)
    life_fd = _append(side_dir / "life")
    os.write(life_fd, f"open {incarnation}\n".encode())
    sched.start()
    os.write(life_fd, f"ready {incarnation}\n".encode())
    try:
        acked_path = side_dir / "acked"
        acknowledged = _acked(acked_path)
        acked_fd = _append(acked_path)

        def submit(part: int) -> None:
            # A repo's jobs all come from one thread, in order of n: its submission order.
            for n in range(total):
                if n in acknowledged or n % repo_count % SUBMITTERS != part:
                    continue
                repo = f"repo-{n % repo_count}"
                handle = sched.submit(
                    "work", {"n": n, "repo": repo}, repo=repo, idempotency_key=f"job-{n}"
                )
                os.write(acked_fd, f"{n} {handle.id}\n".encode())

        with ThreadPoolExecutor(SUBMITTERS) as pool:
            list(pool.map(submit, range(SUBMITTERS)))  # a submit that failed raises here
        wait_idle(sched, timeout=120.0)
        fd = _append(side_dir / "done")
        os.write(fd, f"{incarnation}\n".encode())
    finally:
        sched.shutdown(graceful=True, timeout=30.0)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
