"""A scripted worker node for the scheduler side's tests: real sockets, no handlers.

`ScriptedNode` speaks the node protocol through a real `NodeIO` over loopback
and does only what the test tells it, so a test can hold a run, answer with
a stale lease, fall silent or send garbage, and see exactly what the
scheduler sends back.
"""

from __future__ import annotations

import queue
from typing import Any, TypeVar

from actors.messages import (
    Bye,
    Credit,
    Heartbeat,
    Hello,
    NodeFinished,
    Outcome,
    Run,
)
from transport.io import NodeIO
from transport.protocol import PROTOCOL_VERSION, NodeMessage, SchedulerMessage

WAIT = 10.0
"""Seconds a test waits for a message that should come."""

T = TypeVar("T")


class ScriptedNode:
    """A node whose every message is the test's; what it receives waits in ``inbox``."""

    def __init__(self, endpoint: str) -> None:
        self.inbox: queue.Queue[SchedulerMessage] = queue.Queue()
        self.io = NodeIO(endpoint, self.inbox.put)

    def send(self, message: NodeMessage) -> None:
        self.io.send(message)

    def hello(
        self,
        node_id: str = "n1",
        handlers: tuple[str, ...] = ("echo",),
        capacity: int = 1,
        queue: str = "default",
        version: int = PROTOCOL_VERSION,
    ) -> Any:
        """Say Hello; return the answer (Welcome or Refused)."""
        self.send(Hello(node_id, handlers, capacity, version, queue))
        return self.next_not(Heartbeat)

    def credit(self, slots: int) -> None:
        self.send(Credit(slots))

    def next(self, timeout: float = WAIT) -> SchedulerMessage:
        return self.inbox.get(timeout=timeout)

    def next_not(self, *skip: type, timeout: float = WAIT) -> Any:
        """The next message of a type not in ``skip`` (heartbeats, usually)."""
        while True:
            message = self.inbox.get(timeout=timeout)
            if type(message) not in skip:
                return message

    def expect(self, kind: type[T], timeout: float = WAIT) -> T:
        """The next message but heartbeats, which must be a ``kind``."""
        message = self.next_not(Heartbeat, timeout=timeout)
        assert type(message) is kind, f"expected {kind.__name__}, got {message!r}"
        return message  # type: ignore[return-value]

    def nothing_but_heartbeats(self, seconds: float) -> None:
        """Assert that only heartbeats come for ``seconds`` (a negative check)."""
        try:
            message = self.next_not(Heartbeat, timeout=seconds)
        except queue.Empty:
            return
        raise AssertionError(f"expected nothing, got {message!r}")

    def finish(self, run: Run, result: Any = None, **outcome: Any) -> None:
        """Answer ``run`` (completed with ``result`` unless ``outcome`` says otherwise)."""
        fields = {"status": "completed", "result": result, **outcome}
        self.send(NodeFinished(run.job.id, run.job.attempt, run.lease, Outcome(**fields)))

    def bye(self, node_id: str = "n1") -> None:
        self.send(Bye(node_id))

    def close(self) -> None:
        self.io.close()
