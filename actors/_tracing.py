"""OpenTelemetry: one span per attempt, a child of the span that submitted the job.

Optional twice over: OpenTelemetry is an extra (``pip install 'postroom[otel]'``),
and a scheduler traces only when asked (``Scheduler(tracing=True)``). This
module imports nothing of OpenTelemetry at import time: `Tracing` does, when a
scheduler that asked for it is built. A scheduler without it holds no `Tracing`,
and its submit path and workers test one attribute for None, nothing more
(bench A, bench/README.md).

The submitter's context crosses as the W3C Trace Context strings
(``traceparent``, then ``tracestate`` if any, one line each) in `Job.trace`:
plain data, so it travels with the job through the codec and into the journal
(``jobs.trace``), and a job brought back after a restart is still a child of
the span that submitted it.
"""

from __future__ import annotations

import hashlib
import importlib.util
from typing import TYPE_CHECKING, Any

from actors._errors import InvalidArgument

if TYPE_CHECKING:
    from actors.messages import Job, Outcome

__all__ = ["Tracing", "repo_hash", "tracing_of"]

_SCOPE = "postroom"
"""The instrumentation scope spans are made under."""


def repo_hash(repo: str) -> str:
    """What a span says of a repo: the first 16 hex digits of its SHA-256.

    A repo names a customer's repository, a tenant, a device: data that should
    not leave in traces. The hash still groups one repo's attempts together.
    """
    return hashlib.sha256(repo.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def tracing_of(option: object) -> Tracing | None:
    """The `Tracing` a scheduler's ``tracing`` option asks for, or None.

    Raises:
        InvalidArgument: ``option`` is neither a bool nor a tracer provider, or
            tracing is asked for and OpenTelemetry is not installed.
    """
    if option is False or option is None:
        return None
    if option is not True and not callable(getattr(option, "get_tracer", None)):
        msg = f"tracing must be a bool or a TracerProvider, not {type(option).__name__}"
        raise InvalidArgument(msg)
    missing = "tracing needs OpenTelemetry: pip install 'postroom[otel]'"
    try:
        if importlib.util.find_spec("opentelemetry.trace") is None:
            raise InvalidArgument(missing)
        return Tracing(None if option is True else option)
    except ImportError:  # found, but broken or only in part
        raise InvalidArgument(missing) from None


class Tracing:
    """Captures the submitter's context, and makes the span of each attempt.

    Args:
        provider: the ``TracerProvider`` to make spans with (None: the one
            OpenTelemetry holds globally; one set after the scheduler is built
            still serves, through OpenTelemetry's proxy tracer).
    """

    __slots__ = ("_propagator", "_trace", "_tracer")

    def __init__(self, provider: Any) -> None:
        from opentelemetry import trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self._trace = trace
        # Got once: getting one per span cost ~6 us of its ~57. From the global
        # provider it is a proxy that follows a provider set later.
        self._tracer = trace.get_tracer(_SCOPE, tracer_provider=provider)
        # W3C Trace Context whatever the application's global propagator is:
        # the job carries exactly traceparent and tracestate.
        self._propagator = TraceContextTextMapPropagator()

    def capture(self) -> str | None:
        """The calling thread's current span as ``traceparent[\\ntracestate]``,
        or None when there is no valid span (nothing to be a child of)."""
        carrier: dict[str, str] = {}
        self._propagator.inject(carrier)
        parent = carrier.get("traceparent")
        if parent is None:
            return None
        state = carrier.get("tracestate")
        return parent if not state else f"{parent}\n{state}"

    def start(self, job: Job, *, current: bool = True) -> tuple[Any, Any]:
        """Start the span of ``job``'s attempt; `end` takes what this returns.

        ``current``: the span is current on this thread until `end` (a worker's:
        so spans a handler makes are its children). A worker node's attempt
        is not: its span is made by the node's link, on the scheduler's
        actor loop, around the lease, and ends when the lease does.
        """
        from opentelemetry import context

        parent = None
        if job.trace is not None:
            parent_line, _, state = job.trace.partition("\n")
            carrier = {"traceparent": parent_line}
            if state:
                carrier["tracestate"] = state
            parent = self._propagator.extract(carrier)
        trace = self._trace
        attributes: dict[str, str | int] = {
            "postroom.job.id": job.id,
            "postroom.job.handler": job.handler,
            "postroom.job.queue": job.queue,
            "postroom.job.attempt": job.attempt,
        }
        if job.repo is not None:
            attributes["postroom.job.repo_hash"] = repo_hash(job.repo)
        span = self._tracer.start_span(
            f"postroom run {job.handler}",
            context=parent,
            kind=trace.SpanKind.CONSUMER,
            attributes=attributes,
        )
        if not current:
            return span, None
        token = context.attach(trace.set_span_in_context(span, parent))
        return span, token

    def end(
        self,
        started: tuple[Any, Any],
        outcome: Outcome | None,
        exc: BaseException | None,
        *,
        interrupted: bool = False,
    ) -> None:
        """End an attempt's span with its outcome; a failed one with status
        ERROR and its exception (``exc``, or the outcome's error as an event
        when the attempt was stopped without one). No outcome: the worker
        itself failed (a postroom bug, reported as such); the span says error.
        ``interrupted``: a node was lost with the attempt (outcome
        ``interrupted``, status ERROR)."""
        from opentelemetry import context

        span, token = started
        if token is not None:
            context.detach(token)
        if outcome is None:
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, "postroom error"))
            span.end()
            return
        if interrupted:
            told = "interrupted"
        else:
            told = "timed_out" if outcome.timed_out else outcome.status
        span.set_attribute("postroom.job.outcome", told)
        error = outcome.error
        if exc is not None:
            span.record_exception(exc)
        elif error is not None:
            span.add_event(
                "exception",
                {
                    "exception.type": error.type,
                    "exception.message": error.message,
                    "exception.stacktrace": error.traceback,
                },
            )
        if outcome.status == "failed" or interrupted:
            trace = self._trace
            message = error.message if error is not None else None
            span.set_status(trace.Status(trace.StatusCode.ERROR, message))
        span.end()
