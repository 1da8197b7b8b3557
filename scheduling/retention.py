"""Retention of execution history: the built-in "History retention" cleanup of every tenant.

Every tenant gets one ``CleanupConfig`` named "History retention" (target ``executions``,
daily at 03:00 in the tenant's time zone, staggered over half an hour so that many tenants do
not purge in the same second). It is created by ``migrate`` for the tenants that lack it and
whenever a tenant is created. Its options say ``{"use_tenant_retention": true}``: each run
reads the tenant's ``execution_retention_days`` (else ``SCHEDULING_EXECUTION_RETENTION_DAYS``)
at run time, so changing the tenant's retention needs no edit of the schedule. Its
``retain_days`` mirrors that value for display.

Operators may change or disable the schedule like any other; deleting it is undone by the next
``migrate``, so disable it instead. ``manage.py scheduling purge`` applies the same retention
at once.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from .conf import conf
from .models import CleanupConfig, Kind, Schedule
from .tenancy import get_tenant_model

if TYPE_CHECKING:
    from tenants.models import Tenant

logger = logging.getLogger("scheduling.housekeeping")

RETENTION_NAME = "History retention"
RETENTION_TARGET = "executions"
RETENTION_OPTION = "use_tenant_retention"
RETENTION_CRON = "0 3 * * *"
RETENTION_JITTER = 1800


def retention_days(tenant: Tenant) -> int:
    """Return how many days of execution history ``tenant`` keeps."""
    override = getattr(tenant, "execution_retention_days", None)
    return int(override) if override else int(conf.EXECUTION_RETENTION_DAYS)


def retention_cutoff(tenant: Tenant, now: datetime | None = None) -> datetime:
    """Return the instant before which ``tenant``'s finished executions are purged."""
    return (now or timezone.now()) - timedelta(days=retention_days(tenant))


def is_builtin_retention(schedule: Schedule) -> bool:
    """Return whether ``schedule`` is a tenant's built-in history retention cleanup."""
    return (
        schedule.kind == Kind.CLEANUP
        and schedule.name == RETENTION_NAME
        and bool((getattr(schedule, "options", None) or {}).get(RETENTION_OPTION))
    )


def ensure_retention_schedule(tenant: Tenant) -> tuple[CleanupConfig, bool]:
    """Create ``tenant``'s history retention cleanup if it has none; return it and whether new.

    Idempotent: a tenant that already has a cleanup of that name keeps it as it is (an
    operator may have changed its time or disabled it). It does not count against the
    tenant's schedule quota: it is the app's, not the tenant's.
    """
    with transaction.atomic():
        existing = CleanupConfig.objects.filter(
            tenant=tenant, kind=Kind.CLEANUP, name=RETENTION_NAME
        ).first()
        if existing is not None:
            return existing, False
        cleanup = CleanupConfig(
            tenant=tenant,
            name=RETENTION_NAME,
            description=(
                "Deletes finished executions older than the tenant's retention "
                "(execution_retention_days, else SCHEDULING_EXECUTION_RETENTION_DAYS)."
            ),
            trigger_type="cron",
            cron_expression=RETENTION_CRON,
            jitter_seconds=RETENTION_JITTER,
            stagger=True,
            cleanup_target=RETENTION_TARGET,
            retain_days=retention_days(tenant),
            batch_size=conf.CLEANUP_BATCH_SIZE,
            options={RETENTION_OPTION: True},
        )
        cleanup.full_clean()
        cleanup.save()
    return cleanup, True


def ensure_retention_schedules() -> int:
    """Give every tenant its history retention cleanup; return how many were created."""
    with_one = CleanupConfig.objects.filter(name=RETENTION_NAME).values("tenant_id")
    created = 0
    # The base manager: a host's default manager may need a context ``migrate`` is not in.
    tenants = get_tenant_model()._base_manager.exclude(pk__in=with_one)
    for tenant in tenants.iterator():
        created += ensure_retention_schedule_or_warn(tenant)
    return created


def ensure_retention_schedule_or_warn(tenant: Tenant) -> bool:
    """Like ``ensure_retention_schedule``, but log instead of raising when it is invalid.

    Creating a tenant or running ``migrate`` must not fail because of this convenience (a
    host project's tenant model may carry a time zone the schedule rejects).
    """
    try:
        return ensure_retention_schedule(tenant)[1]
    except ValidationError as exc:
        logger.warning(
            "Tenant %s gets no %r schedule: %s", tenant.pk, RETENTION_NAME, "; ".join(exc.messages)
        )
        return False


def sync_retention_days(tenant: Tenant) -> int:
    """Mirror ``tenant``'s current retention into its built-in cleanup's ``retain_days``.

    Display only: a run reads the tenant's value anyway. A plain ``update()`` leaves
    ``updated_at`` alone because the scheduler's job does not depend on it.
    """
    return (
        CleanupConfig.objects.filter(tenant=tenant, name=RETENTION_NAME)
        .exclude(retain_days=retention_days(tenant))
        .filter(**{f"options__{RETENTION_OPTION}": True})
        .update(retain_days=retention_days(tenant))
    )
