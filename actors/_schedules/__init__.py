"""Schedules: triggers, the misfire decision, the book of schedules."""

__all__: list[str] = []
