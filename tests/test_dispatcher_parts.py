"""The Dispatcher is one class that holds its parts: the pool, the schedule driver, the figures."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import actors._dispatcher
from actors._dispatcher.dispatcher import Dispatcher
from actors._dispatcher.figures import DispatcherFigures
from actors._dispatcher.pool import WorkerPool
from actors._dispatcher.schedules import ScheduleDriver

ROOM = Path(actors._dispatcher.__file__).parent


def test_the_dispatcher_is_not_assembled_from_its_parts() -> None:
    # Its bases are the runtime's actor classes only; its parts are attributes.
    bases = [c for c in Dispatcher.__mro__[1:] if c.__module__.startswith("actors.")]
    assert [c for c in bases if not c.__module__.startswith("actors._runtime.")] == []


@pytest.mark.parametrize("part", [WorkerPool, ScheduleDriver, DispatcherFigures])
def test_a_part_declares_no_state_of_its_host(part: type) -> None:
    # A mixin announces the host's attributes it uses as class annotations; a
    # component sets its own state in its constructor.
    assert vars(part).get("__annotations__", {}) == {}


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module is not None:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


@pytest.mark.parametrize(
    "module", sorted(p.name for p in ROOM.glob("*.py") if p.name != "dispatcher.py")
)
def test_no_part_imports_the_dispatcher(module: str) -> None:
    # Even under TYPE_CHECKING: the parts sit below the actor that holds them.
    assert "actors._dispatcher.dispatcher" not in _imported_modules(ROOM / module)
