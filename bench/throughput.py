"""A: dispatch throughput — N no-op jobs on W workers, postroom vs ThreadPoolExecutor(W).

A no-op handler does no work, so this measures what the scheduler itself costs per
job: messages, hand-offs and thread wake-ups (NOTES, "Dispatching under the GIL").
Each round builds a fresh pool/scheduler (not timed), then times submitting every job
and waiting for every one to finish. Sides alternate round by round; the report is
the median jobs/s of each side and postroom / TPE. Target: >= 1.0x.

    PYTHONPATH=. python -m bench.throughput [--jobs 20000 --workers 8 --rounds 7]
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from actors import Scheduler
from bench.common import alternate, base_parser, fmt, median, print_table, submit_all


def noop(_ctx: object, _payload: object) -> None:
    return None


def run_postroom(
    jobs: int,
    workers: int,
    *,
    options: Mapping[str, Any] | None = None,
    submitters: int = 1,
    probe: Callable[[Scheduler], None] | None = None,
) -> float:
    """Jobs per second through postroom (submit all, wait all).

    Bench E passes ``options`` for `Scheduler` (a store), the number of
    threads that submit (`submit_all`), and a ``probe`` that sees the started
    scheduler before the clock starts. With a store the time runs until every
    record of every job is committed: reading a job's runs from the store
    commits what the journal holds first.
    """
    sched = Scheduler(workers=workers, max_pending=max(100_000, jobs), **(options or {}))
    sched.register("noop", noop)
    with sched:
        if probe is not None:
            probe(sched)
        t0 = time.perf_counter()
        if submitters == 1:  # bench A's own loop, as it always was
            handles = [sched.submit("noop", i) for i in range(jobs)]
        else:
            handles = submit_all(lambda i: sched.submit("noop", i), jobs, submitters)
        for h in handles:
            if not h.wait(60):
                raise RuntimeError(f"postroom: job {h.id} not done after 60 s: {h.info()}")
        if options and options.get("store") is not None:
            sched.runs(handles[-1].id)
        elapsed = time.perf_counter() - t0
        stats = sched.stats()
    if stats.completed != jobs:
        raise RuntimeError(f"postroom completed {stats.completed} of {jobs}: {stats}")
    return jobs / elapsed


def run_tpe(jobs: int, workers: int) -> float:
    """Jobs per second through ThreadPoolExecutor (submit all, wait all)."""
    with ThreadPoolExecutor(workers) as pool:
        t0 = time.perf_counter()
        futures = [pool.submit(noop, None, i) for i in range(jobs)]
        for f in futures:
            f.result(60)
        elapsed = time.perf_counter() - t0
    return jobs / elapsed


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__, rounds=7)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args(argv)

    results = alternate(
        args.rounds,
        {
            "postroom": lambda: run_postroom(args.jobs, args.workers),
            "ThreadPoolExecutor": lambda: run_tpe(args.jobs, args.workers),
        },
    )
    pr, tpe = median(results["postroom"]), median(results["ThreadPoolExecutor"])
    print(
        f"\nA. throughput: {args.jobs:,} no-op jobs, {args.workers} workers, "
        f"median of {args.rounds} rounds (alternating)\n"
    )
    print_table(
        ["side", "median jobs/s", "min", "max", "vs TPE"],
        [
            [name, fmt(median(v), 0), fmt(min(v), 0), fmt(max(v), 0), f"{median(v) / tpe:.2f}x"]
            for name, v in results.items()
        ],
    )
    verdict = "met" if pr / tpe >= 1.0 else "NOT met"
    print(f"\npostroom / TPE = {pr / tpe:.2f}x  (target >= 1.00x: {verdict})")


if __name__ == "__main__":
    main()
