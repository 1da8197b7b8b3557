"""The demo's seed: one schedule of every kind, the project's own task and a system schedule."""

from __future__ import annotations

from datetime import UTC, datetime
from io import StringIO

import pytest
from django.core.management import call_command

from scheduling import runner
from scheduling.models import Kind, Schedule, ScheduledTask, Status

pytestmark = pytest.mark.django_db


def seed() -> str:
    out = StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def test_seed_demo_creates_every_kind_and_a_system_schedule_and_is_idempotent():
    seed()
    first = set(Schedule.objects.values_list("pk", "tenant_id", "kind", "name"))
    seed()
    assert set(Schedule.objects.values_list("pk", "tenant_id", "kind", "name")) == first
    assert {kind for _pk, _tenant, kind, _name in first} == set(Kind.values)
    system = [name for _pk, tenant, _kind, name in first if tenant is None]
    assert system == ["Purge APScheduler's log older than 1 day (all tenants)"]


def test_every_demo_schedule_but_the_scans_runs_and_succeeds():
    # The scans need the demo's web server; everything else runs here as it would there.
    seed()
    for schedule in Schedule.objects.exclude(kind=Kind.SCAN):
        execution = runner.claim(schedule, datetime(2026, 6, 1, tzinfo=UTC), claimed_by="test")
        runner.execute(execution.pk)
        execution.refresh_from_db()
        assert execution.status == Status.SUCCEEDED, (schedule.name, execution.error)


def test_the_demo_task_runs_the_projects_own_function():
    seed()
    task = ScheduledTask.objects.get(name="Tenant digest")
    execution = runner.claim(task, datetime(2026, 6, 1, tzinfo=UTC), claimed_by="test")
    runner.execute(execution.pk)
    execution.refresh_from_db()
    assert execution.status == Status.SUCCEEDED, execution.error
    assert execution.result["schedules"] == Schedule.objects.filter(tenant=task.tenant).count()
