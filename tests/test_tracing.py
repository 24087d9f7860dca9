"""OpenTelemetry (``Scheduler(tracing=...)``): a span per attempt, a child of the
span that submitted the job, across retries and restarts; and nothing of
OpenTelemetry imported unless a scheduler asks for it.

Spans are read back from the SDK's `InMemorySpanExporter`, through a tracer
provider of the test's own (the global one can be set only once per process).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actors import InvalidArgument, JobContext, JobStatus, ManualClock, RetryPolicy, Scheduler
from actors.messages import ErrorInfo, Run, Welcome
from tests.helpers import WAIT, wait_until
from tests.nodes import ScriptedNode

ROOT = Path(__file__).resolve().parent.parent

_NO_OTEL = (
    "OpenTelemetry is not installed: pip install -e '.[test]' (or 'postroom[otel]') "
    "to run the tracing tests"
)

try:
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import StatusCode
except ImportError:  # the extra is not installed: the span tests skip, saying why
    OTEL = False
else:
    OTEL = True

needs_otel = pytest.mark.skipif(not OTEL, reason=_NO_OTEL)


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    # SimpleSpanProcessor exports as a span ends, on the ending thread: the
    # worker ends an attempt's span before the job's handle resolves.
    made = TracerProvider()
    made.add_span_processor(SimpleSpanProcessor(exporter))
    yield made
    made.shutdown()


def _scheduler(provider: Any, **options: Any) -> Scheduler:
    sched = Scheduler(workers=2, tracing=provider, **options)

    @sched.handler("ok")
    def ok(ctx: JobContext, payload: Any) -> Any:
        return payload

    @sched.handler("boom")
    def boom(ctx: JobContext, payload: Any) -> Any:
        raise ValueError(f"bad input {payload}")

    @sched.handler("flaky", max_retries=1, retry=RetryPolicy.fixed(3600))
    def flaky(ctx: JobContext, payload: Any) -> Any:
        if ctx.attempt == 1:
            raise RuntimeError("first attempt fails")
        return ctx.attempt

    @sched.handler("parent")
    def parent(ctx: JobContext, payload: Any) -> Any:
        return ctx.submit("ok", payload).id

    return sched


def _attempts(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name.startswith("postroom run ")]


def _child_of(span: ReadableSpan, parent: Any) -> bool:
    context = parent.get_span_context()
    return (
        span.parent is not None
        and span.parent.span_id == context.span_id
        and span.context.trace_id == context.trace_id
    )


@needs_otel
def test_one_span_per_attempt_a_child_of_the_submitting_span(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """The attempt's span has the submitter's trace id and its span as parent,
    and names the job (its repo hashed, never raw) and its outcome."""
    tracer = provider.get_tracer("the-service")
    with _scheduler(provider) as sched:
        with tracer.start_as_current_span("request") as request:
            handle = sched.submit("ok", 7, repo="acme/secret-repo", queue="default")
        assert handle.result(timeout=WAIT) == 7
    [span] = _attempts(exporter)
    assert _child_of(span, request)
    attributes = dict(span.attributes or {})
    assert attributes == {
        "postroom.job.id": handle.id,
        "postroom.job.handler": "ok",
        "postroom.job.queue": "default",
        "postroom.job.attempt": 1,
        "postroom.job.repo_hash": hashlib.sha256(b"acme/secret-repo").hexdigest()[:16],
        "postroom.job.outcome": "completed",
    }
    assert span.status.status_code is not StatusCode.ERROR
    assert all("secret-repo" not in str(value) for value in attributes.values())


@needs_otel
def test_a_failed_attempt_records_its_exception_and_status_error(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    tracer = provider.get_tracer("the-service")
    with _scheduler(provider) as sched:
        with tracer.start_as_current_span("request") as request:
            handle = sched.submit("boom", 3)
        handle.wait(timeout=WAIT)
    [span] = _attempts(exporter)
    assert _child_of(span, request)
    assert span.status.status_code is StatusCode.ERROR
    assert dict(span.attributes or {})["postroom.job.outcome"] == "failed"
    [event] = [e for e in span.events if e.name == "exception"]
    event_attributes = dict(event.attributes or {})
    assert event_attributes["exception.type"] == "ValueError"
    assert event_attributes["exception.message"] == "bad input 3"
    assert "ValueError: bad input 3" in str(event_attributes["exception.stacktrace"])


@needs_otel
def test_a_timed_out_attempt_is_spanned_with_postroom_error(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """An attempt with a deadline is spanned too; stopped at it, its span says
    ``timed_out``, status ERROR, with postroom's `JobTimedOut` as its event."""
    clock = ManualClock()
    started = threading.Event()
    with _scheduler(provider, clock=clock) as sched:

        @sched.handler("slow", timeout=1)
        def slow(ctx: JobContext, payload: Any) -> Any:
            started.set()
            ctx.wait(WAIT)  # returns as soon as the deadline signals it

        handle = sched.submit("slow", None)
        assert started.wait(WAIT)
        clock.advance(1)
        handle.wait(timeout=WAIT)
    [span] = _attempts(exporter)
    assert span.parent is None  # submitted with no span current: a root
    assert dict(span.attributes or {})["postroom.job.outcome"] == "timed_out"
    assert span.status.status_code is StatusCode.ERROR
    [event] = [e for e in span.events if e.name == "exception"]
    assert dict(event.attributes or {})["exception.type"] == "postroom.JobTimedOut"


@needs_otel
def test_each_retry_is_a_span_of_its_own_under_the_same_submitter(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    clock = ManualClock()
    tracer = provider.get_tracer("the-service")
    with _scheduler(provider, clock=clock) as sched:
        with tracer.start_as_current_span("request") as request:
            handle = sched.submit("flaky", None)
        wait_until(lambda: sched.job(handle.id).status is JobStatus.RETRYING, "the retry")
        clock.advance(3600)
        assert handle.result(timeout=WAIT) == 2
    first, second = sorted(_attempts(exporter), key=lambda s: s.start_time or 0)
    assert [dict(s.attributes or {})["postroom.job.attempt"] for s in (first, second)] == [1, 2]
    assert _child_of(first, request)
    assert _child_of(second, request)
    assert first.status.status_code is StatusCode.ERROR
    assert dict(second.attributes or {})["postroom.job.outcome"] == "completed"


@needs_otel
def test_the_attempt_after_a_restart_is_still_a_child_of_the_submitter(
    provider: TracerProvider, exporter: InMemorySpanExporter, tmp_path: Path
) -> None:
    """The context is stored with the job (``jobs.trace``): the retry that runs
    after a restart is a child of the span that submitted the job before it."""
    clock = ManualClock()
    store = str(tmp_path / "jobs.db")
    tracer = provider.get_tracer("the-service")
    first = _scheduler(provider, clock=clock, store=store).start()
    try:
        with tracer.start_as_current_span("request") as request:
            handle = first.submit("flaky", None)
        wait_until(lambda: first.job(handle.id).status is JobStatus.RETRYING, "the retry")
    finally:
        first.shutdown(graceful=False, timeout=0.0)
    assert len(_attempts(exporter)) == 1
    second = _scheduler(provider, clock=clock, store=store).start()
    try:
        clock.advance(3600)
        wait_until(lambda: second.job(handle.id).status is JobStatus.COMPLETED, "the job")
    finally:
        second.shutdown()
    before, after = sorted(_attempts(exporter), key=lambda s: s.start_time or 0)
    assert dict(after.attributes or {})["postroom.job.attempt"] == 2
    assert _child_of(before, request)
    assert _child_of(after, request)


@needs_otel
def test_a_manual_retry_and_a_child_job_are_children_of_who_made_them(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """`retry` captures its caller's span; ``ctx.submit`` the attempt's span."""
    tracer = provider.get_tracer("the-service")
    with _scheduler(provider) as sched:
        failed = sched.submit("boom", 1)  # no span around it: its attempt is a root
        failed.wait(timeout=WAIT)
        with tracer.start_as_current_span("operator") as operator:
            again = sched.retry(failed.id)
        again.wait(timeout=WAIT)
        kid_id = sched.submit("parent", 5).result(timeout=WAIT)
        wait_until(lambda: sched.job(kid_id).status is JobStatus.COMPLETED, "the child")
    spans = {dict(s.attributes or {})["postroom.job.id"]: s for s in _attempts(exporter)}
    assert spans[failed.id].parent is None
    assert _child_of(spans[again.id], operator)
    parent_span = next(s for s in spans.values() if s.name == "postroom run parent")
    assert _child_of(spans[kid_id], parent_span)


@needs_otel
def test_a_job_on_a_worker_node_is_spanned_around_its_lease(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """The context crosses the wire with the job (the codec carries `Job.trace`),
    and the scheduler makes the attempt's span around the lease: the node's
    failure, as data, is on it."""
    tracer = provider.get_tracer("the-service")
    with Scheduler(workers=0, metrics=False, tracing=provider) as sched:
        sched.handler("echo")(lambda ctx, payload: payload)
        endpoint = sched.listen("tcp://127.0.0.1:0", insecure=True, heartbeat=30.0).endpoint
        node = ScriptedNode(endpoint)
        try:
            assert isinstance(node.hello(), Welcome)
            with tracer.start_as_current_span("request") as request:
                handle = sched.submit("echo", 1)
            node.credit(1)
            run = node.expect(Run)
            assert run.job.trace is not None
            assert run.job.trace.split("-")[1] == f"{request.get_span_context().trace_id:032x}"
            error = ErrorInfo("KeyError", "'sha'", "Traceback ...\nKeyError: 'sha'\n")
            node.finish(run, None, status="failed", error=error, retryable=False)
            handle.wait(timeout=WAIT)
        finally:
            node.close()
    [span] = _attempts(exporter)
    assert _child_of(span, request)
    assert span.status.status_code is StatusCode.ERROR
    assert dict(span.attributes or {})["postroom.job.outcome"] == "failed"
    [event] = [e for e in span.events if e.name == "exception"]
    assert dict(event.attributes or {})["exception.type"] == "KeyError"


@needs_otel
def test_without_tracing_a_job_carries_no_context(provider: TracerProvider) -> None:
    """Off by default, even with OpenTelemetry installed and a span current."""
    tracer = provider.get_tracer("the-service")
    with Scheduler(workers=1) as sched:
        sched.handler("ok")(lambda ctx, payload: payload)
        with tracer.start_as_current_span("request"):
            handle = sched.submit("ok", 1)
        assert handle.result(timeout=WAIT) == 1
        assert sched._table.get(handle.id).job.trace is None


def test_tracing_takes_a_bool_or_a_tracer_provider() -> None:
    with pytest.raises(InvalidArgument, match="tracing"):
        Scheduler(tracing="yes")  # type: ignore[arg-type]


_NOTHING_IMPORTED = """
import sys
from actors import Scheduler
with Scheduler(workers=1) as sched:
    sched.handler("ok")(lambda ctx, payload: payload)
    assert sched.submit("ok", 1).result(timeout=5) == 1
loaded = sorted(
    name for name, module in sys.modules.items()
    if name.startswith("opentelemetry") and module is not None
)
print(",".join(loaded) or "none")
"""

_HIDDEN = """
import sys
sys.modules["opentelemetry"] = None  # as if not installed: importing it raises ImportError
"""


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_nothing_of_opentelemetry_is_imported_unless_asked() -> None:
    """Importing postroom and running a job leave OpenTelemetry unimported
    (installed or not): a service that has it for other reasons pays nothing."""
    done = _python(_NOTHING_IMPORTED)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "none"


def test_without_the_extra_postroom_runs_and_tracing_says_how_to_install_it() -> None:
    code = (
        _HIDDEN
        + _NOTHING_IMPORTED
        + """
from actors import InvalidArgument
try:
    Scheduler(tracing=True)
except InvalidArgument as exc:
    print(exc)
"""
    )
    done = _python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "none",
        "tracing needs OpenTelemetry: pip install 'postroom[otel]'",
    ]
