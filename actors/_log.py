"""The ``postroom`` logger and the job fields every record about a job carries."""

from __future__ import annotations

import logging

from actors.messages import Job

__all__ = ["job_extra", "job_logger", "logger"]

logger = logging.getLogger("postroom")
"""postroom's logger. Nothing is logged at INFO on the hot path."""

# A library leaves output to the application: without this, Python's last-resort
# handler would print postroom's warnings to stderr of programs that never asked.
logger.addHandler(logging.NullHandler())


def job_extra(job: Job) -> dict[str, object]:
    """The ``extra`` fields that put a job's identity on a log record."""
    return {
        "job_id": job.id,
        "handler": job.handler,
        "repo": job.repo,
        "attempt": job.attempt,
    }


def job_logger(job: Job) -> logging.LoggerAdapter[logging.Logger]:
    """A logger adapter for code that runs inside a job (handlers, workers)."""
    return logging.LoggerAdapter(logger, job_extra(job))
