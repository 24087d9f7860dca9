"""The components the `Scheduler` facade holds, one module each: its life (``life``),
taking jobs in (``submit``), schedules, manual retry (``retry``), metrics, and
shutdown and the crash path (``lifecycle``)."""

__all__: list[str] = []
