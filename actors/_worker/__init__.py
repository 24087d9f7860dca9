"""The Worker actor, the `JobContext` a handler gets, and the cancel scope."""

__all__: list[str] = []
