"""The dashboard: one HTML page with its CSS and script inline, served at ``/``.

The page fetches nothing but the admin API's own endpoints (relative URLs, so
an app mounted under a prefix works), which is why it works offline and needs
no build step. `dashboard.html` ships in the wheel as package data.
"""

from __future__ import annotations

import functools
from importlib import resources

__all__ = ["html"]


@functools.cache
def html() -> bytes:
    """The dashboard's HTML (UTF-8), read from the package once and kept."""
    return resources.files(__package__).joinpath("dashboard.html").read_bytes()
