"""django-scopes (``scheduling.integrations.scopes``), for real.

A host project (tests/hostapps/scoped) whose tenant model is itself scoped, like pretix's events
by their organizer, and whose tickets are scoped by the event. Handlers run inside
``scope(event=<their event>)`` and see only their event's tickets; everything the scheduler
does outside handlers (starting Django, ``migrate``, ``runscheduler``'s start and sync,
creating schedules, a system cleanup of the scoped model) works with no scope at all.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings
from django_scopes import get_scope

from scheduling.checks import check_settings
from scheduling.integrations.scopes import tenant_context
from tests.factories import make_tenant
from tests.hostapps.project import HostProject, migrated
from tests.scheduling.processes import stop, wait_for

TICKETS = {"acme": ["ann", "bob"], "globex": ["cy"]}

SETUP = f"""
import json
from datetime import timedelta
from django.utils import timezone
from django_scopes import scopes_disabled
from tests.hostapps.scoped.models import Event, Ticket

long_ago = timezone.now() - timedelta(days=60)
with scopes_disabled():
    for number, (slug, holders) in enumerate({TICKETS!r}.items()):
        event = Event.objects.create(organizer=f"o{{number}}", name=slug.title(), slug=slug)
        for holder in holders:
            Ticket.objects.create(event=event, holder=holder, sold_at=long_ago)
            Ticket.objects.create(event=event, holder=holder + " (new)")
print(json.dumps("OK"))
"""

# Events are read through the base manager here: their default manager needs a scope.
RUN_HERE = """
import json
from django.utils import timezone
from django_scopes import ScopeError, get_scope
from scheduling import runner, services
from scheduling.models import ScheduledTask
from tests.hostapps.scoped.models import Event, Ticket

out = {}
for event in Event._base_manager.order_by("slug"):
    task = services.create_schedule(
        model=ScheduledTask, tenant=event, name="list here", task_type="list_tickets",
        options={}, trigger_type="interval", interval_seconds=3600, enabled=False,
    )
    execution = runner.claim(task, timezone.now(), claimed_by="test")
    runner.execute(execution.pk, worker="test:1")
    execution.refresh_from_db()
    out[event.slug] = [execution.status, execution.result, execution.error, get_scope()]
try:
    Ticket.objects.count()
except ScopeError as exc:
    out["outside"] = str(exc)
print(json.dumps(out))
"""

SCHEDULE_ONCE = """
import json
from datetime import timedelta
from django.utils import timezone
from scheduling import services
from scheduling.models import ScheduledTask
from tests.hostapps.scoped.models import Event

at = timezone.now() + timedelta(seconds=4)
for event in Event._base_manager.all():
    services.create_schedule(
        model=ScheduledTask, tenant=event, name="once", task_type="list_tickets", options={},
        trigger_type="once", run_at=at, misfire_grace_seconds=120,
    )
print(json.dumps("OK"))
"""

OUTCOMES = """
import json
from scheduling.models import Execution

rows = Execution.objects.filter(schedule_name="once").exclude(status__in=["queued", "running"])
print(json.dumps(sorted([e.tenant.slug, e.status, e.result, e.error] for e in rows)))
"""

# The schedules the app gives every tenant: its retention cleanup and the declared one.
BOOKKEEPING = """
import json
from scheduling.models import Schedule

rows = Schedule.objects.filter(name__in=["History retention", "nightly tickets"])
print(json.dumps(sorted(rows.values_list("tenant__slug", "name"))))
"""

FORGET_BOOKKEEPING = """
import json
from scheduling.models import Schedule

Schedule.objects.filter(name__in=["History retention", "nightly tickets"]).delete()
print(json.dumps(Schedule.objects.filter(name="nightly tickets").count()))
"""

CLEANUP = """
import json
from django.utils import timezone
from django_scopes import scopes_disabled
from scheduling import runner, services
from scheduling.models import CleanupConfig
from tests.hostapps.scoped.models import Event, Ticket

def run(tenant, name):
    cleanup = services.create_schedule(
        model=CleanupConfig, tenant=tenant, name=name, cleanup_target="tickets",
        retain_days=30, trigger_type="interval", interval_seconds=3600, enabled=False,
    )
    execution = runner.claim(cleanup, timezone.now(), claimed_by="test")
    runner.execute(execution.pk, worker="test:1")
    execution.refresh_from_db()
    with scopes_disabled():
        left = sorted(Ticket.objects.values_list("holder", flat=True))
    return [execution.status, (execution.result or {}).get("deleted"), execution.error, left]

out = {"acme": run(Event._base_manager.get(slug="acme"), "acme tickets")}
out["system"] = run(None, "every event's tickets")
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostProject]:
    directory = tmp_path_factory.mktemp("scopes")
    with migrated("tests.hostapps.settings_scopes", directory) as host:
        assert host.json(SETUP) == "OK"
        yield host


pytestmark = [pytest.mark.hosted, pytest.mark.timeout(300)]


@pytest.mark.process
def test_the_host_projects_checks_pass_and_its_migrations_are_complete(project):
    result = project.manage("check", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stderr[-3000:]
    result = project.manage("makemigrations", "--check", "--dry-run")
    assert result.returncode == 0, result.stdout[-3000:]


@pytest.mark.process
def test_each_handler_runs_in_its_events_scope_and_sees_only_its_tickets(project):
    outcomes = project.json(RUN_HERE)

    assert outcomes.pop("outside") == (
        "A scope on dimension(s) event needs to be active for this query."
    )  # the model is scoped for real; the handlers' scopes were left
    assert outcomes == {
        slug: [
            "succeeded",
            {
                "scope": slug.title(),
                "tickets": sorted([*holders, *(h + " (new)" for h in holders)]),
            },
            "",
            {},
        ]
        for slug, holders in TICKETS.items()
    }


@pytest.mark.process
def test_migrate_and_runscheduler_read_a_scoped_tenant_model_without_a_scope(project, tmp_path):
    # Each event got its retention cleanup and its declared schedule when it was saved; the
    # same happens for every event on migrate and (the declared one) at runscheduler's start,
    # which query the scoped tenant model with no scope active.
    expected = sorted(
        [slug, name] for slug in TICKETS for name in ("History retention", "nightly tickets")
    )
    assert project.json(BOOKKEEPING) == expected
    assert "were not synced" not in project.migrate_log
    assert project.json(FORGET_BOOKKEEPING) == 0
    migrate = project.manage("migrate", "--noinput", "-v", "0")
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    assert "were not synced" not in migrate.stderr
    assert project.json(BOOKKEEPING) == expected

    assert project.json(SCHEDULE_ONCE) == "OK"
    log = tmp_path / "scheduler.log"
    process = project.start("runscheduler", "-v", "2", log=log)
    try:
        assert wait_for(lambda: len(project.json(OUTCOMES)) == len(TICKETS), 90, 1.0), (
            log.read_text()[-3000:]
        )
    finally:
        stop(process)
    assert project.json(OUTCOMES) == [
        [
            slug,
            "succeeded",
            {
                "scope": slug.title(),
                "tickets": sorted([*holders, *(h + " (new)" for h in holders)]),
            },
            "",
        ]
        for slug, holders in sorted(TICKETS.items())
    ]
    text = log.read_text()
    assert "were not synced" not in text
    assert "ScopeError" not in text


@pytest.mark.process
def test_a_system_cleanup_of_a_scoped_model_reaches_every_tenant(project):
    outcomes = project.json(CLEANUP)

    # acme's cleanup runs in acme's scope and deletes acme's old tickets only; the system
    # cleanup runs in no scope and deletes the old tickets of every event.
    assert outcomes["acme"] == [
        "succeeded",
        2,
        "",
        ["ann (new)", "bob (new)", "cy", "cy (new)"],
    ]
    assert outcomes["system"] == ["succeeded", 1, "", ["ann (new)", "bob (new)", "cy (new)"]]


@pytest.mark.django_db
@override_settings(SCHEDULING_SCOPES_DIMENSION="organisation")
def test_the_context_scopes_the_configured_dimension_to_the_tenant():
    tenant = make_tenant(slug="acme")
    with tenant_context(tenant):
        assert get_scope() == {"_enabled": True, "organisation": tenant}
    assert get_scope() == {}


@pytest.mark.parametrize("value", ["", None, 3, "not a name"])
def test_a_dimension_that_is_not_a_name_is_a_system_check_error(value):
    with override_settings(SCHEDULING_SCOPES_DIMENSION=value):
        errors = [e for e in check_settings() if e.id == "scheduling.E060"]
    assert len(errors) == 1
    assert errors[0].msg == (
        f"SCHEDULING_SCOPES_DIMENSION must be the name of a django-scopes dimension; got {value!r}."
    )
    assert errors[0].hint


def test_the_default_dimension_passes_the_checks():
    assert "scheduling.E060" not in {e.id for e in check_settings()}


@pytest.mark.django_db
def test_the_check_command_reports_e060():
    with (
        override_settings(SCHEDULING_SCOPES_DIMENSION="event-id"),
        pytest.raises(SystemCheckError, match=r"scheduling\.E060"),
    ):
        call_command("check", stdout=io.StringIO(), stderr=io.StringIO())
