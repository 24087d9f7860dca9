"""`transport.Node` against a fake scheduler: a `SchedulerIO` driven by the test,
on real sockets over tcp loopback (insecure).

The fake speaks the node protocol message by message, so each test states the
exchange it expects. Every wait is on a queue or an event with a bound (`WAIT`);
order on one connection is ZeroMQ's guarantee.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import zmq

from actors import Fatal, Handlers, InvalidArgument, NodeRefused, NotSupportedOnNode
from actors.messages import (
    Bye,
    CancelRun,
    Credit,
    Drain,
    Heartbeat,
    Hello,
    Job,
    NodeFinished,
    Progress,
    Refused,
    Run,
    Welcome,
)
from tests.helpers import WAIT
from transport.io import SchedulerIO
from transport.node import Node
from transport.protocol import PROTOCOL_VERSION, NodeMessage, SchedulerMessage
from transport.security import ServerSecurity, generate_keys

M = TypeVar("M")
SLOW_BEAT = 30.0
"""A heartbeat so slow that no test sees one, nor the node declare the fake gone."""

_leases = itertools.count(1)
_seqs = itertools.count(1)


class FakeScheduler:
    """A scheduler's socket, driven by the test."""

    def __init__(self) -> None:
        self.got: queue.Queue[NodeMessage] = queue.Queue()
        self.heartbeats = 0
        self.peer: bytes | None = None
        self.io = SchedulerIO("tcp://127.0.0.1:*", self._on_message)

    def _on_message(self, peer: bytes, msg: NodeMessage) -> None:
        self.peer = peer
        self.got.put(msg)

    @property
    def endpoint(self) -> str:
        return self.io.endpoint

    def send(self, msg: SchedulerMessage) -> None:
        assert self.peer is not None
        self.io.send(self.peer, msg)

    def next(self, *, beats: bool = False) -> NodeMessage:
        """The next message; heartbeats are counted and skipped unless ``beats``."""
        while True:
            msg = self.got.get(timeout=WAIT)
            if isinstance(msg, Heartbeat) and not beats:
                self.heartbeats += 1
                continue
            return msg

    def expect(self, kind: type[M]) -> M:
        msg = self.next()
        assert isinstance(msg, kind), f"expected {kind.__name__}, got {msg!r}"
        return msg

    def welcome(self, heartbeat: float = SLOW_BEAT) -> Hello:
        hello = self.expect(Hello)
        self.send(Welcome(hello.node_id, heartbeat, 10.0))
        return hello

    def run(self, handler: str, payload: Any = None, **job: Any) -> Run:
        run = Run(Job(f"j{next(_seqs)}", handler, payload, next(_seqs), **job), next(_leases))
        self.send(run)
        return run

    def finished(self, run: Run) -> NodeFinished:
        done = self.expect(NodeFinished)
        assert (done.job_id, done.attempt, done.lease) == (
            run.job.id,
            run.job.attempt,
            run.lease,
        )
        return done


_running: list[Running] = []


class Running:
    """A node's `run` on a thread of its own; `join` re-raises what it raised."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.error: BaseException | None = None
        # A daemon, and stopped by the fixture: a failed test leaves no node behind.
        self.thread = threading.Thread(target=self._run, name="test-node", daemon=True)
        _running.append(self)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.node.run()
        except BaseException as exc:
            self.error = exc

    def join(self) -> None:
        self.thread.join(WAIT)
        assert not self.thread.is_alive(), "Node.run did not return"
        if self.error is not None:
            raise self.error


class LogSeen(logging.Handler):
    """Sets ``seen`` when the node's logger says ``text``: a wait on what the node did."""

    def __init__(self, text: str) -> None:
        super().__init__(logging.DEBUG)
        self.text = text
        self.seen = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.seen.set()


@pytest.fixture
def node_log() -> Iterator[Callable[[str], threading.Event]]:
    """``node_log(text)``: an event set once the node logs ``text``."""
    logger = logging.getLogger("postroom.nodes")
    level = logger.level
    logger.setLevel(logging.DEBUG)
    added: list[LogSeen] = []

    def seen(text: str) -> threading.Event:
        handler = LogSeen(text)
        logger.addHandler(handler)
        added.append(handler)
        return handler.seen

    yield seen
    logger.setLevel(level)
    for handler in added:
        logger.removeHandler(handler)


started = threading.Event()
release = threading.Event()
handlers = Handlers()


@handlers.handler("echo")
def echo(ctx: Any, payload: Any) -> Any:
    return payload


@handlers.handler("boom")
def boom(ctx: Any, payload: Any) -> Any:
    if payload == "fatal":
        raise Fatal(KeyError("no retry"))
    raise ValueError("try again")


@handlers.handler("block")
def block(ctx: Any, payload: Any) -> Any:
    started.set()
    if payload == "until-cancelled":
        ctx.wait(WAIT)
        return "not cancelled"
    release.wait(WAIT)
    return "released"


@handlers.handler("progress")
def progress(ctx: Any, payload: Any) -> Any:
    ctx.progress(0.5, "half")
    return "done"


@handlers.handler("async")
async def async_handler(ctx: Any, payload: Any) -> Any:
    await asyncio.sleep(0)
    return f"async {payload}"


@handlers.handler("child")
def child(ctx: Any, payload: Any) -> Any:
    ctx.submit("echo", 1)
    return "submitted"


@pytest.fixture
def fake() -> Iterator[FakeScheduler]:
    started.clear()
    release.clear()
    sched = FakeScheduler()
    yield sched
    release.set()
    while _running:
        left = _running.pop()
        left.node.stop()
        left.thread.join(WAIT)
    sched.io.close()


def _node(fake: FakeScheduler, **options: Any) -> Node:
    options.setdefault("node_id", "n1")
    return Node(fake.endpoint, handlers, insecure=True, **options)


def _drain(fake: FakeScheduler, running: Running) -> None:
    running.node.stop()
    msg = fake.next()
    while isinstance(msg, Credit):  # offered as the last run ended
        msg = fake.next()
    assert isinstance(msg, Drain), msg
    fake.expect(Bye)
    running.join()


def test_hello_welcome_credit_and_a_completed_run(fake: FakeScheduler) -> None:
    running = Running(_node(fake, capacity=2, queue="cpu"))
    hello = fake.welcome()
    assert hello == Hello(
        "n1", ("async", "block", "boom", "child", "echo", "progress"), 2, PROTOCOL_VERSION, "cpu"
    )
    assert fake.expect(Credit).slots == 2
    run = fake.run("echo", {"a": [1, 2]})
    done = fake.finished(run)
    assert (done.outcome.status, done.outcome.result) == ("completed", {"a": [1, 2]})
    assert fake.expect(Credit).slots == 1
    stats = running.node.stats()
    assert (stats.runs, stats.completed, stats.connected, stats.hellos) == (1, 1, True, 1)
    _drain(fake, running)
    assert running.node.stats().running == 0


def test_failed_runs_say_whether_a_retry_can_help(fake: FakeScheduler) -> None:
    running = Running(_node(fake))
    fake.welcome()
    fake.expect(Credit)
    retryable = fake.finished(fake.run("boom", "again")).outcome
    assert (retryable.status, retryable.retryable) == ("failed", True)
    assert retryable.error is not None and retryable.error.type == "ValueError"
    fake.expect(Credit)
    fatal = fake.finished(fake.run("boom", "fatal")).outcome
    assert (fatal.status, fatal.retryable) == ("failed", False)
    assert fatal.error is not None and fatal.error.type == "KeyError"
    fake.expect(Credit)
    _drain(fake, running)
    assert running.node.stats().failed == 2


@pytest.mark.parametrize(
    ("reason", "status", "timed_out", "error"),
    [
        ("cancel", "cancelled", False, "postroom.JobCancelled"),
        ("timeout", "failed", True, "postroom.JobTimedOut"),
    ],
)
def test_cancel_run_stops_the_handler_with_its_reason(
    fake: FakeScheduler, reason: str, status: str, timed_out: bool, error: str
) -> None:
    running = Running(_node(fake))
    fake.welcome()
    fake.expect(Credit)
    run = fake.run("block", "until-cancelled", timeout=WAIT * 10)
    assert started.wait(WAIT)
    fake.send(CancelRun(run.job.id, run.job.attempt, run.lease, reason))
    outcome = fake.finished(run).outcome
    assert (outcome.status, outcome.timed_out) == (status, timed_out)
    assert outcome.error is not None and outcome.error.type == error
    fake.expect(Credit)
    _drain(fake, running)


def test_a_run_cancelled_before_it_started_never_calls_its_handler(
    fake: FakeScheduler, node_log: Callable[[str], threading.Event]
) -> None:
    marked = node_log("cancelled before it started")
    running = Running(_node(fake, capacity=1, prefetch=1))
    fake.welcome()
    assert fake.expect(Credit).slots == 2
    first = fake.run("block", "x")
    assert started.wait(WAIT)
    started.clear()
    waiting = fake.run("block", "until-cancelled")
    fake.send(CancelRun(waiting.job.id, waiting.job.attempt, waiting.lease, "cancel"))
    # The cancel is marked while the only slot is busy; then the slot is freed.
    assert marked.wait(WAIT)
    release.set()
    assert fake.finished(first).outcome.status == "completed"
    # The second result may share the first's pass (and its Credit), or not.
    outcome, credit = None, 0
    while outcome is None or credit < 2:
        msg = fake.next()
        if isinstance(msg, Credit):
            credit += msg.slots
        else:
            assert isinstance(msg, NodeFinished) and msg.lease == waiting.lease, msg
            outcome = msg.outcome
    assert credit == 2
    assert outcome.status == "cancelled"
    assert not started.is_set()
    _drain(fake, running)


def test_progress_reaches_the_scheduler_before_the_result(fake: FakeScheduler) -> None:
    running = Running(_node(fake))
    fake.welcome()
    fake.expect(Credit)
    run = fake.run("progress")
    assert fake.expect(Progress) == Progress(run.job.id, 1, run.lease, 0.5, "half")
    assert fake.finished(run).outcome.result == "done"
    fake.expect(Credit)
    _drain(fake, running)
    assert running.node.stats().progress == 1


def test_async_handlers_run_on_a_node(fake: FakeScheduler) -> None:
    running = Running(_node(fake))
    fake.welcome()
    fake.expect(Credit)
    for n in range(3):  # the slot's loop serves one after the other
        assert fake.finished(fake.run("async", n)).outcome.result == f"async {n}"
        fake.expect(Credit)
    _drain(fake, running)


def test_ctx_submit_on_a_node_fails_the_attempt_with_not_supported_on_node(
    fake: FakeScheduler,
) -> None:
    running = Running(_node(fake))
    fake.welcome()
    fake.expect(Credit)
    outcome = fake.finished(fake.run("child")).outcome
    assert outcome.status == "failed"
    assert outcome.error is not None
    assert outcome.error.type == f"postroom.{NotSupportedOnNode.__name__}"
    fake.expect(Credit)
    _drain(fake, running)


def test_the_credit_is_never_exceeded(fake: FakeScheduler) -> None:
    capacity, prefetch, jobs = 2, 1, 30
    limit = capacity + prefetch
    running = Running(_node(fake, capacity=capacity, prefetch=prefetch))
    fake.welcome()
    credit = granted = finished = sent = 0
    while finished < jobs:
        msg = fake.next()
        if isinstance(msg, Credit):
            credit += msg.slots
            granted += msg.slots
            # Offered and not used, plus sent and not finished: never over the limit.
            assert granted - finished <= limit
        elif isinstance(msg, NodeFinished):
            assert msg.outcome.status == "completed"
            finished += 1
        else:
            pytest.fail(f"unexpected {msg!r}")
        while credit and sent < jobs:
            fake.run("echo", sent)
            credit -= 1
            sent += 1
        assert running.node.stats().running <= capacity
    _drain(fake, running)
    assert running.node.stats().completed == jobs


def test_heartbeats_come_at_the_welcomed_interval(fake: FakeScheduler) -> None:
    running = Running(_node(fake))
    fake.welcome(heartbeat=0.05)
    fake.expect(Credit)
    beats = 0
    while beats < 3:
        msg = fake.next(beats=True)
        if isinstance(msg, Heartbeat):
            beats += 1
            fake.send(Heartbeat(0.0))  # keep the node from counting the fake as gone
        elif isinstance(msg, Hello):
            pytest.fail("the node counted the fake as gone though it answered")
    _drain(fake, running)


def test_scheduler_silence_for_three_heartbeats_brings_a_new_hello(
    fake: FakeScheduler, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="postroom.nodes")
    running = Running(_node(fake))
    fake.welcome(heartbeat=0.05)
    fake.expect(Credit)
    fake.expect(Hello)  # the fake said nothing more
    assert running.node.stats().heartbeat_misses >= 1
    assert "no word from the scheduler" in caplog.text
    fake.send(Welcome("n1", SLOW_BEAT, 10.0))
    assert fake.expect(Credit).slots == 1  # a new session: credit afresh
    assert fake.finished(fake.run("echo", 1)).outcome.result == 1
    fake.expect(Credit)
    _drain(fake, running)


def test_refused_before_welcome_raises_node_refused(fake: FakeScheduler) -> None:
    running = Running(_node(fake))
    fake.expect(Hello)
    fake.send(Refused("node protocol version 9; this scheduler speaks version 1"))
    with pytest.raises(NodeRefused, match="version 9") as caught:
        running.join()
    assert caught.value.reason.startswith("node protocol version 9")


def test_refused_after_welcome_says_hello_again(fake: FakeScheduler) -> None:
    running = Running(_node(fake))
    fake.welcome()
    fake.expect(Credit)
    fake.send(Refused("no session: say Hello first"))
    fake.welcome()
    assert fake.expect(Credit).slots == 1
    _drain(fake, running)
    assert running.node.stats().hellos == 2


def test_drain_from_the_scheduler_finishes_the_run_then_says_bye(
    fake: FakeScheduler, node_log: Callable[[str], threading.Event]
) -> None:
    drain_heard = node_log("the scheduler asks it to drain")
    running = Running(_node(fake, capacity=2))
    fake.welcome()
    fake.expect(Credit)
    run = fake.run("block")
    assert started.wait(WAIT)
    fake.send(Drain())
    assert drain_heard.wait(WAIT)
    release.set()
    assert fake.finished(run).outcome.result == "released"
    # No Credit after a Drain, and no Drain echoed: the result, then Bye.
    assert fake.expect(Bye) == Bye("n1")
    running.join()


def test_stop_from_another_thread_drains_running_work_first(fake: FakeScheduler) -> None:
    running = Running(_node(fake))
    fake.welcome()
    fake.expect(Credit)
    run = fake.run("block")
    assert started.wait(WAIT)
    stopper = threading.Thread(target=running.node.stop)
    stopper.start()
    stopper.join(WAIT)
    fake.expect(Drain)
    assert running.thread.is_alive()
    release.set()
    assert fake.finished(run).outcome.status == "completed"
    fake.expect(Bye)
    running.join()
    running.node.close()  # idempotent after run returned


def test_close_from_another_thread_drains_and_waits_for_run(fake: FakeScheduler) -> None:
    running = Running(_node(fake))
    fake.welcome()
    fake.expect(Credit)
    closer = threading.Thread(target=running.node.close)
    closer.start()
    fake.expect(Drain)
    fake.expect(Bye)
    closer.join(WAIT)
    assert not closer.is_alive()
    running.join()


def test_a_node_runs_once_and_a_node_never_run_closes_at_once(fake: FakeScheduler) -> None:
    node = _node(fake)
    node.close()
    with pytest.raises(InvalidArgument, match="runs once"):
        node.run()


def test_insecure_needs_loopback_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="postroom.nodes")
    with pytest.raises(InvalidArgument, match="loopback"):
        Node("tcp://10.1.2.3:7555", handlers, insecure=True)
    with pytest.raises(InvalidArgument, match="key"):
        Node("tcp://10.1.2.3:7555", handlers)
    with pytest.raises(InvalidArgument, match="insecure=True takes no keys"):
        Node("tcp://127.0.0.1:7555", handlers, insecure=True, key="k", server_key="s")
    Node("tcp://127.0.0.1:7555", handlers, insecure=True).close()
    assert "WITHOUT authentication" in caplog.text


@pytest.mark.parametrize(
    "bad",
    [
        {"capacity": 0},
        {"prefetch": -1},
        {"queue": ""},
        {"node_id": ""},
        {"hard_timeout": 0},
        {"max_payload_bytes": 1},
    ],
)
def test_bad_options_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument):
        Node("tcp://127.0.0.1:7555", handlers, insecure=True, **bad)


def test_a_node_without_handlers_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="handler"):
        Node("tcp://127.0.0.1:7555", Handlers(), insecure=True)
    with pytest.raises(InvalidArgument, match="Handlers or a Scheduler"):
        Node("tcp://127.0.0.1:7555", {"echo": echo}, insecure=True)  # type: ignore[arg-type]


def test_the_node_side_deadline_times_the_attempt_out(fake: FakeScheduler) -> None:
    # No CancelRun comes: the node itself tells the handler to stop at its deadline.
    running = Running(_node(fake))
    fake.welcome()
    fake.expect(Credit)
    run = fake.run("block", "until-cancelled", timeout=0.05)
    outcome = fake.finished(run).outcome
    assert (outcome.status, outcome.timed_out) == ("failed", True)
    assert outcome.run_time < WAIT
    fake.expect(Credit)
    _drain(fake, running)
    assert running.node.stats().timed_out == 1


def test_with_keys_the_node_speaks_curve_to_a_scheduler_that_admits_its_key(
    tmp_path: Path,
) -> None:
    _, server_secret = generate_keys(tmp_path / "sched", "sched")
    node_public, node_secret = generate_keys(tmp_path / "node", "node1")
    authorized = tmp_path / "nodes"
    authorized.mkdir()
    (authorized / "node1.key").write_bytes(node_public.read_bytes())
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    security = ServerSecurity(context, secret_key=server_secret, authorized=authorized)
    got: queue.Queue[tuple[bytes, NodeMessage]] = queue.Queue()
    sched = SchedulerIO(
        "tcp://127.0.0.1:*",
        lambda peer, msg: got.put((peer, msg)),
        configure=lambda socket: security.apply(socket, "tcp://127.0.0.1:*"),
        context=context,
    )
    try:
        node = Node(
            sched.endpoint,
            handlers,
            node_id="n1",
            key=node_secret,
            server_key=tmp_path / "sched" / "sched.key",
        )
        running = Running(node)
        _running.remove(running)  # no fake fixture here: stopped below
        peer, hello = got.get(timeout=WAIT)
        assert isinstance(hello, Hello) and hello.node_id == "n1"
        sched.send(peer, Welcome("n1", SLOW_BEAT, 10.0))
        assert got.get(timeout=WAIT)[1] == Credit(1)
        node.stop()
        assert isinstance(got.get(timeout=WAIT)[1], Drain)
        assert got.get(timeout=WAIT)[1] == Bye("n1")
        running.join()
    finally:
        if "running" in locals():
            running.node.stop()
            running.thread.join(WAIT)
        sched.close()
        security.close()
        context.destroy(linger=0)


def test_hard_timeout_kills_a_stuck_handler_and_the_node_keeps_serving(
    fake: FakeScheduler,
) -> None:
    from tests import slot_apps  # module-level: the slots' children import it

    node = Node(fake.endpoint, slot_apps.handlers, node_id="n1", insecure=True, hard_timeout=0.2)
    running = Running(node)
    fake.welcome()
    fake.expect(Credit)
    run = fake.run("stuck_spin", timeout=0.3)  # ignores its timeout: only a kill ends it
    msg = fake.next()
    while isinstance(msg, Progress):
        msg = fake.next()
    assert isinstance(msg, NodeFinished) and msg.lease == run.lease
    outcome = msg.outcome
    assert (outcome.status, outcome.timed_out, outcome.retryable) == ("failed", True, True)
    assert outcome.error is not None and outcome.error.type == "postroom.JobTimedOut"
    assert "killed 0.2s past its deadline" in outcome.error.message
    fake.expect(Credit)
    run = fake.run("echo", 7)
    done = fake.finished(run)
    assert done.outcome.status == "completed"
    assert done.outcome.result["payload"] == 7  # type: ignore[index]
    _drain(fake, running)


def test_hard_timeout_needs_handlers_a_child_can_import() -> None:
    local = Handlers()  # bound to no module-level name
    local.register("echo", echo)
    with pytest.raises(InvalidArgument, match="module-level name"):
        Node("tcp://127.0.0.1:7555", local, insecure=True, hard_timeout=5.0)
