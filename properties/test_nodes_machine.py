"""Hypothesis drives a real scheduler's worker nodes: rules 1, 2, 5, 12 and 13 hold.

The rules are docs/guarantees.md's. One scheduler (no local worker) listens on
loopback; three `ScriptedNode`s, real DEALER sockets, speak the node protocol as the
machine says: they give credit, answer their runs (completed, failed and retryable,
failed for good), send results under stale or forged leases, say Bye while they hold
runs, come back with the same id, and try to open a second session under an id in
use. The machine submits jobs (with repos, priorities, retries, and a handler only
one node offers) and cancels them. It keeps a model of what the scheduler must do,
and after every step it waits, on the nodes' own queues with a deadline, until every
run the model says must come has come; then it holds what the nodes received and
what the scheduler says (handles, `job()`, `runs()`, `nodes()`, `Listener.totals()`)
to the rules:

- credit: a node never receives more runs than the credit it gave;
- handlers: a node receives only runs of handlers it offered;
- rule 1: two runs of jobs of one repo are never held at once, across nodes,
  a run counting as held until the node answered it or its session ended;
- rule 2: a run of a repo's job is sent only when it heads its repo (one
  priority per repo, so: in submission order, a retry keeping the head);
- rule 5: a finished job's handle and `job()` agree with the model, and never
  change after; at the end every job is finished, as the model says;
- rule 12/13: each run held at a Bye ends ``interrupted`` in `runs()` with
  error type ``postroom.NodeLost``, and its job is sent again (attempt + 1)
  while it has retries left, else fails;
- rule 13: a result under a stale or forged lease changes no job and is
  counted (`Listener.totals`);
- liveness: a node with credit gets every job that may run and that it offered
  (at once: nothing here waits on a clock).

Heartbeats are long (30 s): sessions end by Bye, never by silence, so nothing
depends on timing. Seeded bugs it catches (``test_machine_catches_seeded_bug``
checks each one): ``stale_applied`` (the link applies a result under a lease
it does not hold, for the same job), ``bye_forgets`` (a Bye drops the leases
without interrupting their runs), ``accepts_ignored`` (the ready queue gives a
node jobs of handlers it did not offer), ``credit_overrun`` (the link sends
past the credit), ``release_early`` (the repo lock lets a repo go while its
job is still on a node) and ``lifo_repo`` (a repo starts its newest job first).
"""

from __future__ import annotations

import functools
import queue
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from actors import CancelResult, JobHandle, Scheduler
from actors.messages import (
    CancelRun,
    ErrorInfo,
    Heartbeat,
    NodeFinished,
    Outcome,
    Refused,
    Run,
    Welcome,
)
from properties.profiles import examples
from properties.seeded import failure_of, patched
from tests.nodes import ScriptedNode
from transport.listener import Listener

WAIT = 5.0
"""Seconds to wait for what must happen (a run, a resolution, a count)."""

NODES = (("n1", ("echo", "other")), ("n2", ("echo",)), ("n3", ("echo",)))
"""Node ids and the handlers each offers: only n1 runs ``other``."""

REPO_PRIORITY = {"a": 3, "b": 5, "c": 5}
"""One priority per repo: its jobs then head it in submission order (rule 2)."""

MAX_HELD = 6
"""A node gives no more credit than this many runs held and promised."""

FINAL = ("completed", "failed", "cancelled")


@dataclass
class Model:
    """What the scheduler must have done with one job."""

    handle: JobHandle
    order: int
    handler: str
    repo: str | None
    max_retries: int
    attempt: int = 0
    """The last attempt sent to a node (0: none yet)."""
    state: str = "pending"
    """``pending`` (may be sent), ``held`` (on a node) or a final status."""
    result: Any = None
    cancel_requested: bool = False
    holder: str | None = None


@dataclass
class Slot:
    """One node id: its current connection (None between sessions) and what it holds."""

    node_id: str
    handlers: tuple[str, ...]
    node: ScriptedNode | None = None
    credit: int = 0
    """Credit given and not yet spent by a run."""
    held: dict[int, Run] = field(default_factory=dict)
    cancels: set[int] = field(default_factory=set)


def _wait(predicate: Callable[[], bool], what: str) -> None:
    # A deadline on a state no event announces (the poll is short): not a sleep.
    deadline = time.monotonic() + WAIT
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {WAIT}s: {what}")
        time.sleep(0.002)


def _step(method: Callable[..., None]) -> Callable[..., None]:
    """Mark the machine broken when a step fails: its teardown then only cleans
    up, and the step's own failure is the one reported (a teardown that failed
    too would replace it)."""

    @functools.wraps(method)
    def step(self: NodesMachine, *args: Any, **kwargs: Any) -> None:
        try:
            method(self, *args, **kwargs)
        except BaseException:
            self.broken = True
            raise

    return step


class NodesMachine(RuleBasedStateMachine):
    """Random node traffic against one real scheduler, checked against a model."""

    def __init__(self) -> None:
        super().__init__()
        self.sched: Scheduler | None = None
        self.listener: Listener | None = None
        self.slots: list[Slot] = []
        self.jobs: dict[str, Model] = {}
        self.spent: list[tuple[str, int, int]] = []
        """(job id, attempt, lease) of runs answered or interrupted: stale leases."""
        self.leases: set[int] = set()
        self.broken = False

    # --- set-up and the nodes' messages -------------------------------------------

    @initialize()
    @_step
    def start(self) -> None:
        sched = self.sched = Scheduler(workers=0, metrics=False)
        for name in ("echo", "other"):
            sched.handler(name)(_echo)
        sched.start()
        self.listener = sched.listen("tcp://127.0.0.1:0", insecure=True, heartbeat=30.0)
        self.slots = [Slot(node_id, handlers) for node_id, handlers in NODES]
        for slot in self.slots:
            self._connect(slot)

    def _connect(self, slot: Slot) -> None:
        assert self.listener is not None
        node = ScriptedNode(self.listener.endpoint)
        answer = node.hello(slot.node_id, slot.handlers, capacity=MAX_HELD)
        if not isinstance(answer, Welcome):
            node.close()
            raise AssertionError(f"node {slot.node_id} not welcomed back: {answer!r}")
        slot.node, slot.credit = node, 0

    def _take(self, slot: Slot, message: Any) -> None:
        """A message ``slot``'s node received: check it and bring the model along."""
        if type(message) is Heartbeat:
            return
        if type(message) is CancelRun:
            assert message.lease in slot.held, f"rule 7: a cancel of a run not held: {message!r}"
            slot.cancels.add(message.lease)
            return
        assert type(message) is Run, f"node {slot.node_id} got an unexpected {message!r}"
        job = message.job
        where = f"node {slot.node_id} got attempt {job.attempt} of job {job.id}"
        assert slot.credit > 0, f"credit: {where} with no credit left"
        slot.credit -= 1
        assert job.handler in slot.handlers, f"handlers: {where}, of {job.handler!r}"
        assert message.lease not in self.leases, f"rule 13: {where} under a used lease"
        self.leases.add(message.lease)
        model = self.jobs.get(job.id)
        assert model is not None, f"rule 5: {where}, a job never submitted"
        assert model.state == "pending", f"rule 5: {where}, a job {model.state}"
        assert job.attempt == model.attempt + 1, f"rule 4: {where}, after {model.attempt}"
        if model.repo is not None:
            for other in self._held():
                assert other.repo != model.repo, (
                    f"rule 1: {where} of repo {model.repo} while job {other.handle.id} "
                    f"of that repo is held by {other.holder}"
                )
            head = self._head(model.repo)
            assert head is model, (
                f"rule 2: {where} of repo {model.repo}, but job {head.handle.id} "
                f"(submitted #{head.order}, before #{model.order}) heads it"
            )
        model.state, model.attempt, model.holder = "held", job.attempt, slot.node_id
        slot.held[message.lease] = message

    def _held(self) -> Iterator[Model]:
        return (m for m in self.jobs.values() if m.state == "held")

    def _head(self, repo: str) -> Model | None:
        waiting = [m for m in self.jobs.values() if m.repo == repo and m.state not in FINAL]
        return min(waiting, key=lambda m: m.order, default=None)

    def _eligible(self, handlers: tuple[str, ...]) -> Model | None:
        """A job the model says may be sent now to a node offering ``handlers``."""
        held_repos = {m.repo for m in self._held()}
        for model in self.jobs.values():
            if model.state != "pending" or model.handler not in handlers:
                continue
            if model.repo is None:
                return model
            if model.repo not in held_repos and self._head(model.repo) is model:
                return model
        return None

    def _wanted(self) -> tuple[Slot, Model] | None:
        for slot in self.slots:
            if slot.node is not None and slot.credit > 0:
                model = self._eligible(slot.handlers)
                if model is not None:
                    return slot, model
        return None

    def _settle(self) -> None:
        """Take every message that came; wait for each run that must come."""
        deadline = time.monotonic() + WAIT
        while True:
            for slot in self.slots:
                while slot.node is not None:
                    try:
                        message = slot.node.inbox.get_nowait()
                    except queue.Empty:
                        break
                    self._take(slot, message)
            wanted = self._wanted()
            if wanted is None:
                return
            slot, model = wanted
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"liveness: node {slot.node_id} has credit {slot.credit} but job "
                    f"{model.handle.id} (attempt {model.attempt + 1}, repo {model.repo}) "
                    f"was never sent: rule 13 if it was interrupted"
                )
            assert slot.node is not None
            with suppress(queue.Empty):
                self._take(slot, slot.node.inbox.get(timeout=0.05))

    # --- rules --------------------------------------------------------------------

    @rule(
        batch=st.lists(
            st.tuples(
                st.sampled_from(["echo", "echo", "echo", "other"]),
                st.sampled_from([None, "a", "b", "c"]),
                st.integers(1, 10),
                st.integers(0, 2),
            ),
            min_size=1,
            max_size=4,
        )
    )
    @_step
    def submit(self, batch: list[tuple[str, str | None, int, int]]) -> None:
        assert self.sched is not None
        for handler, repo, drawn, retries in batch:
            order = len(self.jobs)
            priority = REPO_PRIORITY[repo] if repo is not None else drawn
            handle = self.sched.submit(
                handler, order, repo=repo, priority=priority, max_retries=retries
            )
            self.jobs[handle.id] = Model(handle, order, handler, repo, retries)

    def _slot(self, pick: int, which: Callable[[Slot], bool]) -> Slot | None:
        # Among the nodes a rule applies to: which those are depends on what
        # the scheduler sent (threads), so a slot is picked, not drawn.
        slots = [slot for slot in self.slots if which(slot)]
        return slots[pick % len(slots)] if slots else None

    @rule(pick=st.integers(0, 1 << 16), slots=st.integers(1, 3))
    @_step
    def credit(self, pick: int, slots: int) -> None:
        slot = self._slot(pick, lambda s: s.node is not None)
        if slot is None or slot.node is None:
            return
        slots = min(slots, MAX_HELD - slot.credit - len(slot.held))
        if slots > 0:
            slot.node.credit(slots)
            slot.credit += slots

    @rule(
        pick=st.integers(0, 1 << 16),
        how=st.sampled_from(["completed", "retryable", "fatal"]),
    )
    @_step
    def finish(self, pick: int, how: str) -> None:
        slot = self._slot(pick, lambda s: bool(s.held))
        if slot is None:
            return
        leases = sorted(slot.held)
        self._answer(slot, leases[pick % len(leases)], how)

    def _answer(self, slot: Slot, lease: int, how: str) -> None:
        assert slot.node is not None
        run = slot.held.pop(lease)
        cancelled = lease in slot.cancels
        slot.cancels.discard(lease)
        model = self.jobs[run.job.id]
        self.spent.append((run.job.id, run.job.attempt, lease))
        if how == "completed":
            result = f"done {lease}"
            slot.node.finish(run, result)
        else:
            error = ErrorInfo("ValueError", "the node says no")
            slot.node.finish(run, status="failed", error=error, retryable=how == "retryable")
        event(f"finish: {how}{' after a cancel' if cancelled else ''}")
        if cancelled:
            # Told to stop: whatever the node says, the attempt ends cancelled.
            self._ends(model, "cancelled")
        elif how == "completed":
            self._ends(model, "completed", result)
        elif how == "retryable" and model.attempt <= model.max_retries:
            self._retried(model, "failed")
        else:
            self._ends(model, "failed")

    def _ends(self, model: Model, status: str, result: Any = None) -> None:
        model.state, model.result, model.holder = status, result, None
        assert model.handle.wait(WAIT), f"rule 5: job {model.handle.id} never resolved {status}"
        self._agrees(model)

    def _retried(self, model: Model, outcome: str) -> None:
        """The attempt ended and the job waits for its next one (not sent yet)."""
        model.state, model.holder = "pending", None
        assert self.sched is not None
        sched, attempt = self.sched, model.attempt

        def recorded() -> bool:
            runs = sched.runs(model.handle.id)
            return len(runs) >= attempt and runs[attempt - 1].outcome is not None

        _wait(recorded, f"rule 5: attempt {attempt} of job {model.handle.id} never ended")
        run = sched.runs(model.handle.id)[attempt - 1]
        assert run.outcome == outcome, f"attempt {attempt} of {model.handle.id} ended {run!r}"
        assert not model.handle.done(), f"rule 4: job {model.handle.id} not retried"

    @rule(pick=st.integers(0, 1 << 16), forged=st.booleans())
    @_step
    def stale_result(self, pick: int, forged: bool) -> None:
        # A lease never issued (forged), or one whose run was answered or lost
        # (stale): the fence rejects it, counts it, and no job changes (rule 13).
        slot = self._slot(pick, lambda s: s.node is not None)
        if slot is None or slot.node is None:
            return
        if forged or not self.spent:
            # Preferably a run this node holds: its true lease must still win.
            held = [(r.job.id, r.job.attempt) for _, r in sorted(slot.held.items())]
            targets = held or [(job_id, max(1, m.attempt)) for job_id, m in self.jobs.items()]
            if not targets:
                return
            job_id, attempt = targets[pick % len(targets)]
            lease = 1 + pick  # never issued: leases start far above
        else:
            job_id, attempt, lease = self.spent[pick % len(self.spent)]
        assert self.sched is not None and self.listener is not None
        listener = self.listener
        before = {
            model.handle.id: (model.handle.status, self.sched.job(model.handle.id).status)
            for model in self.jobs.values()
        }
        counted = _stale_count(listener)
        own = listener.totals()[slot.node_id].stale
        event(f"stale result: {'forged' if lease == 1 + pick else 'stale'}")
        slot.node.send(NodeFinished(job_id, attempt, lease, Outcome("completed", "forged")))
        _wait(
            lambda: _stale_count(listener) == counted + 1,
            f"rule 13: a result under lease {lease} for job {job_id} never counted stale",
        )
        assert _stale_count(listener) == counted + 1
        mine = listener.totals()[slot.node_id].stale
        assert mine == own + 1, f"rule 13: node {slot.node_id} has {mine} stale, not {own + 1}"
        [info] = [i for i in self.sched.nodes() if i.node_id == slot.node_id]
        assert info.stale_rejected == mine, f"rule 13: nodes() says {info.stale_rejected}"
        for model in self.jobs.values():
            now = (model.handle.status, self.sched.job(model.handle.id).status)
            assert now == before[model.handle.id], (
                f"rule 13: a result under lease {lease} changed job {model.handle.id}: "
                f"{before[model.handle.id]} -> {now}"
            )

    @rule(pick=st.integers(0, 1 << 16))
    @_step
    def bye(self, pick: int) -> None:
        # Every run it holds ends interrupted and runs again, or fails (rules 12, 13).
        slot = self._slot(pick, lambda s: s.node is not None)
        if slot is None or slot.node is None:
            return
        assert self.sched is not None
        sched, node = self.sched, slot.node
        node.bye(slot.node_id)
        _wait(
            lambda: slot.node_id not in {info.node_id for info in sched.nodes()},
            f"rule 13: node {slot.node_id} still in session after its Bye",
        )
        node.close()
        slot.node, slot.credit = None, 0
        held, slot.held = slot.held, {}
        event(f"bye with {min(len(held), 2)} run(s) held")
        for lease, run in sorted(held.items()):
            try:
                self._interrupted(slot, lease, run)
            except AssertionError as exc:
                raise AssertionError(f"rule 13: at a Bye of {slot.node_id}: {exc}") from None
        slot.cancels.clear()

    def _interrupted(self, slot: Slot, lease: int, run: Run) -> None:
        """A run ``slot`` held when its session ended: interrupted, then as the model says."""
        self.spent.append((run.job.id, run.job.attempt, lease))
        model = self.jobs[run.job.id]
        if lease in slot.cancels:
            # Told to stop, then lost: the job ends cancelled (rule 4: no retry
            # of a cancelled job), and without a store so does its last run.
            self._ends(model, "cancelled")
            return
        if model.attempt <= model.max_retries:
            event("bye: interrupted, sent again")
            self._retried(model, "interrupted")
        else:
            event("bye: interrupted, failed")
            self._ends(model, "failed")
        self._lost(model)

    def _lost(self, model: Model) -> None:
        assert self.sched is not None
        run = self.sched.runs(model.handle.id)[model.attempt - 1]
        assert run.outcome == "interrupted", (
            f"rule 13: attempt {model.attempt} of job {model.handle.id}, held at a Bye, "
            f"ended {run.outcome}"
        )
        assert run.error is not None and run.error.type == "postroom.NodeLost", (
            f"rule 13: attempt {model.attempt} of job {model.handle.id} lost with {run.error!r}"
        )

    @rule(pick=st.integers(0, 1 << 16))
    @_step
    def reconnect(self, pick: int) -> None:
        slot = self._slot(pick, lambda s: s.node is None)
        if slot is not None:
            self._connect(slot)

    @rule(pick=st.integers(0, 1 << 16))
    @_step
    def hello_under_an_id_in_session(self, pick: int) -> None:
        # A second connection may not take over a live session's id.
        slot = self._slot(pick, lambda s: s.node is not None)
        if slot is None:
            return
        assert self.listener is not None
        intruder = ScriptedNode(self.listener.endpoint)
        try:
            answer = intruder.hello(slot.node_id, slot.handlers)
        finally:
            intruder.close()
        assert isinstance(answer, Refused), f"a second session for {slot.node_id}: {answer!r}"

    @rule(pick=st.integers(0, 1 << 16))
    @_step
    def cancel(self, pick: int) -> None:
        assert self.sched is not None
        if not self.jobs:
            return
        model = self.jobs[sorted(self.jobs)[pick % len(self.jobs)]]
        answer = self.sched.cancel(model.handle.id)
        if model.state in FINAL:
            assert answer is CancelResult.ALREADY_FINISHED, f"cancel of a finished job: {answer}"
        elif model.state == "pending":
            assert answer is CancelResult.CANCELLED, f"cancel of a waiting job: {answer}"
            event("cancel: waiting job")
            self._ends(model, "cancelled")
        elif model.cancel_requested:
            assert answer is CancelResult.ALREADY_CANCELLING, f"second cancel: {answer}"
        else:
            assert answer is CancelResult.SIGNALLED, f"cancel of a held job: {answer}"
            event("cancel: held job signalled")
            model.cancel_requested = True
            self._await_cancel(model)

    def _await_cancel(self, model: Model) -> None:
        slot = next(s for s in self.slots if s.node_id == model.holder)
        lease = next(lease for lease, run in slot.held.items() if run.job.id == model.handle.id)
        deadline = time.monotonic() + WAIT
        while lease not in slot.cancels:
            assert slot.node is not None
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"rule 7: job {model.handle.id} cancelled, node never told")
            with suppress(queue.Empty):
                self._take(slot, slot.node.inbox.get(timeout=left))

    # --- checks after every step ---------------------------------------------------

    @invariant()
    @_step
    def as_the_model_says(self) -> None:
        if self.sched is None:
            return
        self._settle()
        for model in self.jobs.values():
            self._agrees(model)
        in_flight = {info.node_id: info.in_flight for info in self.sched.nodes()}
        for slot in self.slots:
            if slot.node is not None:
                assert in_flight.get(slot.node_id) == len(slot.held), (
                    f"credit: node {slot.node_id} holds {len(slot.held)} run(s), "
                    f"the scheduler counts {in_flight.get(slot.node_id)}"
                )

    def _agrees(self, model: Model) -> None:
        assert self.sched is not None
        job_id = model.handle.id
        status = self.sched.job(job_id).status
        if model.state in FINAL:
            assert model.handle.done(), f"rule 5: job {job_id} {model.state} but not resolved"
            assert (model.handle.status, status) == (model.state, model.state), (
                f"rule 5: job {job_id} must be {model.state}: handle {model.handle.status}, "
                f"job() {status}"
            )
            if model.state == "completed":
                assert model.handle.result(0) == model.result, f"rule 5: result of {job_id}"
        elif model.state == "held":
            assert status == "running", f"job {job_id} held on {model.holder} but {status}"
        else:
            assert status in ("pending", "retrying"), f"job {job_id} waits, but is {status}"

    def teardown(self) -> None:
        sched = self.sched
        if sched is None:
            return
        try:
            if not self.broken:
                self._finish_everything()
        finally:
            for slot in self.slots:
                if slot.node is not None:
                    slot.node.close()
            sched.shutdown(graceful=False, cancel_grace=2)

    def _finish_everything(self) -> None:
        # Every job must end (rule 5): answer each run, give credit, until none is left.
        first = self.slots[0]  # it offers every handler
        for _ in range(3 * len(self.jobs) + 3):
            if all(m.state in FINAL for m in self.jobs.values()):
                break
            if first.node is None:
                self._connect(first)
            for slot in self.slots:
                for lease in sorted(slot.held):
                    self._answer(slot, lease, "completed")
            assert first.node is not None
            wanted = MAX_HELD - first.credit
            if wanted > 0:
                first.node.credit(wanted)
                first.credit += wanted
            self._settle()
        left = [m.handle.id for m in self.jobs.values() if m.state not in FINAL]
        assert not left, f"rule 5: jobs never finished: {left}"
        for model in self.jobs.values():
            self._agrees(model)


def _echo(ctx: Any, payload: Any) -> Any:
    return payload


def _stale_count(listener: Listener) -> int:
    return sum(t.stale for t in listener.totals().values()) + listener.unknown_stale


NodesMachine.TestCase.settings = settings(
    max_examples=examples(200),
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestNodesMachine = NodesMachine.TestCase


# --- seeded bugs: the machine must catch each one ------------------------------------


def _stale_applied() -> contextmanager[None]:  # type: ignore[type-arg]
    from dataclasses import replace

    from transport.link import NodeLink

    original = NodeLink._finished

    def finished(self: NodeLink, message: NodeFinished) -> None:
        if message.lease not in self._leases:
            for lease, entry in self._leases.items():
                if entry.job.id == message.job_id:  # BUG: any lease of the job will do
                    message = replace(message, lease=lease, attempt=entry.job.attempt)
                    break
        original(self, message)

    return patched(NodeLink, "_finished", finished)


def _bye_forgets() -> contextmanager[None]:  # type: ignore[type-arg]
    from transport.link import NodeLink

    original = NodeLink._end

    def end(self: NodeLink, why: str) -> None:
        self._leases = {}  # BUG: the runs held are dropped, never interrupted
        original(self, why)

    return patched(NodeLink, "_end", end)


class _Everything:
    def __contains__(self, _item: object) -> bool:
        return True


def _accepts_ignored() -> contextmanager[None]:  # type: ignore[type-arg]
    from actors._jobs.ready import ReadyQueue

    original = ReadyQueue.take_now

    def take_now(self: ReadyQueue, taker_id: int, accepts: Any, signal: Any) -> Any:
        return original(self, taker_id, _Everything(), signal)  # BUG: any handler goes

    return patched(ReadyQueue, "take_now", take_now)


def _credit_overrun() -> contextmanager[None]:  # type: ignore[type-arg]
    from transport.link import NodeLink

    original = NodeLink._start

    def start(self: NodeLink, job: Any, signal: Any) -> Any:
        run = original(self, job, signal)
        if run is not None and self._credit == 0:
            self._credit = 1  # BUG: the last slot of credit is never spent
        return run

    return patched(NodeLink, "_start", start)


def _release_early() -> contextmanager[None]:  # type: ignore[type-arg]
    from actors import _repo_lock

    original = _repo_lock.RepoLock._advance

    def advance(self: _repo_lock.RepoLock) -> None:
        original(self)
        if self._active is not None and not self._held_for_retry:
            self._active = None  # BUG: the repo is free while its job is on a node
            original(self)

    return patched(_repo_lock.RepoLock, "_advance", advance)


def _lifo_repo() -> contextmanager[None]:  # type: ignore[type-arg]
    from actors import _repo_lock
    from actors.messages import Job

    original = _repo_lock.RepoLock._enqueue
    original_withdraw = _repo_lock.RepoLock._withdraw

    def enqueue(self: _repo_lock.RepoLock, job: Job) -> None:
        active = self._active
        if active is not None and active.id == job.id:
            original(self, job)
            return
        self._waiting[job.id] = job
        self._order.add((job.priority, -job.seq, job.id))  # BUG: newest first

    def withdraw(self: _repo_lock.RepoLock, job_id: str) -> None:
        job = self._waiting.pop(job_id, None)
        if job is not None:
            self._order.remove((job.priority, -job.seq, job.id))
        else:
            original_withdraw(self, job_id)

    @contextmanager
    def both() -> Iterator[None]:
        with (
            patched(_repo_lock.RepoLock, "_enqueue", enqueue),
            patched(_repo_lock.RepoLock, "_withdraw", withdraw),
        ):
            yield

    return both()


SEEDED_BUGS: dict[str, tuple[Callable[[], contextmanager[None]], tuple[str, ...]]] = {  # type: ignore[type-arg]
    # bug: (how to seed it, the failure messages that count as catching it)
    "stale_applied": (_stale_applied, ("rule 13",)),
    "bye_forgets": (_bye_forgets, ("rule 13",)),
    "accepts_ignored": (_accepts_ignored, ("handlers",)),
    "credit_overrun": (_credit_overrun, ("credit",)),
    "release_early": (_release_early, ("rule 1", "rule 2")),
    "lifo_repo": (_lifo_repo, ("rule 2",)),
}


@pytest.mark.parametrize("bug", sorted(SEEDED_BUGS))
def test_machine_catches_seeded_bug(bug: str) -> None:
    """The machine is only worth something if it fails on a broken scheduler."""
    seed, rules = SEEDED_BUGS[bug]
    with seed():
        message = failure_of(NodesMachine, max_examples=200, steps=25)
    # Caught for the right reason: the rule the bug breaks, not some other failure.
    assert any(rule in message for rule in rules), message[:500]
