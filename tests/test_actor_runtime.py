"""postroom's own Pykka runtimes: the shared actor loop and the Timer's batching loop.

Both take posted messages (no envelope) beside Pykka's envelopes; these tests
hold that a posted message is handled like a told one, in order, and that an
actor stopped with mail still queued behind the stop tears down cleanly: asks
are answered with `ActorDeadError`, posted messages dropped, and nothing else
on the same thread is harmed.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator
from typing import Any

import pykka
import pytest
from pykka.messages import ProxyGetAttr

from actors import ManualClock
from actors._runtime.actor import PostroomActor, post
from actors._runtime.loop import ActorLoop, LoopActor
from actors._timer.timer import Timer
from actors.messages import After, CancelTimer, Fire
from tests.helpers import WAIT, barrier, collector


class _Blocker(LoopActor):
    """Holds its loop's thread while ``release`` is unset."""

    def __init__(self, loop: ActorLoop, holding: threading.Event, release: threading.Event) -> None:
        super().__init__(loop)
        self._holding = holding
        self._release = release

    def on_receive(self, message: Any) -> None:
        self._holding.set()
        self._release.wait(WAIT)


class _Echo(LoopActor):
    """Keeps what is posted to it and answers every ask with ``("echo", message)``."""

    def __init__(self, loop: ActorLoop, seen: list[Any]) -> None:
        super().__init__(loop)
        self.seen = seen

    def on_receive(self, message: Any) -> Any:
        self.seen.append(message)
        return ("echo", message)


@pytest.fixture
def loop() -> Iterator[ActorLoop]:
    loop = ActorLoop("postroom-test-runtime")
    try:
        yield loop
    finally:
        loop.close()
        loop.thread.join(WAIT)


def test_posted_and_told_messages_reach_a_loop_actor_in_order(loop: ActorLoop) -> None:
    seen: list[Any] = []
    echo = _Echo.spawn(loop, seen)
    post(echo.ref, "one")
    echo.ref.tell("two")
    post(echo.ref, "three")
    assert echo.ref.ask("four", timeout=WAIT) == ("echo", "four")
    assert seen == ["one", "two", "three", "four"]
    echo.ref.stop(block=True, timeout=WAIT)


def test_a_loop_actor_stopped_with_mail_behind_the_stop_leaves_its_loop_running(
    loop: ActorLoop,
) -> None:
    holding, release = threading.Event(), threading.Event()
    blocker = _Blocker.spawn(loop, holding, release)
    victim_seen: list[Any] = []
    victim = _Echo.spawn(loop, victim_seen)
    bystander = _Echo.spawn(loop, [])
    post(blocker.ref, "hold")
    assert holding.wait(WAIT)
    # While the loop's thread is held, the victim's inbox fills: a stop, then
    # a posted message and an ask that must never be handled.
    stopped = victim.ref.stop(block=False)
    post(victim.ref, "late")
    asked = victim.ref.ask("too late", block=False)
    release.set()

    assert stopped.get(timeout=WAIT) is True
    with pytest.raises(pykka.ActorDeadError):
        asked.get(timeout=WAIT)
    assert victim_seen == []
    # The loop survived the teardown: another actor on it still answers.
    assert bystander.ref.ask("still there?", timeout=WAIT) == ("echo", "still there?")
    assert loop.thread.is_alive()
    for actor in (blocker, bystander):
        actor.ref.stop(block=True, timeout=WAIT)


@pytest.fixture
def timer() -> Iterator[tuple[Any, queue.Queue[Any], ManualClock]]:
    """A Timer on a manual clock, firing at a collector: (timer ref, fires, clock)."""
    clock = ManualClock()
    with collector() as (target, fires):
        spawned = Timer.spawn(clock, target)
        try:
            yield spawned.ref, fires, clock
        finally:
            spawned.ref.stop(block=True, timeout=WAIT)
            spawned.thread.join(WAIT)


def test_the_timer_takes_posted_and_told_entries_and_cancels_in_order(
    timer: tuple[Any, queue.Queue[Any], ManualClock],
) -> None:
    ref, fires, clock = timer
    post(ref, After(1, 5.0, "start", "a"))
    ref.tell(After(2, 3.0, "start", "b"))
    post(ref, CancelTimer(2))
    post(ref, After(3, 4.0, "start", "c"))
    ref.tell(CancelTimer(4))  # a token it never had: ignored
    barrier(ref)
    assert ref.ask(ProxyGetAttr(attr_path=("pending",)), timeout=WAIT) == 2
    clock.advance(10)
    assert [fires.get(timeout=WAIT) for _ in range(2)] == [
        Fire(3, "start", "c"),
        Fire(1, "start", "a"),
    ]


def test_many_posted_entries_all_fire_in_due_order(
    timer: tuple[Any, queue.Queue[Any], ManualClock],
) -> None:
    # More entries than one batch of the Timer's loop, due in reverse order of sending.
    ref, fires, clock = timer
    count = 1_000
    for token in range(1, count + 1):
        post(ref, After(token, float(count + 1 - token), "tick", f"r{token}"))
    barrier(ref)
    assert ref.ask(ProxyGetAttr(attr_path=("pending",)), timeout=WAIT) == count
    clock.advance(count)
    got = [fires.get(timeout=WAIT).token for _ in range(count)]
    assert got == list(range(count, 0, -1))


class _HeldClock(ManualClock):
    """A manual clock whose next `now` (once armed) holds its caller until released."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False
        self.holding = threading.Event()
        self.release = threading.Event()

    def now(self) -> float:
        if self.armed:
            self.armed = False
            self.holding.set()
            self.release.wait(WAIT)
        return super().now()


def test_the_timer_stopped_with_mail_behind_the_stop_answers_asks_and_ends() -> None:
    clock = _HeldClock()
    with collector() as (target, fires):
        spawned = Timer.spawn(clock, target)
        try:
            clock.armed = True
            spawned.ref.tell(After(1, 0.0, "tick", "r"))  # due now: the Timer reads the clock
            assert clock.holding.wait(WAIT)
            stopped = spawned.ref.stop(block=False)
            post(spawned.ref, After(2, 0.0, "tick", "late"))
            asked = spawned.ref.ask(ProxyGetAttr(attr_path=("pending",)), block=False)
            clock.release.set()

            assert stopped.get(timeout=WAIT) is True
            with pytest.raises(pykka.ActorDeadError):
                asked.get(timeout=WAIT)
        finally:
            clock.release.set()
            spawned.ref.stop(block=True, timeout=WAIT)
            spawned.thread.join(WAIT)
        assert not spawned.thread.is_alive()
        assert fires.get(timeout=WAIT) == Fire(1, "tick", "r")
        barrier(target)
        assert fires.empty()  # the entry posted after the stop never fired


# --- an actor that fails in on_start: reported to its supervisor, logged on postroom -----


def _reports() -> tuple[queue.Queue[BaseException | None], Any]:
    """A failure callback that keeps each reported exception, and its queue."""
    reported: queue.Queue[BaseException | None] = queue.Queue()

    def report(_actor: object, _kind: Any, exc: BaseException | None, _tb: Any) -> None:
        reported.put(exc)

    return reported, report


class _LoopStartBug(LoopActor):
    def on_start(self) -> None:
        raise RuntimeError("loop actor start bug")


class _ThreadStartBug(PostroomActor):
    def on_start(self) -> None:
        raise RuntimeError("threaded actor start bug")


def _start_failure_logs(caplog: pytest.LogCaptureFixture, text: str) -> set[str]:
    return {r.name for r in caplog.records if r.exc_info and text in str(r.exc_info[1])}


def test_a_loop_actor_that_fails_to_start_is_reported_and_logged_on_postroom(
    loop: ActorLoop, caplog: pytest.LogCaptureFixture
) -> None:
    # Pykka's own setup only logs such a failure: the supervisor never heard
    # that its child had died, and its messages went unanswered.
    reported, report = _reports()
    with caplog.at_level(logging.DEBUG):
        spawned = _LoopStartBug.spawn(loop, report)
        post(spawned.ref, "first mail runs on_start")
        exc = reported.get(timeout=WAIT)
    assert isinstance(exc, RuntimeError)
    assert str(exc) == "loop actor start bug"
    assert not spawned.ref.is_alive()
    assert _start_failure_logs(caplog, "loop actor start bug") == {"postroom.runtime"}


def test_a_threaded_actor_that_fails_to_start_is_reported_and_logged_on_postroom(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reported, report = _reports()
    with caplog.at_level(logging.DEBUG):
        spawned = _ThreadStartBug.spawn(report)
        exc = reported.get(timeout=WAIT)
        spawned.thread.join(WAIT)
    assert isinstance(exc, RuntimeError)
    assert str(exc) == "threaded actor start bug"
    assert not spawned.thread.is_alive()
    assert _start_failure_logs(caplog, "threaded actor start bug") == {"postroom.runtime"}


class _Die(BaseException):
    """A bug that is no `Exception`."""


class _DiesOfBaseException(PostroomActor):
    def on_receive(self, message: Any) -> Any:
        raise _Die(message)


def test_a_threaded_actor_dying_of_a_base_exception_is_reported_and_stops_no_other_actor() -> (
    None
):
    # On Pykka's own loop a BaseException stops the actor without on_failure
    # (its supervisor never knew) and calls ActorRegistry.stop_all(): every
    # Pykka actor of the host application stopped with it.
    host = pykka.ThreadingActor.start()  # the application's, in Pykka's registry
    try:
        reported, report = _reports()
        spawned = _DiesOfBaseException.spawn(report)
        spawned.ref.tell("threaded actor bug")
        exc = reported.get(timeout=WAIT)
        spawned.thread.join(WAIT)
        assert isinstance(exc, _Die)
        assert not spawned.thread.is_alive()
        assert host.is_alive()
    finally:
        host.stop(block=True, timeout=WAIT)
