"""The ``postroom`` commands that read and prune a store: ``jobs``, ``job`` and ``prune``.

``jobs`` and ``job`` read through `connect_readonly`, so they work while a
scheduler owns the store and writes to it. ``prune`` deletes, so it opens the
store as its owner (`Store`): a store a running scheduler owns is refused
(`StoreLocked`); that scheduler's ``keep_finished=`` prunes in the background.

Each prints an aligned table, or one JSON document with ``--json``. Exit
codes: 0 done; 1 ``job``: no job has that id; 2 the command line is wrong,
or the store cannot be read or written (missing, not a store, damaged,
locked): one line on stderr says why, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import enum
import json
import math
import os
import re
import sqlite3
import time
from collections.abc import Iterator, Sequence
from typing import Any, TextIO

from actors._errors import StoreCorrupt, StoreError, StoreLocked
from actors._jobs.info import JobInfo
from actors._jobs.runs import RunInfo
from actors._jobs.status import JobStatus
from actors._journal import reader
from actors._journal.store import Store, connect_readonly

__all__ = [
    "COMMANDS",
    "add_commands",
    "add_store_option",
    "duration",
    "job_text",
    "jobs_table",
    "parse_duration",
    "run",
    "to_json",
]

COMMANDS = ("jobs", "job", "prune")
"""The commands this module adds and `run` runs."""

NOT_FOUND = 1
"""Exit code of ``postroom job`` for an id no stored job has."""

FAILED = 2
"""Exit code when the store cannot be read or written (as argparse's for usage)."""

_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([smhd]?)")
_ERROR_WIDTH = 60
"""Characters of an error shown in a table cell."""


# --- the command line ---------------------------------------------------------------------


def parse_duration(text: str) -> float:
    """Seconds in ``text``: ``7d``, ``12h``, ``30m``, ``90s`` or plain seconds (``3600``)."""
    match = _DURATION.fullmatch(text.strip().lower())
    seconds = float(match[1]) * _UNITS[match[2]] if match else math.nan
    if not math.isfinite(seconds):
        msg = f"must be a duration like 7d, 12h, 30m, 90s or a number of seconds, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return seconds


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        msg = f"must be an integer >= 0, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def add_store_option(parser: argparse.ArgumentParser, *, required: bool, text: str) -> None:
    """The ``--store PATH`` option (its help ``text``), as each command that reads
    or writes a store takes it."""
    parser.add_argument("--store", metavar="PATH", required=required, help=text)


def add_commands(commands: Any) -> None:
    """Add ``jobs``, ``job`` and ``prune`` to ``commands`` (the root parser's subparsers)."""
    reading = "the store file (read only: works while a scheduler runs on it)"
    listing = commands.add_parser(
        "jobs",
        help="list a store's jobs, newest first",
        description="List the jobs of a store, newest (by submission) first, one page at a "
        "time. Times are local.",
    )
    add_store_option(listing, required=True, text=reading)
    statuses = [status.value for status in JobStatus]
    listing.add_argument("--status", choices=statuses, help="only jobs in this state")
    listing.add_argument("--queue", metavar="Q", help="only jobs of this queue")
    listing.add_argument("--repo", metavar="R", help="only jobs of this repo")
    listing.add_argument("--handler", metavar="H", help="only jobs of this handler")
    listing.add_argument("--limit", type=_count, default=100, metavar="N", help="at most N (100)")
    listing.add_argument(
        "--offset", type=_count, default=0, metavar="N", help="skip the N newest first (0)"
    )
    listing.add_argument("--json", action="store_true", help="one JSON document, for scripts")

    one = commands.add_parser(
        "job",
        help="show one stored job with its runs and tracebacks",
        description="Show one job of a store: every field, each attempt (run) and the "
        "tracebacks of those that failed. Exit code 1 if no job has that id. Times are local.",
    )
    add_store_option(one, required=True, text=reading)
    one.add_argument("id", metavar="ID", help="the job's id")
    one.add_argument("--json", action="store_true", help="one JSON document, for scripts")

    prune = commands.add_parser(
        "prune",
        help="delete old finished jobs from a store no scheduler is running on",
        description="Delete the finished jobs (completed, failed, cancelled) that finished "
        "more than DURATION ago, with their runs and idempotency keys; with --keep, also "
        "those beyond the N that finished last. Unfinished jobs are never deleted. Prune "
        "writes, so it needs the store to itself: a store a running scheduler owns is "
        "refused (exit code 2); that scheduler's keep_finished= prunes in the background. "
        "The file does not shrink: SQLite reuses the space.",
    )
    owning = "the store file (no scheduler may be running on it)"
    add_store_option(prune, required=True, text=owning)
    prune.add_argument(
        "--older-than",
        type=parse_duration,
        required=True,
        metavar="DURATION",
        help="age of the finished jobs to delete: 7d, 12h, 30m, 90s, or seconds",
    )
    prune.add_argument(
        "--keep", type=_count, metavar="N", help="also delete finished jobs beyond the N newest"
    )
    prune.add_argument("--json", action="store_true", help="one JSON document, for scripts")


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Run the command ``args`` names (one of `COMMANDS`); its exit code."""
    try:
        if args.command == "jobs":
            return _jobs(args, out)
        if args.command == "job":
            return _job(args, out, err)
        return _prune(args, out)
    except StoreError as exc:
        err.write(f"postroom {args.command}: {_one_line(str(exc))}\n")
        return FAILED


@contextlib.contextmanager
def _reading(path: str) -> Iterator[sqlite3.Connection]:
    with connect_readonly(path) as conn:
        reader.check_readable(conn, path)
        yield conn


def _jobs(args: argparse.Namespace, out: TextIO) -> int:
    with _reading(args.store) as conn:
        infos = reader.job_infos(
            conn,
            status=args.status,
            queue=args.queue,
            repo=args.repo,
            handler=args.handler,
            limit=args.limit,
            offset=args.offset,
        )
    if args.json:
        _dump({"jobs": [to_json(info) for info in infos]}, out)
        return 0
    filters = (args.status, args.queue, args.repo, args.handler)
    filtered = any(value is not None for value in filters)
    if not infos:
        out.write("no jobs match\n" if filtered or args.offset else "no jobs\n")
        return 0
    out.write(jobs_table(infos))
    if len(infos) == args.limit:
        after = args.offset + args.limit
        out.write(f"(jobs {args.offset + 1} to {after}: --offset {after} for more)\n")
    return 0


def _job(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    with _reading(args.store) as conn:
        info = reader.job_info(conn, args.id)
        runs = reader.run_infos(conn, args.id) if info is not None else []
    if info is None:
        err.write(f"postroom job: no job {args.id!r} in {args.store}\n")
        return NOT_FOUND
    if args.json:
        _dump({"job": to_json(info), "runs": [to_json(r) for r in runs]}, out)
    else:
        out.write(job_text(info, runs))
    return 0


def _prune(args: argparse.Namespace, out: TextIO) -> int:
    path = args.store
    # Opening a missing or empty file as its owner would make a new store of it.
    if not os.path.isfile(path):
        msg = f"no store at {path}"
        raise StoreError(msg)
    if os.path.getsize(path) == 0:
        msg = f"{path} is not a postroom store: it is empty"
        raise StoreCorrupt(msg)
    store = Store(path)
    try:
        store.open()
    except StoreLocked as exc:
        msg = (
            f"{exc}; prune needs the store to itself: stop that scheduler first, or let "
            "its keep_finished= prune"
        )
        raise StoreLocked(msg) from None
    try:
        now = time.time()
        deleted = store.transaction(
            lambda conn: reader.prune(conn, older_than=args.older_than, keep=args.keep, now=now),
            "cannot prune",
        )
        left = store.read(reader.unfinished_count, "cannot read")
    finally:
        store.close()
    if args.json:
        _dump(
            {
                "deleted": deleted,
                "older_than": args.older_than,
                "keep": args.keep,
                "unfinished": left,
            },
            out,
        )
    else:
        kept = f" or beyond the {args.keep} newest" if args.keep is not None else ""
        out.write(
            f"deleted {deleted} finished {'job' if deleted == 1 else 'jobs'} (finished more "
            f"than {duration(args.older_than)} ago{kept}) with their runs and keys; "
            f"{left} unfinished kept\n"
        )
    return 0


# --- what is printed ------------------------------------------------------------------------


def to_json(record: JobInfo | RunInfo) -> dict[str, Any]:
    """A `JobInfo` or `RunInfo` as JSON-able data: every field, times as epoch seconds."""
    return {field.name: _plain(getattr(record, field.name)) for field in dataclasses.fields(record)}


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    return value


def _dump(document: dict[str, Any], out: TextIO) -> None:
    json.dump(document, out, indent=2, ensure_ascii=False)
    out.write("\n")


def jobs_table(infos: Sequence[JobInfo]) -> str:
    """The jobs as an aligned table, a row each."""
    rows = [
        [
            info.id,
            info.status.value,
            info.handler,
            info.queue,
            info.repo or "-",
            str(info.priority),
            f"{info.attempts}/{1 + info.max_retries}",
            _when(info.submitted_at),
            _took(info.started_at, info.finished_at),
            _short_error(info),
        ]
        for info in infos
    ]
    headers = ["ID", "STATUS", "HANDLER", "QUEUE", "REPO", "PRI", "ATTEMPTS", "SUBMITTED"]
    return _table([*headers, "TOOK", "ERROR"], rows)


def job_text(info: JobInfo, runs: Sequence[RunInfo]) -> str:
    """One job in full: its fields, a table of its runs, their tracebacks."""
    fields: list[tuple[str, str]] = [
        ("job", info.id),
        ("status", info.status.value),
        ("handler", info.handler),
        ("queue", info.queue),
        ("repo", info.repo or "-"),
        ("priority", str(info.priority)),
        ("attempts", f"{info.attempts} of at most {1 + info.max_retries}"),
        ("submitted", _when(info.submitted_at)),
        ("started", _when(info.started_at) + _after("waited", info.submitted_at, info.started_at)),
        ("finished", _when(info.finished_at) + _after("took", info.started_at, info.finished_at)),
    ]
    optional = [
        ("key", info.idempotency_key),
        ("parent", info.parent),
        ("children", ", ".join(info.children)),
        ("followups", ", ".join(info.followups)),
        ("retry of", info.retry_of),
        ("retried as", info.retried_as),
        ("schedule", info.schedule_id and f"{info.schedule_id}, fire time {_when(info.fire_time)}"),
    ]
    fields += [(name, value) for name, value in optional if value]
    fields.append(("payload", _json_text(info.payload)))
    if info.status is JobStatus.COMPLETED:
        fields.append(("result", _json_text(info.result)))
    if info.error is not None:
        fields.append(("error", _one_line(f"{info.error.type}: {info.error.message}")))
    width = max(len(name) for name, _ in fields)
    text = "".join(f"{name.ljust(width)}  {value}\n" for name, value in fields)
    if not runs:
        text += "\nno runs\n"
    else:
        rows = [
            [
                str(run.attempt),
                _when(run.started_at),
                _when(run.finished_at) if run.finished_at is not None else "running",
                _took(run.started_at, run.finished_at),
                run.outcome.value if run.outcome is not None else "-",
                run.worker or "-",
                _short_error(run),
            ]
            for run in runs
        ]
        headers = ["ATTEMPT", "STARTED", "FINISHED", "TOOK", "OUTCOME", "WORKER", "ERROR"]
        text += "\nruns\n" + _table(headers, rows)
    traces = [(f"attempt {r.attempt}", r.error) for r in runs if r.error and r.error.traceback]
    if not traces and info.error is not None and info.error.traceback:
        traces = [("job", info.error)]
    for title, error in traces:
        text += f"\n{title}: {_one_line(f'{error.type}: {error.message}')}\n"
        text += "".join(f"  {line}\n" for line in error.traceback.rstrip("\n").splitlines())
    return text


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
    return "".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        + "\n"
        for row in [headers, *rows]
    )


def _when(seconds: float | None) -> str:
    """Wall-clock seconds as local time, to the second; a dash for none."""
    if seconds is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


def duration(seconds: float) -> str:
    """``0.25s``, ``42.00s``, ``3m12s``, ``5h03m``, ``7d``, ``2d04h``."""
    if seconds < 60:
        return f"{seconds:.2f}s"
    whole = round(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s"


def _took(start: float | None, end: float | None) -> str:
    if start is None or end is None:
        return "-"
    return duration(max(0.0, end - start))


def _after(word: str, start: float | None, end: float | None) -> str:
    if start is None or end is None:
        return ""
    return f"  ({word} {duration(max(0.0, end - start))})"


def _short_error(record: JobInfo | RunInfo) -> str:
    if record.error is None:
        return ""
    text = _one_line(f"{record.error.type}: {record.error.message}")
    return text if len(text) <= _ERROR_WIDTH else text[: _ERROR_WIDTH - 3] + "..."


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _one_line(text: str) -> str:
    return " ".join(text.split())
