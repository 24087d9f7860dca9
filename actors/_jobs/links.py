"""Follow-ups (`JobHandle.then`) and child jobs (`JobContext.submit`): jobs with a parent.

Both are submitted through the facade's submit (`Submitter.submit`) with a
``parent``. Such a job is accepted as any other (validated, a slot taken under
its queue's ``max_pending``, in the job table, visible to `Scheduler.job`) but
is *held*: its ``where`` is `PARKED`, its status ``scheduled``, and nothing
routes it until this module hands it off (`Submitter.hand_off`, the tail of
what the submit does for every other job):

- a child is handed off at once, once it is listed among its parent's children
  (or cancelled at once, if a cancel of its parent came first: see below);
- a follow-up when its parent completes, with a private copy of the parent's
  result as its payload (at once, if the parent had completed already). If the
  parent fails or is cancelled, the follow-up ends ``cancelled`` without ever
  running, its error naming the parent and how it ended.

A follow-up keeps the ``seq`` (submission order) that `then` gave it: once
released, it is ordered among the jobs still waiting as if submitted then.

Cancelling a job (`Scheduler.cancel`, when it cancelled or signalled the job)
cancels its unfinished children, and theirs: the propagation a context tree
gives. Nothing else propagates down: a child outlives a parent that completed
or failed, and a timeout is the parent's own. Follow-ups need no such push: a
follow-up of a job that did not complete is cancelled when that job ends.

Who does what, on which thread:

- The links themselves (`JobLinks`, in `JobState.links`) change under one lock
  held for a few loads and stores, never across a call (see `JobTable`).
- Releasing a follow-up runs as a done callback of its parent, on the thread
  that resolved the parent (a worker or the actor loop). It copies the result
  and queues the job (a put on the ready queue, or a tell), and never waits.
- Cascades (a chain of follow-ups cancelled one after the other, a tree of
  children) are flattened with a work list per thread, so a chain of any
  length costs no recursion depth: a cascade step that starts another one on
  the same thread queues it behind itself (`Links._defer`).

Races, and why each is harmless:

- A parked job is cancelled (by the user, or by shutdown) as the handoff
  begins: the Dispatcher finishes a job whose ``where`` it does not route at
  once, and a worker never runs a job that has left the table.
- Two children submitted with one idempotency key get the same parked job:
  only the first to *claim* it (``where`` from `PARKED` to in-transit, under the
  lock) links and hands it off.
- A child linked as its parent is being cancelled: marking the parent
  (`JobLinks.cancelled`) and listing its children happen under the same lock as
  a child's linking, so the child is either listed before the mark (and
  cancelled by the cascade) or sees the mark (and is cancelled at once). The
  handler may hear of the cancel before that mark is set: the Dispatcher's own
  mark (`JobState.cancel_requested`, set before it signals) counts as well.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from actors._errors import JobNotFound
from actors._jobs.state import PARKED, JobState
from actors._jobs.status import CANCELLED, COMPLETED, FAILED
from actors._jobs.table import JobTable
from actors._log import jobs_logger as logger
from actors._policy.options import widen
from actors._policy.payloads import json_copy
from actors.messages import ErrorInfo

if TYPE_CHECKING:
    from actors._jobs.cancel_result import CancelResult
    from actors._jobs.handle import JobHandle
    from actors._policy.options import JobOptions, SubmitOptions

__all__ = ["JobLinks", "Links", "SubmitHeld"]


class SubmitHeld(Protocol):
    """How `Links` submits a child or a follow-up: the facade's submit, which
    accepts the job with its ``parent`` and holds it until `Links` hands it off."""

    def __call__(
        self, handler: str, payload: Any, options: SubmitOptions, *, parent: str, link: str
    ) -> JobHandle: ...


class JobLinks:
    """One job's links to other jobs: `JobState.links`.

    Made for a job that has a parent, or the first time another job links to it.
    Written under `Links`' lock; read without it (copying a list is atomic).
    """

    __slots__ = ("cancelled", "children", "followups", "kind", "parent")

    def __init__(self, parent: str | None = None, kind: str | None = None) -> None:
        self.parent = parent
        """The job it follows (`JobHandle.then`) or was submitted by (`JobContext.submit`)."""
        self.kind = kind
        """``"followup"`` or ``"child"``: how it is linked to ``parent`` (the store keeps it)."""
        self.children: list[str] = []
        """Ids of the jobs its handler submitted with ``ctx.submit``, in order."""
        self.followups: list[str] = []
        """Ids of the jobs `then` made to follow it, in order."""
        self.cancelled = False
        """Set once a cancel of this job cancelled its children: a child linked
        after that is cancelled at once."""


class Links:
    """The scheduler's part in follow-ups and children (see the module docstring)."""

    def __init__(
        self,
        table: JobTable,
        submit: SubmitHeld,
        cancel: Callable[[str, str], CancelResult],
        hand_off: Callable[[JobState], None],
    ) -> None:
        """Link the jobs of one scheduler.

        Args:
            table: the scheduler's job table (children are found there by id).
            submit: the facade's submit (`Submitter.submit`), which holds a job
                submitted with a ``parent``.
            cancel: `Scheduler._cancel` (job id, parent id), which cancels one job
                and calls `cancelled`.
            hand_off: sends a held job on its way, as the submit does the others.
        """
        self._table = table
        self._submit = submit
        self._cancel = cancel
        self._hand_off = hand_off
        self._lock = threading.Lock()
        self._local = threading.local()
        """``pending``: this thread's cascade work list, while one runs (`_defer`)."""

    # --- follow-ups -----------------------------------------------------------------

    def then(self, parent: JobState, handler: str, options: JobOptions) -> JobHandle:
        """Submit a follow-up of ``parent`` (`JobHandle.then` documents it)."""
        handle = self._submit(handler, None, widen(options), parent=parent.job.id, link="followup")
        state = handle._state  # noqa: SLF001 - the links are the handle's internals too
        if state.where != PARKED:
            return handle  # dropped under on_full="drop": already cancelled, in no table
        with self._lock:
            self._links_of(parent).followups.append(state.job.id)
        # No idempotency key on a follow-up: the parked job is this call's own.
        parent.add_done_callback(partial(self._on_parent_done, state))
        return handle

    def _on_parent_done(self, followup: JobState, parent: JobState) -> None:
        # On the thread that resolved the parent: quick, never waits.
        self._defer(partial(self._release_or_cancel, followup, parent))

    def _release_or_cancel(self, followup: JobState, parent: JobState) -> None:
        if not self._claim(followup):
            return  # ended already: cancelled on its own, or by shutdown
        status = parent.status
        if status is COMPLETED:
            result = parent.result
            followup.release(replace(followup.job, payload=json_copy(result, "parent's result")))
            self._hand_off(followup)
            return
        how = "failed" if status is FAILED else "was cancelled"
        error = parent.error
        detail = f" ({error.type}: {error.message})" if error is not None else ""
        message = f"never ran: it follows job {parent.job.id}, which {how}{detail}"
        self._table.finish(followup, CANCELLED, error=ErrorInfo("postroom.JobCancelled", message))

    # --- children -------------------------------------------------------------------

    def submit_child(
        self, parent_id: str, handler: str, payload: Any, options: SubmitOptions
    ) -> JobHandle:
        """Submit a child of the job ``parent_id`` (`JobContext.submit` documents it)."""
        handle = self._submit(handler, payload, options, parent=parent_id, link="child")
        state = handle._state  # noqa: SLF001 - the links are the handle's internals too
        links = state.links
        if links is None or links.parent != parent_id:
            # Dropped, or an idempotency key another job holds: that job keeps
            # the links it has.
            return handle
        try:
            parent = self._table.get(parent_id)
        except JobNotFound:
            # Only a thread the handler left behind submits after its job aged
            # out of the history: no parent to list it under, nor to cancel it.
            parent = None
        with self._lock:
            if not self._claim_locked(state):
                return handle  # an idempotent twin of this call linked it first
            cancelled = False
            if parent is not None:
                parent_links = self._links_of(parent)
                parent_links.children.append(state.job.id)
                # The Dispatcher marks a job it cancels before it signals the
                # handler; the cascade's own mark comes after its reply.
                cancelled = parent_links.cancelled or parent.cancel_requested is not None
        if cancelled:
            message = f"cancelled before it started: its parent job {parent_id} was cancelled"
            self._table.finish(state, CANCELLED, error=ErrorInfo("postroom.JobCancelled", message))
        else:
            if state.job.not_before is None:
                state.waiting_to_pending()
            self._hand_off(state)
        return handle

    # --- recovery (a start with a store) --------------------------------------------

    def relink(self, state: JobState, parent: JobState) -> None:
        """A job recovered from the store with its parent, also recovered: list
        it under its parent again, and a held follow-up waits for it again.
        The starting thread, before any job runs."""
        links = state.links
        assert links is not None and links.parent == parent.job.id
        with self._lock:
            parent_links = self._links_of(parent)
            if links.kind == "followup":
                parent_links.followups.append(state.job.id)
            else:
                parent_links.children.append(state.job.id)
        if state.where == PARKED:
            parent.add_done_callback(partial(self._on_parent_done, state))

    def settle_orphan(
        self, state: JobState, status: str, result: Any, error: ErrorInfo | None
    ) -> None:
        """A held follow-up recovered from the store whose parent had finished
        (``status``, ``result``, ``error``) before the process ended: released
        with the result, or cancelled, as at the parent's end."""
        if not self._claim(state):
            return
        if status == COMPLETED.value:
            state.release(replace(state.job, payload=result))
            self._hand_off(state)
            return
        parent = state.links.parent if state.links is not None else None
        detail = f" ({error.type}: {error.message})" if error is not None else ""
        message = f"never ran: it follows job {parent}, which ended {status}{detail}"
        self._table.finish(state, CANCELLED, error=ErrorInfo("postroom.JobCancelled", message))

    # --- cancellation ---------------------------------------------------------------

    def cancelled(self, state: JobState) -> None:
        """A cancel stopped ``state``'s job: cancel its unfinished children, and theirs.

        Called by `Scheduler.cancel` on the caller's thread; each child is
        cancelled through `Scheduler.cancel`, which calls this again for it (a
        call this thread's cascade queues, see `_defer`).
        """
        self._defer(partial(self._cancel_children, state))

    def _cancel_children(self, state: JobState) -> None:
        with self._lock:
            links = self._links_of(state)
            links.cancelled = True
            children = list(links.children)
        for child_id in children:
            try:
                child = self._table.get(child_id)
            except JobNotFound:
                continue  # finished long ago, and aged out of the history
            if not child.finished:
                self._cancel(child_id, state.job.id)

    # --- helpers --------------------------------------------------------------------

    def _links_of(self, state: JobState) -> JobLinks:
        """``state``'s links, made if it has none yet; the lock is held.

        The one store of ``JobState.links`` after a job's submit (`park`):
        `Links` owns the field, and writes it under its lock only.
        """
        links = state.links
        if links is None:
            links = state.links = JobLinks()
        return links

    def _claim(self, state: JobState) -> bool:
        with self._lock:
            return self._claim_locked(state)

    @staticmethod
    def _claim_locked(state: JobState) -> bool:
        """Take a held job for its handoff (or its end): True once, for one
        caller (`JobState.unpark`, the lock held)."""
        return state.unpark()

    def _defer(self, work: Callable[[], None]) -> None:
        """Run ``work`` now, or, inside another cascade step on this thread, after it.

        An error is logged and the work list goes on: one failed step must not
        leave the rest of a chain unresolved.
        """
        pending: deque[Callable[[], None]] | None = getattr(self._local, "pending", None)
        if pending is not None:
            pending.append(work)
            return
        pending = self._local.pending = deque((work,))
        try:
            while pending:
                step = pending.popleft()
                try:
                    step()
                except Exception:  # noqa: BLE001 - logged; the cascade goes on
                    logger.exception("a follow-up or child cascade step failed")
        finally:
            self._local.pending = None
