"""The ``postroom`` command line.

``postroom demo`` runs a simulated CI workload on an in-process scheduler: builds
per repository that fail now and then and are retried with backoff, integration
tests that overrun their timeout, builds that hang and are cancelled, scheduled
builds cancelled before they start, and a few urgent (priority 1) builds. A live
line shows the progress; a summary table follows.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import random
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TextIO, TypeVar

from actors import (
    CancelResult,
    JobContext,
    JobHandle,
    JobInfo,
    JobStatus,
    Priority,
    RetryPolicy,
    Scheduler,
    Stats,
    __version__,
)

__all__ = ["main"]

N = TypeVar("N", int, float)

POLL_EVERY = 0.1
"""Seconds between two looks at the scheduler (and live-line refreshes on a TTY)."""

PRINT_EVERY = 0.5
"""Seconds between two progress lines when stdout is not a TTY."""

TIMED_OUT = "postroom.JobTimedOut"
"""The error type of a job whose last attempt overran its timeout."""


class BuildError(Exception):
    """The simulated build broke (a flaky test, a network hiccup): worth a retry."""


@dataclass
class Workload:
    """The demo's jobs, and what the main thread still has to do with them."""

    handles: list[JobHandle] = field(default_factory=list)
    hung: list[JobHandle] = field(default_factory=list)
    """Builds that never finish on their own: cancelled once seen running."""
    urgent: list[JobHandle] = field(default_factory=list)
    cancels: Counter[CancelResult] = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)
    """When the first job was about to be submitted."""


def build(ctx: JobContext, payload: Mapping[str, float]) -> dict[str, int]:
    """A build in a few steps of a few ms; each attempt fails with the given odds."""
    rng = random.Random(f"{payload['seed']}:{ctx.attempt}")
    steps = rng.randint(2, 5)
    for step in range(1, steps + 1):
        ctx.wait(payload["ms"] / 1000 / steps)  # returns early when told to stop
        ctx.raise_if_cancelled()
        ctx.progress(step / steps, f"step {step}/{steps}")
    if rng.random() < payload["fail_rate"]:
        msg = f"attempt {ctx.attempt} broke (simulated)"
        raise BuildError(msg)
    return {"steps": steps}


async def integration_test(ctx: JobContext, payload: Mapping[str, float]) -> str:
    """An async test run that often overruns its 30 ms timeout (and is cancelled for real)."""
    rng = random.Random(f"{payload['seed']}:{ctx.attempt}")
    await asyncio.sleep(rng.uniform(0.01, 0.06))
    return "passed"


def make_scheduler(workers: int) -> Scheduler:
    """A scheduler with the demo's two handlers registered."""
    sched = Scheduler(workers=workers)
    backoff = RetryPolicy.exponential(base=0.01, cap=0.1)
    sched.register("build", build, max_retries=2, retry=backoff)
    sched.register("test", integration_test, max_retries=2, timeout=0.03, retry=backoff)
    return sched


def plan(jobs: int, rng: random.Random) -> list[str]:
    """The kind of each job: a few of each special kind, the rest builds, shuffled."""
    specials = {"test": jobs // 25, "hung": jobs // 100, "nightly": jobs // 50}
    specials["urgent"] = jobs // 60
    kinds = [kind for kind, n in specials.items() for _ in range(max(1, n))][:jobs]
    kinds += ["build"] * (jobs - len(kinds))
    rng.shuffle(kinds)
    return kinds


def submit_all(sched: Scheduler, args: argparse.Namespace, rng: random.Random) -> Workload:
    """Submit the workload; cancel the scheduled (nightly) builds before they start."""
    work = Workload()
    nightly, fail_rate = [], args.fail_rate
    for kind in plan(args.jobs, rng):
        repo = f"repo-{rng.randrange(args.repos):02d}"
        payload = {"seed": rng.getrandbits(32), "ms": rng.randint(5, 30), "fail_rate": fail_rate}
        if kind == "test":
            handle = sched.submit("test", payload, repo=repo)
        elif kind == "hung":
            handle = sched.submit("build", {**payload, "ms": 60_000}, repo=repo)
            work.hung.append(handle)
        elif kind == "nightly":
            handle = sched.submit("build", payload, repo=repo, delay=60.0)
            nightly.append(handle)
        else:
            priority = Priority.USER_BLOCKING if kind == "urgent" else Priority.USER_VISIBLE
            handle = sched.submit("build", payload, repo=repo, priority=priority)
            if kind == "urgent":
                work.urgent.append(handle)
        work.handles.append(handle)
    for handle in nightly:
        work.cancels[sched.cancel(handle.id)] += 1
    return work


def wait_all(handles: list[JobHandle], seconds: float) -> list[JobHandle]:
    """Wait up to ``seconds`` for the handles to finish; return those still unfinished."""
    deadline = time.monotonic() + seconds
    for handle in handles:
        if not handle.wait(max(0.0, deadline - time.monotonic())):
            break
    return [handle for handle in handles if not handle.done()]


def progress_line(stats: Stats, retrying: int, total: int, elapsed: float) -> str:
    """One line of progress."""
    rate = stats.finished / elapsed if elapsed > 0 else 0.0
    return (
        f"done {stats.finished}/{total}  running {stats.running}  retrying {retrying}  "
        f"pending {max(0, stats.pending - retrying)}  failed {stats.failed}  "
        f"cancelled {stats.cancelled}  {rate:,.0f} jobs/s"
    )


def watch(sched: Scheduler, work: Workload, out: TextIO, tty: bool) -> float:
    """Show progress until every handle is done; cancel hung builds once they run.

    Returns:
        Seconds from the first submit until the last job finished.
    """
    start = last_print = work.started
    unfinished, width = work.handles, 0
    while unfinished:
        unfinished = wait_all(unfinished, POLL_EVERY)
        for handle in [h for h in work.hung if h.status is JobStatus.RUNNING]:
            work.cancels[sched.cancel(handle.id)] += 1
            work.hung.remove(handle)
        now = time.monotonic()
        if not tty and now - last_print < PRINT_EVERY and unfinished:
            continue
        last_print = now
        retrying = sum(h.status is JobStatus.RETRYING for h in unfinished)
        line = progress_line(sched.stats(), retrying, len(work.handles), now - start)
        if tty:
            # Longer than the terminal, the line would wrap and `\r` not rewrite it.
            line = line[: shutil.get_terminal_size().columns - 1]
            out.write("\r" + line.ljust(width))
            width = len(line)
        else:
            out.write(line + "\n")
        out.flush()
    if tty:
        out.write("\n")
    return time.monotonic() - start


def percentile(values: Sequence[float], pct: float) -> float | None:
    """The nearest-rank percentile of ``values``, or None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def waits_ms(infos: Iterable[JobInfo]) -> list[float]:
    """Queue waits in milliseconds of the jobs that started (others never waited for a run)."""
    waits = (info.queue_wait for info in infos)
    return [wait * 1000 for wait in waits if wait is not None]


def ms(value: float | None) -> str:
    """Milliseconds for the table; a dash for no value."""
    return "-" if value is None else f"{value:,.1f} ms"


def summary(stats: Stats, work: Workload, elapsed: float, seed: int) -> list[tuple[str, str]]:
    """The summary table's rows."""
    infos = [handle.info() for handle in work.handles]
    timeouts = sum(info.error is not None and info.error.type == TIMED_OUT for info in infos)
    cancels = ", ".join(f"{n} {result.value}" for result, n in sorted(work.cancels.items()))
    waits, urgent = waits_ms(infos), waits_ms(handle.info() for handle in work.urgent)
    return [
        ("submitted", f"{stats.submitted}"),
        ("completed", f"{stats.completed}"),
        ("failed", f"{stats.failed} ({timeouts} timed out)"),
        ("cancelled", f"{stats.cancelled} (cancel calls: {cancels or 'none'})"),
        ("retried", f"{stats.retried}"),
        ("throughput", f"{stats.finished / elapsed if elapsed else 0.0:,.0f} jobs/s"),
        ("queue wait p50", ms(percentile(waits, 50))),
        ("queue wait p99", ms(percentile(waits, 99))),
        ("p50, priority 1", ms(percentile(urgent, 50))),
        ("avg run time", ms(stats.avg_run_time * 1000)),
        ("wall time", f"{elapsed:.2f} s (seed {seed})"),
    ]


@contextlib.contextmanager
def quiet_log(quiet: bool) -> Iterator[None]:
    """Keep postroom's log of job failures out of the display (they are the point of
    the simulation), or show it when not ``quiet``; restore the logger afterwards."""
    log = logging.getLogger("postroom")
    level = log.level
    if quiet:
        log.setLevel(logging.CRITICAL)
    else:
        logging.basicConfig(format="%(levelname)s %(message)s")
    try:
        yield
    finally:
        log.setLevel(level)


def demo(args: argparse.Namespace, out: TextIO) -> int:
    """Run the simulated CI workload and print the summary."""
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    rng = random.Random(seed)
    tty = out.isatty()
    out.write(f"postroom demo: {args.jobs} jobs, {args.repos} repos, {args.workers} workers\n")
    with quiet_log(not args.verbose), make_scheduler(args.workers) as sched:
        work = submit_all(sched, args, rng)
        elapsed = watch(sched, work, out, tty)
    rows = summary(sched.stats(), work, elapsed, seed)
    width = max(len(name) for name, _ in rows)
    out.write("".join(f"  {name.ljust(width)}  {value}\n" for name, value in rows))
    return 0


def _bounded(cast: type[N], low: N, high: float = math.inf) -> Callable[[str], N]:
    """An argparse type: ``cast(text)`` from ``low`` to ``high``, or a clear error."""
    what = "an integer" if cast is int else "a number"
    bounds = f">= {low}" if high == math.inf else f"from {low} to {high}"

    def parse(text: str) -> N:
        try:
            value = cast(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:  # also rejects nan
            msg = f"must be {what} {bounds}, not {text!r}"
            raise argparse.ArgumentTypeError(msg)
        return value

    return parse


def parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    root = argparse.ArgumentParser(prog="postroom", description="An embeddable job scheduler.")
    root.add_argument("--version", action="version", version=f"postroom {__version__}")
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser("demo", help="run a simulated CI workload and summarise it")
    options = (
        ("--jobs", "N", _bounded(int, 0), 300, "jobs to submit"),
        ("--repos", "R", _bounded(int, 1), 12, "repositories the jobs are spread over"),
        ("--workers", "W", _bounded(int, 1), 8, "size of the worker pool"),
        ("--fail-rate", "F", _bounded(float, 0.0, 1.0), 0.15, "chance a build attempt fails"),
    )
    for flag, metavar, kind, default, text in options:
        run.add_argument(
            flag, type=kind, default=default, metavar=metavar, help=f"{text} ({default})"
        )
    run.add_argument("--seed", type=int, metavar="S", help="random seed (random)")
    run.add_argument("--verbose", action="store_true", help="show postroom's warnings and errors")
    return root


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``postroom`` console script."""
    args = parser().parse_args(argv)
    try:
        return demo(args, sys.stdout)
    except KeyboardInterrupt:
        # Leaving the `with` block on an exception has already cancelled the jobs.
        sys.stdout.write("\ninterrupted\n")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
