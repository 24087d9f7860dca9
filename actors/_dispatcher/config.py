"""What the facade configures the Dispatcher with.

A module of its own so the Dispatcher's parts and the facade can name it
without importing the Dispatcher (the pool used to, and the two modules
imported each other).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from actors._repo_lock import RepoMode

__all__ = ["DispatcherConfig"]


@dataclass(frozen=True, slots=True)
class DispatcherConfig:
    """What the facade configures the Dispatcher with."""

    workers: Mapping[str, int]
    """Pool size per named queue."""
    repo_mode: RepoMode
    repo_modes: Mapping[str, RepoMode]
    restart_limit: int
    """Worker crashes (postroom bugs) tolerated within ``restart_window`` seconds."""
    restart_window: float
    max_payload_bytes: int
    """The most bytes a handler's result may encode to (`PayloadTooLarge` over it)."""

    def mode(self, repo: str) -> RepoMode:
        """The mode of ``repo``: its override, else the scheduler's."""
        return self.repo_modes.get(repo, self.repo_mode)
