"""Every message the actors exchange, as frozen, slotted dataclasses of plain data.

A message holds only str, int, float, bool, None, tuples, JSON values and the
other dataclasses of this module (plus `RetryPolicy`, itself plain data), so
`transport.codec` can encode any of them for the wire or a journal without
pickle (`MESSAGE_TYPES`). Side channels that cannot be data (a cancel signal, a
handle to resolve) never travel in a message; the actors keep them in their own
state, keyed by job id.

The control messages that never leave the process (the facade's asks of its
Dispatcher, a child's failure report, a worker's note to itself) live here too,
in `LOCAL_MESSAGE_TYPES`; the codec does not carry them. All but `AddSchedule`
and `RestoreSchedules` are plain data as well; their docstrings say why not.

The node protocol, between a scheduler and a worker node in another process
(`Hello`, `Run`, `NodeFinished` and the rest), has a section of its own;
`transport.protocol` says which side may send which.

The flow, for a job with a repo::

    facade --Submit--> Dispatcher --Enqueue--> RepoLock --Ready--> Dispatcher
    Dispatcher --(ready queue)--> Worker --Finished--> Dispatcher --Finished--> RepoLock
    RepoLock --Done | Retry--> Dispatcher
    Dispatcher --After--> Timer --Fire--> Dispatcher   (delays, backoff, deadlines)

A job without a repo skips most of it: the facade puts it into the ready queue
(or sends ``After`` with the job to the Timer, which queues it when due), and a
worker that completes it ends it; only a failure or cancel involves the
Dispatcher.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal, TypeAlias

from actors._fast_init import fast_init
from actors._policy.retry import RetryPolicy

if TYPE_CHECKING:
    from actors._schedules.book import ScheduleSpec
    from actors._schedules.triggers import Trigger

__all__ = [
    "BOOT",
    "FLUSH",
    "GET_METRICS",
    "GET_STATS",
    "HALT",
    "LIST_SCHEDULES",
    "LOCAL_MESSAGE_TYPES",
    "MESSAGE_TYPES",
    "PULL",
    "AddSchedule",
    "After",
    "Boot",
    "Bye",
    "Cancel",
    "CancelRun",
    "CancelTimer",
    "ChildFailed",
    "Close",
    "Credit",
    "Done",
    "Drain",
    "Enqueue",
    "ErrorInfo",
    "Finished",
    "Flush",
    "Fire",
    "Forget",
    "GetMetrics",
    "GetStats",
    "Halt",
    "Heartbeat",
    "Hello",
    "Idle",
    "JSONValue",
    "Job",
    "JobAccepted",
    "JobEnded",
    "JobReleased",
    "JobRetrying",
    "ListSchedules",
    "NodeFinished",
    "Outcome",
    "OutcomeStatus",
    "Progress",
    "Pull",
    "Ready",
    "Refused",
    "Resize",
    "RestoreSchedules",
    "Retry",
    "Run",
    "RunEnded",
    "RunStarted",
    "ScheduleCall",
    "ScheduleOp",
    "ScheduleRemoved",
    "ScheduleSaved",
    "Submit",
    "Tick",
    "TimerKind",
    "Wake",
    "Welcome",
    "Withdraw",
]

JSONValue: TypeAlias = "bool | int | float | str | list[JSONValue] | dict[str, JSONValue] | None"
"""What a payload or a result may be: anything `json.dumps` takes without help."""

OutcomeStatus = Literal["completed", "failed", "cancelled"]


@fast_init
@dataclass(frozen=True, slots=True)
class Job:
    """One unit of work, as it travels between actors.

    A retry travels as the same job with ``attempt`` one higher; ``seq`` never
    changes, which is how a retried job keeps its place.
    """

    id: str
    """Unique job id."""
    handler: str
    """Name of the registered handler that runs it."""
    payload: JSONValue
    """The handler's input, checked to be JSON-able at submit."""
    seq: int
    """Submission order within the scheduler: the tie-breaker after priority."""
    priority: int = 5
    """1 (most urgent) to 10."""
    repo: str | None = None
    """Concurrency key: jobs of one repo never overlap and start in order."""
    attempt: int = 1
    """1 for the first run, 2 for the first retry, and so on."""
    max_retries: int = 0
    """Retries allowed after the first attempt."""
    timeout: float | None = None
    """Seconds one attempt may run before it is signalled to stop."""
    retry: RetryPolicy = RetryPolicy()  # noqa: RUF009 - frozen, so one shared default is safe
    """Backoff between attempts."""
    not_before: float | None = None
    """Clock time (scheduler clock) before which the job must not start."""
    idempotency_key: str | None = None
    """Deduplication key given at submit."""
    submitted_at: float = 0.0
    """Wall-clock time of submission (seconds since the epoch)."""
    queue: str = "default"
    """The named queue whose workers run it (and whose bound it counts against)."""
    trace: str | None = None
    """The submitter's trace context, when the scheduler traces (``tracing=``):
    the W3C ``traceparent``, then ``tracestate`` if any, one per line. Each
    attempt's span is a child of it (``actors/_tracing.py``)."""

    def next_attempt(self, not_before: float | None) -> Job:
        """The same job, ready for its next attempt no earlier than ``not_before``."""
        return replace(self, attempt=self.attempt + 1, not_before=not_before)


@fast_init
@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """An error as data: what was raised, readable without the exception object."""

    type: str
    """Qualified name of the exception class."""
    message: str
    """``str(exception)``."""
    traceback: str = ""
    """The formatted traceback, when there was one."""


@fast_init
@dataclass(frozen=True, slots=True)
class Outcome:
    """How one attempt ended."""

    status: OutcomeStatus
    """``completed``, ``failed`` or ``cancelled``."""
    result: JSONValue = None
    """The handler's return value, when completed."""
    error: ErrorInfo | None = None
    """What went wrong, when failed or cancelled."""
    retryable: bool = True
    """False when the error was fatal (`Fatal`, ``throws=``) or not worth retrying."""
    timed_out: bool = False
    """True when the attempt was stopped at its deadline."""
    started_at: float = 0.0
    """Wall-clock time the attempt started."""
    run_time: float = 0.0
    """Seconds the handler ran."""


# --- facade -> Dispatcher --------------------------------------------------------


@fast_init
@dataclass(frozen=True, slots=True)
class Submit:
    """A new job accepted by the facade."""

    job: Job


# --- Dispatcher -> RepoLock ------------------------------------------------------


@fast_init
@dataclass(frozen=True, slots=True)
class Enqueue:
    """Queue ``job`` in its repo; a job the repo holds for a retry becomes ready."""

    job: Job


@fast_init
@dataclass(frozen=True, slots=True)
class Withdraw:
    """Take a waiting job out of the repo (cancelled); ignored if it is running."""

    job_id: str


@fast_init
@dataclass(frozen=True, slots=True)
class Tick:
    """A due time the repo asked for (`Wake`) has come: look at the head again."""

    repo: str


# --- RepoLock -> Dispatcher ------------------------------------------------------


@fast_init
@dataclass(frozen=True, slots=True)
class Ready:
    """This job holds its repo now and may run as soon as a worker is free."""

    job: Job


@fast_init
@dataclass(frozen=True, slots=True)
class Retry:
    """Run ``job`` (its next attempt) again at its ``not_before``.

    ``hold`` is True when the repo stays held for it (ordered mode): the job comes
    back to the repo as an `Enqueue` and becomes ready at once.
    """

    job: Job
    outcome: Outcome
    hold: bool


@fast_init
@dataclass(frozen=True, slots=True)
class Done:
    """The job ended for good with ``outcome``; the repo has let it go."""

    job: Job
    outcome: Outcome


@fast_init
@dataclass(frozen=True, slots=True)
class Wake:
    """Send the repo a `Tick` at clock time ``due`` (a delayed job is at its head)."""

    repo: str
    due: float


@fast_init
@dataclass(frozen=True, slots=True)
class Idle:
    """The repo has nothing pending or running after ``seen`` messages.

    The Dispatcher retires the lock only if it has sent exactly ``seen`` messages
    to it: then no message can be in flight and none can be lost.
    """

    repo: str
    lock_id: int
    seen: int


# --- Worker -> Dispatcher -------------------------------------------------------
# Workers take ready jobs from the pool's shared ready queue (see actors/_jobs/ready.py);
# only the end of an attempt is a message.


@fast_init
@dataclass(frozen=True, slots=True)
class Finished:
    """An attempt ended (the handler has returned). Forwarded to the job's repo."""

    job: Job
    outcome: Outcome
    worker: int = -1
    """Id of the worker that ran it; -1 when no worker did (cancelled before start)."""


# --- Dispatcher <-> Timer --------------------------------------------------------


TimerKind = Literal["start", "retry", "deadline", "tick", "schedule"]


@fast_init
@dataclass(frozen=True, slots=True)
class After:
    """Send ``Fire(token, kind, key)`` back at clock time ``due``, not earlier."""

    token: int
    due: float
    kind: TimerKind
    """What the due time is for: a delayed ``start``, a ``retry``, a job's
    ``deadline``, or a ``tick`` for a repo whose head waits for its time."""
    key: str
    """The job id, or the repo for a ``tick``."""
    attempt: int = 0
    """The attempt a ``deadline`` is for."""
    job: Job | None = None
    """For the ``start`` or ``retry`` of a job without a repo: the job, which the
    Timer puts straight into the workers' ready queue when due (one hop fewer
    between a due time and a worker) before it sends the `Fire`."""


@fast_init
@dataclass(frozen=True, slots=True)
class CancelTimer:
    """Forget the entry with ``token``; a stale token is ignored."""

    token: int


@fast_init
@dataclass(frozen=True, slots=True)
class Fire:
    """A due time has come. The receiver acts only if ``token`` is still current."""

    token: int
    kind: TimerKind
    key: str
    attempt: int = 0


@fast_init
@dataclass(frozen=True, slots=True)
class Forget:
    """Drop every timer entry (shutdown)."""


# --- facade -> Dispatcher (control) -------------------------------------------------


@fast_init
@dataclass(frozen=True, slots=True)
class Cancel:
    """Cancel a job: remove it if waiting, signal it if running. Asked, not told:
    the reply says what happened."""

    job_id: str
    parent: str | None = None
    """Set when the cancel is its parent's, cascading to its children: the job's
    error then names that parent."""


@fast_init
@dataclass(frozen=True, slots=True)
class Resize:
    """Grow or shrink a queue's worker pool to ``workers``."""

    workers: int
    queue: str = "default"


@fast_init
@dataclass(frozen=True, slots=True)
class Close:
    """Shutdown: with ``cancel`` False, let the remaining jobs finish; with True,
    cancel every unfinished job (waiting ones at once, running ones signalled).

    ``keep_running`` (with ``cancel``; a scheduler with a store): cancel the
    waiting jobs only, which the store keeps for the next start, and let the
    running ones finish; one that would retry is left for the next start too.
    """

    cancel: bool
    keep_running: bool = False


# --- scheduler <-> worker node (the node protocol; see transport/protocol.py) -------
# A worker node is another process, on this machine or another, that runs jobs
# the scheduler lends it. These are the messages of that exchange, and nothing
# but them may cross it (`transport.protocol` checks which side sent which).
# A lease, in `Run` and after, is the fencing token of one dispatch: a job sent
# again after its node was declared dead gets a new lease, so a late word from
# the old node names a stale lease and is never applied.


@fast_init
@dataclass(frozen=True, slots=True)
class Hello:
    """Node -> scheduler, first on connecting: who it is and what it can run.

    Answered with `Welcome`, or `Refused` (another protocol version, say).
    """

    node_id: str
    """The node's name, unique among the scheduler's nodes."""
    handlers: tuple[str, ...]
    """The handlers it has registered: only jobs of these are sent to it."""
    capacity: int
    """How many jobs it runs at once."""
    version: int
    """The node protocol version it speaks (`transport.protocol.PROTOCOL_VERSION`)."""
    queue: str = "default"
    """The named queue whose jobs it takes, as a local worker serves one queue."""


@fast_init
@dataclass(frozen=True, slots=True)
class Welcome:
    """Scheduler -> node, in answer to `Hello`: accepted, and the timing to keep."""

    node_id: str
    """The node's id, as the scheduler knows it."""
    heartbeat: float
    """Seconds between `Heartbeat` messages, both ways; three missed and the
    peer counts as dead."""
    lease: float
    """Seconds a dispatched job's lease lasts without word from the node."""


@fast_init
@dataclass(frozen=True, slots=True)
class Refused:
    """Scheduler -> node, in answer to `Hello`: not accepted; the node exits."""

    reason: str
    """Why, for the node's log: a version mismatch names both versions."""


@fast_init
@dataclass(frozen=True, slots=True)
class Credit:
    """Node -> scheduler, whenever slots free up: it can take ``slots`` more jobs.

    Credit adds up; the scheduler sends no more `Run` messages than the credit
    it holds, and each `Run` uses one.
    """

    slots: int


@fast_init
@dataclass(frozen=True, slots=True)
class Run:
    """Scheduler -> node, within its credit: run this attempt of ``job``."""

    job: Job
    """The job, with the attempt to run (``job.attempt``)."""
    lease: int
    """The dispatch's fencing token, unique per dispatch: the node names it in
    every message about this run."""


@fast_init
@dataclass(frozen=True, slots=True)
class Progress:
    """Node -> scheduler, while a run goes on: what its handler reported
    (``ctx.progress``)."""

    job_id: str
    attempt: int
    lease: int
    """The lease of the `Run` it is about; a stale one is ignored."""
    fraction: float
    """In [0, 1]."""
    message: str


@fast_init
@dataclass(frozen=True, slots=True)
class NodeFinished:
    """Node -> scheduler, when a run ends: how the attempt ended.

    Applied only if ``lease`` is the job's current lease; a stale one (the job
    was sent elsewhere since) is rejected, counted and logged. Named apart from
    `Finished`, a local worker's report, which carries the whole job.
    """

    job_id: str
    attempt: int
    lease: int
    outcome: Outcome


@fast_init
@dataclass(frozen=True, slots=True)
class CancelRun:
    """Scheduler -> the node running it: signal the handler of this run to stop.

    The node answers, in time, with the run's `NodeFinished`; a cancel for a
    lease it does not hold is ignored.
    """

    job_id: str
    attempt: int
    lease: int
    reason: str = "cancel"
    """Why: ``"cancel"``, ``"timeout"``, ``"shutdown"`` or ``"parent"``
    (`actors._worker.cancel.CancelReason`); the handler reads it as a local one does."""


@fast_init
@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Either way, every `Welcome.heartbeat` seconds, sent from the sender's
    working loop (not an I/O thread), so a hung loop stops them."""

    sent_at: float
    """The sender's wall-clock time, for the log; liveness is judged by
    arrival, never by comparing clocks."""


@fast_init
@dataclass(frozen=True, slots=True)
class Drain:
    """Either way, to end a node gracefully: no more `Run` messages.

    From the scheduler: take no more work, finish what runs, then say `Bye`.
    From the node (it was told to stop): send no more work, whatever credit is
    left; its running jobs' `NodeFinished` follow, then its `Bye`.
    """


@fast_init
@dataclass(frozen=True, slots=True)
class Bye:
    """Node -> scheduler, last, after the `NodeFinished` of every run it held:
    it disconnects. A lease still unresolved at `Bye` ends as a dead node's do
    (an ``interrupted`` run)."""

    node_id: str


# --- facade -> Dispatcher (asks that stay in the process) --------------------------
# The facade asks these of its own Dispatcher: they never cross a process
# boundary, so they are not in `MESSAGE_TYPES` (see `LOCAL_MESSAGE_TYPES`).


@dataclass(frozen=True, slots=True)
class Boot:
    """Start the Timer and the workers (asked once by the facade); answered with
    the Timer's ref, which the facade sends delayed jobs without a repo to."""


@dataclass(frozen=True, slots=True)
class GetStats:
    """Ask for a `Stats` snapshot."""


@dataclass(frozen=True, slots=True)
class GetMetrics:
    """Ask for a `MetricsSnapshot` (what the Prometheus collector exposes)."""


@dataclass(frozen=True, slots=True)
class Halt:
    """Stop every child actor (the last step of shutdown, or a crash)."""


@dataclass(frozen=True, slots=True)
class ListSchedules:
    """Ask for every schedule's `ScheduleInfo`."""


@dataclass(frozen=True, slots=True)
class AddSchedule:
    """Add a schedule; answered with its `ScheduleInfo`.

    Not plain data: ``spec`` holds the schedule's trigger, an object with
    behaviour (``next_after``) and, for cron, a parsed expression and a time
    zone. The facade builds and checks it, and the Dispatcher keeps it; sending
    the raw arguments instead would move that checking into the actor, where an
    error could only come back as a failed ask. It never leaves the process.
    """

    spec: ScheduleSpec
    schedule_id: str | None = None
    """The id it was given (``id=``): a schedule with that id is updated
    instead; None draws a new id."""


@dataclass(frozen=True, slots=True)
class RestoreSchedules:
    """Put back the schedules a store kept (asked once, as the scheduler starts).

    Not plain data, for `AddSchedule`'s reason: the facade rebuilds and checks
    each stored schedule's spec and trigger, and the Dispatcher keeps them.
    """

    restored: tuple[tuple[ScheduleSaved, ScheduleSpec, Trigger], ...]
    """Each stored row with its spec and its trigger (anchored, as it ran)."""
    kept: tuple[ScheduleSaved, ...]
    """Stored rows that cannot run here (their handler is not registered, say):
    left in the store untouched, their ids not drawn again."""


ScheduleOp = Literal["info", "pause", "resume", "trigger", "remove"]


@dataclass(frozen=True, slots=True)
class ScheduleCall:
    """Act on one schedule.

    Answered with its `ScheduleInfo` (for ``trigger``: the id of the job it
    created, or None), or a `ScheduleNotFound` raised in the caller.
    """

    op: ScheduleOp
    schedule_id: str


# --- child -> Dispatcher (supervision) ------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChildFailed:
    """A child actor died of an unexpected error (a postroom bug; told from the
    child's thread as it dies)."""

    kind: str
    """``worker``, ``repo`` or ``timer``."""
    ident: int | str
    """The worker's id, the repo's name, or 0 for the Timer."""
    error: ErrorInfo


# --- Worker -> itself ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pull:
    """A worker's note to itself: take ready jobs until told to retire."""


# --- anyone -> Journal (what the store records; see actors/_journal/) --------------
# Posted by the thread that made the change, in the order it happened; the
# Journal folds them into its next transaction. They never leave the process.


@fast_init
@dataclass(frozen=True, slots=True)
class JobAccepted:
    """A job was accepted (or, a follow-up or child, accepted and held)."""

    job: Job
    """Its first attempt, as submitted."""
    status: str
    """``pending`` or ``scheduled``."""
    due_at: float | None
    """Wall-clock time it may start (a delay), or None."""
    retry_of: str | None
    schedule_id: str | None
    fire_time: float | None
    parent: str | None
    link: str | None
    """``"child"`` or ``"followup"`` when ``parent`` is set."""
    waited: bool
    """Its submitter waits for the commit (``durability="commit"``)."""


@fast_init
@dataclass(frozen=True, slots=True)
class RunStarted:
    """An attempt started on a worker."""

    job_id: str
    attempt: int
    started_at: float
    worker: str
    waited: bool
    """The worker waits for the commit before it calls the handler."""


@fast_init
@dataclass(frozen=True, slots=True)
class RunEnded:
    """An attempt ended: ``outcome`` is a `RunOutcome` value."""

    job_id: str
    attempt: int
    finished_at: float
    outcome: str
    error: ErrorInfo | None
    retryable: bool = True
    """False when its error was final (`Fatal`, ``throws=``): a restart that
    finds the job's end missing fails it rather than running it again."""


@fast_init
@dataclass(frozen=True, slots=True)
class JobRetrying:
    """An attempt failed and the job waits for its next (``attempts`` started so far)."""

    job_id: str
    attempts: int
    due_at: float | None
    error: ErrorInfo | None


@fast_init
@dataclass(frozen=True, slots=True)
class JobReleased:
    """A held follow-up or child was handed off (a follow-up with its parent's result)."""

    job_id: str
    payload: JSONValue


@fast_init
@dataclass(frozen=True, slots=True)
class JobEnded:
    """A job reached a terminal state."""

    job_id: str
    status: str
    result: JSONValue
    error: ErrorInfo | None
    finished_at: float
    key: str | None
    """Its idempotency key, let go if the job failed or was cancelled."""


@dataclass(frozen=True, slots=True)
class ScheduleSaved:
    """A schedule was added, updated, paused, resumed or fired: its whole row.

    The same data is what a store gives back (``StoredSchedule``), so a
    schedule is rebuilt from it after a restart: ``spec`` is its trigger as
    given (cron: ``expr`` and ``tz``; every: ``interval``, ``start``, ``end``
    and the ``anchor`` a missing start was fixed to; at: ``when``), and
    ``options`` its job options as JSON (``retry`` as a dict).
    """

    id: str
    seq: int
    """Its place among the schedules (they list oldest first)."""
    kind: str
    """``cron``, ``every`` or ``at``."""
    spec: dict[str, JSONValue]
    description: str
    handler: str
    payload: JSONValue
    options: dict[str, JSONValue]
    overlap: str
    misfire: str
    misfire_grace: float
    paused: bool
    next_fire: float | None
    last_fire: float | None
    last_job: str | None
    fires: int
    misfires: int
    skips: int
    created_at: float
    """Wall-clock time it was first added."""


@dataclass(frozen=True, slots=True)
class ScheduleRemoved:
    """A schedule was removed: its row goes."""

    id: str


@dataclass(frozen=True, slots=True)
class Flush:
    """Commit what is folded now (asked: answered once committed, or with a `StoreError`)."""


BOOT = Boot()
GET_STATS = GetStats()
GET_METRICS = GetMetrics()
HALT = Halt()
LIST_SCHEDULES = ListSchedules()
PULL = Pull()
FLUSH = Flush()


MESSAGE_TYPES: tuple[type, ...] = (
    Job,
    ErrorInfo,
    Outcome,
    RetryPolicy,
    Submit,
    Enqueue,
    Withdraw,
    Tick,
    Ready,
    Retry,
    Done,
    Wake,
    Idle,
    Finished,
    After,
    CancelTimer,
    Fire,
    Forget,
    Cancel,
    Resize,
    Close,
    Hello,
    Welcome,
    Refused,
    Credit,
    Run,
    Progress,
    NodeFinished,
    CancelRun,
    Heartbeat,
    Drain,
    Bye,
)
"""Every plain-data type the codec must carry, in a stable order."""


LOCAL_MESSAGE_TYPES: tuple[type, ...] = (
    Boot,
    GetStats,
    GetMetrics,
    Halt,
    ListSchedules,
    AddSchedule,
    RestoreSchedules,
    ScheduleCall,
    ChildFailed,
    Pull,
    JobAccepted,
    RunStarted,
    RunEnded,
    JobRetrying,
    JobReleased,
    JobEnded,
    ScheduleSaved,
    ScheduleRemoved,
    Flush,
)
"""The messages that never leave the process: the facade's asks of its own
Dispatcher, a child's failure report and a worker's note to itself. The codec
does not carry them, so no peer can halt a scheduler, read its figures or
forge a crash report."""
