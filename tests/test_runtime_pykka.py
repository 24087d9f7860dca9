"""Pykka behind one door: the internals ``actors/_runtime`` relies on, and nothing else.

postroom's actor runtime (``actors/_runtime``) is a Pykka runtime of its own: it
overrides Pykka's loop hooks, makes its own inboxes and futures, and unpacks
Pykka's envelopes. Much of that is private to Pykka and may change in any
release, so pyproject.toml pins Pykka to the minor release this suite ran on.
These tests are what moving the pin takes: each checks one internal the runtime
uses (it exists, its parameters are named as the runtime calls them, it does
what the runtime counts on), and a failure names it. Another test finds every
Pykka name the runtime's source uses and fails on one not checked here, and the
last holds that no module outside ``actors/_runtime`` imports Pykka at all.
"""

from __future__ import annotations

import ast
import importlib.metadata
import inspect
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pykka
import pykka._actor
import pykka._envelope
import pykka.messages
import pytest

ROOT = Path(__file__).resolve().parent.parent
PYKKA_VERSION = importlib.metadata.version("pykka")
RUNTIME = ROOT / "actors" / "_runtime"
Envelope = pykka._envelope.Envelope
_ActorStop = pykka.messages._ActorStop


# --- shapes: each internal exists, with the parameters the runtime uses ---------------

SIGNATURES: dict[str, tuple[Callable[[], Any], list[str]]] = {
    # Actor: the hooks postroom's runtime overrides or calls.
    "pykka.Actor.__init__": (lambda: pykka.Actor.__init__, ["self", "_args", "_kwargs"]),
    "pykka.Actor._actor_loop": (lambda: pykka.Actor._actor_loop, ["self"]),
    "pykka.Actor._actor_loop_setup": (lambda: pykka.Actor._actor_loop_setup, ["self"]),
    "pykka.Actor._actor_loop_running": (lambda: pykka.Actor._actor_loop_running, ["self"]),
    "pykka.Actor._actor_loop_teardown": (lambda: pykka.Actor._actor_loop_teardown, ["self"]),
    "pykka.Actor._handle_receive": (lambda: pykka.Actor._handle_receive, ["self", "message"]),
    "pykka.Actor._handle_failure": (
        lambda: pykka.Actor._handle_failure,
        ["self", "exception_type", "exception_value", "traceback"],
    ),
    "pykka.Actor._create_actor_inbox": (lambda: pykka.Actor._create_actor_inbox, []),
    "pykka.Actor._create_future": (lambda: pykka.Actor._create_future, []),
    "pykka.Actor._start_actor_loop": (lambda: pykka.Actor._start_actor_loop, ["self"]),
    "pykka.Actor.on_start": (lambda: pykka.Actor.on_start, ["self"]),
    "pykka.Actor.on_stop": (lambda: pykka.Actor.on_stop, ["self"]),
    "pykka.Actor.on_receive": (lambda: pykka.Actor.on_receive, ["self", "message"]),
    "pykka.Actor.on_failure": (
        lambda: pykka.Actor.on_failure,
        ["self", "exception_type", "exception_value", "traceback"],
    ),
    "pykka.Actor.stop": (lambda: pykka.Actor.stop, ["self"]),
    # ThreadingActor: PostroomActor keeps its future and its loop's order.
    "pykka.ThreadingActor._create_future": (lambda: pykka.ThreadingActor._create_future, []),
    "pykka.ThreadingActor._actor_loop": (lambda: pykka.ThreadingActor._actor_loop, ["self"]),
    # ActorRef: what refs.py and post() call.
    "pykka.ActorRef.tell": (lambda: pykka.ActorRef.tell, ["self", "message"]),
    "pykka.ActorRef.ask": (lambda: pykka.ActorRef.ask, ["self", "message", "block", "timeout"]),
    "pykka.ActorRef.stop": (lambda: pykka.ActorRef.stop, ["self", "block", "timeout"]),
    "pykka.ActorRef.is_alive": (lambda: pykka.ActorRef.is_alive, ["self"]),
    # The envelope the runtime's loops unpack, and the futures they answer.
    "pykka._envelope.Envelope": (
        lambda: pykka._envelope.Envelope.__init__,
        ["self", "message", "reply_to"],
    ),
    "pykka.Future.set": (lambda: pykka.Future.set, ["self", "value"]),
    "pykka.Future.set_exception": (lambda: pykka.Future.set_exception, ["self", "exc_info"]),
    "pykka.Future.get": (lambda: pykka.Future.get, ["self", "timeout"]),
    "pykka.ThreadingFuture.set": (lambda: pykka.ThreadingFuture.set, ["self", "value"]),
    "pykka.ThreadingFuture.set_exception": (
        lambda: pykka.ThreadingFuture.set_exception,
        ["self", "exc_info"],
    ),
}

CLASSES: dict[str, Callable[[], Any]] = {
    "pykka.Actor": lambda: pykka.Actor,
    "pykka.ThreadingActor": lambda: pykka.ThreadingActor,
    "pykka.ActorRef": lambda: pykka.ActorRef,
    "pykka.Future": lambda: pykka.Future,
    "pykka.ThreadingFuture": lambda: pykka.ThreadingFuture,
    "pykka.ActorDeadError": lambda: pykka.ActorDeadError,
    "pykka.Timeout": lambda: pykka.Timeout,
    "pykka.messages._ActorStop": lambda: pykka.messages._ActorStop,
    "pykka._actor.ActorInbox": lambda: pykka._actor.ActorInbox,
}

ATTRIBUTES = [
    # Attributes the runtime reads, set on each instance (so checked on one).
    "pykka.Actor.actor_inbox",
    "pykka.Actor.actor_stopped",
    "pykka.Actor.actor_ref",
    "pykka.ActorRef.actor_inbox",
    "pykka._envelope.Envelope.message",
    "pykka._envelope.Envelope.reply_to",
]

STATIC = ["pykka.Actor._create_actor_inbox", "pykka.Actor._create_future"]
"""Overridden with staticmethods: Pykka calls them on the class (``ActorRef.ask``)."""


def _upgrade_hint(name: str) -> str:
    if not name.startswith("pykka"):
        name = f"pykka.{name}"
    return (
        f"{name} is not as actors/_runtime expects it in pykka {PYKKA_VERSION}: adapt "
        "the runtime to it before moving the pin in pyproject.toml"
    )


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_the_signature_of(name: str) -> None:
    get, expected = SIGNATURES[name]
    try:
        func = get()
    except AttributeError:
        pytest.fail(f"{_upgrade_hint(name)}: it is gone")
    found = list(inspect.signature(func).parameters)
    assert found == expected, f"{_upgrade_hint(name)}: parameters {found}, expected {expected}"


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_the_class(name: str) -> None:
    try:
        cls = CLASSES[name]()
    except AttributeError:
        pytest.fail(f"{_upgrade_hint(name)}: it is gone")
    assert inspect.isclass(cls), f"{_upgrade_hint(name)}: no longer a class"


@pytest.mark.parametrize("name", STATIC)
def test_a_static_hook(name: str) -> None:
    attr = name.rsplit(".", 1)[1]
    found = inspect.getattr_static(pykka.Actor, attr, None)
    assert isinstance(found, staticmethod), f"{_upgrade_hint(name)}: no longer a staticmethod"


class _Recorder:
    """An inbox that keeps what it is given (the ActorInbox protocol)."""

    takes_bare = False

    def __init__(self) -> None:
        self.items: list[Any] = []

    def put(self, item: Any, /) -> None:
        self.items.append(item)

    def get(self) -> Any:
        return self.items.pop(0)

    def empty(self) -> bool:
        return not self.items


class _MarkedFuture(pykka.ThreadingFuture[Any]):
    """A future the test can recognise as its actor's own."""


class _Bare(pykka.Actor):
    """An actor with no thread: the test runs its hooks by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []
        self.x = "x"

    @staticmethod
    def _create_actor_inbox() -> Any:
        return _Recorder()

    @staticmethod
    def _create_future() -> Any:
        return _MarkedFuture()

    def _start_actor_loop(self) -> None:
        raise AssertionError("never started")

    def on_start(self) -> None:
        self.calls.append("on_start")

    def on_stop(self) -> None:
        self.calls.append("on_stop")

    def on_receive(self, message: Any) -> Any:
        self.calls.append(f"on_receive {message}")
        return ("got", message)


@pytest.fixture
def bare() -> _Bare:
    return _Bare()


@pytest.mark.parametrize("name", ATTRIBUTES)
def test_the_attribute(name: str, bare: _Bare) -> None:
    owner, attr = name.rsplit(".", 1)
    instance = {
        "pykka.Actor": bare,
        "pykka.ActorRef": bare.actor_ref,
        "pykka._envelope.Envelope": Envelope("m"),
    }[owner]
    assert hasattr(instance, attr), f"{_upgrade_hint(name)}: it is gone"


# --- behaviour: what the runtime counts on ----------------------------------------------


def test_an_actor_takes_its_inbox_from_create_actor_inbox_and_its_ref_shares_it(
    bare: _Bare,
) -> None:
    assert isinstance(bare.actor_inbox, _Recorder), _upgrade_hint("Actor._create_actor_inbox")
    assert bare.actor_ref.actor_inbox is bare.actor_inbox, _upgrade_hint("ActorRef.actor_inbox")
    assert isinstance(bare.actor_stopped, threading.Event), _upgrade_hint("Actor.actor_stopped")
    assert bare.actor_ref.is_alive(), _upgrade_hint("ActorRef.is_alive")


def test_tell_puts_one_envelope_with_the_message_and_no_reply(bare: _Bare) -> None:
    bare.actor_ref.tell("hello")
    (item,) = bare.actor_inbox.items  # type: ignore[attr-defined]
    # The runtime's loops tell envelopes from posted messages by exact type.
    assert type(item) is Envelope, _upgrade_hint("ActorRef.tell (puts an Envelope)")
    assert item.message == "hello", _upgrade_hint("_envelope.Envelope.message")
    assert item.reply_to is None, _upgrade_hint("_envelope.Envelope.reply_to")


def test_ask_replies_through_a_future_of_the_actor_class(bare: _Bare) -> None:
    answer = bare.actor_ref.ask("question", block=False)
    (item,) = bare.actor_inbox.items  # type: ignore[attr-defined]
    assert type(item) is Envelope, _upgrade_hint("ActorRef.ask (puts an Envelope)")
    assert item.message == "question", _upgrade_hint("_envelope.Envelope.message")
    # LoopActor makes its own futures: Pykka must take them from the class.
    assert isinstance(item.reply_to, _MarkedFuture), _upgrade_hint("Actor._create_future")
    item.reply_to.set(42)
    assert answer.get(timeout=1) == 42, _upgrade_hint("Future.set")


def test_ask_gives_up_with_timeout_and_answers_a_set_exception(bare: _Bare) -> None:
    # refs.ask turns Pykka's Timeout, and only it, into NoReply.
    with pytest.raises(pykka.Timeout):
        bare.actor_ref.ask("nobody answers", timeout=0.01)
    answer = bare.actor_ref.ask("fails", block=False)
    item = bare.actor_inbox.items[-1]  # type: ignore[attr-defined]
    try:
        raise ValueError("from the handler")
    except ValueError:
        item.reply_to.set_exception()  # handle_item: the exception being handled
    with pytest.raises(ValueError, match="from the handler"):
        answer.get(timeout=1)
    dead = bare.actor_ref.ask("dead", block=False)
    error = pykka.ActorDeadError("gone")
    bare.actor_inbox.items[-1].reply_to.set_exception(  # type: ignore[attr-defined]
        exc_info=(pykka.ActorDeadError, error, None)
    )
    with pytest.raises(pykka.ActorDeadError):
        dead.get(timeout=1)


def test_a_ref_stop_sends_actor_stop_and_ends_when_its_reply_is_set(bare: _Bare) -> None:
    stopped = bare.actor_ref.stop(block=False)
    (item,) = bare.actor_inbox.items  # type: ignore[attr-defined]
    assert isinstance(item.message, _ActorStop), _upgrade_hint("ActorRef.stop (sends _ActorStop)")
    item.reply_to.set(None)  # drain_inbox answers a queued stop so
    assert stopped.get(timeout=1) is True, _upgrade_hint("ActorRef.stop (its future)")


def test_an_actor_stops_itself_with_actor_stop(bare: _Bare) -> None:
    bare.stop()
    (item,) = bare.actor_inbox.items  # type: ignore[attr-defined]
    assert isinstance(item.message, _ActorStop), _upgrade_hint("Actor.stop (tells _ActorStop)")


def test_handle_receive_stops_on_actor_stop_and_answers_proxy_messages(bare: _Bare) -> None:
    attr = bare._handle_receive(pykka.messages.ProxyGetAttr(attr_path=("x",)))
    assert attr == "x", _upgrade_hint("Actor._handle_receive (ProxyGetAttr)")
    assert bare._handle_receive("plain") == ("got", "plain"), _upgrade_hint(
        "Actor._handle_receive (on_receive)"
    )
    bare._handle_receive(_ActorStop())
    assert bare.actor_stopped.is_set(), _upgrade_hint("Actor._handle_receive (_ActorStop)")
    assert not bare.actor_ref.is_alive(), _upgrade_hint("ActorRef.is_alive")
    assert bare.calls == ["on_receive plain", "on_stop"], _upgrade_hint("Actor._stop")


def test_a_dead_actor_refuses_tells_and_asks(bare: _Bare) -> None:
    bare.actor_stopped.set()  # what the runtime's _handle_failure does
    with pytest.raises(pykka.ActorDeadError):
        bare.actor_ref.tell("late")
    with pytest.raises(pykka.ActorDeadError):
        bare.actor_ref.ask("late", block=False).get(timeout=1)
    assert bare.actor_inbox.items == []  # type: ignore[attr-defined]


def test_pykka_control_messages_live_in_pykka_modules() -> None:
    # handle_item routes a message from a module named pykka* to _handle_receive.
    for kind in (
        _ActorStop,
        pykka.messages.ProxyCall,
        pykka.messages.ProxyGetAttr,
        pykka.messages.ProxySetAttr,
    ):
        assert kind.__module__.startswith("pykka"), _upgrade_hint(f"messages.{kind.__name__}")


def test_the_actor_loop_is_setup_running_teardown() -> None:
    # PostroomActor's thread runs ThreadingActor's _actor_loop; the runtime's
    # own setup, loop and teardown must be what it calls, in this order.
    class Loop(pykka.ThreadingActor):
        def __init__(self) -> None:
            super().__init__()
            self.calls: list[str] = []

        def _actor_loop_setup(self) -> None:
            self.calls.append("setup")

        def _actor_loop_running(self) -> None:
            self.calls.append("running")

        def _actor_loop_teardown(self) -> None:
            self.calls.append("teardown")

    actor = Loop()
    actor._actor_loop()
    assert actor.calls == ["setup", "running", "teardown"], _upgrade_hint("Actor._actor_loop")


def test_the_threading_future_is_the_one_pykka_threads_use() -> None:
    assert isinstance(pykka.ThreadingActor._create_future(), pykka.ThreadingFuture)
    inbox = pykka.ThreadingActor._create_actor_inbox()
    for method in ("put", "get", "empty"):  # the ActorInbox protocol postroom's inboxes keep
        hint = _upgrade_hint(f"_actor.ActorInbox.{method}")
        assert callable(getattr(inbox, method)), hint
        assert hasattr(pykka._actor.ActorInbox, method), hint


def test_pykka_timeout_is_an_exception_callers_never_see() -> None:
    # refs.ask/stop catch it; it is not a TimeoutError, so nothing else would.
    assert issubclass(pykka.Timeout, Exception)
    assert issubclass(pykka.ActorDeadError, Exception)


# --- completeness: every Pykka name the runtime uses is checked above -------------------

_PUBLIC_READS = {
    "actor_inbox": {"pykka.Actor.actor_inbox", "pykka.ActorRef.actor_inbox"},
    "actor_stopped": {"pykka.Actor.actor_stopped"},
    "actor_ref": {"pykka.Actor.actor_ref"},
    "reply_to": {"pykka._envelope.Envelope.reply_to"},
    "message": {"pykka._envelope.Envelope.message"},
}

CHECKED = (
    set(SIGNATURES)
    | set(CLASSES)
    | set(ATTRIBUTES)
    | set(STATIC)
    | {"pykka._envelope.Envelope", "pykka"}
)


def _pykka_names_used_by(path: Path) -> set[str]:
    """Pykka's names that ``path`` imports, reads, calls or overrides."""
    tree = ast.parse(path.read_text(), filename=str(path))
    used: set[str] = set()
    actor_members = set(dir(pykka.ThreadingActor))
    ref_members = set(dir(pykka.ActorRef))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            used |= {alias.name for alias in node.names if alias.name.split(".")[0] == "pykka"}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "pykka":
            used |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Attribute):
            if isinstance(node.value, ast.Name) and node.value.id == "pykka":
                used.add(f"pykka.{node.attr}")
            elif node.attr.startswith("_") and not node.attr.startswith("__"):
                if node.attr in actor_members:
                    used.add(f"pykka.Actor.{node.attr}")
                elif node.attr in ref_members:
                    used.add(f"pykka.ActorRef.{node.attr}")
            used |= _PUBLIC_READS.get(node.attr, set())
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if (
                    isinstance(item, ast.FunctionDef)
                    and item.name in actor_members
                    and not item.name.startswith("__")
                ):
                    used.add(f"pykka.Actor.{item.name}")  # an override of Pykka's
    return used


def test_every_pykka_internal_the_runtime_uses_is_checked_here() -> None:
    used = set().union(*(_pykka_names_used_by(path) for path in RUNTIME.glob("*.py")))
    unchecked = sorted(used - CHECKED)
    assert not unchecked, (
        f"actors/_runtime uses Pykka's {unchecked}, which tests/test_runtime_pykka.py "
        "does not check: add each to its checks, so an upgrade that changes it fails here"
    )
    assert "pykka._envelope.Envelope" in used  # the collector sees what it should


# --- one door: nothing outside actors/_runtime imports pykka -----------------------------


def _imports_pykka(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(), filename=str(path))
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            if any(alias.name.split(".")[0] == "pykka" for alias in node.names):
                lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            if (node.module or "").split(".")[0] == "pykka":
                lines.append(node.lineno)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, (ast.Name, ast.Attribute))
            and (node.func.id if isinstance(node.func, ast.Name) else node.func.attr)
            in ("__import__", "import_module")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and str(node.args[0].value).split(".")[0] == "pykka"
        ):
            lines.append(node.lineno)
    return sorted(lines)


def test_only_the_runtime_imports_pykka() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line}"
        for package in ("actors", "transport")
        for path in sorted((ROOT / package).rglob("*.py"))
        if RUNTIME not in path.parents
        for line in _imports_pykka(path)
    ]
    assert not offenders, (
        "only actors/_runtime may import pykka (use ActorRef, ActorDead, ask, stop from "
        f"actors._runtime.refs): {offenders}"
    )


def test_the_door_check_sees_an_import_when_there_is_one(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import os\nimport pykka\nfrom pykka._envelope import Envelope\n"
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pykka import ActorRef\n"
        "import importlib\nimportlib.import_module('pykka.messages')\n"
    )
    assert _imports_pykka(sample) == [2, 3, 6, 8]


def test_the_installed_pykka_is_the_pinned_minor_release() -> None:
    # The shape checks above were written against this release; a newer one
    # is allowed in only by moving the pin in pyproject.toml, after they pass.
    pinned = next(
        line for line in (ROOT / "pyproject.toml").read_text().splitlines() if '"pykka' in line
    )
    major, minor = (int(part) for part in PYKKA_VERSION.split(".")[:2])
    assert f'"pykka>={major}.{minor},<{major}.{minor + 1}"' in pinned, (
        f"pykka {PYKKA_VERSION} is installed, pyproject.toml pins {pinned.strip()}"
    )
