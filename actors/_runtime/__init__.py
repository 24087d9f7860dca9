"""The actor runtime: actor base classes, the shared-thread loop and inboxes, the
callback thread, the reaper that joins every thread, the exit and fork hooks."""

__all__: list[str] = []
