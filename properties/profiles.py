"""How many examples the properties run: quick by default, more on request.

The default run stays quick (it is part of the README's test command). To run
the stateful machines with 800 examples each, load the ``thorough`` profile,
with hypothesis' own option or an environment variable::

    .venv/bin/python -m pytest properties --hypothesis-profile thorough
    POSTROOM_HYPOTHESIS_PROFILE=thorough .venv/bin/python -m pytest properties
"""

from __future__ import annotations

import os

from hypothesis import settings

__all__ = ["PROFILE_VARIABLE", "examples", "load"]

PROFILE_VARIABLE = "POSTROOM_HYPOTHESIS_PROFILE"

settings.register_profile("thorough", max_examples=800)


def load() -> None:
    """Load the profile the environment names, if any (conftest calls this)."""
    name = os.environ.get(PROFILE_VARIABLE)
    if name:
        settings.load_profile(name)


def examples(usual: int) -> int:
    """``usual``, unless the loaded profile sets its own ``max_examples``.

    A machine's ``settings(max_examples=...)`` would otherwise override any
    profile, and a profile meant to raise every machine's count would have no
    effect on them.
    """
    loaded = settings.default.max_examples
    return usual if loaded == settings.get_profile("default").max_examples else loaded
