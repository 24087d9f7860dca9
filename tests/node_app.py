"""An app for ``postroom worker`` tests: handlers a node process loads by import path."""

from __future__ import annotations

from typing import Any

from actors import Handlers, Scheduler

handlers = Handlers()


@handlers.handler("echo")
def echo(ctx: Any, payload: Any) -> Any:
    return payload


scheduler = Scheduler(workers=1, metrics=False, handlers=handlers)
"""A scheduler made (never started) with the same handlers: --app takes it too."""

not_an_app = 42
