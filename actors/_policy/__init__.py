"""Job policies and checks: retry and backoff, priorities, named queues, handler
specs, argument and payload checks."""

__all__: list[str] = []
