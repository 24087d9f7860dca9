"""C: timer lateness — N delayed no-op jobs due 50-500 ms out (uniform random).

Each job is submitted with ``delay=d``; the handler records ``time.monotonic()`` when
it starts, and lateness = start - (monotonic just before submit + d). So lateness
includes everything between "due" and "the handler runs": the timer wake-up and the
hand-off to a worker. A negative lateness would be a job started early
(rule 11, docs/guarantees.md).
Target: p99 <= 1 ms. Baselines, each on ThreadPoolExecutor(W), side by side:
- ``Timer+TPE``: one ``threading.Timer`` per job (a thread each) that submits to the pool;
- ``heap+TPE``: one thread with a heap and a ``threading.Condition`` that submits to the pool.
And the floor, which no scheduler with workers can beat: ``heap inline``, the same
timer thread running the no-op itself (one thread wake-up per job instead of two).
Sides alternate round by round; lateness samples are pooled over all rounds. Jobs that
fall due while the submit loop still runs compete with it for the GIL, so the p99 of
the jobs due after the loop ended is shown too.

    PYTHONPATH=. python -m bench.timers [--jobs 2000 --workers 8 --rounds 5]
"""

from __future__ import annotations

import heapq
import itertools
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from actors import Scheduler
from bench.common import alternate, base_parser, percentile, print_table

MIN_DELAY, MAX_DELAY = 0.050, 0.500


def delays(jobs: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [rng.uniform(MIN_DELAY, MAX_DELAY) for _ in range(jobs)]


def samples(starts: list[float], due: list[float], submitted: float) -> list[tuple[float, bool]]:
    """(lateness, fell due after the submit loop ended) per job."""
    return [(s - d, d > submitted) for s, d in zip(starts, due, strict=True)]


def run_postroom(ds: list[float], workers: int) -> list[tuple[float, bool]]:
    """Lateness (s) of every job, submitted to postroom with ``delay=d``."""
    starts = [0.0] * len(ds)
    due = [0.0] * len(ds)

    def record(_ctx: object, index: int) -> None:
        starts[index] = time.monotonic()

    sched = Scheduler(workers=workers, max_pending=max(100_000, len(ds)))
    sched.register("record", record)
    with sched:
        handles = []
        for i, d in enumerate(ds):
            due[i] = time.monotonic() + d
            handles.append(sched.submit("record", i, delay=d))
        submitted = time.monotonic()
        for h in handles:
            if not h.wait(30):
                raise RuntimeError(f"postroom: job {h.id} not done after 30 s: {h.info()}")
    return samples(starts, due, submitted)


def run_threading_timer(ds: list[float], workers: int) -> list[tuple[float, bool]]:
    """Lateness with one ``threading.Timer`` per job submitting to a TPE."""
    starts = [0.0] * len(ds)
    due = [0.0] * len(ds)

    def record(index: int) -> None:
        starts[index] = time.monotonic()

    with ThreadPoolExecutor(workers) as pool:
        timers = []
        for i, d in enumerate(ds):
            due[i] = time.monotonic() + d
            t = threading.Timer(d, pool.submit, (record, i))
            t.start()
            timers.append(t)
        submitted = time.monotonic()
        for t in timers:
            t.join()
    return samples(starts, due, submitted)


class HeapTimer:
    """The textbook timer thread: a heap of (due, seq, fn, args) and a Condition."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[..., Any], tuple[Any, ...]]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="bench-heap-timer")
        self._thread.start()

    def call_at(self, due: float, fn: Callable[..., Any], *args: Any) -> None:
        with self._cond:
            entry = (due, next(self._seq), fn, args)
            heapq.heappush(self._heap, entry)
            if self._heap[0] is entry:  # a new earliest: re-arm the wait
                self._cond.notify()

    def close(self) -> None:
        """Fire what is left on time, then stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()

    def _run(self) -> None:
        with self._cond:
            while True:
                if not self._heap:
                    if self._closed:
                        return
                    self._cond.wait()
                    continue
                wait = self._heap[0][0] - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                _, _, fn, args = heapq.heappop(self._heap)
                fn(*args)


def run_heap_timer(ds: list[float], workers: int) -> list[tuple[float, bool]]:
    """Lateness with a heap+Condition timer thread submitting to a TPE."""
    starts = [0.0] * len(ds)
    due = [0.0] * len(ds)

    def record(index: int) -> None:
        starts[index] = time.monotonic()

    with ThreadPoolExecutor(workers) as pool:
        timer = HeapTimer()
        for i, d in enumerate(ds):
            due[i] = time.monotonic() + d
            timer.call_at(due[i], pool.submit, record, i)
        submitted = time.monotonic()
        timer.close()
    return samples(starts, due, submitted)


def run_heap_inline(ds: list[float]) -> list[tuple[float, bool]]:
    """Lateness with the heap+Condition timer thread running each job itself."""
    starts = [0.0] * len(ds)
    due = [0.0] * len(ds)

    def record(index: int) -> None:
        starts[index] = time.monotonic()

    timer = HeapTimer()
    for i, d in enumerate(ds):
        due[i] = time.monotonic() + d
        timer.call_at(due[i], record, i)
    submitted = time.monotonic()
    timer.close()
    return samples(starts, due, submitted)


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__, rounds=5)
    parser.add_argument("--jobs", type=int, default=2_000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    ds = delays(args.jobs, args.seed)
    results = alternate(
        args.rounds,
        {
            "postroom": lambda: run_postroom(ds, args.workers),
            "Timer+TPE": lambda: run_threading_timer(ds, args.workers),
            "heap+TPE": lambda: run_heap_timer(ds, args.workers),
            "heap inline": lambda: run_heap_inline(ds),
        },
    )
    pooled = {name: [x for run in runs for x in run] for name, runs in results.items()}
    late = {name: [x for x, _ in v] for name, v in pooled.items()}
    quiet = {name: [x for x, after in v if after] for name, v in pooled.items()}
    p99 = {name: percentile(v, 99) for name, v in late.items()}
    print(
        f"\nC. timers: {args.jobs:,} jobs due {MIN_DELAY * 1000:.0f}-{MAX_DELAY * 1000:.0f} ms "
        f"out, {args.workers} workers, {args.rounds} rounds pooled "
        f"({args.jobs * args.rounds:,} samples per side)\n"
    )
    print_table(
        [
            "side",
            "p50 ms",
            "p99 ms",
            "max ms",
            "early",
            "postroom p99 / this p99",
            "p99 ms, due after submit loop",
        ],
        [
            [
                name,
                f"{percentile(v, 50) * 1000:.3f}",
                f"{p99[name] * 1000:.3f}",
                f"{max(v) * 1000:.3f}",
                sum(1 for x in v if x < 0),
                f"{p99['postroom'] / p99[name]:.2f}x",
                f"{percentile(quiet[name], 99) * 1000:.3f} (n={len(quiet[name]):,})",
            ]
            for name, v in late.items()
        ],
    )
    ok = p99["postroom"] <= 0.001
    print(
        f"\npostroom p99 = {p99['postroom'] * 1000:.3f} ms (target <= 1 ms: "
        f"{'met' if ok else 'NOT met'}); early starts: "
        f"{sum(1 for x in late['postroom'] if x < 0)} (must be 0)"
    )


if __name__ == "__main__":
    main()
