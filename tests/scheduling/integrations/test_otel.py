"""OpenTelemetry, with the real SDK and its in-memory exporter: one span per execution with the
FaaS timer attributes and the execution's ids, the handler's own spans nested under it, status
ERROR with the exception on failure."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.utils import timezone

from scheduling import runner
from scheduling.models import Status
from scheduling.registry import task_type, task_types
from tests.factories import make_task, make_tenant, run_once

pytest.importorskip("opentelemetry.sdk", reason="opentelemetry-sdk is not installed (.[test])")

from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)

pytestmark = pytest.mark.django_db

EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module", autouse=True)
def tracer_provider() -> None:
    # A process has one global provider: set once, for the tests of this module (and harmless
    # to the others, whose spans go to memory).
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
        trace.set_tracer_provider(provider)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    EXPORTER.clear()
    yield EXPORTER
    EXPORTER.clear()


@pytest.fixture
def traced_task() -> Iterator[str]:
    @task_type("test_traced", label="Test: traced")
    def traced(task, context):
        with trace.get_tracer("handler").start_as_current_span("fetch the feed"):
            if context.options.get("fail"):
                raise ConnectionError("the feed is down")
        return {"ok": True}

    yield "test_traced"
    task_types.unregister("test_traced")


def test_one_span_per_execution_with_the_handlers_spans_under_it(spans, traced_task):
    tenant = make_tenant()
    task = make_task(
        tenant=tenant,
        task_type=traced_task,
        options={},
        trigger_type="cron",
        cron_expression="*/5 * * * *",
    )
    execution = run_once(task)
    assert execution.status == Status.SUCCEEDED

    [handler, span] = spans.get_finished_spans()  # the inner one ends first
    assert span.name == "scheduling task test_traced"
    assert span.kind == trace.SpanKind.CONSUMER
    assert span.status.status_code == trace.StatusCode.OK
    attributes = dict(span.attributes)
    assert attributes == {
        "faas.trigger": "timer",
        "faas.cron": "*/5 * * * *",
        "faas.time": execution.scheduled_for.isoformat(),
        "scheduling.execution_id": execution.pk,
        "scheduling.schedule_id": task.pk,
        "scheduling.tenant_id": tenant.pk,
        "scheduling.kind": "task",
        "scheduling.type": "test_traced",
        "scheduling.attempt": 1,
        "scheduling.trigger": "schedule",
        "scheduling.lateness_ms": attributes["scheduling.lateness_ms"],
        "scheduling.status": "succeeded",
    }
    assert attributes["scheduling.lateness_ms"] >= 0
    assert handler.name == "fetch the feed"
    assert handler.parent is not None
    assert handler.parent.span_id == span.context.span_id
    assert handler.context.trace_id == span.context.trace_id


def test_a_failure_sets_error_and_records_the_exception(spans, traced_task):
    task = make_task(tenant=make_tenant(), task_type=traced_task, options={"fail": True})
    execution = run_once(task)
    assert execution.status == Status.FAILED

    span = next(s for s in spans.get_finished_spans() if s.name.startswith("scheduling"))
    assert span.status.status_code == trace.StatusCode.ERROR
    assert span.status.description == "ConnectionError: the feed is down"
    [event] = [e for e in span.events if e.name == "exception"]
    assert event.attributes["exception.type"] == "ConnectionError"


def test_a_manual_run_is_not_a_timer(spans, traced_task):
    task = make_task(tenant=None, task_type=traced_task, options={})
    execution = runner.claim(task, timezone.now(), claimed_by="test", trigger="manual")
    assert execution is not None
    runner.execute(execution.pk, worker="host:1")

    span = next(s for s in spans.get_finished_spans() if s.name.startswith("scheduling"))
    assert span.attributes["faas.trigger"] == "other"
    assert "scheduling.tenant_id" not in span.attributes  # a system schedule: no tenant
