"""Import, the writing half: apply a valid plan in one transaction, with its audit trail."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from .. import services
from ..models import AuditAction, Schedule
from .export import Identity
from .formats import ScheduleFileError
from .plan import Change, ImportPlan, Key


def apply_plan(plan: ImportPlan, *, user: Any = None, source: str = "cli") -> dict[str, int]:
    """Apply a valid plan in one transaction, recording each change in the audit trail."""
    if not plan.valid:
        raise ScheduleFileError("the file has errors; nothing was changed")
    writes = [c for c in plan.changes if c.action in ("create", "update")]
    with transaction.atomic():
        before = {id(c): services.snapshot(c.original) for c in writes if c.original is not None}
        for change in writes:
            change.schedule.save()
        saved = {c.key: c.schedule for c in plan.changes if c.action != "delete"}
        for change in writes:
            deps = [_lookup(change, dep, saved) for dep in change.depends_on]
            change.schedule.depends_on.set(deps)
        for change in writes:
            after = services.snapshot(change.schedule)
            if change.action == "create":
                services.record_audit(
                    schedule=change.schedule,
                    action=AuditAction.CREATE,
                    user=user,
                    source=source,
                    changes={name: [None, value] for name, value in after.items()},
                )
            else:
                services.record_audit(
                    schedule=change.schedule,
                    action=AuditAction.CHANGE,
                    user=user,
                    source=source,
                    changes=services.diff(before[id(change)], after),
                )
        for change in plan.of("delete"):
            services.delete_schedule(schedule=change.schedule, user=user, source=source)
    return plan.summary()


def _lookup(change: Change, dep: Identity, saved: dict[Key, Schedule]) -> Schedule:
    key = (change.tenant.pk, *dep)
    if key in saved:
        return saved[key]
    return Schedule.objects.get(tenant_id=change.tenant.pk, kind=dep[0], name=dep[1])
