"""The parts of the `Scheduler` facade: submit, schedules, metrics, the job query,
shutdown."""

__all__: list[str] = []
