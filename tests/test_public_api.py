"""Tests for the public surface: complete re-exports, documented, typed."""

from __future__ import annotations

import enum
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

import actors

CONTRACT = {
    "Scheduler",
    "Priority",
    "RetryPolicy",
    "JobStatus",
    "Fatal",
    "QueueFull",
    "SchedulerClosed",
    "UnknownHandler",
    "JobNotFound",
    "JobFailed",
    "JobCancelled",
    "JobTimedOut",
    "SchedulerError",
}
"""Names the public surface promises (docs/api.md, docs/errors.md)."""


def test_all_names_are_importable_and_unique() -> None:
    assert len(actors.__all__) == len(set(actors.__all__))
    namespace: dict[str, object] = {}
    exec("from actors import *", namespace)
    for name in actors.__all__:
        assert hasattr(actors, name), name
        assert name in namespace, name
        assert namespace[name] is getattr(actors, name)


def test_the_contract_is_exported() -> None:
    missing = CONTRACT - set(actors.__all__)
    assert not missing


def test_private_modules_are_not_exported() -> None:
    assert not [name for name in actors.__all__ if name.startswith("_")]


def test_public_names_of_private_modules_are_reexported() -> None:
    """Every error and every snapshot type defined privately reaches the user."""
    from actors import _errors
    from actors._jobs import info as _info

    for module in (_errors, _info):
        for name in module.__all__:
            assert name in actors.__all__, f"{module.__name__}.{name} is not re-exported"
            assert getattr(actors, name) is getattr(module, name)


def test_every_module_declares_all() -> None:
    path = [str(Path(actors.__file__).parent)]
    for info in pkgutil.walk_packages(path, prefix="actors."):
        module = importlib.import_module(info.name)
        assert hasattr(module, "__all__"), module.__name__
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.__all__ names missing {name}"


def test_job_status_has_exactly_the_seven_states() -> None:
    assert {s.value for s in actors.JobStatus} == {
        "scheduled",
        "pending",
        "running",
        "retrying",
        "completed",
        "failed",
        "cancelled",
    }
    assert len(actors.JobStatus) == 7
    finished = {s for s in actors.JobStatus if s.finished}
    assert finished == {
        actors.JobStatus.COMPLETED,
        actors.JobStatus.FAILED,
        actors.JobStatus.CANCELLED,
    }


def test_priority_values() -> None:
    assert actors.Priority.USER_BLOCKING == 1
    assert actors.Priority.USER_VISIBLE == 5
    assert actors.Priority.BEST_EFFORT == 10
    assert sorted(int(p) for p in actors.Priority) == [1, 5, 10]


def test_error_tree_has_one_root() -> None:
    for name in actors.__all__:
        obj = getattr(actors, name)
        if inspect.isclass(obj) and issubclass(obj, BaseException) and obj is not actors.Fatal:
            assert issubclass(obj, actors.SchedulerError), name
    # Fatal is raised by handlers, not by postroom.
    assert not issubclass(actors.Fatal, actors.SchedulerError)
    assert issubclass(actors.JobTimedOut, actors.JobFailed)
    assert issubclass(actors.JobFailed, actors.JobError)
    assert issubclass(actors.JobCancelled, actors.JobError)
    assert issubclass(actors.UnknownHandler, KeyError)
    assert issubclass(actors.JobNotFound, KeyError)


def _public_members(cls: type) -> list[tuple[str, object]]:
    members = []
    for name, value in vars(cls).items():
        if name.startswith("_"):
            continue
        member = value.__func__ if isinstance(value, staticmethod | classmethod) else value
        if inspect.isfunction(member) or isinstance(member, property):
            members.append((name, member))
    return members


def _documented(obj: object) -> bool:
    doc = obj.__doc__ if not isinstance(obj, property) else (obj.fget.__doc__ if obj.fget else None)
    return bool(doc and doc.strip())


@pytest.mark.parametrize("name", sorted(actors.__all__))
def test_public_names_have_docstrings(name: str) -> None:
    obj = getattr(actors, name)
    if inspect.ismodule(obj) or inspect.isclass(obj) or inspect.isfunction(obj):
        assert _documented(obj), f"actors.{name} has no docstring"
    if inspect.isclass(obj) and not issubclass(obj, enum.Enum):
        undocumented = [m for m, value in _public_members(obj) if not _documented(value)]
        assert not undocumented, f"actors.{name} lacks docstrings on {undocumented}"


def test_package_is_typed() -> None:
    assert (Path(actors.__file__).parent / "py.typed").is_file()


def test_version() -> None:
    assert isinstance(actors.__version__, str)
    assert actors.__version__.count(".") >= 1


@pytest.mark.parametrize("name", sorted(actors.__all__))
def test_public_calls_take_no_private_arguments(name: str) -> None:
    """What the facade passes internally (a retry's original, a schedule's fire,
    a parent) goes through its own components, never a hidden keyword."""
    obj = getattr(actors, name)
    if not inspect.isclass(obj) or issubclass(obj, enum.Enum | BaseException):
        return
    # Inherited members too: a class assembled from parts gets its calls from them.
    for member in ["__init__", *(m for m in dir(obj) if not m.startswith("_"))]:
        value = inspect.getattr_static(obj, member)
        value = value.__func__ if isinstance(value, staticmethod | classmethod) else value
        func = value.fget if isinstance(value, property) else value
        if not inspect.isfunction(func):
            continue
        private = [p for p in inspect.signature(func).parameters if p.startswith("_")]
        assert not private, f"actors.{name}.{member} takes {private}"


def test_the_scheduler_is_one_class_that_holds_its_parts() -> None:
    """No part of the facade is a mixin sharing the Scheduler's attributes: each
    is a class of its own in actors/_facade/, which the Scheduler holds."""
    from actors import _facade

    assert actors.Scheduler.__bases__ == (object,)
    for info in pkgutil.iter_modules(_facade.__path__, prefix="actors._facade."):
        module = importlib.import_module(info.name)
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj) and not getattr(obj, "_is_protocol", False):
                assert obj.__bases__ == (object,), f"{info.name}.{name}"
