"""The Dispatcher actor and the parts it owns: the worker pool, the figures, the
schedule driver."""

__all__: list[str] = []
