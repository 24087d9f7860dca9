"""`Store`: one SQLite file, opened by its one owner, and SQLite's errors as postroom's.

The store is the only place that calls ``sqlite3`` to write; every error it
meets leaves as a `StoreError` (`translate`). Opening it:

1. takes the owner's lock: an exclusive ``flock`` on ``PATH.lock``, held while
   the store is open, so a second scheduler, in this process or another, gets
   `StoreLocked` (a lock file, not SQLite's own locks: those would keep
   ``postroom jobs`` from reading a store in use);
2. checks that this process may write the file (and its ``-wal`` and
   ``-shm``), or it is `StoreReadOnly`: SQLite would open a file it may only
   read read-only, without a word, and the first submit would be the first
   to fail;
3. checks the file: a file that is not a database, or fails SQLite's
   ``quick_check``, is `StoreCorrupt` and is never written to;
4. sets WAL mode, ``synchronous`` and ``busy_timeout``, and migrates the schema
   (``schema.py``).

A write is one transaction, ``BEGIN IMMEDIATE`` to ``COMMIT`` (a deferred
transaction that reads first can fail with ``SQLITE_BUSY_SNAPSHOT`` whatever
``busy_timeout`` says); a failed one is rolled back whole.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Literal, TypeVar

from actors._errors import (
    StoreBusy,
    StoreCorrupt,
    StoreError,
    StoreFull,
    StoreLocked,
    StoreReadOnly,
)
from actors._journal.schema import check_version, migrate

__all__ = ["Synchronous", "Store", "connect_readonly", "translate"]

Synchronous = Literal["NORMAL", "FULL"]

T = TypeVar("T")

_BY_CODE: dict[str, type[StoreError]] = {
    "SQLITE_FULL": StoreFull,
    "SQLITE_READONLY": StoreReadOnly,
    "SQLITE_PERM": StoreReadOnly,
    "SQLITE_BUSY": StoreBusy,
    "SQLITE_LOCKED": StoreBusy,
    "SQLITE_CORRUPT": StoreCorrupt,
    "SQLITE_NOTADB": StoreCorrupt,
}


def translate(exc: BaseException, doing: str, path: str) -> StoreError:
    """``exc`` (a ``sqlite3.Error`` or an ``OSError``) as the `StoreError` it means.

    Extended codes (``SQLITE_READONLY_DBMOVED``, ``SQLITE_BUSY_SNAPSHOT``...)
    map as their primary code does.
    """
    if isinstance(exc, StoreError):
        return exc
    name = getattr(exc, "sqlite_errorname", None)
    kind: type[StoreError] = StoreError
    if isinstance(name, str):
        primary = "_".join(name.split("_")[:2])
        kind = _BY_CODE.get(primary, StoreError)
    elif isinstance(exc, PermissionError):
        kind = StoreReadOnly
    elif isinstance(exc, OSError) and exc.errno == 28:  # ENOSPC
        kind = StoreFull
    elif isinstance(exc, sqlite3.DatabaseError) and _is_ours(str(exc)):
        kind = StoreCorrupt
    what = {
        StoreFull: "the disk or the store is full",
        StoreReadOnly: "the store cannot be written",
        StoreBusy: "another program holds the store locked",
        StoreCorrupt: "the store is damaged or not a postroom store",
    }.get(kind, "the store failed")
    msg = f"{doing} {path}: {what} ({exc})"
    return kind(msg, sqlite_error=name if isinstance(name, str) else None)


def _is_ours(message: str) -> bool:
    """Whether a DatabaseError is one of the schema's refusals (``schema.py``)."""
    return "not a postroom store" in message or "newer postroom" in message


class Store:
    """The one writer of a store file (see the module docstring).

    Used by one thread at a time: the Journal's, once the scheduler runs (and
    the facade's before that, to recover). ``check_same_thread`` is off for
    that hand-over only.
    """

    def __init__(
        self,
        path: str,
        *,
        synchronous: Synchronous = "NORMAL",
        busy_timeout: float = 5.0,
    ) -> None:
        """Describe a store; `open` opens it."""
        self.path = path
        self.synchronous = synchronous
        self.busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None
        self._lock_fd: int | None = None
        self.before_commit: Callable[[], None] | None = None
        """A fault to inject just before ``COMMIT`` (tests only)."""
        self.after_commit: Callable[[], None] | None = None
        """A fault to inject just after ``COMMIT`` (tests only): an ambiguous commit."""

    # --- opening and closing -------------------------------------------------------

    def open(self) -> None:
        """Take ownership, check and migrate the file.

        Raises:
            StoreLocked: another scheduler owns it.
            StoreCorrupt: it is not a postroom store, is newer, or is damaged.
            StoreReadOnly, StoreFull, StoreBusy, StoreError: as SQLite says.
        """
        self._take_ownership()
        try:
            self._conn = self._connect()
        except BaseException:
            self._release_ownership()
            raise

    def _take_ownership(self) -> None:
        lock_path = self.path + ".lock"
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise translate(exc, "cannot open the lock file of", self.path) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            owner = _read_owner(lock_path)
            msg = f"the store {self.path} is in use by another scheduler{owner}"
            raise StoreLocked(msg) from None
        except OSError as exc:
            os.close(fd)
            raise translate(exc, "cannot lock", self.path) from None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()}\n".encode())
        self._lock_fd = fd

    def _release_ownership(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)  # closing the descriptor lets the flock go

    def _connect(self) -> sqlite3.Connection:
        path = self.path
        conn = None
        try:
            exists = os.path.exists(path) and os.path.getsize(path) > 0
            if os.path.exists(path):
                _check_permission(path)
            conn = sqlite3.connect(
                path,
                isolation_level=None,
                check_same_thread=False,
                timeout=self.busy_timeout,
                cached_statements=64,
            )
            if exists:
                # Read before anything is written: a damaged file is refused untouched.
                check = conn.execute("PRAGMA quick_check").fetchone()
                if check is None or check[0] != "ok":
                    msg = f"the store {path} is damaged (quick_check: {check and check[0]})"
                    raise StoreCorrupt(msg)
                # Another program's database, or a newer postroom's store, is
                # refused before WAL mode is set: that would rewrite its header.
                check_version(conn)
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()
            if mode is None or str(mode[0]).lower() != "wal":
                msg = f"the store {path} could not be put in WAL mode (it says {mode})"
                raise StoreError(msg)
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            conn.execute("PRAGMA foreign_keys = OFF")
            migrate(conn)
            _check_writable(conn)
        except BaseException as exc:
            if conn is not None:
                conn.close()
            if isinstance(exc, sqlite3.Error | OSError):
                raise translate(exc, "cannot open", path) from None
            raise
        return conn

    def close(self) -> None:
        """Close the connection (a checkpoint folds the WAL into the file) and let ownership go."""
        conn, self._conn = self._conn, None
        try:
            if conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                conn.close()
        finally:
            self._release_ownership()

    @property
    def is_open(self) -> bool:
        """Whether the store is open."""
        return self._conn is not None

    # --- transactions ----------------------------------------------------------------

    def transaction(self, work: Callable[[sqlite3.Connection], T], doing: str) -> T:
        """Run ``work`` in one ``BEGIN IMMEDIATE`` transaction and commit it.

        Raises:
            StoreError: (or a kind of it) the transaction failed and was rolled
                back; or the commit's outcome is unknown (an error after it).
        """
        conn = self._conn
        if conn is None:
            msg = f"{doing} {self.path}: the store is closed"
            raise StoreError(msg)
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                out = work(conn)
                if self.before_commit is not None:
                    self.before_commit()
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise
            if self.after_commit is not None:
                self.after_commit()
        except (sqlite3.Error, OSError) as exc:
            raise translate(exc, doing, self.path) from None
        return out

    def read(self, work: Callable[[sqlite3.Connection], T], doing: str) -> T:
        """Run ``work`` (reads only) on the owner's connection.

        Raises:
            StoreError: as SQLite says.
        """
        conn = self._conn
        if conn is None:
            msg = f"{doing} {self.path}: the store is closed"
            raise StoreError(msg)
        try:
            return work(conn)
        except (sqlite3.Error, OSError) as exc:
            raise translate(exc, doing, self.path) from None


def _check_writable(conn: sqlite3.Connection) -> None:
    """Raise SQLite's ``SQLITE_READONLY`` now if the file cannot be written.

    SQLite opens a file the process may read but not write (its mode, a
    read-only mount) read-only without a word, and a current store needs no
    migration: without this, the first submit would be the first to know.
    The write is rolled back: nothing reaches the file.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("UPDATE postroom_schema SET version = version")
    finally:
        conn.execute("ROLLBACK")


def _check_permission(path: str) -> None:
    """`StoreReadOnly` if this process may not write the file or its
    ``-wal`` and ``-shm``: checked before SQLite opens it, which would open it
    read-only and leave read-only ``-wal`` and ``-shm`` files beside it."""
    for name in (path, path + "-wal", path + "-shm"):
        if os.path.exists(name) and not os.access(name, os.W_OK):
            msg = (
                f"cannot open {path}: the store cannot be written: {name} is not "
                "writable by this process (its mode, its owner, or a read-only mount)"
            )
            raise StoreReadOnly(msg)


def _read_owner(lock_path: str) -> str:
    try:
        with open(lock_path, encoding="ascii", errors="replace") as f:
            text = f.read(64).strip()
    except OSError:
        return ""
    return f" ({text})" if text else ""


@contextlib.contextmanager
def connect_readonly(path: str, *, busy_timeout: float = 5.0) -> Iterator[sqlite3.Connection]:
    """A read-only connection to a store, for readers that do not own it
    (the CLI, a scheduler's queries): it can be open while the owner writes.

    Raises:
        StoreError: the file is missing, not a postroom store, or unreadable.
    """
    if not os.path.exists(path):
        msg = f"no store at {path}"
        raise StoreError(msg)
    # Quoted: in a URI, "?", "#" and "%" in the path would end or change it,
    # and SQLite would open (and make) another file.
    uri = f"file:{urllib.parse.quote(path)}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=busy_timeout, check_same_thread=False)
    except sqlite3.Error as exc:
        raise translate(exc, "cannot read", path) from None
    try:
        yield conn
    except (sqlite3.Error, OSError) as exc:
        raise translate(exc, "cannot read", path) from None
    finally:
        conn.close()
