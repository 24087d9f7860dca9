"""Every error postroom raises, under one root.

The tree::

    SchedulerError                    root: catch this to catch everything postroom raises
    ├── InvalidArgument (ValueError, TypeError)
    │   │                             a call got a value it cannot accept; nothing changed
    │   ├── NotSerializable           a payload or result is not JSON-able
    │   └── PayloadTooLarge           a payload or result is over ``max_payload_bytes``
    ├── UnknownHandler (KeyError)     submit named a handler nobody registered
    ├── UnknownQueue (KeyError)       submit or a handler named a queue the scheduler lacks
    ├── QueueFull                     back-pressure: the pending bound is reached
    ├── SchedulerAlreadyStarted (RuntimeError)
    │                                 start() on a scheduler that is running
    ├── GILRequired (RuntimeError)    Scheduler() on a free-threaded build running without the GIL
    ├── SchedulerClosed               the scheduler is not running (not started, shut down,
    │   │                             or crashed)
    │   └── SchedulerForked           this process is a fork of the one that started it
    ├── NotSupportedOnNode            a handler on a worker node called what only runs
    │                                 in the scheduler's process (``ctx.submit``)
    ├── NodeRefused                   the scheduler refused a worker node's Hello
    ├── JobNotFound (KeyError)        no job with that id (never existed, or aged out of history)
    ├── ScheduleNotFound (KeyError)   no schedule with that id (never added, or removed)
    ├── JobError                      raised by `JobHandle.result()` for a job that did not complete
    │   ├── JobFailed                 the last attempt raised, or the error was fatal
    │   │   └── JobTimedOut           the last attempt ran past its timeout
    │   └── JobCancelled              cancelled by the user or by shutdown
    ├── SchedulerCrashed              an actor failed (a postroom bug); the scheduler stopped
    ├── SchedulerUnresponsive (TimeoutError)
    │                                 the scheduler's actors did not answer in time
    ├── StoreError                    the job store (``store=``) cannot do what was asked
    │   ├── StoreLocked               another scheduler owns the store
    │   ├── StoreCorrupt              the file is not a postroom store, or is damaged
    │   ├── StoreFull                 the disk (or the store's size limit) is full
    │   ├── StoreReadOnly             the file or its directory cannot be written
    │   └── StoreBusy (TimeoutError)  another program held the database past ``busy_timeout``
    └── DecodeError (ValueError)      bytes from the wire or a store are not a valid message

`Fatal` is not an error postroom raises: a handler raises it (or wraps an error in
it) to say that retrying cannot help.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from actors.messages import ErrorInfo

__all__ = [
    "DecodeError",
    "Fatal",
    "GILRequired",
    "InvalidArgument",
    "JobCancelled",
    "JobError",
    "JobFailed",
    "JobNotFound",
    "JobTimedOut",
    "NodeRefused",
    "NotSerializable",
    "NotSupportedOnNode",
    "PayloadTooLarge",
    "QueueFull",
    "SchedulerAlreadyStarted",
    "SchedulerClosed",
    "SchedulerCrashed",
    "SchedulerError",
    "SchedulerForked",
    "SchedulerUnresponsive",
    "ScheduleNotFound",
    "StoreBusy",
    "StoreCorrupt",
    "StoreError",
    "StoreFull",
    "StoreLocked",
    "StoreReadOnly",
    "UnknownHandler",
    "UnknownQueue",
]


class SchedulerError(Exception):
    """The root of every error postroom raises."""


class InvalidArgument(SchedulerError, ValueError, TypeError):
    """A call got an argument it cannot accept (wrong type or out of range).

    Raised at the boundary, before anything changes: fix the argument and call
    again. The scheduler is unaffected.
    """


class NotSerializable(InvalidArgument):
    """A payload (at submit) or a result (when a handler returns) is not JSON-able.

    Payloads and results must be what `json.dumps` accepts without a ``default``
    and the wire format carries: dicts with str keys, lists, str, int within 64
    bits, finite floats, bool and None, nested at most 64 levels. The message
    names where the fault sits.
    """


class PayloadTooLarge(InvalidArgument):
    """A payload (at submit) or a result (when a handler returns) is larger than
    the scheduler's ``max_payload_bytes``, measured as postroom encodes it
    (msgpack, the form the journal and the wire carry).

    Keep large data elsewhere (a file, an object store, a table) and pass its
    key; or raise ``max_payload_bytes``, within its ceiling.
    """

    def __init__(self, what: str, size: int, limit: int) -> None:
        super().__init__(f"{what} is {size:,} bytes encoded, over max_payload_bytes={limit:,}")
        self.size = size
        """The encoded size, in bytes."""
        self.limit = limit
        """The scheduler's ``max_payload_bytes``."""


class UnknownHandler(SchedulerError, KeyError):
    """`submit` named a handler that was never registered with `Scheduler.handler`."""

    def __str__(self) -> str:
        # KeyError quotes its argument; a message reads better as it is.
        return str(self.args[0]) if self.args else ""


class ScheduleNotFound(SchedulerError, KeyError):
    """No schedule has that id: it was never added, or it was removed."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class UnknownQueue(SchedulerError, KeyError):
    """A submit or a handler named a queue the `Scheduler` was not given."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class QueueFull(SchedulerError):
    """The scheduler holds ``max_pending`` unfinished jobs already.

    Raised by `submit` under ``on_full="reject"``, and under ``on_full="wait"``
    when no room appeared within the wait timeout. Retry later, or shed load.
    """


class SchedulerAlreadyStarted(SchedulerError, RuntimeError):
    """`Scheduler.start` was called on a scheduler that is running.

    A scheduler starts once: nothing changed, it goes on running. Start it in
    one place (`Scheduler.running` says whether it is).
    """


class GILRequired(SchedulerError, RuntimeError):
    """`Scheduler()` on a free-threaded CPython build (3.13t and later) that runs
    without the GIL.

    The job store the actors share (``actors/_jobs/``) relies on the GIL to
    make some of its steps atomic (the ready queue's heap, the table's
    dicts, single stores of a job's fields); without it those steps would
    race. Rather than run and lose or duplicate a job now and then, postroom
    refuses to build a scheduler. Run the interpreter with the GIL
    (``PYTHON_GIL=1`` in the environment, or ``python -X gil=1``), or use a
    standard build.
    """


class SchedulerClosed(SchedulerError):
    """The scheduler does not accept work: not started yet, shut down, or crashed."""


class SchedulerForked(SchedulerClosed):
    """The scheduler (or a handle of its jobs) belongs to the process this one
    was forked from.

    After `os.fork()` only the thread that forked lives on in the child: the
    scheduler's workers, Timer and actor loop stay in the parent, so in the
    child it cannot run a job, and every call of it or of its handles raises
    this at once (``shutdown`` does nothing and returns). Make a new
    `Scheduler` in the child. A scheduler made but not started before the fork
    is the child's own to start.
    """


class NotSupportedOnNode(SchedulerError):
    """A handler running on a worker node called something only the scheduler's
    own process can do: ``ctx.submit`` (a child job needs the scheduler's job
    table, which a node does not have).

    Raised inside the handler; unless it catches it, its attempt fails with this
    error type (``postroom.NotSupportedOnNode``) and is retried like any other
    error. Submit follow-ups from the scheduler's process instead, e.g. with
    `JobHandle.then`.
    """


class NodeRefused(SchedulerError):
    """The scheduler refused a worker node before ever accepting it.

    Raised by `transport.Node.run`. ``reason`` is the scheduler's: another
    protocol version (it names both), an empty node id, a queue the scheduler
    lacks, no handlers, a node id already connected. Nothing ran; fix the
    node's configuration (or the scheduler's) and start it again.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"the scheduler refused this node: {reason}")
        self.reason = reason
        """The scheduler's reason, as it sent it."""


class JobNotFound(SchedulerError, KeyError):
    """No job has this id: it never existed here, or it aged out of the history."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class JobError(SchedulerError):
    """A job did not complete; raised by `JobHandle.result()` and ``await handle``."""

    def __init__(self, message: str, *, job_id: str, error: ErrorInfo | None = None):
        super().__init__(message)
        self.job_id = job_id
        """The job that did not complete."""
        self.error = error
        """The last attempt's error as data (type, message, traceback), if any."""


class JobFailed(JobError):
    """The job failed for good: its last attempt raised, or its error was fatal.

    ``__cause__`` is the handler's exception when it ran in this process.
    """


class JobTimedOut(JobFailed):
    """The job's last attempt ran past its timeout."""


class JobCancelled(JobError):
    """The job was cancelled, by `cancel` or by shutdown, before it completed."""


class SchedulerCrashed(SchedulerError):
    """An actor failed with an unexpected error (a bug in postroom) and could not
    be restarted; the scheduler stopped and resolved every unfinished handle.
    The log holds the traceback."""


class SchedulerUnresponsive(SchedulerError, TimeoutError):
    """The scheduler's actors did not answer a call within its limit (10 s).

    Not a job's timeout: the Dispatcher, which answers `cancel`, `stats` and
    the other calls that ask it, is stuck or overloaded (a postroom bug, or a
    million jobs being cancelled at once). The call had no effect that it can
    report; the log may say more. Retry later, or shut the scheduler down.
    """


class StoreError(SchedulerError):
    """The job store (``Scheduler(store=...)``) could not do what was asked.

    Raised by `Scheduler.start` when the store cannot be opened, and by
    `submit` (and the other calls that add a job) under
    ``durability="commit"`` when the job's row could not be committed: that
    job is not accepted (it will not run, and no handle of it exists), and
    nothing accepted before it is lost. The scheduler keeps running the jobs
    it has; the log says what the store cannot do. ``sqlite_error`` names
    SQLite's error code, when there is one.
    """

    def __init__(self, message: str, *, sqlite_error: str | None = None):
        super().__init__(message)
        self.sqlite_error = sqlite_error
        """SQLite's error name (``"SQLITE_FULL"``...), or None."""


class StoreLocked(StoreError):
    """Another scheduler, in this process or another, owns the store: a store
    has one owner at a time. Raised by `Scheduler.start`."""


class StoreCorrupt(StoreError):
    """The file is not a postroom store, was made by a newer postroom, or is
    damaged. postroom never writes to it: restore a backup, or move it aside."""


class StoreFull(StoreError):
    """The disk, or the store's size limit, is full: nothing more can be
    written until room is made. Jobs accepted before are kept."""


class StoreReadOnly(StoreError):
    """The store's file, or its directory (SQLite writes a ``-wal`` and a
    ``-shm`` file beside it), cannot be written by this process."""


class StoreBusy(StoreError, TimeoutError):
    """Another program held the database locked for longer than the store's
    ``busy_timeout``: the write was not made. Retry later."""


class DecodeError(SchedulerError, ValueError):
    """Bytes are not a valid postroom message: corrupt, truncated, the wrong
    version, or a shape that does not match the message type.

    ``raw`` holds the offending bytes for logging.
    """

    def __init__(self, message: str, raw: bytes = b""):
        super().__init__(message)
        self.raw = raw
        """The bytes that failed to decode."""


class Fatal(Exception):
    """Raise from a handler to fail the job at once, without retries.

    ``raise Fatal("bad input")`` or ``raise Fatal(exc)`` to wrap another error.
    """
