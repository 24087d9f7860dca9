"""B: per-repo serialization — N jobs of ``time.sleep(0.001)`` over R repos, W workers.

With R >> W there is always a ready repo, so a perfect scheduler keeps every worker
busy: ideal wall time = N x (measured length of sleep(0.001)) / W, the sleep being
measured in this same run (median of many). Reported: wall / ideal (target <= 1.05x),
plus the repo contract checked from inside the handler (rules 1 and 2, docs/guarantees.md):
- order: per repo, the payload indexes in the order the jobs started; every pair out
  of submission order counts as one inversion (target 0);
- exclusion: per repo, the [start, end] intervals (perf_counter) must not overlap.
ThreadPoolExecutor(W) runs the same N sleeps (it has no repos) side by side, and so
do W bare threads taking sleeps from a shared counter (no futures, no queue): the
floor any Python pool can reach on this machine, which shows how much of the gap to
the ideal is the machine's (threads waking from sleep and waiting for the GIL).

    PYTHONPATH=. python -m bench.repos [--jobs 20000 --repos 200 --workers 8 --rounds 3]
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from actors import Scheduler
from bench.common import (
    alternate,
    base_parser,
    count_inversions,
    measure_sleep,
    median,
    print_table,
    submit_all,
)

SLEEP = 0.001


@dataclass
class Run:
    wall: float
    inversions: int = 0
    overlaps: int = 0


def run_postroom(
    jobs: int,
    repos: int,
    workers: int,
    *,
    options: Mapping[str, Any] | None = None,
    submitters: int = 1,
    probe: Callable[[Scheduler], None] | None = None,
) -> Run:
    """Wall time for the jobs through postroom, and the order/exclusion checks.

    Bench E passes ``options`` for `Scheduler` (a store), the number of
    threads that submit (each repo's jobs from one thread, in index order, so
    the order check holds), and a ``probe`` that sees the started scheduler
    before the clock starts. With a store the time runs until every record
    of every job is committed (reading a job's runs commits what the journal
    holds first).
    """
    # repo -> [[payload index, start, end]], appended at start (list.append is atomic
    # under the GIL, so even overlapping jobs of one repo could not lose a record).
    records: dict[str, list[list[float]]] = {f"r{k}": [] for k in range(repos)}

    def sleeper(ctx: object, index: int) -> None:
        record = [index, time.perf_counter(), 0.0]
        records[ctx.repo].append(record)  # type: ignore[attr-defined]
        time.sleep(SLEEP)
        record[2] = time.perf_counter()

    sched = Scheduler(workers=workers, max_pending=max(100_000, jobs), **(options or {}))
    sched.register("sleep", sleeper)
    with sched:
        if probe is not None:
            probe(sched)
        t0 = time.perf_counter()
        if submitters == 1:  # bench B's own loop, as it always was
            handles = [sched.submit("sleep", i, repo=f"r{i % repos}") for i in range(jobs)]
        else:
            handles = submit_all(
                lambda i: sched.submit("sleep", i, repo=f"r{i % repos}"),
                jobs,
                submitters,
                key=lambda i: i % repos,
            )
        for h in handles:
            if not h.wait(120):
                raise RuntimeError(f"postroom: job {h.id} not done after 120 s: {h.info()}")
        if options and options.get("store") is not None:
            sched.runs(handles[-1].id)
        wall = time.perf_counter() - t0
    run = Run(wall)
    for recs in records.values():
        run.inversions += count_inversions([int(index) for index, _, _ in recs])
        spans = sorted((s, e) for _, s, e in recs)
        run.overlaps += sum(1 for a, b in itertools.pairwise(spans) if b[0] < a[1])
    done = sum(len(r) for r in records.values())
    if done != jobs:
        raise RuntimeError(f"postroom ran {done} handler calls for {jobs} jobs")
    return run


def run_tpe(jobs: int, workers: int) -> Run:
    """Wall time for the same sleeps through ThreadPoolExecutor (no repos)."""
    with ThreadPoolExecutor(workers) as pool:
        t0 = time.perf_counter()
        futures = [pool.submit(time.sleep, SLEEP) for _ in range(jobs)]
        for f in futures:
            f.result(120)
        wall = time.perf_counter() - t0
    return Run(wall)


def run_bare(jobs: int, workers: int) -> Run:
    """Wall time for the same sleeps on W plain threads sharing a counter."""
    counter = itertools.count()

    def loop() -> None:
        while next(counter) < jobs:
            time.sleep(SLEEP)

    threads = [threading.Thread(target=loop) for _ in range(workers)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return Run(time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__, rounds=3)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--repos", type=int, default=200)
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args(argv)

    sleeps = [measure_sleep(SLEEP)]
    results = alternate(
        args.rounds,
        {
            "postroom": lambda: run_postroom(args.jobs, args.repos, args.workers),
            "ThreadPoolExecutor": lambda: run_tpe(args.jobs, args.workers),
            "bare threads": lambda: run_bare(args.jobs, args.workers),
        },
    )
    sleeps.append(measure_sleep(SLEEP))
    sleep = median(sleeps)
    ideal = args.jobs * sleep / args.workers
    pr = results["postroom"]
    print(
        f"\nB. repos: {args.jobs:,} x sleep({SLEEP}) over {args.repos} repos, "
        f"{args.workers} workers, median of {args.rounds} rounds (alternating)"
    )
    print(
        f"measured sleep({SLEEP}) = {sleep * 1000:.3f} ms (median, before and after) "
        f"-> ideal {ideal:.3f} s\n"
    )
    print_table(
        ["side", "median wall s", "min", "max", "wall / ideal", "inversions", "overlaps"],
        [
            [
                name,
                f"{median(r.wall for r in runs):.3f}",
                f"{min(r.wall for r in runs):.3f}",
                f"{max(r.wall for r in runs):.3f}",
                f"{median(r.wall for r in runs) / ideal:.3f}x",
                "n/a (no repos)" if name != "postroom" else sum(r.inversions for r in runs),
                "n/a (no repos)" if name != "postroom" else sum(r.overlaps for r in runs),
            ]
            for name, runs in results.items()
        ],
    )
    ratio = median(r.wall for r in pr) / ideal
    tpe = median(r.wall for r in results["ThreadPoolExecutor"]) / ideal
    bare = median(r.wall for r in results["bare threads"]) / ideal
    inv, ovl = sum(r.inversions for r in pr), sum(r.overlaps for r in pr)
    print(
        f"\npostroom wall/ideal = {ratio:.3f}x (target <= 1.05x: "
        f"{'met' if ratio <= 1.05 else 'NOT met'}); TPE {tpe:.3f}x; bare threads "
        f"{bare:.3f}x; postroom / TPE wall = {ratio / tpe:.2f}x, / bare threads "
        f"{ratio / bare:.2f}x"
    )
    print(
        f"inversions {inv}, overlaps {ovl} over all rounds (target 0: "
        f"{'met' if inv == ovl == 0 else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
