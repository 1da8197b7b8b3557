"""The built-in "History retention" cleanup: created on migrate and with each tenant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core.management import call_command
from django.test import override_settings

from scheduling import runner
from scheduling.checks import check_settings
from scheduling.models import CleanupConfig, Execution, Status
from scheduling.retention import RETENTION_NAME, ensure_retention_schedule, retention_days
from tests.factories import make_execution, make_scan, make_tenant

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def retention_of(tenant) -> CleanupConfig:
    return CleanupConfig.objects.get(tenant=tenant, name=RETENTION_NAME)


@override_settings(SCHEDULING_RETENTION_SCHEDULE=True)
def test_a_new_tenant_gets_a_daily_retention_cleanup_of_its_executions():
    tenant = make_tenant(timezone="Europe/Berlin", execution_retention_days=14)

    cleanup = retention_of(tenant)

    assert cleanup.cleanup_target == "executions"
    assert (cleanup.trigger_type, cleanup.cron_expression) == ("cron", "0 3 * * *")
    assert cleanup.timezone == "Europe/Berlin"
    assert cleanup.options == {"use_tenant_retention": True}
    assert cleanup.retain_days == 14
    assert cleanup.enabled
    cleanup.full_clean()  # what the admin or an import would accept


@override_settings(SCHEDULING_RETENTION_SCHEDULE=True, SCHEDULING_EXECUTION_RETENTION_DAYS=45)
def test_migrate_gives_every_tenant_one_and_only_one():
    with override_settings(SCHEDULING_RETENTION_SCHEDULE=False):
        tenants = [make_tenant(), make_tenant()]
    assert not CleanupConfig.objects.exists()

    call_command("migrate", verbosity=0)
    call_command("migrate", verbosity=0)

    assert sorted(CleanupConfig.objects.values_list("tenant_id", "retain_days")) == sorted(
        (t.pk, 45) for t in tenants
    )


@override_settings(SCHEDULING_RETENTION_SCHEDULE=True)
def test_an_operators_changes_to_it_are_kept():
    tenant = make_tenant()
    CleanupConfig.objects.filter(tenant=tenant).update(enabled=False, cron_expression="0 1 * * *")

    call_command("migrate", verbosity=0)
    _cleanup, created = ensure_retention_schedule(tenant)

    assert not created
    cleanup = retention_of(tenant)
    assert (cleanup.enabled, cleanup.cron_expression) == (False, "0 1 * * *")


def test_the_setting_turns_it_off():
    make_tenant()
    call_command("migrate", verbosity=0)
    assert not CleanupConfig.objects.exists()


@override_settings(SCHEDULING_RETENTION_SCHEDULE=True, SCHEDULING_EXECUTION_RETENTION_DAYS=30)
def test_a_run_uses_the_tenants_retention_at_run_time():
    tenant = make_tenant(execution_retention_days=20)
    cleanup = retention_of(tenant)
    scan = make_scan(tenant=tenant)
    # Changed behind the schedule's back (no signal): the run must still read the tenant.
    type(tenant).objects.filter(pk=tenant.pk).update(execution_retention_days=5)
    doomed = make_execution(schedule=scan, finished_at=NOW - timedelta(days=6))
    kept = make_execution(schedule=scan, finished_at=NOW - timedelta(days=4))

    with time_machine.travel(NOW, tick=False):
        execution = runner.claim(cleanup, NOW)
        runner.execute(execution.pk)

    execution.refresh_from_db()
    assert execution.status == Status.SUCCEEDED, execution.error
    assert execution.result["retain_days"] == 5
    assert execution.result["deleted"] == 1
    assert not Execution.objects.filter(pk=doomed.pk).exists()
    assert Execution.objects.filter(pk=kept.pk).exists()


@override_settings(SCHEDULING_RETENTION_SCHEDULE=True, SCHEDULING_EXECUTION_RETENTION_DAYS=30)
def test_saving_the_tenant_mirrors_its_retention_into_retain_days():
    tenant = make_tenant()
    assert retention_of(tenant).retain_days == 30

    tenant.execution_retention_days = 7
    tenant.save()
    assert retention_of(tenant).retain_days == 7

    tenant.execution_retention_days = None
    tenant.save()
    assert retention_of(tenant).retain_days == retention_days(tenant) == 30


def test_the_setting_must_be_a_boolean():
    with override_settings(SCHEDULING_RETENTION_SCHEDULE="yes"):
        errors = check_settings()
    assert [e.id for e in errors] == ["scheduling.E027"]
    assert errors[0].hint


@override_settings(SCHEDULING_RETENTION_SCHEDULE=True)
def test_a_tenant_the_schedule_cannot_serve_is_still_created(caplog):
    tenant = make_tenant(timezone="Mars/Olympus_Mons")

    assert type(tenant).objects.filter(pk=tenant.pk).exists()
    assert not CleanupConfig.objects.filter(tenant=tenant).exists()
    assert "gets no 'History retention' schedule" in caplog.text
