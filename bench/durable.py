"""E: durability — workloads A and B with a store, side by side with the same in memory.

Workload A (bench A's N no-op jobs) and workload B (bench B's N x ``sleep(0.001)``
over R repos, with its order and exclusion checks), each through:

- ``in memory``: no store (bench A / B as they are);
- ``batch``: ``store=``, ``durability="batch"`` (commits every ``batch_interval``);
- ``commit xS``: ``durability="commit"`` with S threads submitting at once
  (each repo's jobs from one thread): concurrent submitters share commits;
- ``commit x1``: ``durability="commit"``, one thread submitting, each submit
  waiting for its own commit: one commit per job, the baseline group commit
  is measured against (fewer jobs: it is slow);
- ``ThreadPoolExecutor(W)`` on the same jobs, as in every bench here.

With a store, a side's time runs from the first submit until every job is done
*and* every record of it is committed (a read of the store commits what the
journal holds), each round on a fresh store. Targets: ``batch`` >= 0.5x the
in-memory jobs/s; ``commit xS`` >= 10x ``commit x1``.

Then recovery: a store holding M pending jobs over R repos (written through the
journal's own ``Batch`` and ``Store``), and ``Scheduler(store=...).start()``
timed until the jobs are back (``start`` returned, and the Dispatcher has
taken in the last one: a ``stats()`` after it answers), with the peak RSS
(VmHWM) over the interpreter's RSS before; side by side with submitting the
same M jobs to a scheduler without a store. Each side runs in a fresh child
process, on a fresh copy of the store (warm in the page cache), rounds
alternating.

Stores go in a temporary directory next to the checkout (same disk; its
filesystem is printed), removed at the end.

    PYTHONPATH=. python -m bench.durable [--jobs 20000 --single-jobs 2000
        --submitters 16 --workers 8 --repos 200 --rounds 5 --workloads A,B
        --synchronous NORMAL --recover-jobs 100000 --recover-rounds 3 --dir DIR]
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from actors import Scheduler
from bench import repos, throughput
from bench.common import (
    alternate,
    base_parser,
    fmt,
    measure_sleep,
    median,
    print_table,
    reset_peak_rss,
    rss_kb,
)

ROOT = Path(__file__).resolve().parent.parent
MEMORY, BATCH, TPE = "in memory", "batch", "ThreadPoolExecutor"

T = TypeVar("T")


# --- stores ---------------------------------------------------------------------------


class Stores:
    """Fresh store paths in one directory; every file is removed after its side."""

    def __init__(self, directory: str, synchronous: str = "NORMAL") -> None:
        self.directory = directory
        self.synchronous = synchronous
        self._numbers = itertools.count(1)

    @contextmanager
    def fresh(self, durability: str) -> Iterator[dict[str, Any]]:
        """``Scheduler`` options for a new, empty store."""
        path = os.path.join(self.directory, f"e{next(self._numbers)}.db")
        try:
            yield {"store": path, "durability": durability, "synchronous": self.synchronous}
        finally:
            remove_store(path)


def remove_store(path: str) -> None:
    for suffix in ("", "-wal", "-shm", ".lock"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)


def filesystem(path: str) -> str:
    """The filesystem ``path`` is on, as /proc/mounts says (type and device)."""
    real = os.path.realpath(path)
    best = ("?", "?", "")
    with open("/proc/mounts", encoding="utf-8") as mounts:
        for line in mounts:
            device, mount, fstype = line.split()[:3]
            inside = real == mount or real.startswith(mount.rstrip("/") + "/")
            if inside and len(mount) >= len(best[2]):
                best = (fstype, device, mount)
    return f"{best[0]} on {best[1]} (mounted at {best[2]})"


def counting(commits: list[int]) -> Callable[[Scheduler], None]:
    """A probe that counts the commits of a scheduler's store into a new
    entry of ``commits`` (the store's ``before_commit`` hook runs once per
    transaction)."""

    def probe(sched: Scheduler) -> None:
        commits.append(0)
        slot = len(commits) - 1

        def count() -> None:
            commits[slot] += 1

        sched._durable.store.before_commit = count  # type: ignore[union-attr]  # noqa: SLF001

    return probe


# --- workloads ------------------------------------------------------------------------


def side_names(subs: int) -> list[str]:
    return [MEMORY, BATCH, f"commit x{subs}", "commit x1", TPE]


def make_sides(
    args: Any,
    stores: Stores,
    postroom: Callable[..., T],
    tpe: Callable[[int], T],
    commits: dict[str, list[int]],
) -> tuple[dict[str, Callable[[], T]], dict[str, int]]:
    """The five sides of a workload (``postroom(jobs, **keywords)`` runs it on
    postroom, ``tpe(jobs)`` on the pool), and each side's job count."""
    jobs, single, subs = args.jobs, args.single_jobs, args.submitters
    memory, batch, group, one, pool = side_names(subs)

    def durable(name: str, durability: str, n: int, submitters: int) -> Callable[[], T]:
        def run() -> T:
            with stores.fresh(durability) as options:
                return postroom(
                    n,
                    options=options,
                    submitters=submitters,
                    probe=counting(commits.setdefault(name, [])),
                )

        return run

    sides: dict[str, Callable[[], T]] = {
        memory: lambda: postroom(jobs),
        batch: durable(batch, "batch", jobs, 1),
        group: durable(group, "commit", jobs, subs),
        one: durable(one, "commit", single, 1),
        pool: lambda: tpe(jobs),
    }
    counts = dict.fromkeys(sides, jobs)
    counts[one] = single
    return sides, counts


def report(
    title: str,
    rates: dict[str, list[float]],
    counts: dict[str, int],
    commits: dict[str, list[int]],
    subs: int,
    extra: Callable[[str], list[str]] | None = None,
    extra_headers: tuple[str, ...] = (),
) -> tuple[float, float]:
    """Print one workload's table and targets; (batch / memory, commit xS / commit x1)."""
    memory, tpe = median(rates[MEMORY]), median(rates[TPE])
    rows = []
    for name, values in rates.items():
        rows.append(
            [
                name,
                f"{counts[name]:,}",
                fmt(median(values), 0),
                fmt(min(values), 0),
                fmt(max(values), 0),
                f"{median(values) / memory:.2f}x",
                f"{median(values) / tpe:.2f}x",
                f"{counts[name] / median(commits[name]):,.1f}" if name in commits else "n/a",
                *(extra(name) if extra else []),
            ]
        )
    print(title)
    print_table(
        [
            "side",
            "jobs",
            "median jobs/s",
            "min",
            "max",
            "vs in memory",
            "vs TPE",
            "jobs/commit",
            *extra_headers,
        ],
        rows,
    )
    batch = median(rates[BATCH]) / memory
    group = median(rates[f"commit x{subs}"]) / median(rates["commit x1"])
    print(
        f"\nbatch / in memory = {batch:.2f}x (target >= 0.50x: "
        f"{'met' if batch >= 0.5 else 'NOT met'}); commit x{subs} / commit x1 = "
        f"{group:.1f}x (target >= 10x: {'met' if group >= 10 else 'NOT met'})"
    )
    return batch, group


# --- recovery -------------------------------------------------------------------------


def build_store(path: str, jobs: int, repo_count: int) -> float:
    """Write ``jobs`` pending jobs (no-op payloads, over ``repo_count`` repos, none
    if 0) as a submit under ``durability="commit"`` records them. Seconds taken."""
    from actors._journal.batch import Batch
    from actors._journal.store import Store
    from actors.messages import Job, JobAccepted

    store = Store(path)
    store.open()
    t0 = time.perf_counter()
    now = time.time()
    try:
        for first in range(1, jobs + 1, 10_000):
            batch = Batch()
            for seq in range(first, min(jobs, first + 9_999) + 1):
                repo = f"r{seq % repo_count}" if repo_count else None
                job = Job(f"bench-{seq}", "block", seq, seq, repo=repo, submitted_at=now)
                batch.fold(JobAccepted(job, "pending", None, None, None, None, None, None, True))
            store.transaction(batch.write, "cannot build")
    finally:
        store.close()
    return time.perf_counter() - t0


def side_recover(path: str, jobs: int, workers: int) -> dict[str, Any]:
    """Child: recover the store at ``path``; times, RSS."""
    release = threading.Event()

    def block(_ctx: object, _payload: object) -> None:
        release.wait(60)

    base = rss_kb()["VmRSS"]
    reset_peak_rss()
    sched = Scheduler(workers=workers, max_pending=jobs + 1_000, store=path)
    sched.register("block", block)
    t0 = time.perf_counter()
    sched.start()
    t1 = time.perf_counter()
    stats = sched.stats()  # behind every job restored in the Dispatcher's inbox
    t2 = time.perf_counter()
    rss = rss_kb()
    back = stats.pending + stats.running
    release.set()
    t3 = time.perf_counter()
    sched.shutdown(graceful=True, timeout=30)
    t4 = time.perf_counter()
    if back != jobs:
        raise RuntimeError(f"recovered {back} of {jobs} jobs: {stats}")
    return {
        "start": t1 - t0,
        "back": t2 - t0,
        "shutdown": t4 - t3,
        "hwm": rss["VmHWM"] - base,
        "rss": rss["VmRSS"] - base,
        "jobs": back,
    }


def side_submit(jobs: int, repo_count: int, workers: int) -> dict[str, Any]:
    """Child: the same jobs submitted to a scheduler without a store; times, RSS."""
    release = threading.Event()

    def block(_ctx: object, _payload: object) -> None:
        release.wait(60)

    base = rss_kb()["VmRSS"]
    reset_peak_rss()
    sched = Scheduler(workers=workers, max_pending=jobs + 1_000)
    sched.register("block", block)
    t0 = time.perf_counter()
    sched.start()
    t1 = time.perf_counter()
    for seq in range(1, jobs + 1):
        sched.submit("block", seq, repo=f"r{seq % repo_count}" if repo_count else None)
    stats = sched.stats()
    t2 = time.perf_counter()
    rss = rss_kb()
    back = stats.pending + stats.running
    release.set()
    t3 = time.perf_counter()
    sched.shutdown(graceful=False)
    t4 = time.perf_counter()
    if back != jobs:
        raise RuntimeError(f"{back} of {jobs} jobs in: {stats}")
    return {
        "start": t1 - t0,
        "back": t2 - t0,
        "shutdown": t4 - t3,
        "hwm": rss["VmHWM"] - base,
        "rss": rss["VmRSS"] - base,
        "jobs": back,
    }


def child(argv: list[str]) -> dict[str, Any]:
    """Run one recovery side in a fresh interpreter; what it printed, as JSON."""
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
    )
    cmd = [sys.executable, "-m", "bench.durable", *argv]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def recovery(args: Any, directory: str) -> None:
    """Build the store once; alternate recovering a copy of it and submitting afresh."""
    n = args.recover_jobs
    template = os.path.join(directory, "template.db")
    built = build_store(template, n, args.repos)
    size = os.path.getsize(template)
    print(
        f"  built a store of {n:,} pending jobs in {built:.2f} s ({size / 2**20:.1f} MiB)",
        file=sys.stderr,
    )
    copies = itertools.count(1)

    def recover() -> dict[str, Any]:
        path = os.path.join(directory, f"recover{next(copies)}.db")
        shutil.copyfile(template, path)
        try:
            return child(["--side", "recover", "--path", path, *sizes])
        finally:
            remove_store(path)

    sizes = ["--recover-jobs", str(n), "--repos", str(args.repos), "--workers", str(args.workers)]
    results = alternate(
        args.recover_rounds,
        {
            "recover from the store": recover,
            "submit, no store": lambda: child(["--side", "submit", *sizes]),
        },
    )

    def med(name: str, key: str) -> float:
        return median(r[key] for r in results[name])

    print(
        f"\nE. recovery: {n:,} pending jobs over {args.repos} repos "
        f"({size / 2**20:.1f} MiB store), {args.workers} workers, median of "
        f"{args.recover_rounds} round(s), one process per run\n"
    )
    print_table(
        [
            "side",
            "start() s",
            "jobs back s",
            "peak RSS growth MiB",
            "RSS after MiB",
            "B/job (peak)",
            "shutdown s",
        ],
        [
            [
                name,
                f"{med(name, 'start'):.2f}",
                f"{med(name, 'back'):.2f}",
                f"{med(name, 'hwm') / 1024:.1f}",
                f"{med(name, 'rss') / 1024:.1f}",
                f"{med(name, 'hwm') * 1024 / n:,.0f}",
                f"{med(name, 'shutdown'):.2f}",
            ]
            for name in results
        ],
    )
    r, s = "recover from the store", "submit, no store"
    print(
        f"\nrecovery / submitting afresh: time {med(r, 'back') / med(s, 'back'):.2f}x, "
        f"peak RSS growth {med(r, 'hwm') / max(1.0, med(s, 'hwm')):.2f}x "
        f"({n / med(r, 'back'):,.0f} jobs/s back)"
    )


# --- main -----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__, rounds=5)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument(
        "--single-jobs", type=int, default=2_000, help="jobs of the commit x1 side (it is slow)"
    )
    parser.add_argument("--submitters", type=int, default=16)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--repos", type=int, default=200)
    parser.add_argument("--workloads", default="A,B", help="A, B, or A,B; empty: none")
    parser.add_argument("--synchronous", choices=["NORMAL", "FULL"], default="NORMAL")
    parser.add_argument("--recover-jobs", type=int, default=100_000, help="0: no recovery run")
    parser.add_argument("--recover-rounds", type=int, default=3)
    parser.add_argument(
        "--dir", default=str(ROOT), help="where the stores' temporary directory goes"
    )
    parser.add_argument("--side", choices=["recover", "submit"], help="a recovery side (child)")
    parser.add_argument("--path", help="the store a recover side opens (child)")
    args = parser.parse_args(argv)

    if args.side == "recover":
        print(json.dumps(side_recover(args.path, args.recover_jobs, args.workers)))
        return
    if args.side == "submit":
        print(json.dumps(side_submit(args.recover_jobs, args.repos, args.workers)))
        return

    directory = tempfile.mkdtemp(prefix=".bench-durable-", dir=args.dir)
    try:
        run(args, directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def run(args: Any, directory: str) -> None:
    import sqlite3

    stores = Stores(directory, args.synchronous)
    subs = args.submitters
    workloads = {w.strip().upper() for w in args.workloads.split(",") if w.strip()}
    print(
        f"stores in {directory}: {filesystem(directory)}; SQLite {sqlite3.sqlite_version}, "
        f"synchronous={args.synchronous}, batch_interval=0.05"
    )
    if "A" in workloads:
        commits: dict[str, list[int]] = {}
        sides_a, counts = make_sides(
            args,
            stores,
            lambda n, **kw: throughput.run_postroom(n, args.workers, **kw),
            lambda n: throughput.run_tpe(n, args.workers),
            commits,
        )
        report(
            f"\nE/A. {args.jobs:,} no-op jobs ({args.single_jobs:,} for commit x1), "
            f"{args.workers} workers, median of {args.rounds} rounds (alternating)\n",
            alternate(args.rounds, sides_a),
            counts,
            commits,
            subs,
        )
    if "B" in workloads:
        commits = {}
        sides_b, counts = make_sides(
            args,
            stores,
            lambda n, **kw: repos.run_postroom(n, args.repos, args.workers, **kw),
            lambda n: repos.run_tpe(n, args.workers),
            commits,
        )
        sleeps = [measure_sleep(repos.SLEEP)]
        runs = alternate(args.rounds, sides_b)
        sleeps.append(measure_sleep(repos.SLEEP))
        sleep = median(sleeps)
        rates = {name: [counts[name] / r.wall for r in side] for name, side in runs.items()}
        ideal_rate = args.workers / sleep

        def checks(name: str) -> list[str]:
            ideal = f"{ideal_rate / median(rates[name]):.3f}x"
            if name == TPE:
                return [ideal, "n/a", "n/a"]
            return [
                ideal,
                str(sum(r.inversions for r in runs[name])),
                str(sum(r.overlaps for r in runs[name])),
            ]

        report(
            f"\nE/B. {args.jobs:,} x sleep({repos.SLEEP}) over {args.repos} repos "
            f"({args.single_jobs:,} for commit x1), {args.workers} workers, median of "
            f"{args.rounds} rounds (alternating); sleep({repos.SLEEP}) = {sleep * 1000:.3f} ms "
            f"-> ideal {fmt(ideal_rate, 0)} jobs/s\n",
            rates,
            counts,
            commits,
            subs,
            checks,
            ("wall / ideal", "inversions", "overlaps"),
        )
    if args.recover_jobs:
        recovery(args, directory)


if __name__ == "__main__":
    main()
