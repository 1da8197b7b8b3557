"""Receivers the app connects in ``AppConfig.ready()``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import connections, router

from .conf import conf
from .models import CleanupConfig, Schedule, ScheduleDeletion
from .retention import (
    ensure_retention_schedule_or_warn,
    ensure_retention_schedules,
    sync_retention_days,
)
from .tenancy import get_tenant_model

if TYPE_CHECKING:
    from django.apps import AppConfig
    from django.db.models import Model

    from tenants.models import Tenant


def record_schedule_deletion(sender: type[Model], instance: Model, **kwargs: object) -> None:
    """Leave a tombstone so the scheduler drops the job without waiting for a full sync."""
    if isinstance(instance, Schedule) and type(instance) is Schedule and instance.pk:
        ScheduleDeletion.objects.create(schedule_id=instance.pk)


def create_retention_schedules(sender: AppConfig, using: str = "default", **kwargs: object) -> None:
    """After ``migrate``: give every tenant its built-in history retention cleanup."""
    if not conf.RETENTION_SCHEDULE:
        return
    models = (Schedule, CleanupConfig, get_tenant_model())
    if not all(router.allow_migrate_model(using, model) for model in models):
        return
    # ``migrate`` to an earlier state (``migrate scheduling zero``) ends without the tables.
    tables = set(connections[using].introspection.table_names())
    if any(model._meta.db_table not in tables for model in models):
        return
    ensure_retention_schedules()


def tenant_saved(
    sender: type[Tenant], instance: Tenant, created: bool, raw: bool = False, **kwargs: object
) -> None:
    """A new tenant gets its history retention cleanup; a changed one, its retain_days."""
    if raw:  # loaddata: the fixture brings its own rows
        return
    if not conf.RETENTION_SCHEDULE:
        return
    if created:
        ensure_retention_schedule_or_warn(instance)
    else:
        sync_retention_days(instance)
