"""The job store the actors share: job state and its transitions, the table, the ready
queue, capacity, status, snapshots, handles and the links between jobs.

It exists because a message per change of a job's state costs more than the whole
job on small jobs. Its rules:

- **One owner per field.** Every change of a job's state is a named transition of
  the store (`JobState`'s methods in ``state.py``, `JobTable`'s in ``table.py``);
  no actor and no facade assigns a field (``tests/test_job_store.py`` scans for
  it). Each transition's docstring says who calls it, on which thread, which
  fields it writes, and what makes it atomic.

- **What takes a lock.** Real locks, each for the fields named:

  - the facade's *gate*: accepting a job (the scheduler's state, the idempotency
    keys, the slots a `Capacity` hands out, the table entry). Submitters hold it
    across the accept; workers never take it on the path of a job;
  - the *table's lock*: the job counters, the load per repo, the slots given back;
  - a job's *stripe* (``state.py``, one of 256 shared locks): the fields a
    snapshot reads together, changed by `start_attempt`, `make_ready`,
    `await_retry`, `release`, `waiting_to_pending` and `resolve`;
  - the ready queue's lock: the jobs expected on their way and the workers told
    to retire (taken only while there are some); `Links`' lock: the links
    between jobs; `RetryLinks`' lock: ``retried_as``.

  The table's lock and the stripes are held for plain loads, stores and
  arithmetic only, never across a call: under the GIL a thread holding a lock
  can be switched out at any call, and every worker then queues behind it (a
  convoy, measured: ``table.py``).

- **What the GIL makes atomic**, and the store relies on, lock-free, on the path
  of every job:

  - one C call on a builtin container: a ``dict`` store, ``get`` or ``pop`` (whoever
    pops a job from the ready queue's dict, or from the table's ``active``, owns
    it: that pop decides who runs it, who ends it); a ``heappush``/``heappop`` of
    ints; a ``list(d.values())`` copy;
  - one store or load of an attribute: the transitions that take no stripe
    (`request_cancel`, `keep_exception`, `report_progress` store one field a
    snapshot or another thread may read; `to_repo`, `to_timer`, `take_timer`
    store fields only their owner at that state reads), and the reads of a
    field outside a snapshot;
  - a read of a counter written under another lock (`Capacity.used`), which can
    only be stale, never torn.

- **Without the GIL** (a free-threaded CPython, 3.13t and later, running with
  ``sys._is_gil_enabled()`` false) those steps would race: heap operations would
  interleave, and a job could be lost or run twice. The store does not take real
  locks there yet; building a scheduler raises `GILRequired` instead (``gil.py``),
  which names the remedy (``PYTHON_GIL=1``).
"""

__all__: list[str] = []
