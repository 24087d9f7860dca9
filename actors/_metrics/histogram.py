"""Run-time histograms that one thread writes with no lock and any thread reads.

Each worker keeps its own `RunHistogram` per (queue, handler) and observes every
attempt it runs: a few list increments. A lock shared by the workers would
convoy under the GIL (see `actors._jobs.table`); a histogram per worker needs none.
A scrape reads each one (`RunHistogram.read`) and adds them up
(`merge_histograms`).
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass

from actors._errors import InvalidArgument

__all__ = ["RUN_BUCKETS", "HistogramData", "RunHistogram", "merge_histograms"]

RUN_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
)  # fmt: skip
"""Upper bounds, in seconds, of the run-time buckets: from quick jobs to ten-minute builds."""


@dataclass(frozen=True, slots=True)
class HistogramData:
    """A histogram read at one moment: what `RunHistogram.read` returns and scrapes show."""

    bounds: tuple[float, ...]
    """Upper bounds of the buckets (inclusive, ascending), without +Inf."""
    counts: tuple[int, ...]
    """Observations per bucket, not cumulative; one more than ``bounds``: the last
    counts those above the highest bound."""
    sum: float
    """Total of the observed values, in seconds."""
    count: int
    """Observations; always ``sum(counts)``."""

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations <= bound) pairs ending with +Inf, as Prometheus wants."""
        return list(zip((*self.bounds, math.inf), itertools.accumulate(self.counts), strict=True))


def merge_histograms(
    histograms: Iterable[HistogramData], *, bounds: tuple[float, ...] = RUN_BUCKETS
) -> HistogramData:
    """Add histograms up (one per worker, say); none gives an empty one over ``bounds``.

    Raises:
        InvalidArgument: the histograms do not all have ``bounds``.
    """
    counts = [0] * (len(bounds) + 1)
    total = 0.0
    for histogram in histograms:
        if histogram.bounds != bounds:
            msg = f"cannot merge a histogram over {histogram.bounds!r} into one over {bounds!r}"
            raise InvalidArgument(msg)
        for index, count in enumerate(histogram.counts):
            counts[index] += count
        total += histogram.sum
    return HistogramData(bounds, tuple(counts), total, sum(counts))


class RunHistogram:
    """A run-time histogram written by one thread, with no lock, and read by any.

    Each worker keeps its own (one per queue and handler) and is its only
    writer; a scrape reads every worker's and merges them (`merge_histograms`).
    A lock shared by the workers would be taken once per job by every worker:
    under the GIL a thread that blocks on a held lock gives up its turn, so
    workers would queue behind each other (a lock convoy) for nothing more than
    a few increments. With one writer, an increment cannot be lost, and a reader
    only ever sees each number before or after an increment.

    A worker that keeps these in a dict it alone fills lets a reader take
    ``dict.copy()`` (one C call under the GIL) before iterating, never the live
    dict, which may grow under it.
    """

    __slots__ = ("_bounds", "_counts", "_sum")

    def __init__(self, bounds: tuple[float, ...] = RUN_BUCKETS) -> None:
        self._bounds = bounds
        self._counts = [0] * (len(bounds) + 1)
        self._sum = 0.0

    def observe(self, seconds: float) -> None:
        """Count one run of ``seconds``; call it from the owning thread only."""
        # bisect_left finds the first bound >= seconds: Prometheus buckets are "le".
        self._counts[bisect.bisect_left(self._bounds, seconds)] += 1
        self._sum += seconds

    def read(self) -> HistogramData:
        """A copy of the figures, from any thread.

        Read while the owner observes, the copy may be off by the one
        observation in flight: counted in its bucket but not yet in ``sum``.
        The count is the buckets' total, so buckets and count always agree.
        """
        counts = tuple(self._counts)  # one C call: a consistent copy of the buckets
        return HistogramData(self._bounds, counts, self._sum, sum(counts))
