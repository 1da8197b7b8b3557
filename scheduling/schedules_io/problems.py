"""Problems: what validation finds in a file or in the stored schedules, and where."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import models
from django.utils import timezone

from .. import services
from ..exceptions import SchedulingError
from ..kinds import KINDS
from ..models import Schedule
from ..tenancy import tenant_key
from ..triggers import next_runs
from .export import Identity

if TYPE_CHECKING:
    from tenants.models import Tenant

NEVER_FIRES_AGAIN = "enabled, but its trigger will never fire again"


@dataclass
class Problem:
    """One finding of validation: where it is, which schedule, which field, what is wrong."""

    message: str
    level: str = "error"  # "error" | "warning"
    index: int | None = None  # position in the file's ``schedules`` list
    line: int | None = None  # line in a YAML file
    schedule_id: int | None = None  # a schedule in the database
    tenant: str | None = None
    kind: str | None = None
    name: str | None = None
    field: str | None = None

    @property
    def position(self) -> str:
        if self.index is None:
            return f"schedule {self.schedule_id}" if self.schedule_id is not None else ""
        where = f"schedules[{self.index}]"
        return f"{where}, line {self.line}" if self.line else where

    @property
    def identity(self) -> str:
        parts = [p for p in (self.tenant, self.kind, self.name) if p is not None]
        return "/".join(str(p) for p in parts)

    def __str__(self) -> str:
        prefix = ", ".join(p for p in (self.position, self.identity) if p)
        target = f"{self.field}: " if self.field and self.field != NON_FIELD_ERRORS else ""
        return f"{prefix}: {target}{self.message}" if prefix else f"{target}{self.message}"

    def as_dict(self) -> dict[str, Any]:
        """Return the problem as JSON-able data (``field`` None for the whole entry)."""
        return {
            "level": self.level,
            "index": self.index,
            "line": self.line,
            "schedule_id": self.schedule_id,
            "tenant": self.tenant,
            "kind": self.kind,
            "name": self.name,
            "field": None if self.field == NON_FIELD_ERRORS else self.field,
            "message": self.message,
        }


def problems_from(exc: ValidationError, **where: Any) -> list[Problem]:
    """Return a problem per message of ``exc``, keyed by its field; ``where`` says whose."""
    if not hasattr(exc, "error_dict"):
        return [Problem(message, **where) for message in exc.messages]
    return [
        Problem(message, field=name, **where)
        for name, messages in exc.message_dict.items()
        for message in messages
    ]


def cycle_problems(
    graph: Mapping[Identity, Iterable[Identity]], tenant: Tenant | None
) -> list[Problem]:
    """Return an error per dependency cycle of ``tenant``'s ``graph`` of (kind, name) pairs."""
    problems = []
    for cycle in services.find_cycles(graph):
        text = " -> ".join(f"{kind}/{name}" for kind, name in cycle)
        problems.append(
            Problem(
                f"dependency cycle: {text}",
                field="depends_on",
                tenant=tenant_key(tenant),
                kind=cycle[0][0],
                name=cycle[0][1],
            )
        )
    return problems


def never_fires_again(schedule: Schedule) -> bool:
    """Return whether an enabled ``schedule`` has no future fire time left."""
    if not schedule.enabled or schedule.is_paused_indefinitely():
        return False  # paused until resumed: it fires again once someone resumes it
    try:
        runs = next_runs(schedule, 1)
    except (ArithmeticError, ValueError, SchedulingError):
        return False  # reported as an error by validation
    # A date trigger answers its run time even when that has passed.
    return not runs or runs[0] < timezone.now()


def validate_database(queryset: models.QuerySet[Schedule]) -> tuple[list[Problem], list[Problem]]:
    """Check stored schedules like a file; return (errors, warnings).

    Finds what rules or code changed under the rows: unregistered type keys, cron expressions
    or options that no longer validate, dependency cycles, and enabled schedules that will
    never fire again.
    """
    errors: list[Problem] = []
    warnings: list[Problem] = []
    graphs: dict[Any, dict[Identity, list[Identity]]] = {}  # by tenant pk
    tenants: dict[Any, Tenant | None] = {}
    for spec in KINDS.values():
        rows = (
            spec.model.objects.filter(pk__in=queryset.values("pk"))
            .select_related("tenant")
            .prefetch_related("depends_on")
            .order_by("tenant_id", "name")
        )
        for row in rows:
            where: dict[str, Any] = {
                "schedule_id": row.pk,
                "tenant": tenant_key(row.tenant),
                "kind": row.kind,
                "name": row.name,
            }
            tenants[row.tenant_id] = row.tenant
            graphs.setdefault(row.tenant_id, {})[(row.kind, row.name)] = [
                (d.kind, d.name) for d in row.depends_on.all()
            ]
            try:
                services.validate_schedule(row, creating=False)
            except ValidationError as exc:
                errors.extend(problems_from(exc, **where))
                continue
            if never_fires_again(row):
                warnings.append(Problem(NEVER_FIRES_AGAIN, "warning", **where))
    for tenant_pk, graph in graphs.items():
        errors.extend(cycle_problems(graph, tenants[tenant_pk]))
    errors.sort(key=lambda p: (p.tenant or "", p.kind or "", p.name or ""))
    warnings.sort(key=lambda p: (p.tenant or "", p.kind or "", p.name or ""))
    return errors, warnings
