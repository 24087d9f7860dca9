"""Tests for the job store's rules (actors/_jobs/__init__.py): one owner per
piece of job state, every change a named transition, and no silent race on a
free-threaded build."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import actors
from actors import GILRequired, SchedulerError
from actors._jobs.links import JobLinks
from actors._jobs.state import HELD, PARKED, READY, REPO, TIMER, JobState
from actors._jobs.status import PENDING, RETRYING, RUNNING, SCHEDULED
from actors.messages import Job

PACKAGE = Path(actors.__file__).parent
STORE = PACKAGE / "_jobs"
FIELDS = frozenset(JobState.__slots__) | frozenset(JobLinks.__slots__)
"""Attribute names of a job's state: none is assigned outside the store."""


def _attribute_writes(source: str, filename: str = "<source>") -> list[tuple[int, str]]:
    """(line, attribute) of every assignment, deletion or ``setattr`` of an
    attribute named like a job state field, on anything but ``self``.

    ``self.error = ...`` in some other class is that object's own field; a job
    state is always reached through another name (``state``, ``followup``,
    ``self._table``...), so this is honest without knowing types.
    """
    found: list[tuple[int, str]] = []

    def target(node: ast.expr) -> None:
        if isinstance(node, ast.Tuple | ast.List):
            for element in node.elts:
                target(element)
        elif isinstance(node, ast.Starred):
            target(node.value)
        elif (
            isinstance(node, ast.Attribute)
            and node.attr in FIELDS
            and not (isinstance(node.value, ast.Name) and node.value.id == "self")
        ):
            found.append((node.lineno, node.attr))

    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Assign | ast.Delete):
            for each in node.targets:
                target(each)
        elif isinstance(
            node, ast.AugAssign | ast.AnnAssign | ast.For | ast.AsyncFor | ast.comprehension
        ):
            target(node.target)
        elif isinstance(node, ast.withitem) and node.optional_vars is not None:
            target(node.optional_vars)
        elif isinstance(node, ast.Call):
            func = node.func
            name = (
                func.id
                if isinstance(func, ast.Name)
                else func.attr
                if isinstance(func, ast.Attribute)
                else ""
            )
            if name in ("setattr", "__setattr__", "delattr", "__delattr__") and len(node.args) >= 2:
                attr = node.args[1]
                if isinstance(attr, ast.Constant) and attr.value in FIELDS:
                    found.append((node.lineno, str(attr.value)))
    return found


def test_the_scan_finds_every_kind_of_write() -> None:
    """The scan below is only as good as this: each way of writing a field is caught."""
    source = """
state.where = REPO
state.status, state.links = SCHEDULED, links
a.b.timer = 1
state.attempts += 1
state.progress: Progress = p
del state.exception
setattr(state, "cancel_requested", "cancel")
object.__setattr__(state, "job", job)
state.links.children = []
for state.result in results: pass
self.error = error
state.not_a_field = 1
"""
    lines = sorted(line for line, _ in _attribute_writes(source))
    assert lines == [2, 3, 3, 4, 5, 6, 7, 8, 9, 10, 11]


def test_no_job_state_field_is_assigned_outside_the_store() -> None:
    """Every change of a job's state goes through a transition of actors/_jobs."""
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: .{attr}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if STORE not in path.parents
        for line, attr in _attribute_writes(path.read_text(encoding="utf-8"), str(path))
    ]
    assert not offenders, "job state written outside actors/_jobs:\n" + "\n".join(offenders)


# --- transitions -------------------------------------------------------------------


def _job(attempt: int = 1) -> Job:
    return Job("j-1", "h", None, 1, attempt=attempt, repo="r")


def test_where_the_job_waits() -> None:
    state = JobState(_job(), SCHEDULED)
    state.to_timer(7)
    assert (state.where, state.timer) == (TIMER, 7)
    state.to_timer(8, hold=True)
    assert (state.where, state.timer) == (HELD, 8)
    state.to_repo()
    assert (state.where, state.timer) == (REPO, None)  # its timer is spent
    state.to_timer(9)
    assert state.take_timer() == 9
    assert state.timer is None
    assert state.take_timer() is None


def test_make_ready_moves_the_attempt_and_the_status_together() -> None:
    state = JobState(_job(), SCHEDULED)
    second = _job(attempt=2)
    state.await_retry(second, None)
    assert state.status is RETRYING
    state.make_ready(second)
    assert (state.job, state.where, state.status) == (second, READY, PENDING)
    state.start_attempt(second, 0.0)
    state.make_ready(second)  # a worker started it first: it stays running
    assert state.status is RUNNING


def test_a_cancel_is_requested_once() -> None:
    state = JobState(_job(), PENDING)
    assert state.request_cancel("cancel")
    assert not state.request_cancel("shutdown")
    assert state.cancel_requested == "cancel"


def test_a_parked_job_is_unparked_once_and_released() -> None:
    state = JobState(_job(), PENDING)
    state.park(JobLinks("parent"))
    assert (state.status, state.where) == (SCHEDULED, PARKED)
    assert state.links is not None and state.links.parent == "parent"
    assert state.unpark()
    assert not state.unpark()  # a second claimant (an idempotent twin) gets nothing
    job = Job("j-1", "h", {"from": "parent"}, 1)
    state.release(job)
    assert (state.job, state.status) == (job, PENDING)


def test_a_resolved_parked_job_cannot_be_unparked() -> None:
    state = JobState(_job(), PENDING)
    state.park(JobLinks("parent"))
    assert state.resolve(actors.JobStatus.CANCELLED)
    assert not state.unpark()


# --- free-threaded builds ----------------------------------------------------------


def test_a_free_threaded_build_is_refused_at_construction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The store relies on the GIL: without it, no scheduler is built (and none races)."""
    monkeypatch.setattr(sys, "_is_gil_enabled", lambda: False, raising=False)
    with pytest.raises(GILRequired) as raised:
        actors.Scheduler(workers=1)
    assert isinstance(raised.value, SchedulerError)
    assert isinstance(raised.value, RuntimeError)
    assert "PYTHON_GIL=1" in str(raised.value)


def test_a_build_with_the_gil_on_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    """A free-threaded build that runs with the GIL (PYTHON_GIL=1) may run a scheduler."""
    monkeypatch.setattr(sys, "_is_gil_enabled", lambda: True, raising=False)
    with actors.Scheduler(workers=1) as sched:
        sched.register("echo", lambda _ctx, payload: payload)
        assert sched.submit("echo", 3).result(timeout=10) == 3


def test_a_build_without_the_switch_has_a_gil(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before 3.13 there is no ``sys._is_gil_enabled``: every build has the GIL."""
    monkeypatch.delattr(sys, "_is_gil_enabled", raising=False)
    actors.Scheduler(workers=1)  # built, never started: nothing to stop
