"""The ``postroom`` command line.

``postroom demo`` runs a simulated CI workload (``_demo_workload.py``: builds
per repository with retries, timeouts and cancels, hotfixes on a queue of their
own followed by deploys, a cron and an interval schedule) on an in-process
scheduler. A live line shows per-queue figures and the furthest running job's
progress; a summary table follows, with the queues, the deploys and the
schedules' counts. With ``--serve PORT`` the admin API and the dashboard are
live on that port while it runs (the URL and the token are printed), and stay
live after the jobs are done, until Ctrl-C.

``postroom jobs``, ``postroom job`` and ``postroom prune`` read and prune a
scheduler's store (``actors/_journal/cli.py``); ``postroom keys`` makes a CURVE
keypair for a node or a scheduler (``transport/keys_cli.py``); ``postroom
worker`` runs a worker node, or N node processes (``transport/worker_cli.py``);
``postroom serve`` runs a scheduler as a process of its own
(``transport/serve_cli.py``); ``postroom dashboard`` serves the admin API and
page read-only over a store file (``actors/_admin/cli.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import math
import os
import random
import shutil
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TextIO, TypeVar

from actors import (
    JobInfo,
    JobStatus,
    ScheduleInfo,
    Scheduler,
    Stats,
    StoreError,
    __version__,
)
from actors._admin import cli as dashboard_cli
from actors._demo_workload import (
    HIGH,
    HIGH_WORKERS,
    PROBE_EVERY,
    ROLLUP_CRON,
    Workload,
    add_schedules,
    make_scheduler,
    schedules_settled,
    submit_all,
    wait_all,
)
from actors._journal import cli as store_commands
from transport import keys_cli, serve_cli, worker_cli

__all__ = ["main"]

N = TypeVar("N", int, float)

POLL_EVERY = 0.1
"""Seconds between two looks at the scheduler (and live-line refreshes on a TTY)."""

PRINT_EVERY = 0.5
"""Seconds between two progress lines when stdout is not a TTY."""

TIMED_OUT = "postroom.JobTimedOut"
"""The error type of a job whose last attempt overran its timeout."""

SEP = "  "
"""Between two pieces of the progress line."""


def furthest(sched: Scheduler) -> JobInfo | None:
    """The running job whose reported progress (``ctx.progress``) is furthest along."""
    best: JobInfo | None = None
    for info in sched.jobs(status=JobStatus.RUNNING):
        if info.progress is None:
            continue
        if best is None or best.progress is None or info.progress.fraction > best.progress.fraction:
            best = info
    return best


def progress_text(info: JobInfo) -> str:
    """A running job's progress for the live line: who, how far, and its message."""
    who = info.handler if info.repo is None else f"{info.handler} {info.repo}"
    if info.progress is None:
        return f"{who} running"
    return f"{who} {info.progress.fraction:.0%} {info.progress.message}".rstrip()


def fit(pieces: Sequence[tuple[int, str]], width: int | None) -> str:
    """Join ``(rank, text)`` pieces in order; to fit ``width``, drop the highest
    ranks first (the later of equal ranks first), then cut what is left."""
    kept = list(pieces)
    while width is not None and len(kept) > 1 and len(SEP.join(t for _, t in kept)) > width:
        del kept[max(range(len(kept)), key=lambda i: (kept[i][0], i))]
    line = SEP.join(text for _, text in kept)
    return line if width is None else line[:width]


def progress_line(
    stats: Stats, retrying: int, elapsed: float, lead: JobInfo | None, width: int | None = None
) -> str:
    """One line of progress: totals, each queue's figures, the furthest running job.

    ``width`` (a terminal's) drops the least telling pieces first: the rate, then
    the retries, the failures, the queues; the count done and the progress stay.
    """
    rate = stats.finished / elapsed if elapsed > 0 else 0.0
    pieces = [(0, f"done {stats.finished}/{stats.submitted}")]
    pieces += [
        (2, f"{q.name} {q.running}/{q.workers} busy, {q.pending} waiting") for q in stats.queues
    ]
    pieces += [
        (4, f"retrying {retrying}"),
        (3, f"failed {stats.failed}"),
        (3, f"cancelled {stats.cancelled}"),
        (5, f"{rate:,.0f} jobs/s"),
    ]
    if lead is not None:
        pieces.append((1, f"furthest: {progress_text(lead)}"))
    return fit(pieces, width)


def watch(
    sched: Scheduler,
    work: Workload,
    out: TextIO,
    tty: bool,
    stay: Callable[[], None] | None = None,
) -> float:
    """Show progress until every job is done and each schedule has run a job; cancel
    hung builds once they run; call ``stay`` (the dashboard stays live); then remove
    the schedules (keeping their figures).

    Returns:
        Seconds from the start until then.
    """
    start = last_print = work.started
    unfinished, width, shown_progress = [*work.handles, *work.deploys], 0, False
    while True:
        if unfinished:
            unfinished = wait_all(unfinished, POLL_EVERY)
        else:
            time.sleep(POLL_EVERY)  # only the schedules' first jobs are still to come
        for handle in [h for h in work.hung if h.status is JobStatus.RUNNING]:
            work.cancels[sched.cancel(handle.id)] += 1
            work.hung.remove(handle)
        finished = not unfinished and schedules_settled(sched, work)
        lead = furthest(sched)
        now = time.monotonic()
        # Without a TTY: a line every PRINT_EVERY, and one as soon as a job has
        # progress to show if no line has shown any yet.
        first_progress = lead is not None and not shown_progress
        if not (tty or finished or first_progress or now - last_print >= PRINT_EVERY):
            continue
        last_print = now
        shown_progress = shown_progress or lead is not None
        retrying = sum(h.status is JobStatus.RETRYING for h in unfinished)
        columns = shutil.get_terminal_size().columns - 1 if tty else None
        # Longer than the terminal, the line would wrap and `\r` not rewrite it.
        line = progress_line(sched.stats(), retrying, now - start, lead, columns)
        if tty:
            out.write("\r" + line.ljust(width))
            width = len(line)
        else:
            out.write(line + "\n")
        out.flush()
        if finished:
            break
    if tty:
        out.write("\n")
    elapsed = time.monotonic() - start
    work.finished = sched.stats().finished
    if stay is not None:
        stay()
    work.final = [handle.remove() for handle in work.schedules]
    return elapsed


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


def plural(n: int, noun: str) -> str:
    """``"1 fire"``, ``"2 fires"``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def statuses(infos: Iterable[JobInfo]) -> str:
    """How many jobs ended how: ``"9 completed, 1 cancelled"``, or ``"none"``."""
    counts = Counter(info.status.value for info in infos)
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "none"


def scheduled_jobs(sched: Scheduler, schedule: ScheduleInfo) -> list[JobInfo]:
    """The jobs a schedule made, found by their `JobInfo.schedule_id`."""
    jobs = sched.jobs(handler=schedule.handler, limit=max(100, 2 * schedule.fires))
    return [info for info in jobs if info.schedule_id == schedule.id]


def queue_rows(stats: Stats, infos: Sequence[JobInfo]) -> list[tuple[str, str]]:
    """A row per queue: its workers, its jobs, and how long they waited for a worker.

    Follow-ups are left out of the waits: theirs include the wait for the job
    they follow.
    """
    rows = []
    for figures in stats.queues:
        mine = [info for info in infos if info.queue == figures.name]
        ran = sum(info.started_at is not None for info in mine)
        waits = waits_ms(info for info in mine if info.parent is None)
        rows.append((
            f"queue {figures.name}",
            f"{plural(figures.workers, 'worker')}: {ran} of {plural(len(mine), 'job')} ran, "
            f"wait p50 {ms(percentile(waits, 50))}",
        ))  # fmt: skip
    return rows


def schedule_row(info: ScheduleInfo, jobs: Sequence[JobInfo]) -> tuple[str, str]:
    """A schedule's counts (`ScheduleInfo`) and how the jobs it made ended."""
    what = f"cron '{info.description}'" if info.kind == "cron" else info.description
    return (
        f"schedule {info.handler}",
        f"{what}: {plural(info.fires, 'fire')}, {plural(info.misfires, 'misfire')}, "
        f"{plural(info.skips, 'skip')}; "
        f"its jobs: {statuses(jobs)}",
    )


def summary(sched: Scheduler, work: Workload, elapsed: float, seed: int) -> list[tuple[str, str]]:
    """The summary table's rows (the scheduler has shut down: its figures are final)."""
    stats = sched.stats()
    infos = [handle.info() for handle in work.handles]
    deploys = [handle.info() for handle in work.deploys]
    made = {info.id: scheduled_jobs(sched, info) for info in work.final}
    everything = infos + deploys + [job for jobs in made.values() for job in jobs]
    timeouts = sum(info.error is not None and info.error.type == TIMED_OUT for info in infos)
    cancels = ", ".join(f"{n} {result.value}" for result, n in sorted(work.cancels.items()))
    waits, urgent = waits_ms(infos), waits_ms(handle.info() for handle in work.urgent)
    fires = sum(info.fires for info in work.final)
    finished = stats.finished if work.finished is None else work.finished
    return [
        (
            "submitted",
            f"{stats.submitted} ({plural(len(infos), 'CI job')}, {plural(len(deploys), 'deploy')}, "
            f"{fires} by schedules)",
        ),
        ("completed", f"{stats.completed}"),
        ("failed", f"{stats.failed} ({timeouts} timed out)"),
        ("cancelled", f"{stats.cancelled} (cancel calls: {cancels or 'none'})"),
        ("retried", f"{stats.retried}"),
        ("throughput", f"{finished / elapsed if elapsed else 0.0:,.0f} jobs/s"),
        ("queue wait p50", ms(percentile(waits, 50))),
        ("queue wait p99", ms(percentile(waits, 99))),
        ("p50, priority 1", ms(percentile(urgent, 50))),
        ("avg run time", ms(stats.avg_run_time * 1000)),
        *queue_rows(stats, everything),
        ("deploys", f"{len(deploys)} after hotfix builds: {statuses(deploys)}"),
        *(schedule_row(info, made[info.id]) for info in work.final),
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


def linger(url: str, out: TextIO) -> None:
    """Keep the dashboard live after the demo's jobs are done, until Ctrl-C."""
    out.write(f"the demo's jobs are done; the dashboard stays live at {url} (Ctrl-C to stop)\n")
    out.flush()
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()
    out.write("\n")


def demo(
    args: argparse.Namespace, out: TextIO, *, stay: Callable[[str, TextIO], None] = linger
) -> int:
    """Run the simulated CI workload and print the summary.

    With ``args.serve`` (a port), the admin API and the dashboard are served
    while it runs, and ``stay(url, out)`` keeps them live once the jobs are done
    (the schedules still firing) until it returns: by default until Ctrl-C.
    """
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    rng = random.Random(seed)
    tty = out.isatty()
    out.write(
        f"postroom demo: {args.jobs} jobs, {args.repos} repos, {args.workers} workers, "
        f"{HIGH_WORKERS} more on queue '{HIGH}' for hotfixes and deploys; "
        f"rollup on cron '{ROLLUP_CRON}', probe every {PROBE_EVERY:g} s\n"
    )
    with quiet_log(not args.verbose), make_scheduler(args.workers, args.store) as sched:
        live: Callable[[], None] | None = None
        if args.serve is not None:
            server = sched.serve_admin(args.serve, args.addr)
            # The token is printed here: the log line serve_admin writes is
            # hidden with the rest of postroom's log unless --verbose.
            out.write(f"dashboard: {server.url}  admin token: {server.token}\n")
            out.flush()
            live = functools.partial(stay, server.url, out)
        work = Workload()
        add_schedules(sched, work)
        submit_all(sched, work, args, rng)
        elapsed = watch(sched, work, out, tty, live)
    rows = summary(sched, work, elapsed, seed)
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
    run.add_argument(
        "--serve",
        type=_bounded(int, 0, 65535),
        metavar="PORT",
        help="serve the admin API and the dashboard on this port while the demo runs "
        "(0: any free port), and after its jobs are done until Ctrl-C",
    )
    run.add_argument(
        "--addr",
        default="127.0.0.1",
        metavar="A",
        help="the address --serve listens on (127.0.0.1)",
    )
    store_commands.add_store_option(
        run,
        required=False,
        text="keep the demo's jobs and their runs in this store file, for "
        "'postroom jobs' and 'postroom job' to read (default: memory only; the "
        "demo removes its schedules as it ends)",
    )
    store_commands.add_commands(commands)
    keys_cli.add_command(commands)
    worker_cli.add_command(commands)
    serve_cli.add_command(commands)
    dashboard_cli.add_command(commands)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``postroom`` console script."""
    args = parser().parse_args(argv)
    commands: dict[str, Callable[[argparse.Namespace, TextIO, TextIO], int]] = {
        keys_cli.COMMAND: keys_cli.run,
        worker_cli.COMMAND: worker_cli.run,
        serve_cli.COMMAND: serve_cli.run,
        dashboard_cli.COMMAND: dashboard_cli.run,
    }
    if args.command in commands:
        return commands[args.command](args, sys.stdout, sys.stderr)
    if args.command in store_commands.COMMANDS:
        try:
            return store_commands.run(args, sys.stdout, sys.stderr)
        except BrokenPipeError:
            # Whoever read the output went away (``| head``): not our failure, and
            # nothing left to say. Point stdout at nothing so the interpreter's own
            # flush at exit does not fail the same way.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
    try:
        return demo(args, sys.stdout)
    except StoreError as exc:
        sys.stderr.write(f"postroom demo: {exc}\n")
        return store_commands.FAILED
    except KeyboardInterrupt:
        # Leaving the `with` block on an exception has already cancelled the jobs.
        sys.stdout.write("\ninterrupted\n")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
