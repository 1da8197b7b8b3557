"""Schedules declared in code (SCHEDULING_DECLARED_SCHEDULES): sync, checks, read-only edges."""

from __future__ import annotations

import logging
import zoneinfo
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from django.apps import apps
from django.core import checks
from django.core.management import call_command
from django.db import DatabaseError
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from scheduling import schedules_io, services, triggers
from scheduling.api.serializers import COMMON_FIELDS
from scheduling.checks import check_declared_schedules
from scheduling.exceptions import StateConflict
from scheduling.models import AuditEntry, Execution, PeriodicScan, Schedule, ScheduledTask
from scheduling.scheduler.service import SchedulerService
from scheduling.schedules_io import declared
from scheduling.schedules_io.declared import read_declarations, sync_declared_schedules
from tenants.models import Tenant
from tests.factories import make_execution, make_task, make_tenant, make_user

pytestmark = pytest.mark.django_db


def task(name: str = "CRM sync", **fields: Any) -> dict[str, Any]:
    """A declaration of a task schedule (the test task type ``test_add``)."""
    entry: dict[str, Any] = {
        "kind": "task",
        "task_type": "test_add",
        "name": name,
        "trigger_type": "cron",
        "cron_expression": "0 3 * * *",
        "options": {"a": 1},
    }
    entry.update(fields)
    return entry


def declared_tasks(**filters: Any) -> list[ScheduledTask]:
    return list(ScheduledTask.objects.filter(declared=True, **filters).order_by("tenant_id"))


# -- sync -------------------------------------------------------------------------------------


def test_sync_creates_a_system_schedule_as_declared(settings):
    settings.SCHEDULING_DECLARED_SCHEDULES = [
        task(description="Nightly", max_retries=2, timeout_seconds=600)
    ]
    summary = sync_declared_schedules()
    assert summary.created == ["-/task/CRM sync"]
    (schedule,) = declared_tasks()
    assert schedule.tenant is None and schedule.declared and schedule.enabled
    assert (schedule.task_type, schedule.cron_expression) == ("test_add", "0 3 * * *")
    assert (schedule.description, schedule.max_retries, schedule.timeout_seconds) == (
        "Nightly",
        2,
        600,
    )
    assert schedule.options == {"a": 1, "b": 0}  # cleaned by the type's form
    assert schedule.audit_entries.get().source == "declared"


def test_the_generic_type_key_and_initial_state_are_accepted(settings):
    paused = timezone.now() + timedelta(days=1)
    entry = {
        "kind": "scan",
        "type": "test_echo",
        "name": "Echo",
        "target": "example",
        "interval_seconds": 300,
        "enabled": False,
        "paused_until": paused.isoformat(),
    }
    settings.SCHEDULING_DECLARED_SCHEDULES = [entry]
    sync_declared_schedules()
    scan = PeriodicScan.objects.get(name="Echo")
    assert scan.declared and scan.scan_type == "test_echo"
    assert scan.enabled is False and scan.paused_until == paused


def test_a_second_sync_changes_nothing(settings, tenant):
    run_at = "2030-01-01T09:00"  # no offset: the tenant's zone (Europe/Berlin)
    settings.SCHEDULING_DECLARED_SCHEDULES = [
        task(),
        task("Once", trigger_type="once", run_at=run_at, per_tenant=True),
        task("Hourly", cron_expression="0 * * * *", per_tenant=True),
    ]
    first = sync_declared_schedules()
    assert len(first.created) == 3
    once = ScheduledTask.objects.get(name="Once")
    assert once.run_at == datetime(2030, 1, 1, 8, tzinfo=UTC)
    assert once.timezone == "Europe/Berlin"
    before = dict(Schedule.objects.values_list("pk", "updated_at"))
    audit = AuditEntry.objects.count()

    second = sync_declared_schedules()

    assert (second.created, second.updated, second.released) == ([], [], [])
    assert len(second.unchanged) == 3
    assert dict(Schedule.objects.values_list("pk", "updated_at")) == before
    assert AuditEntry.objects.count() == audit


def test_a_changed_declaration_updates_the_schedule(settings):
    settings.SCHEDULING_DECLARED_SCHEDULES = [task(max_retries=3, description="old")]
    sync_declared_schedules()
    (schedule,) = declared_tasks()
    stamp = schedule.updated_at

    settings.SCHEDULING_DECLARED_SCHEDULES = [task(cron_expression="30 4 * * *")]
    summary = sync_declared_schedules()

    assert summary.updated == ["-/task/CRM sync"]
    schedule.refresh_from_db()
    assert schedule.cron_expression == "30 4 * * *"
    # What the declaration leaves out takes its default: code is the whole truth.
    assert (schedule.max_retries, schedule.description) == (0, "")
    assert schedule.updated_at > stamp
    change = schedule.audit_entries.filter(action="change").get()
    assert change.source == "declared"
    assert change.changes["cron_expression"] == ["0 3 * * *", "30 4 * * *"]


def test_a_removed_declaration_is_disabled_and_handed_over_with_its_history(settings):
    settings.SCHEDULING_DECLARED_SCHEDULES = [task(), task("Other")]
    sync_declared_schedules()
    schedule = ScheduledTask.objects.get(name="CRM sync")
    make_execution(schedule=schedule)
    make_execution(schedule=schedule)

    settings.SCHEDULING_DECLARED_SCHEDULES = [task("Other")]
    summary = sync_declared_schedules()

    assert summary.released == ["-/task/CRM sync"]
    schedule.refresh_from_db()
    assert (schedule.enabled, schedule.declared) == (False, False)
    assert Execution.objects.filter(schedule=schedule).count() == 2
    assert ScheduledTask.objects.get(name="Other").declared
    # Operators own it now: a second sync leaves it alone, and it may be deleted.
    assert sync_declared_schedules().released == []
    services.delete_schedule(schedule=schedule)


def test_an_invalid_entry_is_skipped_without_releasing_its_schedule(settings, caplog):
    settings.SCHEDULING_DECLARED_SCHEDULES = [task()]
    sync_declared_schedules()
    settings.SCHEDULING_DECLARED_SCHEDULES = [task(cron_expression="every day")]
    with caplog.at_level(logging.ERROR, logger="scheduling.declared"):
        summary = sync_declared_schedules()
    assert summary.released == [] and len(summary.skipped) == 1
    assert "SCHEDULING_DECLARED_SCHEDULES[0] ('CRM sync')" in caplog.text
    (schedule,) = declared_tasks()
    assert schedule.enabled and schedule.cron_expression == "0 3 * * *"


def test_per_tenant_gives_every_active_tenant_a_copy_and_new_tenants_one(settings):
    berlin = make_tenant(timezone="Europe/Berlin")
    york = make_tenant(timezone="America/New_York")
    asleep = make_tenant(is_active=False)
    settings.SCHEDULING_DECLARED_SCHEDULES = [task(per_tenant=True), task("System")]

    summary = sync_declared_schedules()

    assert len(summary.created) == 3
    copies = declared_tasks(name="CRM sync")
    assert [c.tenant_id for c in copies] == [berlin.pk, york.pk]
    assert [c.timezone for c in copies] == ["Europe/Berlin", "America/New_York"]
    assert ScheduledTask.objects.get(name="System").tenant is None

    newcomer = make_tenant()  # post_save gives it its copy at once
    assert declared_tasks(name="CRM sync", tenant=newcomer)
    asleep.is_active = True
    asleep.save()
    assert declared_tasks(name="CRM sync", tenant=asleep)
    assert ScheduledTask.objects.filter(name="System").count() == 1


def test_declared_copies_do_not_count_against_the_tenants_quota(settings):
    tenant = make_tenant(max_schedules=1)
    make_task(tenant=tenant)
    settings.SCHEDULING_DECLARED_SCHEDULES = [task(per_tenant=True)]
    assert sync_declared_schedules().created == [f"{tenant.slug}/task/CRM sync"]
    assert services.count_towards_quota(tenant) == 1


def test_operators_keep_enabled_and_paused_until(settings):
    settings.SCHEDULING_DECLARED_SCHEDULES = [task()]
    sync_declared_schedules()
    (schedule,) = declared_tasks()
    until = timezone.now() + timedelta(hours=5)
    services.pause_schedule(schedule=schedule, until=until)
    services.set_schedule_enabled(schedule=schedule, enabled=False)
    stamp = ScheduledTask.objects.get(pk=schedule.pk).updated_at

    assert sync_declared_schedules().unchanged == ["-/task/CRM sync"]
    assert ScheduledTask.objects.get(pk=schedule.pk).updated_at == stamp

    settings.SCHEDULING_DECLARED_SCHEDULES = [task(description="changed", enabled=True)]
    assert sync_declared_schedules().updated == ["-/task/CRM sync"]
    schedule.refresh_from_db()
    assert schedule.description == "changed"
    assert (schedule.enabled, schedule.paused_until) == (False, until)


def test_an_operators_schedule_of_the_same_name_is_a_conflict_unless_adopted(settings, tenant):
    own = make_task(tenant=tenant, name="CRM sync", description="mine")
    settings.SCHEDULING_DECLARED_SCHEDULES = [task(per_tenant=True)]

    summary = sync_declared_schedules()

    assert summary.conflicts == ["acme/task/CRM sync"] and summary.created == []
    own.refresh_from_db()
    assert (own.declared, own.description, own.trigger_type) == (False, "mine", "interval")

    settings.SCHEDULING_DECLARED_SCHEDULES = [task(per_tenant=True, adopt=True)]
    assert sync_declared_schedules().updated == ["acme/task/CRM sync"]
    own.refresh_from_db()
    assert (own.declared, own.description, own.cron_expression) == (True, "", "0 3 * * *")


def test_a_schedule_declared_in_code_cannot_be_deleted_and_its_copy_is_not_declared(settings):
    settings.SCHEDULING_DECLARED_SCHEDULES = [task()]
    sync_declared_schedules()
    (schedule,) = declared_tasks()
    with pytest.raises(StateConflict, match="SCHEDULING_DECLARED_SCHEDULES"):
        services.delete_schedule(schedule=schedule)
    copy = services.duplicate_schedule(schedule=schedule)
    assert copy.declared is False


# -- where it runs ----------------------------------------------------------------------------


def test_migrate_syncs_and_does_not_fail_on_a_bad_entry(settings, caplog):
    settings.SCHEDULING_DECLARED_SCHEDULES = [task("Broken", kind="nope"), task()]
    with caplog.at_level(logging.ERROR, logger="scheduling.declared"):
        call_command("migrate", verbosity=0)
    assert [s.name for s in declared_tasks()] == ["CRM sync"]
    assert "SCHEDULING_DECLARED_SCHEDULES[0] ('Broken')" in caplog.text


def test_the_post_migrate_handler_logs_instead_of_raising(settings, monkeypatch, caplog):
    def boom(**kwargs: Any) -> None:
        raise DatabaseError("database is locked")

    monkeypatch.setattr(declared, "sync_declared_schedules", boom)
    with caplog.at_level(logging.ERROR, logger="scheduling.declared"):
        declared.sync_after_migrate(apps.get_app_config("scheduling"), using="default")
    assert "not synced after migrate" in caplog.text


@pytest.fixture
def scheduling_log_level():
    """runscheduler sets the level of the "scheduling" logger: put it back afterwards."""
    logger = logging.getLogger("scheduling")
    level = logger.level
    yield
    logger.setLevel(level)


def test_runscheduler_syncs_before_it_starts(settings, monkeypatch, scheduling_log_level):
    settings.SCHEDULING_DECLARED_SCHEDULES = [task()]
    seen: list[int] = []

    def run(service: SchedulerService) -> int:
        seen.append(ScheduledTask.objects.filter(declared=True).count())
        return 0

    monkeypatch.setattr(SchedulerService, "run", run)
    call_command("runscheduler", verbosity=0)
    assert seen == [1]


def test_runscheduler_starts_when_the_sync_fails(
    settings, monkeypatch, caplog, scheduling_log_level
):
    def boom(**kwargs: Any) -> None:
        raise DatabaseError("connection refused")

    started: list[bool] = []
    monkeypatch.setattr(declared, "sync_declared_schedules", boom)
    monkeypatch.setattr(SchedulerService, "run", lambda service: started.append(True) or 0)
    call_command("runscheduler", verbosity=0)
    assert started == [True]
    assert "not synced at start" in caplog.text


# -- system checks ----------------------------------------------------------------------------


def test_valid_and_empty_settings_pass_the_checks(settings):
    settings.SCHEDULING_DECLARED_SCHEDULES = []
    assert check_declared_schedules() == []
    settings.SCHEDULING_DECLARED_SCHEDULES = [
        task(),
        task(per_tenant=True),  # a system schedule and per-tenant copies may share a name
        {
            "kind": "scan",
            "type": "test_echo",
            "name": "Echo",
            "target": "x",
            "interval_seconds": 60,
        },
    ]
    assert check_declared_schedules() == []


@pytest.mark.parametrize(
    ("entry", "check_id", "text"),
    [
        (task(kind="nope"), "scheduling.E051", "unknown kind 'nope'"),
        (task(task_type="no_such_type"), "scheduling.E052", "unknown task type 'no_such_type'"),
        (task(type="test_async"), "scheduling.E052", "differ"),
        (task(name=""), "scheduling.E053", "needs a name"),
        (task(tenant="acme"), "scheduling.E054", "per_tenant"),
        (task(per_tenant="yes"), "scheduling.E054", "True or False"),
        (task(max_retries="many"), "scheduling.E055", "max_retries"),
        (task(cron_expression="61 * * * *"), "scheduling.E055", "cron_expression"),
        (task(timezone="Mars/Olympus"), "scheduling.E055", "Mars/Olympus"),
        (task(options={"a": "x"}), "scheduling.E056", "options: a:"),
        (task(options={"z": 1, "a": 1}), "scheduling.E056", "Unknown option(s): z"),
        (
            {"kind": "cleanup", "type": "files", "name": "Tmp", "per_tenant": True},
            "scheduling.E052",
            "system schedule",
        ),
    ],
)
def test_each_bad_entry_is_reported_by_index_and_name(settings, entry, check_id, text):
    settings.SCHEDULING_DECLARED_SCHEDULES = [task("Fine"), entry]
    errors = check_declared_schedules()
    assert {e.id for e in errors} == {check_id}, [e.msg for e in errors]
    (error,) = [e for e in errors if e.id == check_id][:1]
    assert error.msg.startswith(f"SCHEDULING_DECLARED_SCHEDULES[1] ({entry['name']!r})")
    assert text in error.msg and error.hint


def test_duplicates_and_a_bad_structure_are_reported(settings):
    settings.SCHEDULING_DECLARED_SCHEDULES = [task(), "task", task(cron_expression="5 * * * *")]
    errors = check_declared_schedules()
    assert [(e.id, e.msg.split(":")[0]) for e in errors] == [
        ("scheduling.E050", "SCHEDULING_DECLARED_SCHEDULES[1]"),
        ("scheduling.E057", "SCHEDULING_DECLARED_SCHEDULES[2] ('CRM sync')"),
    ]
    assert "SCHEDULING_DECLARED_SCHEDULES[0]" in errors[1].msg
    settings.SCHEDULING_DECLARED_SCHEDULES = {"kind": "task"}
    assert [e.id for e in check_declared_schedules()] == ["scheduling.E050"]
    # The sync skips the duplicate and keeps the first; a bad structure syncs nothing.
    assert read_declarations([task(), task()]).valid[0].index == 0


def test_the_check_is_registered_but_does_not_stop_runscheduler(settings):
    settings.SCHEDULING_DECLARED_SCHEDULES = [task(task_type="no_such_type")]
    assert "scheduling.E052" in {e.id for e in checks.run_checks()}
    runscheduler_tags = ["compatibility", "models", "database"]
    assert "scheduling.E052" not in {e.id for e in checks.run_checks(tags=runscheduler_tags)}


# -- admin, API and import --------------------------------------------------------------------


@pytest.fixture
def system_task(settings) -> ScheduledTask:
    settings.SCHEDULING_DECLARED_SCHEDULES = [task()]
    sync_declared_schedules()
    return ScheduledTask.objects.get(name="CRM sync")


@pytest.fixture
def superuser() -> Any:
    return make_user(is_staff=True, is_superuser=True)


def test_the_admin_form_of_a_declared_schedule_edits_only_its_state(client, superuser, system_task):
    client.force_login(superuser)
    url = reverse("admin:scheduling_scheduledtask_change", args=[system_task.pk])
    response = client.get(url)
    assert response.status_code == 200
    assert set(response.context["adminform"].form.fields) == {"enabled", "paused_until"}

    data = {
        "name": "Renamed",
        "cron_expression": "* * * * *",
        "paused_until_0": "",
        "paused_until_1": "",
        "executions-TOTAL_FORMS": 0,
        "executions-INITIAL_FORMS": 0,
    }  # "enabled" left out: unchecked
    response = client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:2000]
    system_task.refresh_from_db()
    assert (system_task.name, system_task.cron_expression) == ("CRM sync", "0 3 * * *")
    assert system_task.enabled is False and system_task.declared


def test_the_admin_cannot_delete_a_declared_schedule_but_its_actions_work(
    client, superuser, system_task
):
    client.force_login(superuser)
    delete = reverse("admin:scheduling_scheduledtask_delete", args=[system_task.pk])
    assert client.get(delete).status_code == 403
    assert client.post(delete, {"post": "yes"}).status_code == 403
    changelist = reverse("admin:scheduling_scheduledtask_changelist")
    client.post(changelist, {"action": "delete_selected", "_selected_action": [system_task.pk]})
    assert ScheduledTask.objects.filter(pk=system_task.pk).exists()
    response = client.post(changelist, {"action": "disable", "_selected_action": [system_task.pk]})
    assert response.status_code == 302
    system_task.refresh_from_db()
    assert system_task.enabled is False


def test_the_admin_still_edits_an_operators_schedule(client, superuser):
    client.force_login(superuser)
    own = make_task(tenant=None, name="Mine")
    response = client.get(reverse("admin:scheduling_scheduledtask_change", args=[own.pk]))
    assert "name" in response.context["adminform"].form.fields


def test_the_api_changes_only_the_state_of_a_declared_schedule(superuser, system_task):
    client = APIClient()
    client.force_authenticate(user=superuser)
    url = f"/api/tasks/{system_task.pk}/"
    body = client.get(url).json()
    assert body["declared"] is True

    response = client.patch(url, {"name": "Renamed", "max_retries": 4}, format="json")
    assert response.status_code == 400
    assert set(response.json()) == {"name", "max_retries"}
    assert "Declared in code" in response.json()["name"][0]

    response = client.patch(url, {"enabled": False}, format="json")
    assert response.status_code == 200 and response.json()["enabled"] is False

    # A PUT of what GET gave, with the state changed, is allowed.
    body = client.get(url).json()
    writable = {k: body[k] for k in [*COMMON_FIELDS, "task_type", "options"]}
    writable["enabled"] = True
    response = client.put(url, writable, format="json")
    assert response.status_code == 200, response.json()

    response = client.patch(url, {"declared": False}, format="json")
    assert response.status_code == 400

    response = client.delete(url)
    assert response.status_code == 409
    assert "SCHEDULING_DECLARED_SCHEDULES" in response.json()["detail"]
    system_task.refresh_from_db()
    assert (system_task.name, system_task.enabled, system_task.declared) == ("CRM sync", True, True)


def test_import_neither_changes_nor_prunes_declared_schedules(settings, tenant):
    settings.SCHEDULING_DECLARED_SCHEDULES = [task(per_tenant=True)]
    sync_declared_schedules()

    def plan(text: str, **kwargs: Any) -> schedules_io.ImportPlan:
        document = schedules_io.parse(text, file_format="yaml")
        return schedules_io.plan_import(document, tenants=Tenant.objects.all(), **kwargs)

    entry = (
        "version: 1\nschedules:\n- {tenant: acme, kind: task, name: CRM sync, task_type: "
        "test_add, trigger_type: cron, cron_expression: '%s', options: {a: 1, b: 0}%s}\n"
    )
    assert plan(entry % ("0 3 * * *", ", enabled: false")).valid  # state only
    changed = plan(entry % ("0 5 * * *", ""))
    assert not changed.valid
    assert "declared in code" in changed.errors[0].message
    assert "cron_expression" in changed.errors[0].message
    pruned = plan(
        "version: 1\nschedules:\n- {tenant: acme, kind: task, name: Other, "
        "task_type: test_add, interval_seconds: 60, options: {a: 1}}\n",
        prune=True,
    )
    assert pruned.valid and pruned.of("delete") == []


# -- calendar schedules -------------------------------------------------------------------------


def calendar_task(**fields: Any) -> dict[str, Any]:
    """A declaration of a calendar task: Monday and Friday at 06:15, every week."""
    calendar: dict[str, Any] = {
        "trigger_type": "calendar",
        "cron_expression": "",
        "calendar_every": 1,
        "calendar_unit": "week",
        "calendar_time": "06:15",
        "calendar_weekdays": ["fri", "mon"],
        "timezone": "Europe/Berlin",
    }
    return task(**{**calendar, **fields})


def test_a_calendar_schedule_is_declared_with_its_time_as_text(settings):
    settings.SCHEDULING_DECLARED_SCHEDULES = [calendar_task()]
    assert check_declared_schedules() == []
    assert sync_declared_schedules().created == ["-/task/CRM sync"]
    (schedule,) = declared_tasks()
    assert (schedule.calendar_every, schedule.calendar_unit) == (1, "week")
    assert schedule.calendar_time == time(6, 15)
    assert schedule.calendar_weekdays == "mon,fri"
    assert triggers.describe(schedule) == "Every week on Monday and Friday at 06:15 (Europe/Berlin)"
    berlin = zoneinfo.ZoneInfo("Europe/Berlin")
    local = [run.astimezone(berlin) for run in triggers.next_runs(schedule, 4)]
    assert {(run.strftime("%a"), run.hour, run.minute) for run in local} == {
        ("Mon", 6, 15),
        ("Fri", 6, 15),
    }
    # The same declaration, as text or as a time object, is no change.
    assert sync_declared_schedules().unchanged == ["-/task/CRM sync"]
    settings.SCHEDULING_DECLARED_SCHEDULES = [
        calendar_task(calendar_time=time(6, 15), calendar_weekdays="mon,fri")
    ]
    assert sync_declared_schedules().unchanged == ["-/task/CRM sync"]
    settings.SCHEDULING_DECLARED_SCHEDULES = [calendar_task(calendar_time="07:00")]
    assert sync_declared_schedules().updated == ["-/task/CRM sync"]
    schedule.refresh_from_db()
    assert schedule.calendar_time == time(7, 0)


@pytest.mark.parametrize(
    ("fields", "field", "text"),
    [
        ({"calendar_time": "6h15"}, "calendar_time", "time of day"),
        ({"calendar_time": None}, "calendar_time", "needs a time of day"),
        ({"calendar_unit": "year"}, "calendar_unit", "not a valid choice"),
        ({"calendar_every": 0}, "calendar_every", "greater than or equal to 1"),
        ({"calendar_weekdays": "mon,funday"}, "calendar_weekdays", "unknown weekday 'funday'"),
        ({"calendar_unit": "month"}, "calendar_weekdays", "only to a schedule that repeats"),
    ],
)
def test_a_bad_calendar_declaration_is_reported_on_its_field(settings, fields, field, text):
    settings.SCHEDULING_DECLARED_SCHEDULES = [calendar_task(**fields)]
    errors = check_declared_schedules()
    assert {e.id for e in errors} == {"scheduling.E055"}, [e.msg for e in errors]
    messages = [e.msg for e in errors if f"('CRM sync'): {field}: " in e.msg]
    assert any(text in message for message in messages), [e.msg for e in errors]
    assert sync_declared_schedules().created == []
