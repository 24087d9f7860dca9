"""H: what the dashboard's live view costs the scheduler under bench A's load.

Bench A's workload (N no-op jobs on W workers: submit all, wait all) with the
admin server running on every side, and a client polling the endpoints the
dashboard polls, as often as the page does (every 2 s) and harsher (every
0.25 s), against no client at all. Each poll is the page's: ``stats``, the
running jobs, the newest jobs, the recent failures and the schedules, one
HTTP request each, from a process of its own as a browser would be. It polls
as the clock starts (its first poll at once, the page's worst phase) and every
interval after; 300,000 jobs make a round of a few seconds, so the 2 s side
looks several times per round.
Sides alternate round by round; the report is each side's median jobs/s and
its ratio to the side nobody looks at. Target: >= 0.95x at 2 s.

    PYTHONPATH=. python -m bench.admin [--jobs 300000 --workers 8 --rounds 5]
"""

from __future__ import annotations

import subprocess
import sys
import time

from actors import Scheduler
from bench.common import alternate, base_parser, fmt, median, print_table
from bench.throughput import noop

PAGE_POLL = (
    "/api/v1/stats",
    "/api/v1/jobs?status=running&limit=50",
    "/api/v1/jobs?limit=30",
    "/api/v1/jobs?status=failed&limit=10",
    "/api/v1/schedules",
)
"""What the dashboard asks for at each poll (actors/_admin/dashboard.html, ``poll``)."""


CLIENT = """
import http.client, sys, time
port, interval, paths = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3:]
sys.stdin.readline()  # go
polls, next_poll = 0, time.monotonic()
import select
while True:
    for path in paths:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        conn.close()
        if response.status != 200:
            sys.exit(f"GET {path}: {response.status}")
    polls += 1
    next_poll += interval
    if select.select([sys.stdin], [], [], max(0.0, next_poll - time.monotonic()))[0]:
        break
print(polls, flush=True)
"""
"""The polling client: a process of its own, as a browser is, so its own work
(HTTP, JSON) does not run on the scheduler's GIL. It polls at once on ``go``,
then every interval, until a second line; then prints how many polls it made."""


class Poller:
    """`CLIENT` polling `PAGE_POLL` every ``interval`` seconds between `go` and `stop`."""

    def __init__(self, port: int, interval: float) -> None:
        # Started before the clock: a process's start-up is not the page's cost.
        self._child = subprocess.Popen(
            [sys.executable, "-c", CLIENT, str(port), str(interval), *PAGE_POLL],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def go(self) -> None:
        assert self._child.stdin is not None
        self._child.stdin.write("go\n")
        self._child.stdin.flush()

    def stop(self) -> int:
        """Stop polling; how many polls were made."""
        out, _ = self._child.communicate("stop\n", timeout=30)
        if self._child.returncode != 0:
            raise RuntimeError(f"the polling client failed ({self._child.returncode})")
        return int(out)


def run(jobs: int, workers: int, interval: float | None) -> tuple[float, int]:
    """Jobs per second through postroom serving the admin API, polled every
    ``interval`` seconds (None: nobody polls); and how many polls were made."""
    sched = Scheduler(workers=workers, max_pending=max(100_000, jobs))
    sched.register("noop", noop)
    with sched:
        server = sched.serve_admin(0)
        poller = Poller(server.port, interval) if interval is not None else None
        polls = 0
        try:
            t0 = time.perf_counter()
            if poller is not None:
                poller.go()
            handles = [sched.submit("noop", i) for i in range(jobs)]
            for h in handles:
                if not h.wait(120):
                    raise RuntimeError(f"job {h.id} not done after 120 s: {h.info()}")
            elapsed = time.perf_counter() - t0
        finally:
            if poller is not None:
                polls = poller.stop()
        completed = sched.stats().completed
    if completed != jobs:
        raise RuntimeError(f"postroom completed {completed} of {jobs}")
    return jobs / elapsed, polls


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__, rounds=5)
    parser.add_argument("--jobs", type=int, default=300_000)
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args(argv)

    sides = {
        "nobody looking": None,
        "page, every 2 s": 2.0,
        "harsh, every 0.25 s": 0.25,
    }
    results = alternate(
        args.rounds,
        {
            name: (lambda interval=interval: run(args.jobs, args.workers, interval))
            for name, interval in sides.items()
        },
    )
    rates = {name: [rate for rate, _ in values] for name, values in results.items()}
    base = median(rates["nobody looking"])
    print(
        f"\nH. the dashboard's cost: {args.jobs:,} no-op jobs, {args.workers} workers, "
        f"admin server on every side, median of {args.rounds} rounds (alternating)\n"
    )
    print_table(
        ["side", "median jobs/s", "min", "max", "polls/round", "vs nobody"],
        [
            [
                name,
                fmt(median(rates[name]), 0),
                fmt(min(rates[name]), 0),
                fmt(max(rates[name]), 0),
                fmt(median([polls for _, polls in results[name]]), 0),
                f"{median(rates[name]) / base:.3f}x",
            ]
            for name in sides
        ],
    )
    ratio = median(rates["page, every 2 s"]) / base
    verdict = "met" if ratio >= 0.95 else "NOT met"
    print(f"\npage every 2 s / nobody = {ratio:.3f}x  (target >= 0.95x: {verdict})")


if __name__ == "__main__":
    main()
