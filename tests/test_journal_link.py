"""`JournalLink` waiting (``actors/_journal/link.py``): a thread waiting for its
record's commit goes on when, and only when, a commit settles that record; a job
the commit refused raises in its submitter's thread only; closing lets every
waiter go.

The Journal's side (`settled`, `close`) is called directly: no store, no actor.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from actors._errors import StoreFull
from actors._journal.link import JournalLink
from actors._timer.clock import MonotonicClock

JOIN = 5.0
"""Seconds a thread the link let go has to finish (never reached when it works)."""


@dataclass
class Waiter:
    """A thread blocked in ``link.wait(number, job_id)``, and what came of it."""

    link: JournalLink
    number: int
    job_id: str | None = None
    entered: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    thread: threading.Thread | None = None

    def start(self) -> Waiter:
        self.thread = threading.Thread(target=self._run, name=f"test-waiter-{self.number}")
        self.thread.start()
        assert self.entered.wait(JOIN)
        return self

    def _run(self) -> None:
        self.entered.set()
        try:
            self.link.wait(self.number, self.job_id)
        except BaseException as exc:  # kept for the test to assert on
            self.error = exc

    def finished(self, timeout: float = JOIN) -> bool:
        assert self.thread is not None
        self.thread.join(timeout)
        return not self.thread.is_alive()


def _link() -> JournalLink:
    return JournalLink("commit", MonotonicClock())


def _blocked(waiter: Waiter) -> bool:
    """Whether the waiter is parked in `wait` (its thread alive a while after entering)."""
    return not waiter.finished(timeout=0.05)


def test_a_commit_lets_go_exactly_the_waiters_it_settles() -> None:
    link = _link()
    waiters = [Waiter(link, n).start() for n in (3, 1, 2, 5)]
    try:
        link.settled(2, (), None)
        by_number = {w.number: w for w in waiters}
        assert by_number[1].finished()
        assert by_number[2].finished()
        assert _blocked(by_number[3])
        assert _blocked(by_number[5])
        link.settled(4, (), None)
        assert by_number[3].finished()
        assert _blocked(by_number[5])
        link.settled(5, (), None)
        assert by_number[5].finished()
        assert all(w.error is None for w in waiters)
    finally:
        link.close()
        for w in waiters:
            assert w.finished()


def test_a_record_committed_before_the_wait_does_not_block() -> None:
    link = _link()
    link.settled(10, (), None)
    done = threading.Event()

    def wait() -> None:
        link.wait(7)
        link.wait(10)
        done.set()

    thread = threading.Thread(target=wait)
    thread.start()
    thread.join(JOIN)
    assert done.is_set()


def test_a_settled_number_never_goes_back() -> None:
    link = _link()
    link.settled(5, (), None)
    link.settled(3, (), None)  # an older commit's report, late: 5 stays settled
    waiter = Waiter(link, 4).start()
    assert waiter.finished()


def test_a_refused_job_raises_in_its_submitter_only() -> None:
    link = _link()
    refused = Waiter(link, 1, job_id="job-a").start()
    other = Waiter(link, 2, job_id="job-b").start()
    worker = Waiter(link, 2).start()
    error = StoreFull("cannot write to jobs.db: the disk or the store is full")
    link.settled(2, {"job-a"}, error)
    assert refused.finished() and other.finished() and worker.finished()
    assert refused.error is error
    assert other.error is None
    assert worker.error is None
    assert link.error is error
    # Said once: a later wait for the same job (it was withdrawn) does not raise again.
    link.wait(1, "job-a")
    link.settled(3, (), None)
    assert link.error is None


def test_close_lets_every_waiter_go() -> None:
    link = _link()
    waiters = [Waiter(link, n, job_id=f"job-{n}").start() for n in (1, 100, 10_000)]
    link.close()
    for w in waiters:
        assert w.finished()
        assert w.error is None
    link.wait(10**9)  # and nobody waits after it


def test_many_waiters_each_go_on_at_their_commit() -> None:
    """Commits that settle a few records at a time, as group commit does,
    with as many threads waiting as bench E has (16 submitters, 8 workers):
    each thread goes on at its commit, none is lost."""
    threads = 24
    link = _link()
    waiters = [Waiter(link, n + 1).start() for n in range(threads)]
    try:
        for taken in range(2, threads + 3, 3):
            link.settled(taken, (), None)
            for w in waiters:
                if w.number <= taken:
                    assert w.finished(), f"record {w.number} settled at {taken}, still waiting"
        assert all(w.finished() for w in waiters)
    finally:
        link.close()
