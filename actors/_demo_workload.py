"""The workload ``postroom demo`` runs: a simulated CI service.

Builds per repository that fail now and then and are retried with backoff,
async integration tests that overrun their timeout, builds that hang and are
cancelled, scheduled builds cancelled before they start, and a few urgent
(priority 1) builds. Hotfix builds run on a named queue of their own
(``high``), each followed by a deploy (`JobHandle.then`); a cron schedule rolls
metrics up every second and an interval schedule probes health every quarter
second. Builds report their progress. ``cli.py`` runs it, watches it and
prints the summary.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from actors import (
    CancelResult,
    JobContext,
    JobHandle,
    Priority,
    Queue,
    RetryPolicy,
    ScheduleHandle,
    ScheduleInfo,
    Scheduler,
)

__all__ = [
    "HIGH",
    "HIGH_WORKERS",
    "PROBE_EVERY",
    "ROLLUP_CRON",
    "Workload",
    "add_schedules",
    "make_scheduler",
    "schedules_settled",
    "submit_all",
    "wait_all",
]

HIGH = "high"
"""The named queue of hotfix builds and their deploys."""

HIGH_WORKERS = 2
"""Workers of the ``high`` queue, besides the default queue's ``--workers``."""

ROLLUP_CRON = "* * * * * *"
"""The metrics rollup's schedule: 6 fields, seconds first, so every second."""

ROLLUP_SHARDS = 4
ROLLUP_STEP = 0.1
"""Seconds the rollup spends on each shard (reporting its progress after each)."""

PROBE_EVERY = 0.25
"""Seconds between two health probes (an interval schedule)."""


class BuildError(Exception):
    """The simulated build broke (a flaky test, a network hiccup): worth a retry."""


@dataclass
class Workload:
    """The demo's jobs and schedules, and what the main thread still has to do with them."""

    handles: list[JobHandle] = field(default_factory=list)
    """The CI jobs submitted (hotfix builds included, deploys not)."""
    hung: list[JobHandle] = field(default_factory=list)
    """Builds that never finish on their own: cancelled once seen running."""
    urgent: list[JobHandle] = field(default_factory=list)
    deploys: list[JobHandle] = field(default_factory=list)
    """Follow-ups of the hotfix builds (`JobHandle.then`), on the ``high`` queue."""
    schedules: list[ScheduleHandle] = field(default_factory=list)
    final: list[ScheduleInfo] = field(default_factory=list)
    """The schedules' last figures, as `ScheduleHandle.remove` returned them."""
    cancels: Counter[CancelResult] = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)
    """When the first schedule was about to be added and the first job submitted."""
    finished: int | None = None
    """Jobs finished when the workload was done (`Stats.finished`): the throughput's
    count, without what the schedules fire while ``--serve`` keeps the demo live."""


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


def deploy(ctx: JobContext, payload: Mapping[str, int]) -> str:
    """Roll a hotfix build out in two quick stages; the payload is the build's result."""
    for stage in (1, 2):
        ctx.wait(0.005)
        ctx.raise_if_cancelled()
        ctx.progress(stage / 2, f"rollout {stage}/2")
    return f"deployed a {payload['steps']}-step build"


def rollup(ctx: JobContext, payload: Mapping[str, int]) -> dict[str, int]:
    """The metrics rollup (a nightly job, made to fire every second): a shard at a time."""
    shards = payload["shards"]
    for shard in range(1, shards + 1):
        ctx.wait(ROLLUP_STEP)
        ctx.raise_if_cancelled()
        ctx.progress(shard / shards, f"shard {shard}/{shards}")
    return {"shards": shards}


def probe(ctx: JobContext, payload: None) -> str:
    """A health probe: quick, but it waits its turn on the default queue."""
    ctx.wait(0.002)
    return "healthy"


def make_scheduler(workers: int, store: str | None = None) -> Scheduler:
    """A scheduler with the ``high`` queue and the demo's handlers registered;
    with ``store``, its jobs, runs and schedules kept in that file."""
    sched = Scheduler(workers=workers, queues={HIGH: Queue(workers=HIGH_WORKERS)}, store=store)
    backoff = RetryPolicy.exponential(base=0.01, cap=0.1)
    sched.register("build", build, max_retries=2, retry=backoff)
    sched.register("test", integration_test, max_retries=2, timeout=0.03, retry=backoff)
    sched.register("deploy", deploy)
    sched.register("rollup", rollup)
    sched.register("probe", probe)
    return sched


def add_schedules(sched: Scheduler, work: Workload) -> None:
    """The rollup (cron, priority 1: it goes before waiting builds) and the probe (every).

    Named: with ``--store``, a demo stopped before it removed them (Ctrl-C)
    leaves them stored, and the next run on that store takes them up instead
    of adding two more.
    """
    rollup_payload = {"shards": ROLLUP_SHARDS}
    work.schedules.append(
        sched.cron(
            "rollup", ROLLUP_CRON, rollup_payload, priority=Priority.USER_BLOCKING, id="rollup"
        )
    )
    # Default priority: while builds queue up, its fires find the last probe
    # still waiting and are skipped (overlap="skip", the default).
    work.schedules.append(sched.every("probe", PROBE_EVERY, id="probe"))


def plan(jobs: int, rng: random.Random) -> list[str]:
    """The kind of each job: a few of each special kind, the rest builds, shuffled."""
    specials = {"test": jobs // 25, "hung": jobs // 100, "nightly": jobs // 50}
    specials["urgent"] = jobs // 60
    specials["hotfix"] = jobs // 30
    kinds = [kind for kind, n in specials.items() for _ in range(max(1, n))][:jobs]
    kinds += ["build"] * (jobs - len(kinds))
    rng.shuffle(kinds)
    return kinds


def submit_all(
    sched: Scheduler, work: Workload, args: argparse.Namespace, rng: random.Random
) -> None:
    """Submit the workload; cancel the scheduled (nightly) builds before they start."""
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
        elif kind == "hotfix":
            # A release branch of its own (a repo runs one job at a time, in order),
            # on the high queue, and deployed if, and only if, the build completes.
            handle = sched.submit("build", payload, repo=f"{repo}-release", queue=HIGH)
            work.deploys.append(handle.then("deploy", queue=HIGH))
        else:
            priority = Priority.USER_BLOCKING if kind == "urgent" else Priority.USER_VISIBLE
            handle = sched.submit("build", payload, repo=repo, priority=priority)
            if kind == "urgent":
                work.urgent.append(handle)
        work.handles.append(handle)
    for handle in nightly:
        work.cancels[sched.cancel(handle.id)] += 1


def wait_all(handles: list[JobHandle], seconds: float) -> list[JobHandle]:
    """Wait up to ``seconds`` for the handles to finish; return those still unfinished."""
    deadline = time.monotonic() + seconds
    for handle in handles:
        if not handle.wait(max(0.0, deadline - time.monotonic())):
            break
    return [handle for handle in handles if not handle.done()]


def schedules_settled(sched: Scheduler, work: Workload) -> bool:
    """Whether each schedule has fired, and the last job it made has finished."""
    ours = {handle.id for handle in work.schedules}
    for info in sched.schedules():
        if info.id not in ours:
            continue
        if info.last_job is None or sched.job(info.last_job).finished_at is None:
            return False
    return True
