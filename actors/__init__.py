"""postroom: an embeddable job scheduler built on actors.

The public surface; everything else lives in private modules. See ``docs/`` for
the contract, and ``docs/guarantees.md`` for what postroom promises.
"""

from __future__ import annotations

from actors import messages
from actors._errors import (
    DecodeError,
    Fatal,
    GILRequired,
    InvalidArgument,
    JobCancelled,
    JobError,
    JobFailed,
    JobNotFound,
    JobTimedOut,
    NodeRefused,
    NotSerializable,
    NotSupportedOnNode,
    PayloadTooLarge,
    QueueFull,
    ScheduleNotFound,
    SchedulerAlreadyStarted,
    SchedulerClosed,
    SchedulerCrashed,
    SchedulerError,
    SchedulerForked,
    SchedulerUnresponsive,
    StoreBusy,
    StoreCorrupt,
    StoreError,
    StoreFull,
    StoreLocked,
    StoreReadOnly,
    UnknownHandler,
    UnknownQueue,
)
from actors._facade.schedules import ScheduleHandle
from actors._jobs.cancel_result import CancelResult
from actors._jobs.handle import JobHandle
from actors._jobs.info import JobInfo, Progress, QueueStats, Stats
from actors._jobs.runs import RunInfo, RunOutcome
from actors._jobs.status import JobStatus
from actors._journal.options import KeepFinished
from actors._policy.options import JobOptions, SubmitOptions
from actors._policy.priority import Priority
from actors._policy.queue import Queue
from actors._policy.registry import Handlers
from actors._policy.retry import RetryPolicy
from actors._repo_lock import RepoMode
from actors._scheduler import OnFull, Scheduler
from actors._schedules.book import ScheduleInfo
from actors._timer.clock import Clock, ManualClock, MonotonicClock
from actors._worker.context import JobContext

__all__ = [
    "CancelResult",
    "Clock",
    "DecodeError",
    "Fatal",
    "GILRequired",
    "Handlers",
    "InvalidArgument",
    "JobCancelled",
    "JobContext",
    "JobError",
    "JobFailed",
    "JobHandle",
    "JobInfo",
    "JobNotFound",
    "JobOptions",
    "JobStatus",
    "JobTimedOut",
    "KeepFinished",
    "ManualClock",
    "MonotonicClock",
    "NodeRefused",
    "NotSerializable",
    "NotSupportedOnNode",
    "OnFull",
    "PayloadTooLarge",
    "Priority",
    "Progress",
    "Queue",
    "QueueFull",
    "QueueStats",
    "RepoMode",
    "RetryPolicy",
    "RunInfo",
    "RunOutcome",
    "ScheduleHandle",
    "ScheduleInfo",
    "ScheduleNotFound",
    "Scheduler",
    "SchedulerAlreadyStarted",
    "SchedulerClosed",
    "SchedulerCrashed",
    "SchedulerError",
    "SchedulerForked",
    "SchedulerUnresponsive",
    "Stats",
    "StoreBusy",
    "StoreCorrupt",
    "StoreError",
    "StoreFull",
    "StoreLocked",
    "StoreReadOnly",
    "SubmitOptions",
    "UnknownHandler",
    "UnknownQueue",
    "messages",
]

__version__ = "0.1.0"
