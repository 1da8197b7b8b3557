"""Multi-row writes shared by the admin, the API and the CLI.

Every function that changes what the scheduler must do bumps ``updated_at`` (the change
marker the sync loop polls): bulk ``update()`` calls do not run ``auto_now``.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from .models import (
    STATE_FIELDS,
    AuditAction,
    AuditEntry,
    Execution,
    Schedule,
    Status,
    TriggerKind,
)


def create_schedule(*, model: type[Schedule], tenant: Any, **fields: Any) -> Schedule:
    """Validate and save a new schedule of kind ``model``; raise ``ValidationError``."""
    depends_on = fields.pop("depends_on", None)
    schedule = model(tenant=tenant, **fields)
    schedule.full_clean()
    with transaction.atomic():
        schedule.save()
        if depends_on:
            schedule.depends_on.set(depends_on)
    return schedule


def run_now(*, schedule: Schedule, user: Any = None) -> Execution:
    """Queue a manual run; the scheduler picks it up within its sync interval."""
    now = timezone.now()
    execution = Execution.objects.create(
        schedule=schedule,
        schedule_name=schedule.name,
        schedule_kind=schedule.kind,
        tenant_id=schedule.tenant_id,
        scheduled_for=now,
        attempt=1,
        trigger=TriggerKind.MANUAL,
        status=Status.QUEUED,
        queued_at=now,
        triggered_by=user if getattr(user, "is_authenticated", False) else None,
    )
    return execution


def pause_schedule(*, schedule: Schedule, until: datetime | None = None) -> Schedule:
    """Pause ``schedule`` until ``until`` (or indefinitely: disabled)."""
    pause_schedules(queryset=Schedule.objects.filter(pk=schedule.pk), until=until)
    schedule.refresh_from_db()
    return schedule


def resume_schedule(*, schedule: Schedule) -> Schedule:
    """Resume a paused or disabled schedule."""
    resume_schedules(queryset=Schedule.objects.filter(pk=schedule.pk))
    schedule.refresh_from_db()
    return schedule


def pause_schedules(*, queryset: QuerySet, until: datetime | None = None) -> int:
    """Pause the schedules of ``queryset``; without ``until`` they stay paused until resumed."""
    now = timezone.now()
    if until is None:
        return queryset.update(enabled=False, paused_until=None, updated_at=now)
    return queryset.update(paused_until=until, updated_at=now)


def resume_schedules(*, queryset: QuerySet) -> int:
    """Clear the pause of the schedules of ``queryset`` and enable them."""
    return queryset.update(enabled=True, paused_until=None, updated_at=timezone.now())


def set_enabled(*, queryset: QuerySet, enabled: bool) -> int:
    """Enable or disable the schedules of ``queryset``."""
    return queryset.update(enabled=enabled, updated_at=timezone.now())


AUDIT_IGNORED = STATE_FIELDS | {"updated_at", "created_at", "schedule_ptr", "id", "kind"}


def snapshot(schedule: Schedule) -> dict[str, Any]:
    """Return the audited field values of ``schedule`` as JSON-able data."""
    from django.core.serializers.json import DjangoJSONEncoder

    data: dict[str, Any] = {}
    for field in schedule._meta.concrete_fields:
        if field.name in AUDIT_IGNORED:
            continue
        value = field.value_from_object(schedule)
        data[field.name] = json.loads(json.dumps(value, cls=DjangoJSONEncoder))
    if schedule.pk:
        data["depends_on"] = sorted(schedule.depends_on.values_list("pk", flat=True))
    return data


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[Any]]:
    """Return ``{field: [old, new]}`` for the fields that differ."""
    return {
        name: [before.get(name), value]
        for name, value in after.items()
        if before.get(name) != value
    }


def record_audit(
    *,
    schedule: Schedule,
    action: str,
    user: Any = None,
    source: str = "api",
    changes: dict[str, list[Any]] | None = None,
) -> AuditEntry:
    """Record that ``user`` did ``action`` to ``schedule`` through ``source``."""
    return AuditEntry.objects.create(
        tenant_id=schedule.tenant_id,
        schedule=schedule if schedule.pk and action != AuditAction.DELETE else None,
        schedule_name=schedule.name,
        schedule_kind=schedule.kind,
        action=action,
        user=user if getattr(user, "is_authenticated", False) else None,
        source=source,
        changes=changes or {},
    )
