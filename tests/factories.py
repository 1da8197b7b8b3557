"""Plain factory functions for the tests."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.utils import timezone

from scheduling.models import (
    CleanupConfig,
    Execution,
    PeriodicScan,
    Report,
    ScheduledTask,
    Status,
)
from tenants.models import Membership, Tenant

_seq = itertools.count(1)


def make_tenant(**overrides: Any) -> Tenant:
    n = next(_seq)
    fields = {"name": f"Tenant {n}", "slug": f"tenant-{n}", "timezone": "UTC"}
    fields.update(overrides)
    return Tenant.objects.create(**fields)


def make_user(**overrides: Any) -> Any:
    n = next(_seq)
    fields = {"username": f"user{n}", "password": "pw-for-tests"}
    fields.update(overrides)
    password = fields.pop("password")
    user = get_user_model().objects.create_user(**fields)
    user.set_password(password)
    user.save()
    return user


def make_membership(*, user: Any, tenant: Tenant, role: str = "viewer") -> Membership:
    return Membership.objects.create(user=user, tenant=tenant, role=role)


def _schedule_fields(overrides: dict) -> dict:
    n = next(_seq)
    fields = {"name": f"schedule {n}", "trigger_type": "interval", "interval_seconds": 60}
    fields.update(overrides)
    return fields


def make_scan(*, tenant: Tenant, **overrides: Any) -> PeriodicScan:
    fields = {"scan_type": "tcp", "target": "127.0.0.1:1", "options": {}}
    fields.update(_schedule_fields(overrides))
    return PeriodicScan.objects.create(tenant=tenant, **fields)


def make_report(*, tenant: Tenant, **overrides: Any) -> Report:
    fields = {"report_type": "execution_summary", "format": "json", "options": {}}
    fields.update(_schedule_fields(overrides))
    return Report.objects.create(tenant=tenant, **fields)


def make_cleanup(*, tenant: Tenant, **overrides: Any) -> CleanupConfig:
    fields = {"cleanup_target": "executions", "retain_days": 30, "batch_size": 1000}
    fields.update(_schedule_fields(overrides))
    return CleanupConfig.objects.create(tenant=tenant, **fields)


def make_task(*, tenant: Tenant | None, **overrides: Any) -> ScheduledTask:
    fields = {"task_type": "test_add", "options": {"a": 1}}
    fields.update(_schedule_fields(overrides))
    return ScheduledTask.objects.create(tenant=tenant, **fields)


def make_execution(*, schedule: Any, **overrides: Any) -> Execution:
    now = timezone.now()
    fields = {
        "schedule": schedule,
        "schedule_name": schedule.name,
        "schedule_kind": schedule.kind,
        "tenant_id": schedule.tenant_id,
        "scheduled_for": now - timedelta(seconds=next(_seq)),
        "status": Status.SUCCEEDED,
        "started_at": now,
        "finished_at": now,
        "duration_ms": 10,
    }
    fields.update(overrides)
    return Execution.objects.create(**fields)


def make_artifact(*, execution: Execution, **overrides: Any) -> Any:
    from scheduling.models import ReportArtifact

    fields = {
        "tenant_id": execution.tenant_id,
        "report_id": execution.schedule_id,
        "execution": execution,
        "format": "csv",
        "filename": f"report-{next(_seq)}.csv",
        "content_type": "text/csv; charset=utf-8",
        "content": "name,count\nalpha,1\n",
    }
    fields.update(overrides)
    return ReportArtifact.objects.create(**fields)


def make_token(*, user: Any) -> str:
    from rest_framework.authtoken.models import Token

    return Token.objects.create(user=user).key


def make_alert_rule(*, tenant: Tenant, **overrides: Any) -> Any:
    from scheduling.models import AlertRule

    fields = {"name": f"alert rule {next(_seq)}", "consecutive_failures": 3}
    fields.update(overrides)
    return AlertRule.objects.create(tenant=tenant, **fields)


def run_once(schedule: Any, *, late: timedelta = timedelta(0)) -> Execution:
    """Claim one occurrence of ``schedule`` (``late`` ago) and run it here, as a worker would;
    return the execution as recorded."""
    from scheduling import runner

    execution = runner.claim(schedule, timezone.now() - late, claimed_by="test")
    assert execution is not None
    runner.execute(execution.pk, worker="host:1")
    execution.refresh_from_db()
    return execution
