"""OpenTelemetry: one span per execution, around its handler, where the handler runs.

Active where the OpenTelemetry API is installed (the ``otel`` extra) and the project set up a
tracer provider (the SDK, or its auto-instrumentation); without a provider no span is made
at all. The span is started by whichever process runs the handler (the scheduler's
threads, the process executor's child, a Celery or ``django_tasks`` worker), so the
handler's own spans (an HTTP client's, the database's) nest under it.

The span is named ``scheduling <kind> <type>`` ("scheduling scan http"), of kind CONSUMER,
with the FaaS attributes of a timer (``faas.trigger`` "timer", or "other" for a manual run;
``faas.cron`` for a cron schedule; ``faas.time``, the occurrence) and the execution's
``scheduling.*`` ids. A failure, timeout or interruption sets the status ERROR with the error
text, and a handler's exception is recorded on the span.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ..logs import execution_fields
from ..models import FAILURE_STATUSES, Execution, Status, TriggerKind, TriggerType

try:
    from opentelemetry import trace
except ImportError:  # the `otel` extra is not installed
    trace = None  # type: ignore[assignment]

TRACER_NAME = "scheduling"


def _attributes(execution: Execution, fields: dict[str, Any]) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "faas.trigger": "other" if execution.trigger == TriggerKind.MANUAL else "timer",
        "faas.time": fields["scheduled_for"],
        "scheduling.execution_id": execution.pk,
        "scheduling.schedule_id": execution.schedule_id,
        "scheduling.tenant_id": execution.tenant_id,
        "scheduling.kind": fields["kind"],
        "scheduling.type": fields["type_key"],
        "scheduling.attempt": execution.attempt,
        "scheduling.trigger": execution.trigger,
        "scheduling.lateness_ms": fields["lateness_ms"],
    }
    schedule = execution.schedule if execution.schedule_id else None
    if schedule is not None and schedule.trigger_type == TriggerType.CRON:
        attributes["faas.cron"] = schedule.cron_expression
    # OpenTelemetry attributes take no None: leave those out.
    return {key: value for key, value in attributes.items() if value is not None}


def _no_outcome(status: str, error: str) -> None:
    """The outcome of an execution run without a span: nothing to record."""


@contextmanager
def execution_span(execution: Execution) -> Iterator[Callable[[str, str], None]]:
    """Run the body inside ``execution``'s span; yield what records its outcome.

    ``outcome(status, error)`` sets the span's status from the execution's final status.
    """
    if trace is None or isinstance(
        trace.get_tracer_provider(), (trace.ProxyTracerProvider, trace.NoOpTracerProvider)
    ):
        # No tracer provider is set up: every span would be a no-op, yet building its name
        # and attributes was a third of a trivial execution's time.
        yield _no_outcome
        return
    fields = execution_fields(execution)
    name = " ".join(part for part in ("scheduling", fields["kind"], fields["type_key"]) if part)
    tracer = trace.get_tracer(TRACER_NAME)
    with tracer.start_as_current_span(
        name, kind=trace.SpanKind.CONSUMER, attributes=_attributes(execution, fields)
    ) as span:

        def outcome(status: str, error: str) -> None:
            span.set_attribute("scheduling.status", status)
            if status in FAILURE_STATUSES:
                span.set_status(trace.Status(trace.StatusCode.ERROR, error[:1000] or status))
            elif status == Status.SUCCEEDED:
                span.set_status(trace.Status(trace.StatusCode.OK))

        yield outcome


def record_exception(exc: BaseException) -> None:
    """Record a handler's exception on the current span (the execution's)."""
    if trace is not None:
        trace.get_current_span().record_exception(exc)
