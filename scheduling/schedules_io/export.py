"""What an entry of a schedules file holds, and export: schedules to entries."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import models

from ..kinds import KINDS
from ..models import STATE_FIELDS, Schedule
from ..tenancy import tenant_key
from .formats import FORMAT_VERSION
from .values import export_value

IDENTITY_KEYS = ("tenant", "kind", "name")
NOT_CONFIGURATION = STATE_FIELDS | {
    "id",
    "schedule_ptr",
    "tenant",
    "kind",
    "name",
    "created_at",
    "updated_at",
    "declared",  # whether SCHEDULING_DECLARED_SCHEDULES owns it: not configuration
    # Whether the schedule keeps the old cron day rule until it is saved again: state of an
    # upgrade, not configuration (an import that changes the schedule saves it, and clears it).
    "legacy_day_rule",
}
# Always written, even at their default: without them an entry is hard to read.
ALWAYS_EXPORTED = ("trigger_type", "timezone")

Identity = tuple[str, str]  # (kind, name) within one tenant


def config_fields(model: type[Schedule]) -> list[models.Field]:
    """Return the fields of ``model`` that make up a schedule's configuration, in order."""
    return [f for f in model._meta.concrete_fields if f.name not in NOT_CONFIGURATION]


def export_entry(
    schedule: Schedule,
    *,
    depends_on: Iterable[Identity] | None = None,
    include_defaults: bool = False,
) -> dict[str, Any]:
    """Return the file entry of ``schedule`` (a concrete kind).

    ``depends_on`` gives the dependencies as (kind, name) pairs; by default they are read
    from the database (or the prefetch cache).
    """
    entry: dict[str, Any] = {
        "tenant": tenant_key(schedule.tenant),
        "kind": schedule.kind,
        "name": schedule.name,
    }
    for f in config_fields(type(schedule)):
        value = f.value_from_object(schedule)
        if include_defaults or f.name in ALWAYS_EXPORTED or value != f.get_default():
            entry[f.name] = export_value(value)
    if depends_on is None:
        depends_on = [(dep.kind, dep.name) for dep in schedule.depends_on.all()]
    deps = sorted(depends_on)
    if deps or include_defaults:
        entry["depends_on"] = [{"kind": kind, "name": name} for kind, name in deps]
    return entry


def export_schedules(queryset: models.QuerySet[Schedule]) -> dict[str, Any]:
    """Return the file document of the schedules of ``queryset`` (of ``Schedule``).

    System schedules (no tenant) are left out: a file's entries belong to tenants. Code owns
    system schedules through SCHEDULING_DECLARED_SCHEDULES; operators, the admin and the API.
    """
    entries: list[dict[str, Any]] = []
    for spec in KINDS.values():
        rows = (
            spec.model.objects.filter(pk__in=queryset.values("pk"), tenant__isnull=False)
            .select_related("tenant")
            .prefetch_related("depends_on")
        )
        entries.extend(export_entry(row) for row in rows)
    entries.sort(key=lambda e: (e["tenant"], e["kind"], e["name"]))
    return {"version": FORMAT_VERSION, "schedules": entries}
