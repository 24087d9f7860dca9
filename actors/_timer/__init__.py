"""The Timer actor and the clocks it reads."""

__all__: list[str] = []
