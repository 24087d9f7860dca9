"""Named queues: each with its own workers, its own back-pressure bound and job defaults.

A scheduler always has the queue called ``"default"``, sized by its own
``workers`` and ``max_pending``; `Scheduler(queues=...)` adds more. Each queue
has a ready queue and a worker pool of its own, so a backlog in one never
delays another's jobs, and a bound of its own, so one queue filling up never
refuses another's submits. A job's defaults come from, most specific first:
the submit call, then its handler, then its queue, then postroom's built-ins
(no retries, no timeout, retry at once).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from actors._errors import InvalidArgument
from actors._policy.checks import check_int, check_retry, check_seconds
from actors._policy.retry import RetryPolicy

__all__ = ["DEFAULT_QUEUE", "Queue", "check_queues"]

DEFAULT_QUEUE = "default"
"""The queue every scheduler has, sized by `Scheduler`'s own ``workers``."""


@dataclass(frozen=True, slots=True)
class Queue:
    """A named queue's configuration (`Scheduler(queues={"high": Queue(workers=4)})`).

    Raises:
        InvalidArgument: an option is out of range or of the wrong type; the
            message names it.
    """

    workers: int
    """Workers serving this queue (>= 0: with 0, only worker nodes run its jobs);
    `Scheduler.resize` changes it later."""
    max_pending: int = 10_000
    """The most accepted, unfinished jobs this queue holds (its back-pressure bound)."""
    timeout: float | None = None
    """Seconds per attempt, for jobs whose handler and submit name none."""
    retry: RetryPolicy | None = None
    """Backoff between attempts, for jobs whose handler and submit name none."""
    max_retries: int | None = None
    """Retries allowed, for jobs whose handler and submit name none."""

    def __post_init__(self) -> None:
        check_int("Queue.workers", self.workers, 0)
        check_int("Queue.max_pending", self.max_pending, 1)
        if self.timeout is not None:
            check_seconds("Queue.timeout", self.timeout)
        check_retry(self.retry)
        if self.max_retries is not None:
            check_int("Queue.max_retries", self.max_retries, 0)


def check_queues(queues: object) -> dict[str, Queue]:
    """The named queues a `Scheduler` was given, checked (without the default one).

    Raises:
        InvalidArgument: not a mapping of non-empty str to `Queue`, or it names
            ``"default"`` (that one is sized by the scheduler's own arguments).
    """
    if queues is None:
        return {}
    if not isinstance(queues, Mapping):
        msg = f"queues must be a mapping of name to Queue, not {queues!r}"
        raise InvalidArgument(msg)
    checked: dict[str, Queue] = {}
    for name, queue in queues.items():
        if not isinstance(name, str) or not name:
            msg = f"a queue name must be a non-empty str, not {name!r}"
            raise InvalidArgument(msg)
        if name == DEFAULT_QUEUE:
            msg = (
                f"the {DEFAULT_QUEUE!r} queue is sized by Scheduler(workers=..., "
                "max_pending=...), not by queues="
            )
            raise InvalidArgument(msg)
        if not isinstance(queue, Queue):
            msg = f"queues[{name!r}] must be a Queue, not {queue!r}"
            raise InvalidArgument(msg)
        checked[name] = queue
    return checked
