"""What the scheduler process is doing, read from the database: one answer for every edge.

The CLI's ``status`` verb, the ``/healthz`` endpoint, the ``check_scheduler`` system check and
the API's scheduler status all ask :func:`scheduler_status`, so "healthy" means the same thing
everywhere: the lease has a holder, it has not expired, and its heartbeat (``renewed_at``) is
no older than ``SCHEDULING_HEALTH_MAX_HEARTBEAT_AGE`` seconds.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any, TypedDict

from django.utils import timezone

from .conf import conf
from .models import Schedule, SchedulerLease
from .tenancy import tenant_key

NEXT_FIRES = 10


class LeaseHealth(TypedDict):
    leader_active: bool  # the lease is held and has not expired
    heartbeat_age_seconds: float | None
    max_heartbeat_age_seconds: float  # SCHEDULING_HEALTH_MAX_HEARTBEAT_AGE
    healthy: bool  # leader_active and a fresh heartbeat
    problem: str | None  # why it is not healthy, in words; None when it is


def lease_health(lease: SchedulerLease | None, now: datetime | None = None) -> LeaseHealth:
    """Return whether ``lease`` shows a live leader, the heartbeat age behind that, and why not."""
    now = now or timezone.now()
    max_age = float(conf.HEALTH_MAX_HEARTBEAT_AGE)
    renewed_at = lease.renewed_at if lease else None
    age = (now - renewed_at).total_seconds() if renewed_at else None
    leader_active = bool(lease and lease.is_held(now))
    healthy = leader_active and age is not None and age <= max_age
    problem = None
    if lease is None:
        problem = "no scheduler has ever run against this database"
    elif not leader_active or age is None:
        problem = "no scheduler holds the lease"
    elif not healthy:
        problem = (
            f"the leader's heartbeat is {age:.0f} s old "
            f"(SCHEDULING_HEALTH_MAX_HEARTBEAT_AGE is {max_age:g} s)"
        )
    return {
        "leader_active": leader_active,
        "heartbeat_age_seconds": age,
        "max_heartbeat_age_seconds": max_age,
        "healthy": healthy,
        "problem": problem,
    }


def get_lease() -> SchedulerLease | None:
    """Return the lease row of the configured scheduler group, if any scheduler ever ran."""
    return SchedulerLease.objects.filter(name=conf.LEASE_NAME).first()


def scheduler_status(
    *,
    tenant_ids: Collection[int] | None = None,
    next_count: int = NEXT_FIRES,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Return the leader, its heartbeat, the last sync and the next fires.

    ``tenant_ids`` limits the tenant data (the next fires and the job count) to those tenants;
    None means every tenant. The result holds plain values (datetimes stay ``datetime``)::

        {
            "lease_name": "default",
            "leader": "host:1234:ab12" | None,    # the lease holder, None when released
            "leader_active": bool,                # held and not expired
            "healthy": bool,                      # leader_active and a fresh heartbeat
            "problem": str | None,                # why not healthy, in words
            "heartbeat_age_seconds": float | None,
            "max_heartbeat_age_seconds": float,   # SCHEDULING_HEALTH_MAX_HEARTBEAT_AGE
            "renewed_at": datetime | None,
            "expires_at": datetime | None,
            "last_sync_at": datetime | None,
            "sync_lag_ms": int | None,            # duration of the last sync pass
            "job_count": int,                     # jobs in the store; scoped: enabled schedules
            "next_fires": [
                {"id", "tenant_id", "tenant", "kind", "name", "next_run_at", "paused_until"}
            ],
        }

    The leader's identity is not tenant data; a caller that must not show host names (the API
    for a non-superuser) drops it.
    """
    now = now or timezone.now()
    lease = get_lease()
    schedules = Schedule.objects.all()
    if tenant_ids is not None:
        schedules = schedules.filter(tenant_id__in=list(tenant_ids))
        job_count = schedules.filter(enabled=True).count()
    else:
        job_count = lease.job_count if lease else 0
    upcoming = (
        schedules.filter(enabled=True, next_run_at__isnull=False)
        .select_related("tenant")
        .order_by("next_run_at", "pk")[: max(0, next_count)]
    )
    return {
        "lease_name": conf.LEASE_NAME,
        "leader": (lease.holder or None) if lease else None,
        **lease_health(lease, now),
        "renewed_at": lease.renewed_at if lease else None,
        "expires_at": lease.expires_at if lease else None,
        "last_sync_at": lease.last_sync_at if lease else None,
        "sync_lag_ms": lease.sync_lag_ms if lease else None,
        "job_count": job_count,
        "next_fires": [
            {
                "id": schedule.pk,
                "tenant_id": schedule.tenant_id,
                "tenant": tenant_key(schedule.tenant),
                "kind": schedule.kind,
                "name": schedule.name,
                "next_run_at": schedule.next_run_at,
                "paused_until": schedule.paused_until,
            }
            for schedule in upcoming
        ],
    }
