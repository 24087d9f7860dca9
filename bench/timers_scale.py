"""C at scale: timer lateness with N far-future timers pending (N = 100,000 and 1,000,000).

For each N, three sides, each in a fresh child process so memory is its own:

- ``postroom``: N jobs ``submit(..., delay=d)`` with d uniform in 1-2 hours (they stay
  pending), then the 2,000 jobs of bench C (d uniform in 50-500 ms), submitted once
  the Timer holds all N, so they fire from a structure of N + 2,000 entries.
- ``heap+TPE``: bench C's baseline (one thread with a heap and a ``threading.Condition``
  submitting to ``ThreadPoolExecutor(W)``), loaded with the same N, then the same 2,000.
- ``Timer alone``: the Timer actor (``actors._timer.timer.Timer``, a ``MonotonicClock``, a
  target that never hears from it), told N ``After(token, due, "tick", key, 1)``; no
  scheduler, no Job, no JobState: what one bare timer entry costs.

Insert cost: wall time of the caller's loop per entry, and wall time until the entries
are in the structure: for postroom and the bare Timer one ``ask`` sent after the last
``tell`` (the inbox is FIFO, so its answer comes after every ``After`` was handled; it
returns ``pending``, checked to be N); the heap inserts synchronously. Also the CPU time
of the caller's thread and of the timer thread per entry (``/proc/self/task/<tid>/stat``,
10 ms ticks: coarse for small N). Memory per entry: VmRSS growth from just before the
loop to just after, over N (what the OS sees, pymalloc arenas included; the inputs are
built before), and VmHWM (peak) growth; "GC in load" is the time the cyclic GC ran
during the load (``gc.callbacks``). Then a second set of children loads ``--trace-size``
entries under ``tracemalloc`` and reports the live Python bytes per entry and the
allocation sites that hold them. Lateness as in bench C: the handler's
``monotonic()`` - (``monotonic()`` just before submit + d), p50/p99/max, early starts.
A ``gc.collect()`` runs (and is timed) after the load and before the 2,000: a full
collection with N jobs pending is a pause every timer in the process waits through.
"CPU stall during" is the share of the measured window in which some task on the machine
waited for a CPU (``/proc/pressure/cpu``, "some"): how busy the shared machine was then.

    PYTHONPATH=. python -m bench.timers_scale [--sizes 100000,1000000 --jobs 2000 \
        --workers 8 --rounds 1]
"""

from __future__ import annotations

import gc
import itertools
import json
import linecache
import os
import random
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pykka.messages import ProxyGetAttr

from actors import MonotonicClock, Scheduler
from actors._runtime.actor import PostroomActor
from actors._timer.timer import Timer
from actors.messages import After
from bench.common import (
    alternate,
    base_parser,
    median,
    percentile,
    print_table,
    reset_peak_rss,
    rss_kb,
)
from bench.timers import MAX_DELAY, MIN_DELAY, HeapTimer, delays, samples

ROOT = Path(__file__).resolve().parent.parent
FAR_MIN, FAR_MAX = 3600.0, 7200.0
SIDES = {"postroom": "postroom", "heap": "heap+TPE", "timer": "Timer alone"}
TICK = os.sysconf("SC_CLK_TCK")


def far_delays(n: int, seed: int) -> list[float]:
    rng = random.Random(seed + 1)
    return [rng.uniform(FAR_MIN, FAR_MAX) for _ in range(n)]


def thread_cpu(native_id: int) -> float:
    """CPU seconds (user + system) one thread of this process has used so far."""
    with open(f"/proc/self/task/{native_id}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def gen2_collections() -> int:
    return gc.get_stats()[2]["collections"]


def pending_of(ref: Any) -> int:
    """One round trip to a Timer: its ``pending`` once every earlier message is handled."""
    return ref.ask(ProxyGetAttr(attr_path=("pending",)), timeout=600)


def far(_ctx: object, _payload: object) -> None:
    raise AssertionError("a far-future job ran")


def far_heap(_index: int) -> None:
    raise AssertionError("a far-future entry fired")


class Sink(PostroomActor):
    """The bare Timer's target: it must never hear from it."""

    def on_receive(self, message: Any) -> None:
        raise AssertionError(f"the Timer fired: {message!r}")


class Load:
    """Times and measures one load of N entries: caller wall/CPU, timer CPU, RSS."""

    def __init__(self, n: int, timer_tid: int) -> None:
        self.n = n
        self.timer_tid = timer_tid
        self.out: dict[str, Any] = {"gc_load": 0.0, "gen2_load": 0}
        self._gc_t0 = 0.0

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        """Time spent in the cyclic GC during the load (any thread: it holds the GIL)."""
        if phase == "start":
            self._gc_t0 = time.perf_counter()
            return
        self.out["gc_load"] += time.perf_counter() - self._gc_t0
        self.out["gen2_load"] += info["generation"] == 2

    def __enter__(self) -> Load:
        gc.collect()
        gc.callbacks.append(self._on_gc)
        self.rss0 = rss_kb()["VmRSS"]
        reset_peak_rss()
        self.cpu0 = (time.thread_time(), thread_cpu(self.timer_tid))
        self.t0 = time.perf_counter()
        return self

    def looped(self) -> None:
        """The caller's loop is over (the entries may still be on their way)."""
        self.out["loop"] = time.perf_counter() - self.t0
        self.out["loop_cpu"] = time.thread_time() - self.cpu0[0]

    def __exit__(self, *exc: object) -> None:
        self.out["in"] = time.perf_counter() - self.t0
        gc.callbacks.remove(self._on_gc)
        self.out["timer_cpu"] = thread_cpu(self.timer_tid) - self.cpu0[1]
        rss = rss_kb()
        self.out["rss"] = (rss["VmRSS"] - self.rss0) * 1024
        self.out["hwm"] = (rss["VmHWM"] - self.rss0) * 1024
        self.out["n"] = self.n


def cpu_stall() -> float:
    """Seconds some task on the machine has waited for a CPU (PSI), or NaN without PSI."""
    try:
        with open("/proc/pressure/cpu", encoding="ascii") as f:
            some = f.readline().split()
    except OSError:
        return float("nan")
    return int(some[-1].partition("=")[2]) / 1e6


def settle(out: dict[str, Any]) -> None:
    """A timed full collection, then note where the measured phase starts from."""
    t = time.perf_counter()
    gc.collect()
    out["gc"] = time.perf_counter() - t
    out["gen2_before"] = gen2_collections()
    out["stall_before"] = cpu_stall()
    out["window_t0"] = time.perf_counter()


def measured(out: dict[str, Any]) -> None:
    """The measured phase is over: gen-2 collections in it, and the machine's CPU stall share."""
    out["gen2_during"] = gen2_collections() - out.pop("gen2_before")
    window = time.perf_counter() - out.pop("window_t0")
    out["stall"] = (cpu_stall() - out.pop("stall_before")) / window


def side_postroom(n: int, jobs: int, workers: int, seed: int) -> dict[str, Any]:
    far_ds, ds = far_delays(n, seed), delays(jobs, seed)
    starts = [0.0] * jobs
    due = [0.0] * jobs

    def record(_ctx: object, index: int) -> None:
        starts[index] = time.monotonic()

    sched = Scheduler(workers=workers, max_pending=n + jobs + 10_000)
    sched.register("far", far)
    sched.register("record", record)
    sched.start()
    timer = sched._life.timer  # noqa: SLF001 - the bench needs the Timer's ref for the barrier
    (tid,) = [t.native_id for t in threading.enumerate() if t.name.startswith("postroom-Timer")]
    submit = sched.submit
    with Load(n, tid) as load:
        for i, d in enumerate(far_ds):
            submit("far", i, delay=d)
        load.looped()
        pending = pending_of(timer)
    out = load.out
    if pending != n:
        raise RuntimeError(f"postroom: the Timer holds {pending} entries, not {n}")
    settle(out)
    handles = []
    first = time.monotonic()
    for i, d in enumerate(ds):
        due[i] = time.monotonic() + d
        handles.append(submit("record", i, delay=d))
    submitted = time.monotonic()
    out["submit_loop"] = submitted - first
    for h in handles:
        if not h.wait(60):
            raise RuntimeError(f"postroom: job {h.id} not done after 60 s: {h.info()}")
    measured(out)
    out["late"] = samples(starts, due, submitted)
    out["pending_after"] = pending_of(timer)
    t = time.perf_counter()
    sched.shutdown(graceful=False)
    out["shutdown"] = time.perf_counter() - t
    return out


def side_heap(n: int, jobs: int, workers: int, seed: int) -> dict[str, Any]:
    far_ds, ds = far_delays(n, seed), delays(jobs, seed)
    starts = [0.0] * jobs
    due = [0.0] * jobs
    finished = itertools.count(1)
    all_done = threading.Event()

    def record(index: int) -> None:
        starts[index] = time.monotonic()
        if next(finished) == jobs:
            all_done.set()

    with ThreadPoolExecutor(workers) as pool:
        timer = HeapTimer()
        call_at = timer.call_at
        monotonic = time.monotonic
        with Load(n, timer._thread.native_id) as load:  # noqa: SLF001
            for i, d in enumerate(far_ds):
                call_at(monotonic() + d, pool.submit, far_heap, i)
            load.looped()
        out = load.out
        settle(out)
        first = time.monotonic()
        for i, d in enumerate(ds):
            due[i] = time.monotonic() + d
            call_at(due[i], pool.submit, record, i)
        submitted = time.monotonic()
        out["submit_loop"] = submitted - first
        if jobs and not all_done.wait(60):
            raise RuntimeError("heap+TPE: jobs not done after 60 s")
        measured(out)
        out["late"] = samples(starts, due, submitted)
        t = time.perf_counter()
        with timer._cond:  # noqa: SLF001 - drop the far entries, then stop the thread
            out["pending_after"] = len(timer._heap)  # noqa: SLF001
            timer._heap.clear()  # noqa: SLF001
        timer.close()
    out["shutdown"] = time.perf_counter() - t
    return out


def side_timer(n: int, seed: int) -> dict[str, Any]:
    far_ds = far_delays(n, seed)
    sink = Sink.spawn()
    spawned = Timer.spawn(MonotonicClock(), sink.ref)
    tell = spawned.ref.tell
    monotonic = time.monotonic
    key = "r"  # the caller's (a repo name or a job id it holds anyway): shared here
    with Load(n, spawned.thread.native_id) as load:
        for token, d in enumerate(far_ds, 1):
            tell(After(token, monotonic() + d, "tick", key, 1))
        load.looped()
        pending = pending_of(spawned.ref)
    out = load.out
    if pending != n:
        raise RuntimeError(f"Timer alone: it holds {pending} entries, not {n}")
    t = time.perf_counter()
    for s in (spawned, sink):
        s.ref.stop(block=True, timeout=600)
        s.thread.join(600)
    out["shutdown"] = time.perf_counter() - t
    return out


# --- where the bytes are (tracemalloc) -------------------------------------------


def traced_load(side: str, n: int, seed: int) -> dict[str, Any]:
    """Load N far entries under tracemalloc; live bytes per entry and the top sites."""
    far_ds = far_delays(n, seed)
    gc.collect()
    if side == "postroom":
        sched = Scheduler(workers=1, max_pending=n + 10_000)
        sched.register("far", far)
        sched.start()
        tracemalloc.start()
        for i, d in enumerate(far_ds):
            sched.submit("far", i, delay=d)
        if pending_of(sched._life.timer) != n:  # noqa: SLF001
            raise RuntimeError("postroom: not all entries reached the Timer")
        stop: Callable[[], None] = lambda: sched.shutdown(graceful=False)  # noqa: E731
    elif side == "heap":
        pool = ThreadPoolExecutor(1)
        timer = HeapTimer()
        tracemalloc.start()
        for i, d in enumerate(far_ds):
            timer.call_at(time.monotonic() + d, pool.submit, far_heap, i)

        def stop() -> None:
            with timer._cond:  # noqa: SLF001
                timer._heap.clear()  # noqa: SLF001
            timer.close()
            pool.shutdown()

    else:
        sink = Sink.spawn()
        spawned = Timer.spawn(MonotonicClock(), sink.ref)
        tracemalloc.start()
        for token, d in enumerate(far_ds, 1):
            spawned.ref.tell(After(token, time.monotonic() + d, "tick", "r", 1))
        if pending_of(spawned.ref) != n:
            raise RuntimeError("Timer alone: not all entries reached the Timer")

        def stop() -> None:
            spawned.ref.stop(block=True, timeout=600)
            sink.ref.stop(block=True, timeout=600)

    gc.collect()
    snapshot = tracemalloc.take_snapshot()
    tracemalloc.stop()
    stop()
    stats = snapshot.statistics("lineno")
    total = sum(s.size for s in stats)
    top = []
    for stat in stats[:12]:
        if stat.size < n:  # less than a byte per entry
            break
        frame = stat.traceback[0]
        code = linecache.getline(frame.filename, frame.lineno).strip()[:48]
        site = f"{Path(frame.filename).name}:{frame.lineno} `{code}`"
        top.append([site, stat.size / n, stat.count / n])
    return {"n": n, "bytes": total / n, "blocks": sum(s.count for s in stats) / n, "top": top}


# --- the parent ---------------------------------------------------------------------


def child(args: Any, *extra: str) -> dict[str, Any]:
    """Run one side in a fresh interpreter; returns the JSON it printed last."""
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
    )
    cmd = [sys.executable, "-m", "bench.timers_scale", "--jobs", str(args.jobs)]
    cmd += ["--workers", str(args.workers), "--seed", str(args.seed), *extra]
    proc = subprocess.run(
        cmd, env=env, stdout=subprocess.PIPE, text=True, timeout=3600, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def side_args(side: str, n: int) -> list[str]:
    return ["--side", side, "--size", str(n)]


def us(seconds: float, n: int) -> str:
    return f"{seconds / n * 1e6:.2f}" if n else "-"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f}"


def report(n: int, runs: dict[str, list[dict[str, Any]]], args: Any) -> None:
    def med(side: str, key: str) -> float:
        return median(r[key] for r in runs[side])

    def per(side: str, key: str) -> str:
        return f"{med(side, key) / n:,.0f}" if n else "-"

    print(
        f"\nC at scale, N = {n:,} far-future entries (due in {FAR_MIN / 3600:.0f}-"
        f"{FAR_MAX / 3600:.0f} h), median of {args.rounds} round(s), one process per side\n"
    )
    print_table(
        [
            "side",
            "loop µs/entry",
            "in structure µs/entry",
            "caller CPU µs/entry",
            "timer thread CPU µs/entry",
            "RSS B/entry",
            "peak RSS B/entry",
            "GC in load s (gen-2 runs)",
            "gc.collect() after, ms",
            "shutdown s",
        ],
        [
            [
                SIDES[side],
                us(med(side, "loop"), n),
                us(med(side, "in"), n),
                us(med(side, "loop_cpu"), n),
                us(med(side, "timer_cpu"), n),
                per(side, "rss"),
                per(side, "hwm"),
                f"{med(side, 'gc_load'):.2f} ({med(side, 'gen2_load'):.0f})",
                f"{med(side, 'gc') * 1000:.1f}" if "gc" in runs[side][0] else "-",
                f"{med(side, 'shutdown'):.2f}",
            ]
            for side in SIDES
        ],
    )
    late = {s: [x for r in runs[s] for x, _ in r["late"]] for s in ("postroom", "heap")}
    quiet = {s: [x for r in runs[s] for x, after in r["late"] if after] for s in late}
    p99 = {s: percentile(v, 99) for s, v in late.items()}
    print(
        f"\nLateness of {args.jobs:,} jobs due "
        f"{MIN_DELAY * 1000:.0f}-{MAX_DELAY * 1000:.0f} ms out, "
        f"submitted with the N entries in place, {args.workers} workers "
        f"({len(late['postroom']):,} samples per side)\n"
    )
    print_table(
        [
            "side",
            "p50 ms",
            "p99 ms",
            "max ms",
            "early",
            "submit loop ms",
            "p99 ms, due after submit loop",
            "gen-2 GCs during",
            "CPU stall during",
            "entries left",
        ],
        [
            [
                SIDES[s],
                ms(percentile(v, 50)),
                ms(p99[s]),
                ms(max(v)),
                sum(1 for x in v if x < 0),
                "/".join(f"{r['submit_loop'] * 1000:.0f}" for r in runs[s]),
                f"{ms(percentile(quiet[s], 99))} (n={len(quiet[s]):,})",
                sum(r["gen2_during"] for r in runs[s]),
                "/".join(f"{r['stall']:.0%}" for r in runs[s]),
                ",".join(f"{r['pending_after']:,}" for r in runs[s]),
            ]
            for s, v in late.items()
        ],
    )
    p, h, t = "postroom", "heap", "timer"
    ratios = [f"p99 {p99[p] / p99[h]:.2f}x"]
    if n:
        ratios = [
            f"submit loop {med(p, 'loop') / med(h, 'loop'):.2f}x",
            f"in structure {med(p, 'in') / med(h, 'in'):.2f}x",
            f"RSS/entry {med(p, 'rss') / max(1.0, med(h, 'rss')):.2f}x",
            *ratios,
        ]
    print(f"\npostroom / heap+TPE: {', '.join(ratios)}")
    if n:
        print(
            f"Timer alone / heap+TPE: in structure {med(t, 'in') / med(h, 'in'):.2f}x, "
            f"RSS/entry {med(t, 'rss') / max(1.0, med(h, 'rss')):.2f}x; "
            f"the Timer's share of postroom: {med(t, 'rss') / max(1.0, med(p, 'rss')):.0%} "
            f"of the bytes, {med(t, 'in') / med(p, 'in'):.0%} of the time in"
        )
    ok = p99[p] <= 0.002
    early = sum(1 for x in late[p] if x < 0)
    print(
        f"postroom p99 = {ms(p99[p])} ms with {n:,} pending (target <= 2 ms: "
        f"{'met' if ok else 'NOT met'}); early starts: {early} (must be 0)"
    )


def report_traced(traced: dict[str, dict[str, Any]]) -> None:
    n = next(iter(traced.values()))["n"]
    print(f"\nWhere the bytes are: tracemalloc, {n:,} entries loaded, live after gc.collect()\n")
    rows = []
    for side, t in traced.items():
        rows.append([SIDES[side], "total", f"{t['bytes']:,.0f}", f"{t['blocks']:.2f}"])
        rows += [["", site, f"{size:,.0f}", f"{count:.2f}"] for site, size, count in t["top"]]
    print_table(["side", "allocated at", "B/entry", "blocks/entry"], rows)


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__, rounds=1)
    parser.add_argument(
        "--sizes", default="100000,1000000", help="N far-future entries, comma-separated"
    )
    parser.add_argument("--jobs", type=int, default=2_000, help="jobs measured for lateness")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--trace-size",
        type=int,
        help="entries loaded under tracemalloc for the where-the-bytes-are table "
        "(0: skip; default: the largest of --sizes, at most 100,000)",
    )
    parser.add_argument("--side", choices=list(SIDES), help="run one side here (child)")
    parser.add_argument("--size", type=int, help="N for --side (child)")
    parser.add_argument("--traced", action="store_true", help="with --side: the tracemalloc load")
    args = parser.parse_args(argv)

    if args.side is not None:
        if args.traced:
            out = traced_load(args.side, args.size, args.seed)
        elif args.side == "postroom":
            out = side_postroom(args.size, args.jobs, args.workers, args.seed)
        elif args.side == "heap":
            out = side_heap(args.size, args.jobs, args.workers, args.seed)
        else:
            out = side_timer(args.size, args.seed)
        print(json.dumps(out))
        sys.stdout.flush()
        os._exit(0)  # nothing left worth tearing down entry by entry

    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    for n in sizes:
        print(f"N = {n:,}", file=sys.stderr, flush=True)
        runs = alternate(
            args.rounds,
            {side: lambda side=side, n=n: child(args, *side_args(side, n)) for side in SIDES},
        )
        report(n, runs, args)
        sys.stdout.flush()
    trace_size = min(100_000, max(sizes)) if args.trace_size is None else args.trace_size
    if trace_size:
        print(f"tracemalloc, N = {trace_size:,}", file=sys.stderr, flush=True)
        traced = {
            side: child(args, "--side", side, "--size", str(trace_size), "--traced")
            for side in SIDES
        }
        report_traced(traced)


if __name__ == "__main__":
    main()
