"""Seeded bugs: a property is only worth something if it fails on a broken system.

`patched` plants a bug for the length of a ``with`` block; `failure_of` runs a
stateful machine against it and returns what failed, for the caller to check
it failed for the right reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.errors import Flaky
from hypothesis.stateful import RuleBasedStateMachine

__all__ = ["failure_of", "patched"]


@contextmanager
def patched(obj: object, name: str, value: object) -> Iterator[None]:
    """Set ``obj.name`` to ``value`` inside the block, and back after it."""
    original = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, original)


def failure_of(machine: type[RuleBasedStateMachine], *, max_examples: int, steps: int) -> str:
    """Run ``machine`` with the bug already seeded; the failure's message(s).

    Fails the calling test if nothing failed. The examples are the same every
    run (a catch is not luck), and the run stops at the first failure (no
    shrinking). Hypothesis replays a failure to confirm it; with real threads
    the replay may not fail the same way, and it then reports it as Flaky,
    which is a catch all the same: the messages of every failed teardown
    (where a machine checks its run) are returned with it, so the caller can
    still tell what was caught.
    """
    messages: list[str] = []

    def teardown(self: RuleBasedStateMachine) -> None:
        # What the teardown's checks found, kept: if the replay of a failure
        # goes differently (threads), hypothesis reports only that it did.
        try:
            machine.teardown(self)
        except AssertionError as exc:
            messages.append(str(exc))
            raise

    seeded = type(f"Seeded{machine.__name__}", (machine,), {"teardown": teardown})
    seeded.TestCase.settings = settings(
        max_examples=max_examples,
        derandomize=True,
        stateful_step_count=steps,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    with pytest.raises((AssertionError, Flaky)) as caught:
        seeded.TestCase().runTest()
    found = caught.value
    inner = found.exceptions if isinstance(found, BaseExceptionGroup) else (found,)
    return "\n".join([*messages, *(str(exc) for exc in inner)])
