"""Helpers shared by the benchmarks: rounds, percentiles, tables, RSS, thread counts.

Nothing here is timed itself. The machine the benches run on is shared and noisy,
so every bench runs postroom and its standard-library baseline in the same process
(or the same parent run), alternating, and reports medians and ratios.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = [
    "ThreadSampler",
    "alternate",
    "base_parser",
    "count_inversions",
    "fmt",
    "measure_sleep",
    "median",
    "percentile",
    "print_table",
    "reset_peak_rss",
    "rss_kb",
    "submit_all",
]


def base_parser(doc: str | None, rounds: int) -> argparse.ArgumentParser:
    """An argument parser with the options every bench has (``--rounds``)."""
    parser = argparse.ArgumentParser(
        description=(doc or "").strip().splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--rounds", type=int, default=rounds, help="rounds per side, alternating")
    return parser


def alternate(rounds: int, sides: dict[str, Callable[[], T]]) -> dict[str, list[T]]:
    """Run every side ``rounds`` times, reversing the order each round (A B, B A, ...),
    so slow drift on a shared machine hits both sides alike. Returns each side's results."""
    results: dict[str, list[T]] = {name: [] for name in sides}
    order = list(sides)
    for r in range(rounds):
        for name in order if r % 2 == 0 else reversed(order):
            gc.collect()
            results[name].append(sides[name]())
            print(f"  round {r + 1}/{rounds} {name}: done", file=sys.stderr, flush=True)
    return results


def submit_all(
    submit: Callable[[int], T],
    jobs: int,
    submitters: int = 1,
    key: Callable[[int], int] | None = None,
) -> list[T]:
    """``submit(i)`` for every i in ``range(jobs)``, from ``submitters`` threads.

    Thread t submits, in increasing order, the i whose ``key(i) % submitters``
    is t (``key`` defaults to i itself): a key that names a repo keeps each
    repo's jobs on one thread, so their submission order is their index order.
    With one submitter, the calling thread does it all. Returns what ``submit``
    returned, by thread; the first error of any thread is raised once all are
    joined."""
    if submitters == 1:
        return [submit(i) for i in range(jobs)]
    shares: list[list[int]] = [[] for _ in range(submitters)]
    for i in range(jobs):
        shares[(i if key is None else key(i)) % submitters].append(i)
    out: list[list[T]] = [[] for _ in range(submitters)]
    errors: list[BaseException] = []

    def run(t: int) -> None:
        try:
            out[t] = [submit(i) for i in shares[t]]
        except BaseException as exc:  # noqa: BLE001 - raised again on the caller's thread
            errors.append(exc)

    threads = [
        threading.Thread(target=run, args=(t,), name=f"bench-submitter-{t}")
        for t in range(submitters)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return [item for part in out for item in part]


def median(values: Iterable[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0-100) with linear interpolation between ranks."""
    data = sorted(values)
    if not data:
        return float("nan")
    k = (len(data) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (k - lo)


def count_inversions(seq: Sequence[int]) -> int:
    """Pairs i < j with seq[i] > seq[j] (merge sort, O(n log n))."""

    def sort(xs: list[int]) -> tuple[list[int], int]:
        if len(xs) <= 1:
            return xs, 0
        mid = len(xs) // 2
        left, a = sort(xs[:mid])
        right, b = sort(xs[mid:])
        merged: list[int] = []
        inv = a + b
        i = j = 0
        while i < len(left) and j < len(right):
            if left[i] <= right[j]:
                merged.append(left[i])
                i += 1
            else:
                merged.append(right[j])
                inv += len(left) - i
                j += 1
        merged += left[i:] + right[j:]
        return merged, inv

    return sort(list(seq))[1]


def measure_sleep(seconds: float, samples: int = 300) -> float:
    """The median real length of ``time.sleep(seconds)`` on this machine, right now."""
    lengths = []
    for _ in range(samples):
        t0 = time.perf_counter()
        time.sleep(seconds)
        lengths.append(time.perf_counter() - t0)
    return statistics.median(lengths)


def rss_kb() -> dict[str, int]:
    """This process's current (VmRSS) and peak (VmHWM) resident set size, in KiB."""
    out = {}
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    return out


def reset_peak_rss() -> None:
    """Reset VmHWM to the current RSS (Linux >= 4.0), so a peak belongs to one run."""
    with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
        f.write("5")


class ThreadSampler:
    """Samples ``threading.active_count()`` every ``interval`` seconds; keeps the peak.

    Use as a context manager; the sampler thread is joined on exit."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, threading.active_count())
            self.samples += 1

    def __enter__(self) -> ThreadSampler:
        self._thread.start()
        self.peak = threading.active_count()
        return self

    def __exit__(self, *exc: object) -> None:
        self.peak = max(self.peak, threading.active_count())  # a last sample
        self._stop.set()
        self._thread.join()
        # The sampler counted itself; report the threads of the code under test.
        self.peak -= 1


def fmt(value: float, digits: int = 2) -> str:
    """A number with thousands separators and ``digits`` decimals."""
    return f"{value:,.{digits}f}"


def print_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Print a plain-text table (Markdown-compatible: paste it into the README)."""
    cells = [[str(h) for h in headers], *([str(c) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    print(line(cells[0]))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells[1:]:
        print(line(row))
