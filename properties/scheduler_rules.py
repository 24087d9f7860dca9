"""The rules of docs/guarantees.md, checked on the trace of a finished `Run`.

`check_trace` holds a run to rules 1 to 11 (rules 6, 8 and 9 are also checked
at the moment they apply, by `Run` itself: its ``violations`` are reported
here too); each rule is a function of the `Facts`, the trace indexed the ways
the rules need it.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass

from actors import CancelResult, JobNotFound, JobStatus, JobTimedOut
from properties.scheduler_model import HANG_TIMEOUT, TIMED_MODES, Event, Run, Submitted


@dataclass
class Facts:
    """The trace, indexed the ways the rules need it."""

    run: Run
    trace: list[Event]
    jobs: dict[str, Submitted]
    accepted: list[Submitted]
    starts: dict[str, list[int]]
    cancels: dict[str, list[tuple[int, CancelResult]]]
    ends: dict[str, dict[int, int]]
    """Job id -> attempt -> trace index of the attempt's end."""
    resolved: dict[str, int]
    """Job id -> trace index of its done callback's run."""

    def shut_out(self, earlier: Submitted, later_start: int) -> bool:
        """True if shutdown may have cancelled ``earlier`` before it started, by
        the time another job started (at trace index ``later_start``): the
        worker then took the best job shutdown had not cancelled yet."""
        at = self.run.shutdown_at
        return (
            at is not None
            and earlier.handle.id in self.run.cut
            and not self.starts[earlier.handle.id]
            and later_start > at[0]
        )


def check_trace(run: Run) -> None:
    """Assert rules 1 to 11 on a finished run.

    Every rule is checked and every violation reported together, so a bug
    shows all the rules it breaks, not only the first one looked at.
    """
    starts: dict[str, list[int]] = defaultdict(list)  # job id -> trace indexes
    cancels: dict[str, list[tuple[int, CancelResult]]] = defaultdict(list)
    ends: dict[str, dict[int, int]] = defaultdict(dict)
    resolved: dict[str, int] = {}
    for i, event in enumerate(run.trace):
        if event.kind == "start":
            starts[event.job_id].append(i)
        elif event.kind == "cancel":
            cancels[event.job_id].append((i, event.detail))
        elif event.kind == "end":
            ends[event.job_id][event.attempt] = i
        elif event.kind == "resolved":
            resolved[event.job_id] = i
    accepted = [e for e in run.order if e.new]
    facts = Facts(run, run.trace, run.jobs, accepted, starts, cancels, ends, resolved)
    failures = list(run.violations)
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
        if not cancels[job_id] and job_id not in run.cut and len(attempts) > 0:
            expected = {
                "ok": 1,
                "fatal": 1,
                "fail": 1 + entry.max_retries,
                "fail_once": min(2, 1 + entry.max_retries),
                "hang": 1 + entry.max_retries,
                "stubborn": 1 + entry.max_retries,
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
        if not cancels[job_id] and job_id not in run.cut:
            expected_status = {
                "ok": JobStatus.COMPLETED,
                "fail": JobStatus.FAILED,
                "fatal": JobStatus.FAILED,
                "hang": JobStatus.FAILED,
                "stubborn": JobStatus.FAILED,
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
            # Removed while it waited: an attempt may have run while the cancel
            # was on its way (the job then waited for its retry when removed),
            # but it was over by the time the cancel returned.
            began = facts.run.cancel_began[first_index]
            for i in starts[job_id]:
                if began < i < first_index:
                    end = facts.ends[job_id].get(facts.trace[i].attempt)
                    assert end is not None and end < first_index, (
                        f"rule 7: {job_id} was removed by a cancel (trace {began} to "
                        f"{first_index}) while its attempt started at {i} still ran"
                    )
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
            if jobs[job_id].mode in TIMED_MODES:
                assert end is not None and end.detail == "stop", (
                    f"rule 7: {job_id} signalled at {first_index}, started at {later[0]}, "
                    f"ended by {end.detail if end else None!r}"
                )
            assert jobs[job_id].handle.status is not JobStatus.COMPLETED, (
                f"rule 7: {job_id} completed after it was signalled at {first_index}"
            )
            later = []
        assert not later, f"rule 7: {job_id} started at {later} after cancel at {first_index}"
        if first_result is CancelResult.SIGNALLED and jobs[job_id].mode in TIMED_MODES:
            # A timed job only ends when told to stop. Signalled before its
            # deadline could fire, it must end because of the cancel.
            trace = facts.trace
            began = facts.run.cancel_began[first_index]
            at = trace[began].now
            running = [i for i in starts[job_id] if i < began]
            if running and at < trace[running[-1]].detail:
                attempt = trace[running[-1]].attempt
                end = next(
                    (
                        e
                        for e in trace[began:]
                        if e.kind == "end" and e.job_id == job_id and e.attempt == attempt
                    ),
                    None,
                )
                assert end is not None and end.detail == "stop", (
                    f"rule 7: {job_id} was signalled at {at} but ended by "
                    f"{end.detail if end else None!r}"
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
            if cancels[earlier.handle.id] or facts.shut_out(earlier, later_start):
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
    """Rule 3 (a queue with one worker): of two ready jobs of the queue without
    repo or delay, the earlier one starts first when it is at least as urgent."""
    run = facts.run
    starts = facts.starts
    cancels = facts.cancels
    accepted = facts.accepted
    for queue in (name for name, workers in run.workers.items() if workers == 1):
        plain = [e for e in accepted if e.queue == queue and e.repo is None and e.delay == 0.0]
        for later_pos, later in enumerate(plain):
            if not starts[later.handle.id]:
                continue
            for earlier in plain[:later_pos]:
                if earlier.priority > later.priority or cancels[earlier.handle.id]:
                    continue
                if facts.shut_out(earlier, starts[later.handle.id][0]):
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
    """Rule 3 (a queue with one worker): jobs that queued up while a gate job
    held the worker start, once the gate opens, best priority first, then oldest."""
    run, trace, starts, cancels = facts.run, facts.trace, facts.starts, facts.cancels
    for gate_id, gate_job in facts.jobs.items():
        if gate_job.mode != "gate" or not starts[gate_id] or run.workers[gate_job.queue] != 1:
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
            if e.queue == gate_job.queue
            and e.repo is None
            and e.delay == 0.0
            and not cancels[e.handle.id]
            and began < e.index
            and e.returned <= opened[0]  # accepted before it opened (a submit may wait)
            and starts[e.handle.id]
        ]
        for x in queued:
            for y in queued:
                if (y.priority, y.order) < (x.priority, x.order):
                    assert starts[y.handle.id][0] < starts[x.handle.id][0], (
                        f"rule 3: {x.handle.id} (p{x.priority}) started before the more "
                        f"urgent {y.handle.id} (p{y.priority}) queued with it"
                    )


def rule_6(facts: Facts) -> None:
    """Rule 6: a deadline stops its attempt once the clock reaches it, never
    before; the attempt fails the job with `JobTimedOut`, or is retried if the
    job has retries left; and a handle resolves only once its handler returned
    (an attempt that overran its deadline keeps its repo and its job till then)."""
    run, trace = facts.run, facts.trace
    shutdown_began = run.shutdown_at[0] if run.shutdown_at else len(trace)
    for job_id, entry in facts.jobs.items():
        ends = facts.ends[job_id]
        resolved = facts.resolved.get(job_id)
        if resolved is not None and ends:
            last = max(ends.values())
            assert resolved > last, (
                f"rule {6 if entry.mode in TIMED_MODES else 5}: {job_id}'s handle resolved "
                f"(trace {resolved}) before its handler returned (trace {last})"
            )
        if entry.mode in TIMED_MODES:
            _deadlines(facts, entry, shutdown_began)
            _timed_out_outcome(facts, entry)


def _deadlines(facts: Facts, entry: Submitted, shutdown_began: int) -> None:
    """Each attempt of a timed job: its deadline, and what told it to stop."""
    run, trace = facts.run, facts.trace
    job_id = entry.handle.id
    ends = facts.ends[job_id]
    told_at = [run.cancel_began[i] for i, _ in facts.cancels[job_id]] + [shutdown_began]
    for i in facts.starts[job_id]:
        start = trace[i]
        deadline = start.detail
        assert deadline is not None and deadline <= start.now + HANG_TIMEOUT, (
            f"rule 6: {job_id} attempt {start.attempt} started at {start.now} "
            f"with the deadline {deadline}, for a timeout of {HANG_TIMEOUT}"
        )
        end_at = ends.get(start.attempt)
        if end_at is None:
            continue  # it never ended: rule 5 says so
        end = trace[end_at]
        if end.detail == "timeout":
            assert end.now >= deadline, (
                f"rule 6: {job_id} attempt {start.attempt} timed out at {end.now}, "
                f"before its deadline {deadline}"
            )
        else:
            assert min(told_at) < end_at, (
                f"rule 6: {job_id} attempt {start.attempt} ended ({end.detail!r}) at "
                f"{end.now}, deadline {deadline}, told by neither its deadline, "
                "a cancel nor shutdown"
            )


def _timed_out_outcome(facts: Facts, entry: Submitted) -> None:
    """A job whose last attempt timed out failed with `JobTimedOut`."""
    run, trace = facts.run, facts.trace
    job_id = entry.handle.id
    ends = facts.ends[job_id]
    if job_id in run.cut or not ends:
        return
    last_attempt = max(ends)
    if trace[ends[last_attempt]].detail != "timeout":
        return
    if any(result is CancelResult.CANCELLED for _, result in facts.cancels[job_id]):
        return  # a cancel removed it between attempts: rule 7's to check
    # A cancel that only signalled the attempt after its deadline had does
    # not change the outcome: a timeout, not retried.
    status = entry.handle.status
    error = run.sched.job(job_id).error
    assert status is JobStatus.FAILED and error and error.type == "postroom.JobTimedOut", (
        f"rule 6: {job_id} timed out on its last attempt ({last_attempt}) but ended "
        f"{status} ({error.type if error else None})"
    )
    try:
        entry.handle.result(timeout=0)
    except JobTimedOut:
        pass
    except Exception as exc:  # noqa: BLE001 - which error is what is checked
        raise AssertionError(f"rule 6: {job_id}'s result() raised {exc!r}") from None
    else:
        raise AssertionError(f"rule 6: {job_id}'s result() raised nothing")
    if not facts.cancels[job_id]:
        assert last_attempt == 1 + entry.max_retries, (
            f"rule 6: {job_id} timed out on attempt {last_attempt} and was not "
            f"retried (max_retries={entry.max_retries})"
        )


def rule_9(facts: Facts) -> None:
    """Rule 9: once shutdown returned, no attempt starts or ends and no done
    callback runs: every handler returned, every handle resolved before it."""
    run, trace = facts.run, facts.trace
    if run.shutdown_at is None:
        return
    _, returned = run.shutdown_at
    late = [e for e in trace[returned:] if e.kind in ("start", "end", "resolved")]
    assert not late, f"rule 9: after shutdown returned: {late[:3]}"


RULES = (
    rule_1,
    rule_2,
    rule_3,
    rule_3_gate,
    rule_4,
    rule_5,
    rule_6,
    rule_7,
    rule_9,
    rule_10,
    rule_11,
)
