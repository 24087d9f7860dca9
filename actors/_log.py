"""postroom's loggers, one per part, and the job fields every record about a job carries.

Every logger is a child of ``postroom``: an application that listens to
``postroom`` gets every record, and one that wants a single part (the
Dispatcher's decisions, the metrics server) listens to that child alone. The
names are defined here and nowhere else; docs/operations.md lists them.
"""

from __future__ import annotations

import logging

from actors.messages import Job

__all__ = [
    "logger",
    "scheduler_logger",
    "dispatcher_logger",
    "worker_logger",
    "handler_logger",
    "jobs_logger",
    "schedules_logger",
    "metrics_logger",
    "runtime_logger",
    "journal_logger",
    "nodes_logger",
    "admin_logger",
    "job_extra",
    "job_logger",
]

logger = logging.getLogger("postroom")
"""The parent of postroom's loggers. Nothing is logged at INFO on the hot path."""

# A library leaves output to the application: without this, Python's last-resort
# handler would print postroom's warnings to stderr of programs that never asked.
# On the parent only: a child's record reaches its parent's handlers.
logger.addHandler(logging.NullHandler())

scheduler_logger = logger.getChild("scheduler")
"""The facade (``actors/_scheduler.py``, ``actors/_facade/``): shutdown that
overran its bounds, the scheduler's crash."""
dispatcher_logger = logger.getChild("dispatcher")
"""The Dispatcher and its pool (``actors/_dispatcher/``): deadlines passed, retry
caps reached, jobs failed for good, workers crashed and replaced."""
worker_logger = logger.getChild("worker")
"""The workers (``actors/_worker/``): debug records of attempts that raised, and
of jobs that ended after the Dispatcher stopped."""
handler_logger = logger.getChild("handler")
"""What handlers write through ``ctx.log`` (`job_logger`): the users' own records."""
jobs_logger = logger.getChild("jobs")
"""The job store (``actors/_jobs/``): done callbacks and follow-up steps that raised."""
schedules_logger = logger.getChild("schedules")
"""The schedules (``actors/_schedules/``): misfires and skipped fires."""
metrics_logger = logger.getChild("metrics")
"""The metrics (``actors/_metrics/``): a scrape that failed, the server's errors."""
runtime_logger = logger.getChild("runtime")
"""The actor runtime (``actors/_runtime/``): crashed actors' tracebacks, done
callbacks that raised on the callback thread."""
journal_logger = logger.getChild("journal")
"""The store: opening, recovery, failed commits, pruning."""
nodes_logger = logger.getChild("nodes")
"""Worker nodes and their ZeroMQ I/O (``transport/io.py``): malformed frames,
messages a peer could not take."""
admin_logger = logger.getChild("admin")
"""The admin API and its server (``actors/_admin/``): the generated token (once,
at WARNING), requests that failed on a postroom bug."""


def job_extra(job: Job) -> dict[str, object]:
    """The ``extra`` fields that put a job's identity on a log record."""
    return {
        "job_id": job.id,
        "handler": job.handler,
        "repo": job.repo,
        "attempt": job.attempt,
    }


def job_logger(job: Job) -> logging.LoggerAdapter[logging.Logger]:
    """The logger adapter handlers use (``ctx.log``): ``postroom.handler`` with the job's fields."""
    return logging.LoggerAdapter(handler_logger, job_extra(job))
