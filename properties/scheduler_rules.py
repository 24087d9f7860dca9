"""The rules of docs/guarantees.md, checked on the trace of a finished `Run`.

`check_trace` holds a run to rules 1, 2, 3, 4, 5, 7, 10 and 11; each rule is a
function of the `Facts`, the trace indexed the ways the rules need it.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass

from actors import CancelResult, JobNotFound, JobStatus
from properties.scheduler_model import HANG_TIMEOUT, Event, Run, Submitted


@dataclass
class Facts:
    """The trace, indexed the ways the rules need it."""

    run: Run
    trace: list[Event]
    jobs: dict[str, Submitted]
    accepted: list[Submitted]
    starts: dict[str, list[int]]
    cancels: dict[str, list[tuple[int, CancelResult]]]


def check_trace(run: Run) -> None:
    """Assert rules 1, 2, 3, 4, 5, 7, 10 and 11 on a finished run.

    Every rule is checked and every violation reported together, so a bug
    shows all the rules it breaks, not only the first one looked at.
    """
    starts: dict[str, list[int]] = defaultdict(list)  # job id -> trace indexes
    cancels: dict[str, list[tuple[int, CancelResult]]] = defaultdict(list)
    for i, event in enumerate(run.trace):
        if event.kind == "start":
            starts[event.job_id].append(i)
        elif event.kind == "cancel":
            cancels[event.job_id].append((i, event.detail))
    facts = Facts(run, run.trace, run.jobs, [e for e in run.order if e.new], starts, cancels)
    failures = []
    if run.unfinished:
        unfinished = run.unfinished
        failures.append(f"rule 5: {len(unfinished)} job(s) never finished: {unfinished[:5]}")
    for rule in RULES:
        try:
            rule(facts)
        except AssertionError as exc:
            failures.append(str(exc).split("\n")[0])
    assert not failures, "\n".join(failures)


def rule_1(facts: Facts) -> None:
    """Rule 1: no two executions of one repo overlap."""
    trace = facts.trace
    running: dict[str, str] = {}
    for i, event in enumerate(trace):
        if event.repo is None or event.kind not in ("start", "end"):
            continue
        if event.kind == "start":
            other = running.get(event.repo)
            assert other is None, (
                f"rule 1: {event.job_id} started at {i} in {event.repo!r} while {other} runs"
            )
            running[event.repo] = event.job_id
        else:
            assert running.get(event.repo) == event.job_id
            del running[event.repo]


def rule_4(facts: Facts) -> None:
    """Rule 4: at most 1 + max_retries attempts, numbered 1, 2, ...; all counted."""
    trace = facts.trace
    jobs = facts.jobs
    run = facts.run
    starts = facts.starts
    cancels = facts.cancels
    for job_id, entry in jobs.items():
        attempts = [trace[i].attempt for i in starts[job_id]]
        assert attempts == list(range(1, len(attempts) + 1)), (
            f"rule 4: {job_id} attempts {attempts}"
        )
        assert len(attempts) <= 1 + entry.max_retries, (
            f"rule 4: {job_id} ran {len(attempts)} times with max_retries={entry.max_retries}"
        )
        try:
            info = run.sched.job(job_id)
        except JobNotFound:
            raise AssertionError(f"rule 5: {job_id} vanished from the scheduler") from None
        assert info.attempts == len(attempts), (
            f"rule 4: {job_id} reports {info.attempts} attempts, ran {len(attempts)}"
        )
        if not cancels[job_id] and len(attempts) > 0:
            expected = {
                "ok": 1,
                "fatal": 1,
                "fail": 1 + entry.max_retries,
                "fail_once": min(2, 1 + entry.max_retries),
                "hang": 1 + entry.max_retries,
                "gate": 1,
            }[entry.mode]
            assert len(attempts) == expected, (
                f"rule 4: {entry.mode} job {job_id} ran {len(attempts)} times, expected {expected}"
            )


def rule_5(facts: Facts) -> None:
    """Rule 5: exactly one terminal state, the handle resolved once, the right one."""
    jobs = facts.jobs
    run = facts.run
    cancels = facts.cancels
    counts: dict[JobStatus, int] = defaultdict(int)
    for job_id, entry in jobs.items():
        handle = entry.handle
        assert handle.done(), f"rule 5: {job_id} never resolved"
        assert entry.callbacks == [1], f"rule 5: {job_id} resolved {len(entry.callbacks)} times"
        status = handle.status
        counts[status] += 1
        if not cancels[job_id]:
            expected_status = {
                "ok": JobStatus.COMPLETED,
                "fail": JobStatus.FAILED,
                "fatal": JobStatus.FAILED,
                "hang": JobStatus.FAILED,
                "gate": JobStatus.COMPLETED,
                "fail_once": JobStatus.COMPLETED if entry.max_retries else JobStatus.FAILED,
            }[entry.mode]
            assert status is expected_status, f"rule 5: {entry.mode} job {job_id} ended {status}"
    stats = run.sched.stats()
    assert (stats.completed, stats.failed, stats.cancelled) == (
        counts[JobStatus.COMPLETED],
        counts[JobStatus.FAILED],
        counts[JobStatus.CANCELLED],
    ), f"rule 5: stats {stats} disagree with handles {dict(counts)}"
    assert stats.submitted == len(jobs)


def rule_7(facts: Facts) -> None:
    """Rule 7: no attempt starts after a cancel; a removed job ends cancelled."""
    jobs = facts.jobs
    starts = facts.starts
    cancels = facts.cancels
    for job_id, cancelled in list(cancels.items()):
        if not cancelled:
            continue
        first_index, first_result = cancelled[0]
        if first_result is CancelResult.CANCELLED:
            first_index = facts.run.cancel_began[first_index]
        later = [i for i in starts[job_id] if i > first_index]
        if first_result is CancelResult.SIGNALLED and later:
            # SIGNALLED means a worker had taken the attempt (and was told to
            # stop) before cancel returned; its handler may still run its first
            # line after that, and must then end because of the signal. No other
            # attempt may start.
            trace = facts.trace
            attempt = trace[later[0]].attempt
            assert all(trace[i].attempt == attempt for i in later), (
                f"rule 7: {job_id} started attempts {later} after cancel at {first_index}"
            )
            end = next(
                (e for e in trace[later[0] :] if e.kind == "end" and e.job_id == job_id),
                None,
            )
            if jobs[job_id].mode == "hang":
                assert end is not None and end.detail == "stop", (
                    f"rule 7: {job_id} signalled at {first_index}, started at {later[0]}, "
                    f"ended by {end.detail if end else None!r}"
                )
            assert jobs[job_id].handle.status is not JobStatus.COMPLETED, (
                f"rule 7: {job_id} completed after it was signalled at {first_index}"
            )
            later = []
        assert not later, f"rule 7: {job_id} started at {later} after cancel at {first_index}"
        if first_result is CancelResult.SIGNALLED and jobs[job_id].mode == "hang":
            # A hang job only ends when told to stop. Signalled before its
            # deadline could fire, it must end because of the cancel.
            trace = facts.trace
            began = facts.run.cancel_began[first_index]
            at = trace[began].now
            running = [i for i in starts[job_id] if i < began]
            if running and at < trace[running[-1]].now + HANG_TIMEOUT:
                attempt = trace[running[-1]].attempt
                end = next(
                    e
                    for e in trace[began:]
                    if e.kind == "end" and e.job_id == job_id and e.attempt == attempt
                )
                assert end.detail == "stop", (
                    f"rule 7: {job_id} was signalled at {at} but ended by {end.detail!r}"
                )
        if first_result is CancelResult.CANCELLED:
            assert jobs[job_id].handle.status is JobStatus.CANCELLED


def rule_11(facts: Facts) -> None:
    """Rule 11: no job starts before it is due; no retry before its backoff."""
    trace = facts.trace
    jobs = facts.jobs
    starts = facts.starts
    for job_id, entry in jobs.items():
        indexes = starts[job_id]
        if indexes:
            assert trace[indexes[0]].now >= entry.due, (
                f"rule 11: {job_id} started at {trace[indexes[0]].now}, due {entry.due}"
            )
        for previous, current in itertools.pairwise(indexes):
            ended = next(
                trace[i].now
                for i in range(previous, len(trace))
                if trace[i].kind == "end" and trace[i].job_id == job_id
            )
            assert trace[current].now >= ended + entry.backoff, f"rule 11: {job_id} retried early"


def rule_2(facts: Facts) -> None:
    """Rule 2: in a repo, an earlier job at least as urgent starts first, and a
    started job's attempts run back to back (ordered mode: delays and retries
    keep their place)."""
    trace = facts.trace
    starts = facts.starts
    cancels = facts.cancels
    accepted = facts.accepted
    for later_pos, later in enumerate(accepted):
        if later.repo is None or not starts[later.handle.id]:
            continue
        later_start = starts[later.handle.id][0]
        for earlier in accepted[:later_pos]:
            if earlier.repo != later.repo or earlier.priority > later.priority:
                continue
            if cancels[earlier.handle.id]:
                continue
            earlier_starts = starts[earlier.handle.id]
            assert earlier_starts and earlier_starts[0] < later_start, (
                f"rule 2: {later.handle.id} started before {earlier.handle.id} in {later.repo!r}"
            )
    for repo in {e.repo for e in accepted if e.repo is not None}:
        sequence = [
            trace[i].job_id
            for i in range(len(trace))
            if trace[i].kind == "start" and trace[i].repo == repo
        ]
        # Each job's attempts form one contiguous block in the repo's start sequence.
        blocks = [job for i, job in enumerate(sequence) if i == 0 or sequence[i - 1] != job]
        assert len(blocks) == len(set(blocks)), (
            f"rule 2: attempts interleaved in {repo!r}: {blocks}"
        )


def rule_3(facts: Facts) -> None:
    """Rule 3 (one worker): of two ready jobs without repo or delay, the earlier
    one starts first when it is at least as urgent."""
    run = facts.run
    starts = facts.starts
    cancels = facts.cancels
    accepted = facts.accepted
    if run.workers == 1:
        plain = [e for e in accepted if e.repo is None and e.delay == 0.0]
        for later_pos, later in enumerate(plain):
            if not starts[later.handle.id]:
                continue
            for earlier in plain[:later_pos]:
                if earlier.priority > later.priority or cancels[earlier.handle.id]:
                    continue
                earlier_starts = starts[earlier.handle.id]
                assert earlier_starts and earlier_starts[0] < starts[later.handle.id][0], (
                    f"rule 3: {later.handle.id} (p{later.priority}) started before "
                    f"{earlier.handle.id} (p{earlier.priority})"
                )


def rule_10(facts: Facts) -> None:
    """Rule 10: a key held by an unfinished or completed job returns that job."""
    trace = facts.trace
    jobs = facts.jobs
    run = facts.run
    starts = facts.starts
    cancels = facts.cancels
    holders: dict[str, Submitted] = {}
    for entry in run.order:
        if entry.key is None:
            continue
        holder = holders.get(entry.key)
        if entry.new:
            if holder is not None:
                # A new job under a held key: the holder must have let it go, and
                # could only have done so after its last attempt or its cancel.
                held = holder.handle.id
                assert holder.handle.status in (JobStatus.FAILED, JobStatus.CANCELLED), (
                    f"rule 10: key {entry.key!r} ran twice while {held} held it"
                )
                # The earliest the key can go: after the last attempt ended, or at
                # a cancel that removed the job (a cancel of a job already over,
                # or one that only signalled it, releases nothing).
                moments = [i for i, e in enumerate(trace) if e.job_id == held and e.kind == "end"]
                moments += [i for i, r in cancels[held] if r is CancelResult.CANCELLED]
                # The lookup happened during the submit call: the holder must have
                # let the key go before the call returned.
                assert moments and entry.returned > max(moments), (
                    f"rule 10: key {entry.key!r} given to a new job while {held} was unfinished"
                )
            holders[entry.key] = entry
        else:
            assert holder is not None and holder.handle.id == entry.handle.id, (
                f"rule 10: key {entry.key!r} returned a job that does not hold it"
            )
    for job_id in jobs:
        assert len({trace[i].attempt for i in starts[job_id]}) == len(starts[job_id])


def rule_3_gate(facts: Facts) -> None:
    """Rule 3 (one worker): jobs that queued up while a gate job held the worker
    start, once the gate opens, best priority first, then oldest."""
    run, trace, starts, cancels = facts.run, facts.trace, facts.starts, facts.cancels
    if run.workers != 1:
        return
    for gate_id, gate_job in facts.jobs.items():
        if gate_job.mode != "gate" or not starts[gate_id]:
            continue
        began = starts[gate_id][0]
        ended = next(
            (
                i
                for i in range(began, len(trace))
                if trace[i].kind == "end" and trace[i].job_id == gate_id
            ),
            len(trace),
        )
        opened = [i for i in range(began, ended) if trace[i].kind == "open"]
        if not opened:
            continue  # it ended (cancelled) before a gate opened: the worker was free
        queued = [
            e
            for e in facts.accepted
            if e.repo is None
            and e.delay == 0.0
            and not cancels[e.handle.id]
            and began < e.index < opened[0]
            and starts[e.handle.id]
        ]
        for x in queued:
            for y in queued:
                if (y.priority, y.order) < (x.priority, x.order):
                    assert starts[y.handle.id][0] < starts[x.handle.id][0], (
                        f"rule 3: {x.handle.id} (p{x.priority}) started before the more "
                        f"urgent {y.handle.id} (p{y.priority}) queued with it"
                    )


RULES = (rule_1, rule_2, rule_3, rule_3_gate, rule_4, rule_5, rule_7, rule_10, rule_11)
