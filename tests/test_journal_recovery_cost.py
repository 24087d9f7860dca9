"""What a start with a store costs per recovered job (``actors/_journal/recovery.py``).

Jobs come back with their retry policy as stored; the jobs of one policy share
one `RetryPolicy` object (it is frozen), decoded once, instead of one decoded
and checked per job: that was over half of recovering 100,000 jobs (bench E).
"""

from __future__ import annotations

from pathlib import Path

from actors import RetryPolicy
from actors._journal.batch import Batch
from actors._journal.recovery import recover
from actors._journal.store import Store
from actors._policy.handlers import HandlerSpec
from actors.messages import Job, JobAccepted

NOW = 1_767_225_600.0


def _store_with(tmp_path: Path, policies: list[RetryPolicy]) -> Store:
    store = Store(str(tmp_path / "jobs.db"))
    store.open()
    batch = Batch()
    for seq, given in enumerate(policies, start=1):
        # A new but equal object per job: as jobs submitted with their own
        # retry=RetryPolicy.exponential(...) store the same text.
        policy = RetryPolicy(given.kind, given.base, given.cap, given.jitter, given.factor)
        job = Job(f"job-{seq}", "noop", seq, seq, retry=policy, submitted_at=NOW)
        batch.fold(JobAccepted(job, "pending", None, None, None, None, None, None, False))
    store.transaction(batch.write, "cannot write to")
    return store


def test_jobs_with_one_policy_come_back_sharing_it(tmp_path: Path) -> None:
    slow = RetryPolicy.exponential(base=2.0, cap=60.0)
    fast = RetryPolicy.fixed(0.5)
    store = _store_with(tmp_path, [slow, fast, slow, slow, fast])
    try:
        handlers = {"noop": HandlerSpec("noop", lambda _ctx, _p: None, None, None, None, ())}
        recovery = store.transaction(
            lambda conn: recover(conn, handlers, {"default"}, NOW), "cannot recover from"
        )
    finally:
        store.close()
    policies = [job.retry for job in recovery.jobs]
    assert policies == [slow, fast, slow, slow, fast]  # as stored, in submission order
    assert policies[0] is policies[2] is policies[3]
    assert policies[1] is policies[4]
    assert policies[0] is not policies[1]
