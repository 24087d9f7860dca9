"""The handlers benches F and G run, declared once for the scheduler and its nodes.

``spin`` is CPU-bound pure Python: it holds the GIL for as long as it runs,
which is what worker nodes (processes) are for. Its payload says how many
rounds of arithmetic to do; `calibrate` finds the count that takes about the
wanted time on this machine.
"""

from __future__ import annotations

import time
from typing import Any

from actors import Handlers

handlers = Handlers()


@handlers.handler("noop")
def noop(_ctx: Any, _payload: Any) -> None:
    return None


@handlers.handler("spin")
def spin(_ctx: Any, payload: Any) -> int:
    return work(int(payload))


def work(rounds: int) -> int:
    """Pure-Python arithmetic: ``rounds`` iterations, no I/O, no sleeping."""
    total = 0
    for i in range(rounds):
        total = (total + i * i) % 1_000_003
    return total


def calibrate(seconds: float) -> int:
    """The ``spin`` payload that takes about ``seconds`` here (the best of 5 tries)."""
    rounds = 10_000
    while True:
        t0 = time.perf_counter()
        work(rounds)
        took = time.perf_counter() - t0
        if took > 0.02:
            break
        rounds *= 2
    per_round = min(_timed(rounds) for _ in range(5)) / rounds
    return max(1, round(seconds / per_round))


def _timed(rounds: int) -> float:
    t0 = time.perf_counter()
    work(rounds)
    return time.perf_counter() - t0
