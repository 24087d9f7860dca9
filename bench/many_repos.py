"""D: many repos — N no-op jobs over R repos (N/R jobs each), all submitted at once, W workers.

What it costs to have many repos in flight: peak thread count (``active_count()``
sampled every 5 ms by a sampler thread, not counting the sampler), peak RSS
(VmHWM) and RSS growth over the interpreter's baseline, wall time from the first
submit to the last job finished, that every job completed, and whether idle repo
locks are retired afterwards (``stats().repo_locks`` polled until 0, bounded, and
how long that took). ThreadPoolExecutor(W) runs the same N no-ops (no repos).

Each side runs in a fresh child process so its peak RSS and threads are its own;
the parent alternates the children round by round and prints medians.

    PYTHONPATH=. python -m bench.many_repos [--jobs 20000 --repos 10000 --workers 8 --rounds 1]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.common import (
    ThreadSampler,
    alternate,
    base_parser,
    median,
    print_table,
    reset_peak_rss,
    rss_kb,
)

RETIRE_TIMEOUT = 60.0
ROOT = Path(__file__).resolve().parent.parent


def noop(_ctx: object, _payload: object) -> None:
    return None


def side_postroom(jobs: int, repos: int, workers: int) -> dict[str, Any]:
    from actors import JobStatus, Scheduler

    base = rss_kb()["VmRSS"]
    reset_peak_rss()
    sched = Scheduler(workers=workers, max_pending=max(100_000, jobs))
    sched.register("noop", noop)
    out: dict[str, Any] = {}
    with sched:
        idle_threads = threading.active_count()  # main, dispatcher, timer, workers
        with ThreadSampler() as sampler:
            t0 = time.perf_counter()
            handles = [sched.submit("noop", i, repo=f"r{i % repos}") for i in range(jobs)]
            for h in handles:
                if not h.wait(300):
                    raise RuntimeError(f"postroom: job {h.id} not done after 300 s: {h.info()}")
            out["wall"] = time.perf_counter() - t0
            out["completed"] = sum(h.status is JobStatus.COMPLETED for h in handles)
        # Retirement, as the scheduler counts it, then as the OS sees it (threads gone).
        t1 = time.perf_counter()
        stats = sched.stats()
        out["locks_at_done"] = stats.repo_locks
        while stats.repo_locks and time.perf_counter() - t1 < RETIRE_TIMEOUT:
            time.sleep(0.01)
            stats = sched.stats()
        out["retire"] = time.perf_counter() - t1
        out["locks_after"] = stats.repo_locks
        out["threads_at_retired"] = threading.active_count()
        while threading.active_count() > idle_threads and time.perf_counter() - t1 < RETIRE_TIMEOUT:
            time.sleep(0.01)
        out["threads_gone"] = time.perf_counter() - t1
        out["threads_after"] = threading.active_count()
        rss = rss_kb()
        t2 = time.perf_counter()
    out["shutdown"] = time.perf_counter() - t2
    out["stats_completed"] = sched.stats().completed
    out.update(threads=sampler.peak, hwm=rss["VmHWM"], base=base)
    return out


def side_tpe(jobs: int, workers: int) -> dict[str, Any]:
    base = rss_kb()["VmRSS"]
    reset_peak_rss()
    out: dict[str, Any] = {}
    with ThreadPoolExecutor(workers) as pool:
        with ThreadSampler() as sampler:
            t0 = time.perf_counter()
            futures = [pool.submit(noop, None, i) for i in range(jobs)]
            for f in futures:
                f.result(300)
            out["wall"] = time.perf_counter() - t0
            out["completed"] = sum(f.done() and f.exception() is None for f in futures)
        out["threads_after"] = threading.active_count()
        rss = rss_kb()
    out.update(threads=sampler.peak, hwm=rss["VmHWM"], base=base)
    return out


def child(side: str, args: Any) -> dict[str, Any]:
    """Run one side in a fresh interpreter; returns what it printed as JSON."""
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
    )
    cmd = [
        sys.executable,
        "-m",
        "bench.many_repos",
        "--side",
        side,
        "--jobs",
        str(args.jobs),
        "--repos",
        str(args.repos),
        "--workers",
        str(args.workers),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr}")
    print(f"  {side}: {proc.stdout.strip()}", file=sys.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__, rounds=1)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--repos", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--side", choices=["postroom", "tpe"], help="run one side here (child)")
    args = parser.parse_args(argv)

    if args.side == "postroom":
        print(json.dumps(side_postroom(args.jobs, args.repos, args.workers)))
        return
    if args.side == "tpe":
        print(json.dumps(side_tpe(args.jobs, args.workers)))
        return

    results = alternate(
        args.rounds,
        {
            "postroom": lambda: child("postroom", args),
            "ThreadPoolExecutor": lambda: child("tpe", args),
        },
    )

    def med(name: str, key: str) -> float:
        return median(r[key] for r in results[name])

    def growth(name: str) -> float:
        return median((r["hwm"] - r["base"]) / 1024 for r in results[name])

    print(
        f"\nD. many repos: {args.jobs:,} no-op jobs over {args.repos:,} repos at once, "
        f"{args.workers} workers, median of {args.rounds} round(s), one process per run\n"
    )
    rows = []
    for name, runs in results.items():
        pr = name == "postroom"
        retired = ""
        if pr:
            retired = (
                f"{max(r['locks_after'] for r in runs)} in {med(name, 'retire'):.2f} s;"
                f" threads gone in {med(name, 'threads_gone'):.2f} s"
            )
        rows.append(
            [
                name,
                f"{med(name, 'wall'):.2f}",
                int(med(name, "threads")),
                f"{med(name, 'hwm') / 1024:.1f}",
                f"{growth(name):.1f}",
                f"{min(r['completed'] for r in runs):,}/{args.jobs:,}",
                int(med(name, "locks_at_done")) if pr else "n/a",
                retired or "n/a",
                int(med(name, "threads_after")),
            ]
        )
    print_table(
        [
            "side",
            "wall s",
            "peak threads",
            "peak RSS MiB",
            "RSS growth MiB",
            "completed",
            "repo_locks at done",
            "repo_locks retired",
            "threads after",
        ],
        rows,
    )
    p, t = "postroom", "ThreadPoolExecutor"
    print(
        f"\npostroom / TPE: wall {med(p, 'wall') / med(t, 'wall'):.1f}x, "
        f"peak threads {med(p, 'threads') / med(t, 'threads'):.1f}x, "
        f"RSS growth {growth(p) / max(0.1, growth(t)):.1f}x; "
        f"postroom shutdown {med(p, 'shutdown'):.2f} s"
    )


if __name__ == "__main__":
    main()
