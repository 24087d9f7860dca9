"""F and G: jobs on worker nodes (local processes over ZeroMQ) against jobs in process.

F: no-op jobs, so what is measured is the wire: a scheduler with no workers of its
own and 2 node processes (``postroom worker``, loopback, plain TCP) against the
same scheduler with 8 worker threads, and ``ThreadPoolExecutor(8)``. Target: nodes
>= 0.5x the in-process jobs/s.

G: a CPU-bound handler (about 5 ms of pure Python, which holds the GIL), 2 node
processes against 8 in-process worker threads (which share one GIL), with
``ThreadPoolExecutor(8)`` and ``ProcessPoolExecutor(2)`` (the ceiling for 2 cores)
alongside. Target: nodes >= 1.7x the in-process jobs/s on 2 cores.

Each round starts fresh (scheduler, node processes, pools); the clock runs from the
first submit to the last result, once every node has said Hello (process start is
not timed, as `ThreadPoolExecutor`'s threads are not). Sides alternate round by
round; medians and ratios are printed.

    PYTHONPATH=. python -m bench.nodes [--f-jobs 20000 --g-jobs 600 --rounds 5]
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

from actors import Scheduler
from bench.common import alternate, base_parser, fmt, median, print_table
from bench.nodes_app import calibrate, handlers, work

ROOT = Path(__file__).resolve().parent.parent
NODES = 2
THREADS = 8


def _start_nodes(
    endpoint: str, count: int, capacity: int, prefetch: int
) -> list[subprocess.Popen[bytes]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return [
        subprocess.Popen(
            [
                sys.executable, "-m", "actors.cli", "worker",
                "--app", "bench.nodes_app:handlers", "--connect", endpoint, "--insecure",
                "--capacity", str(capacity), "--prefetch", str(prefetch),
                "--node-id", f"bench-{i}",
            ],
            env=env,
            cwd=ROOT,
        )
        for i in range(count)
    ]


def _stop_nodes(nodes: list[subprocess.Popen[bytes]]) -> None:
    for node in nodes:
        if node.poll() is None:
            node.send_signal(signal.SIGTERM)
    for node in nodes:
        try:
            node.wait(10)
        except subprocess.TimeoutExpired:
            node.kill()
            node.wait()


def run_nodes(handler: str, payload: int, jobs: int, capacity: int, prefetch: int) -> float:
    """Jobs per second through a scheduler whose jobs all run on node processes."""
    sched = Scheduler(workers=0, handlers=handlers, max_pending=max(100_000, jobs), metrics=False)
    with sched:
        listener = sched.listen("tcp://127.0.0.1:0", insecure=True)
        nodes = _start_nodes(listener.endpoint, NODES, capacity, prefetch)
        try:
            deadline = time.monotonic() + 30
            while len(sched.nodes()) < NODES:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"nodes did not connect: {sched.nodes()}")
                time.sleep(0.01)  # waiting for processes to start, outside the clock
            t0 = time.perf_counter()
            handles = [sched.submit(handler, payload) for _ in range(jobs)]
            for h in handles:
                if not h.wait(120):
                    raise RuntimeError(f"job {h.id} not done after 120 s: {h.info()}")
            elapsed = time.perf_counter() - t0
            completed = sched.stats().completed
        finally:
            sched.shutdown()
            _stop_nodes(nodes)
    if completed != jobs:
        raise RuntimeError(f"completed {completed} of {jobs}")
    return jobs / elapsed


def run_in_process(handler: str, payload: int, jobs: int) -> float:
    """Jobs per second through a scheduler with 8 worker threads of its own."""
    sched = Scheduler(
        workers=THREADS, handlers=handlers, max_pending=max(100_000, jobs), metrics=False
    )
    with sched:
        t0 = time.perf_counter()
        handles = [sched.submit(handler, payload) for _ in range(jobs)]
        for h in handles:
            if not h.wait(120):
                raise RuntimeError(f"job {h.id} not done after 120 s")
        elapsed = time.perf_counter() - t0
    return jobs / elapsed


def run_pool(
    pool_type: type, workers: int, func: Callable[[int], object], payload: int, jobs: int
) -> float:
    """Jobs per second through a standard-library pool (submit all, wait all)."""
    with pool_type(workers) as pool:
        pool.submit(func, 0).result()  # processes started before the clock
        t0 = time.perf_counter()
        futures = [pool.submit(func, payload) for _ in range(jobs)]
        for f in futures:
            f.result(120)
        elapsed = time.perf_counter() - t0
    return jobs / elapsed


def _none(_payload: int) -> None:
    return None


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__, rounds=5)
    parser.add_argument("--f-jobs", type=int, default=20_000)
    parser.add_argument("--g-jobs", type=int, default=600)
    parser.add_argument("--g-ms", type=float, default=5.0, help="ms of CPU per G job")
    parser.add_argument("--capacity", type=int, default=8, help="F: slots per node")
    parser.add_argument("--prefetch", type=int, default=64, help="F: extra credit per node")
    parser.add_argument("--only", choices=["F", "G"], default=None)
    args = parser.parse_args(argv)

    if args.only in (None, "F"):
        n = args.f_jobs
        results = alternate(
            args.rounds,
            {
                "nodes": lambda: run_nodes("noop", 0, n, args.capacity, args.prefetch),
                "in-process": lambda: run_in_process("noop", 0, n),
                "TPE(8)": lambda: run_pool(ThreadPoolExecutor, THREADS, _none, 0, n),
            },
        )
        nodes, local, tpe = (median(results[k]) for k in ("nodes", "in-process", "TPE(8)"))
        print(f"\nF: {n} no-op jobs, {NODES} node processes (capacity {args.capacity}, "
              f"prefetch {args.prefetch}) vs {THREADS} worker threads")  # fmt: skip
        print_table(
            ["side", "jobs/s (median)", "rounds"],
            [[k, fmt(median(v)), " ".join(fmt(x) for x in v)] for k, v in results.items()],
        )
        print(f"F nodes / in-process = {nodes / local:.2f}x (target >= 0.5x); "
              f"nodes / TPE = {nodes / tpe:.2f}x")  # fmt: skip

    if args.only in (None, "G"):
        rounds_of_work = calibrate(args.g_ms / 1000)
        n = args.g_jobs
        results = alternate(
            args.rounds,
            {
                "nodes": lambda: run_nodes("spin", rounds_of_work, n, 1, 1),
                "in-process": lambda: run_in_process("spin", rounds_of_work, n),
                "TPE(8)": lambda: run_pool(ThreadPoolExecutor, THREADS, work, rounds_of_work, n),
                "PPE(2)": lambda: run_pool(ProcessPoolExecutor, NODES, work, rounds_of_work, n),
            },
        )
        sides = ("nodes", "in-process", "TPE(8)", "PPE(2)")
        nodes, local, tpe, ppe = (median(results[k]) for k in sides)
        print(f"\nG: {n} jobs of ~{args.g_ms} ms CPU ({rounds_of_work} rounds), {NODES} node "
              f"processes (capacity 1, prefetch 1) vs {THREADS} worker threads, "
              f"{os.cpu_count()} cores")  # fmt: skip
        print_table(
            ["side", "jobs/s (median)", "rounds"],
            [[k, fmt(median(v)), " ".join(fmt(x) for x in v)] for k, v in results.items()],
        )
        print(f"G nodes / in-process = {nodes / local:.2f}x (target >= 1.7x); "
              f"nodes / TPE = {nodes / tpe:.2f}x; nodes / PPE(2) = {nodes / ppe:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
