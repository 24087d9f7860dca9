"""The journal: the SQLite store that keeps jobs, runs and schedules across a crash.

- ``schema.py``: the tables and their forward migrations;
- ``store.py``: `Store`, the one writer of a store file, and SQLite's errors
  as postroom's (`translate`);
- ``batch.py``: `Batch`, the records of one transaction folded per job;
- ``journal.py``: the `Journal` actor, which folds the records every part
  posts and commits them in groups;
- ``link.py``: `JournalLink`, what the other parts hold to post records and
  wait for their commit;
- ``schedules.py``: the schedules' rows, written from their records and read
  back to restore them;
- ``recovery.py``: what a start finds in the store, and what it makes of it;
- ``reader.py``: queries of a store (jobs, runs), for the facade and the CLI;
- ``cli.py``: ``postroom jobs``, ``job`` and ``prune``.

docs/durability.md says what survives what.
"""

__all__: list[str] = []
