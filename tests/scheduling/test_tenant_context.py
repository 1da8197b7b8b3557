"""SCHEDULING_TENANT_CONTEXT: every handler of a tenant's schedule runs inside the tenant's
context, which is left afterwards, also when the handler fails; failing to enter it fails the
execution with the reason; the scheduler's own bookkeeping stays outside it."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import pytest
from django.core.checks import run_checks
from django.test import override_settings

from scheduling.models import Status
from scheduling.registry import task_type, task_types
from tests.factories import make_task, make_tenant, run_once

pytestmark = pytest.mark.django_db

# What a tenancy package keeps per context (django-multitenant, django-scopes): the tenant.
CURRENT: contextvars.ContextVar[str | None] = contextvars.ContextVar("current", default=None)
EVENTS: list[str] = []
HERE = "tests.scheduling.test_tenant_context"


@contextlib.contextmanager
def recording_context(tenant) -> Iterator[None]:
    EVENTS.append(f"enter {tenant.slug}")
    token = CURRENT.set(tenant.slug)
    try:
        yield
    finally:
        CURRENT.reset(token)
        EVENTS.append(f"exit {tenant.slug}")


def refusing_context(tenant):
    raise LookupError(f"no schema for {tenant.slug}")


@contextlib.contextmanager
def failing_exit_context(tenant) -> Iterator[None]:
    yield
    raise RuntimeError("could not reset the connection")


@pytest.fixture(autouse=True)
def clean_events():
    EVENTS.clear()
    yield
    EVENTS.clear()


@pytest.fixture
def tenant_probe():
    """A task type that reports the tenant its context holds, and fails when asked to."""

    @task_type("test_tenant_probe", label="Test: tenant probe")
    def probe(task, context):
        EVENTS.append(f"handler sees {CURRENT.get()}")
        if context.options.get("fail"):
            raise RuntimeError("the handler failed")
        return {"tenant": CURRENT.get()}

    yield "test_tenant_probe"
    task_types.unregister("test_tenant_probe")


@override_settings(SCHEDULING_TENANT_CONTEXT=f"{HERE}.recording_context")
def test_the_handler_runs_inside_its_tenants_context_which_is_left_afterwards(tenant_probe):
    acme, globex = make_tenant(slug="acme"), make_tenant(slug="globex")
    first = run_once(make_task(tenant=acme, task_type=tenant_probe, options={}))
    second = run_once(make_task(tenant=globex, task_type=tenant_probe, options={}))

    assert first.status == second.status == Status.SUCCEEDED
    assert first.result == {"tenant": "acme"}
    assert second.result == {"tenant": "globex"}  # nothing carried over from the first run
    assert EVENTS == [
        "enter acme",
        "handler sees acme",
        "exit acme",
        "enter globex",
        "handler sees globex",
        "exit globex",
    ]
    assert CURRENT.get() is None  # the worker is back in the default context


@override_settings(SCHEDULING_TENANT_CONTEXT=f"{HERE}.recording_context")
def test_the_context_is_left_when_the_handler_fails(tenant_probe):
    task = make_task(
        tenant=make_tenant(slug="acme"), task_type=tenant_probe, options={"fail": True}
    )
    execution = run_once(task)

    assert execution.status == Status.FAILED
    assert execution.error == "RuntimeError: the handler failed"
    assert EVENTS == ["enter acme", "handler sees acme", "exit acme"]
    assert CURRENT.get() is None


@override_settings(SCHEDULING_TENANT_CONTEXT=f"{HERE}.refusing_context")
def test_a_context_that_cannot_be_entered_fails_the_execution_with_the_reason(tenant_probe):
    task = make_task(tenant=make_tenant(slug="acme"), task_type=tenant_probe, options={})
    execution = run_once(task)

    assert execution.status == Status.FAILED
    assert execution.error == (
        "The tenant's context could not be entered (SCHEDULING_TENANT_CONTEXT): "
        "LookupError: no schema for acme"
    )
    assert EVENTS == []  # the handler never ran
    task.refresh_from_db()
    assert task.last_status == Status.FAILED  # the outcome is recorded as any failure


@override_settings(SCHEDULING_TENANT_CONTEXT=f"{HERE}.failing_exit_context")
def test_a_context_that_cannot_be_left_fails_the_execution(tenant_probe):
    task = make_task(tenant=make_tenant(slug="acme"), task_type=tenant_probe, options={})
    execution = run_once(task)

    assert execution.status == Status.FAILED
    assert execution.error.startswith("The tenant's context could not be left")
    assert "could not reset the connection" in execution.error


@override_settings(SCHEDULING_TENANT_CONTEXT=f"{HERE}.recording_context")
def test_a_system_schedule_runs_without_a_tenant_context(tenant_probe):
    execution = run_once(make_task(tenant=None, task_type=tenant_probe, options={}))

    assert execution.status == Status.SUCCEEDED
    assert execution.result == {"tenant": None}
    assert EVENTS == ["handler sees None"]


def test_without_the_setting_the_handler_runs_as_it_is(tenant_probe):
    execution = run_once(make_task(tenant=make_tenant(), task_type=tenant_probe, options={}))
    assert execution.result == {"tenant": None}
    assert EVENTS == ["handler sees None"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("tests.nowhere.context", "SCHEDULING_TENANT_CONTEXT cannot be imported"),
        (f"{HERE}.EVENTS", "which is not callable"),
        (42, "must be a dotted path or None"),
    ],
)
def test_a_bad_setting_is_a_system_check_error(value, message):
    with override_settings(SCHEDULING_TENANT_CONTEXT=value):
        errors = [e for e in run_checks() if e.id == "scheduling.E058"]
    assert len(errors) == 1
    assert message in errors[0].msg


@override_settings(SCHEDULING_TENANT_CONTEXT=f"{HERE}.recording_context")
def test_a_good_setting_passes_the_checks():
    assert not [e for e in run_checks() if e.id == "scheduling.E058"]


@override_settings(SCHEDULING_TENANT_CONTEXT=f"{HERE}.recording_context")
def test_an_async_handler_sees_its_tenants_context_too():
    @task_type("test_async_probe", label="Test: async tenant probe")
    async def probe(task, context):
        return {"tenant": CURRENT.get()}

    try:
        task = make_task(tenant=make_tenant(slug="acme"), task_type="test_async_probe", options={})
        execution = run_once(task)
    finally:
        task_types.unregister("test_async_probe")

    assert execution.status == Status.SUCCEEDED
    assert execution.result == {"tenant": "acme"}
    assert EVENTS == ["enter acme", "exit acme"]
