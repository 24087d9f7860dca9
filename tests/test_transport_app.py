"""Tests for `transport.app`: loading a node's handlers by import path, and finding it."""

from __future__ import annotations

import pytest

from actors import Handlers, InvalidArgument
from tests import slot_apps
from transport.app import app_path, load_handlers


def test_load_handlers_takes_a_handlers_or_a_scheduler() -> None:
    assert sorted(load_handlers("tests.slot_apps:handlers")) == slot_apps.handlers.names()
    assert sorted(load_handlers("tests.slot_apps:scheduler")) == ["boom", "echo"]
    with pytest.raises(InvalidArgument, match="not a Handlers or a Scheduler"):
        load_handlers("tests.slot_apps:as_dict")
    with pytest.raises(InvalidArgument, match="MODULE:ATTR"):
        load_handlers("tests.slot_apps")


def test_app_path_names_a_module_level_registry_the_child_can_import() -> None:
    assert app_path(slot_apps.handlers) == "tests.slot_apps:handlers"
    assert app_path(slot_apps.scheduler) == "tests.slot_apps:scheduler"
    assert load_handlers(app_path(slot_apps.handlers)) == load_handlers("tests.slot_apps:handlers")


def test_app_path_refuses_a_registry_bound_to_no_module_name() -> None:
    with pytest.raises(InvalidArgument, match="module-level name"):
        app_path(Handlers())
