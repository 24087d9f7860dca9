"""The README's tour of postroom, as a file you can run: ``python examples/quickstart.py``."""

import asyncio

from actors import Priority, RetryPolicy, Scheduler

sched = Scheduler(workers=4)


@sched.handler("build", max_retries=3, timeout=5, retry=RetryPolicy.exponential(base=0.1, cap=2))
def build(ctx, payload):
    for step in (1, 2, 3):
        if ctx.wait(0.02):  # a sleep that wakes at once on cancel or timeout
            return None  # told to stop: the attempt ends cancelled (or timed out)
        ctx.progress(step / 3, f"step {step}/3")
    return {"sha": payload["sha"], "ok": True}


async def main():
    return await sched.submit("build", {"sha": "fed"})  # waits without blocking the loop


sched.start()  # or: `with Scheduler(...) as sched:`
key = "repo-42-abc"
h = sched.submit("build", {"sha": "abc"}, repo="repo-42", priority=Priority.USER_BLOCKING,
                 idempotency_key=key)
assert sched.submit("build", {"sha": "abc"}, repo="repo-42", idempotency_key=key) == h
later = sched.submit("build", {"sha": "def"}, repo="repo-42", delay=60)  # due in a minute
print(h.result(timeout=10))  # {'sha': 'abc', 'ok': True}
print(later.cancel(), sched.job(later.id).status)  # cancelled cancelled: it was waiting
print(sched.job(h.id).attempts, asyncio.run(main()))  # 1 {'sha': 'fed', 'ok': True}
print(sched.stats())  # Stats(submitted=3, completed=2, failed=0, cancelled=1, ...)
sched.shutdown()  # graceful: lets queued and running jobs finish, joins every thread
