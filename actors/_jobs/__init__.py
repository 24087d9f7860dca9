"""The job store the actors share: job state and its transitions, the table, the ready
queue, capacity, status, snapshots, handles and the links between jobs."""

__all__: list[str] = []
