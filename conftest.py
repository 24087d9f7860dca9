"""Fixtures shared by both test trees (``tests/`` and ``properties/``): every test
must leave no postroom thread behind.

One file at the root, which pytest loads for every test under it, so the two
trees cannot drift apart (they once had a copy each).

It also loads the hypothesis profile the environment names
(``properties/profiles.py``): ``thorough`` runs each stateful machine 800 times.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from properties import profiles

profiles.load()


def _postroom_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("postroom-")}


@pytest.fixture(autouse=True)
def no_leftover_threads() -> Iterator[None]:
    """Fail a test that leaves a postroom actor (thread) running."""
    before = _postroom_threads()
    yield
    left = _postroom_threads() - before
    for thread in left:
        thread.join(timeout=2.0)
    left = {t for t in left if t.is_alive()}
    assert not left, f"test left postroom threads running: {sorted(t.name for t in left)}"
