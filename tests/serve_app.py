"""An app for ``postroom serve`` tests: a scheduler whose jobs come from a schedule.

The side file its jobs write to is named by ``POSTROOM_TEST_SIDE``.
"""

from __future__ import annotations

import os

from actors import Scheduler
from tests.node_app import handlers


def make() -> Scheduler:
    """A started scheduler with no worker of its own (its jobs run on nodes)
    and a schedule, which only a running scheduler takes."""
    sched = Scheduler(workers=0, handlers=handlers, metrics=False).start()
    side = os.environ["POSTROOM_TEST_SIDE"]
    sched.every("record", 0.1, {"file": side, "repo": "r", "seq": 0}, id="tick")
    return sched


not_a_scheduler = 42
