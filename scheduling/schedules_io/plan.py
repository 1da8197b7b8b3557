"""Import, the planning half: what a schedules file would change, and what is wrong with it.

Import validates everything before it changes anything (``apply_plan`` refuses a plan with
errors): every entry goes through the same rules as the admin and the API
(``services.validate_schedule``: fields, trigger, registered type and options, bounds), and the
tenants' dependency graphs as they will be after the import are checked for unknown names and
cycles, and their quotas. One bad entry and nothing is applied; each problem names its position
(``schedules[3]`` and, in YAML, the line). Planning writes nothing.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.db import models

from .. import services
from ..kinds import KINDS, get_kind
from ..models import Schedule
from ..retention import is_builtin_retention
from ..tenancy import find_tenant, tenant_key
from .export import IDENTITY_KEYS, Identity, config_fields, export_entry
from .formats import FORMAT_VERSION, Document
from .problems import NEVER_FIRES_AGAIN, Problem, cycle_problems, never_fires_again, problems_from
from .values import import_value

if TYPE_CHECKING:
    from tenants.models import Tenant

Key = tuple[Any, str, str]  # (tenant pk, kind, name): a schedule across tenants


@dataclass
class Change:
    """What import does to one schedule."""

    action: str  # "create" | "update" | "delete" | "unchanged"
    schedule: Schedule
    tenant: Tenant
    index: int | None = None
    depends_on: list[Identity] = field(default_factory=list)
    changes: dict[str, list[Any]] = field(default_factory=dict)
    original: Schedule | None = None  # an update's schedule as it was, for the audit trail

    @property
    def identity(self) -> str:
        return f"{tenant_key(self.tenant)}/{self.schedule.kind}/{self.schedule.name}"

    @property
    def key(self) -> Key:
        return (self.tenant.pk, self.schedule.kind, self.schedule.name)

    def as_dict(self) -> dict[str, Any]:
        """Return the change as JSON-able data (an update with its changed fields)."""
        data: dict[str, Any] = {
            "action": self.action,
            "tenant": tenant_key(self.tenant),
            "kind": self.schedule.kind,
            "name": self.schedule.name,
            "id": self.schedule.pk,
            "index": self.index,
        }
        if self.action == "update":
            data["changes"] = self.changes
        return data


@dataclass
class ImportPlan:
    """The outcome of validating a file against the database: what import would do."""

    changes: list[Change] = field(default_factory=list)
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.errors

    def of(self, action: str) -> list[Change]:
        """Return the changes of ``action``, in file order."""
        return [c for c in self.changes if c.action == action]

    def summary(self) -> dict[str, int]:
        """Return how many schedules each action touches."""
        return {
            action: len(self.of(action)) for action in ("create", "update", "delete", "unchanged")
        }

    def as_dict(self) -> dict[str, Any]:
        """Return the plan as JSON-able data, leaving out what stays unchanged."""
        return {
            "valid": self.valid,
            "summary": self.summary(),
            "changes": [c.as_dict() for c in self.changes if c.action != "unchanged"],
            "errors": [p.as_dict() for p in self.errors],
            "warnings": [p.as_dict() for p in self.warnings],
        }


@dataclass
class Entry:
    """One entry of the file, read: whose it is, its field values and its dependencies."""

    index: int
    tenant: Tenant
    kind: str
    name: str
    values: dict[str, Any]
    depends_on: list[Identity]
    where: dict[str, str]  # tenant key, kind and name, for the problems it has
    duplicate: bool = False

    @property
    def key(self) -> Key:
        return (self.tenant.pk, self.kind, self.name)


class Planner:
    """Turn a parsed file into an ``ImportPlan``; nothing is written."""

    def __init__(
        self,
        document: Document,
        *,
        tenants: models.QuerySet[Tenant],
        only_tenant: Tenant | None = None,
        only_kind: str | None = None,
        prune: bool = False,
    ) -> None:
        self.document = document
        self.tenants = tenants
        self.only_tenant = only_tenant
        self.only_kind = only_kind
        self.prune = prune
        self.plan = ImportPlan()
        self._tenant_cache: dict[str, Tenant | None] = {}

    def error(self, message: str, index: int | None = None, **where: Any) -> None:
        """Record an error of entry ``index`` (None: the file), at its line if known."""
        line = self.document.line(index, where.get("field"))
        self.plan.errors.append(Problem(message, index=index, line=line, **where))

    def build(self) -> ImportPlan:
        """Return the plan: every change, error and warning, in file order."""
        raw_entries = self._entries()
        if raw_entries is None:
            return self.plan
        read = (self._parse_entry(index, raw) for index, raw in enumerate(raw_entries))
        entries = [entry for entry in read if entry is not None]
        tenants = {id(e.tenant): e.tenant for e in entries}
        tenants_by_pk = {t.pk: t for t in tenants.values()}
        existing = self._existing(tenants_by_pk)
        self._check_duplicates(entries)
        for entry in entries:
            self._plan_entry(entry, existing)
        if self.prune:
            self._plan_prune(tenants_by_pk, existing, entries)
        self._check_dependencies(tenants_by_pk, existing)
        self._check_quota(tenants_by_pk, existing)
        for problems in (self.plan.errors, self.plan.warnings):
            problems.sort(key=lambda p: (p.index is None, p.index or 0, p.line or 0))
        return self.plan

    # -- structure

    def _entries(self) -> list[Any] | None:
        data = self.document.data
        if not isinstance(data, dict):
            self.error("the file must be a mapping with a 'schedules' list")
            return None
        unknown = sorted(set(data) - {"version", "schedules"})
        if unknown:
            self.error(f"unknown top-level key(s): {', '.join(map(str, unknown))}")
        version = data.get("version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            self.error(f"unsupported version {version!r}; this app reads version 1")
        entries = data.get("schedules")
        if not isinstance(entries, list):
            self.error("'schedules' must be a list of entries")
            return None
        return entries

    def _tenant(self, key: str) -> Tenant | None:
        if key not in self._tenant_cache:
            self._tenant_cache[key] = find_tenant(key, self.tenants)
        return self._tenant_cache[key]

    def _parse_entry(self, index: int, raw: Any) -> Entry | None:
        if not isinstance(raw, dict):
            self.error("an entry must be a mapping of fields", index)
            return None
        missing = [k for k in IDENTITY_KEYS if raw.get(k) in (None, "")]
        if missing:
            hint = (
                " (system schedules, which have no tenant, are not imported: create them in "
                "the admin, the API or SCHEDULING_DECLARED_SCHEDULES)"
                if "tenant" in missing
                else ""
            )
            self.error(f"missing {', '.join(missing)}{hint}", index, name=raw.get("name"))
            return None
        tenant_name, kind, name = (raw[k] for k in IDENTITY_KEYS)
        where = {"tenant": str(tenant_name), "kind": str(kind), "name": str(name)}
        if kind not in KINDS:
            self.error(
                f"unknown kind {kind!r}; use one of {', '.join(KINDS)}",
                index,
                field="kind",
                **where,
            )
            return None
        if not isinstance(name, str):
            self.error("the name must be a string (quote it)", index, field="name", **where)
            return None
        if self.only_kind and kind != self.only_kind:
            return None
        if self.only_tenant is not None and str(tenant_name) not in (
            tenant_key(self.only_tenant),
            str(self.only_tenant.pk),
        ):
            return None
        tenant = self._tenant(str(tenant_name))
        if tenant is None:
            self.error(f"unknown tenant {tenant_name!r}", index, field="tenant", **where)
            return None
        where["tenant"] = tenant_key(tenant) or ""
        fields = {f.name: f for f in config_fields(get_kind(kind).model)}
        # A datetime without an offset is read in the entry's time zone, else the tenant's.
        zone = str(raw.get("timezone") or getattr(tenant, "timezone", "") or "UTC")
        values: dict[str, Any] = {}
        ok = True
        for key, value in raw.items():
            if key in IDENTITY_KEYS or key == "depends_on":
                continue
            if key not in fields:
                self.error(f"unknown field for a {kind}", index, field=str(key), **where)
                ok = False
                continue
            try:
                values[key] = import_value(fields[key], value, zone=zone)
            except ValidationError as exc:
                for message in exc.messages:
                    self.error(message, index, field=key, **where)
                ok = False
        depends_on = self._parse_dependencies(index, raw.get("depends_on"), kind, where)
        if not ok or depends_on is None:
            return None
        return Entry(index, tenant, kind, name, values, depends_on, where)

    def _parse_dependencies(
        self, index: int, raw: Any, kind: str, where: dict[str, str]
    ) -> list[Identity] | None:
        if raw in (None, []):
            return []
        if not isinstance(raw, list):
            self.error("must be a list", index, field="depends_on", **where)
            return None
        deps: list[Identity] = []
        for item in raw:
            if isinstance(item, str):
                deps.append((kind, item))
            elif (
                isinstance(item, dict)
                and set(item) == {"kind", "name"}
                and item["kind"] in KINDS
                and isinstance(item["name"], str)
            ):
                deps.append((item["kind"], item["name"]))
            else:
                self.error(
                    f"each item must be a name or {{kind: {'|'.join(KINDS)}, name: ...}}; "
                    f"got {item!r}",
                    index,
                    field="depends_on",
                    **where,
                )
                return None
        return deps

    def _check_duplicates(self, entries: list[Entry]) -> None:
        seen: dict[Key, int] = {}
        for entry in entries:
            if entry.key in seen:
                self.error(
                    f"the same schedule as schedules[{seen[entry.key]}]",
                    entry.index,
                    field="name",
                    **entry.where,
                )
                entry.duplicate = True
            else:
                seen[entry.key] = entry.index

    # -- database

    def _existing(self, tenants_by_pk: dict[Any, Tenant]) -> dict[Key, Schedule]:
        existing: dict[Key, Schedule] = {}
        if not tenants_by_pk:
            return existing
        for kind, spec in KINDS.items():
            rows = spec.model.objects.filter(tenant_id__in=list(tenants_by_pk)).prefetch_related(
                "depends_on"
            )
            for row in rows:
                row.tenant = tenants_by_pk[row.tenant_id]  # one object per tenant, no join
                existing[(row.tenant_id, kind, row.name)] = row
        return existing

    def _plan_entry(self, entry: Entry, existing: dict[Key, Schedule]) -> None:
        if entry.duplicate:
            return
        model = get_kind(entry.kind).model
        current = existing.get(entry.key)
        values = {
            f.name: f.get_default() for f in config_fields(model) if f.name not in entry.values
        }
        values.update(entry.values)
        before: dict[str, Any] | None
        if current is None:
            schedule = model(tenant=entry.tenant, name=entry.name, kind=entry.kind, **values)
            before = None
            original = None
        else:
            before = export_entry(current, include_defaults=True)
            original = copy.copy(current)
            schedule = current
            for key, value in values.items():
                setattr(schedule, key, value)
        where: dict[str, Any] = {"index": entry.index, **entry.where}
        try:
            services.validate_schedule(schedule, creating=False)
        except ValidationError as exc:
            for problem in problems_from(exc, **where):
                problem.line = self.document.line(problem.index, problem.field)
                self.plan.errors.append(problem)
        else:
            if never_fires_again(schedule):
                self.plan.warnings.append(
                    Problem(
                        NEVER_FIRES_AGAIN,
                        level="warning",
                        line=self.document.line(entry.index),
                        **where,
                    )
                )
        after = export_entry(schedule, depends_on=entry.depends_on, include_defaults=True)
        if before is None:
            action, changes = "create", {}
        else:
            changes = {
                key: [before.get(key), value]
                for key, value in after.items()
                if before.get(key) != value
            }
            action = "update" if changes else "unchanged"
            owned = sorted(set(changes) - services.DECLARED_OPERATOR_FIELDS)
            if current is not None and current.declared and owned:
                self.error(
                    "declared in code (SCHEDULING_DECLARED_SCHEDULES): import may change only "
                    f"enabled and paused_until; this entry changes {', '.join(owned)}",
                    entry.index,
                    field="name",
                    **entry.where,
                )
        self.plan.changes.append(
            Change(
                action=action,
                schedule=schedule,
                tenant=entry.tenant,
                index=entry.index,
                depends_on=entry.depends_on,
                changes=changes,
                original=original,
            )
        )

    def _plan_prune(
        self, tenants_by_pk: dict[Any, Tenant], existing: dict[Key, Schedule], entries: list[Entry]
    ) -> None:
        named = {entry.key for entry in entries}
        for key, schedule in sorted(existing.items(), key=lambda kv: (str(kv[0][0]), *kv[0][1:])):
            if key in named or (self.only_kind and schedule.kind != self.only_kind):
                continue
            if is_builtin_retention(schedule) or schedule.declared:
                continue  # migrate would bring it back (retention) or code owns it (declared)
            self.plan.changes.append(
                Change(action="delete", schedule=schedule, tenant=tenants_by_pk[key[0]])
            )

    # -- checks across entries

    def _check_dependencies(
        self, tenants_by_pk: dict[Any, Tenant], existing: dict[Key, Schedule]
    ) -> None:
        """Check the dependency graph of each tenant as it will be after the import."""
        deleted = {id(c.schedule) for c in self.plan.of("delete")}
        planned = {c.key: c for c in self.plan.changes if c.action != "delete"}
        for tenant_pk, tenant in tenants_by_pk.items():
            graph: dict[Identity, list[Identity]] = {}
            for (pk, kind, name), schedule in existing.items():
                if pk == tenant_pk and id(schedule) not in deleted:
                    graph[(kind, name)] = [(d.kind, d.name) for d in schedule.depends_on.all()]
            for (pk, kind, name), change in planned.items():
                if pk == tenant_pk:
                    graph[(kind, name)] = list(change.depends_on)
            for (pk, kind, name), change in planned.items():
                if pk != tenant_pk:
                    continue
                where = {
                    "field": "depends_on",
                    "tenant": tenant_key(change.tenant),
                    "kind": kind,
                    "name": name,
                }
                for dep in change.depends_on:
                    if dep == (kind, name):
                        self.error("a schedule cannot depend on itself", change.index, **where)
                    elif dep not in graph:
                        self.error(
                            f"depends on {dep[0]}/{dep[1]}, which does not exist",
                            change.index,
                            **where,
                        )
            for problem in cycle_problems(graph, tenant):
                # Name the file's entry of the cycle's first schedule, if the file has it.
                first = planned.get((tenant_pk, problem.kind or "", problem.name or ""))
                problem.index = first.index if first else None
                problem.line = self.document.line(problem.index, problem.field)
                self.plan.errors.append(problem)

    def _check_quota(self, tenants_by_pk: dict[Any, Tenant], existing: dict[Key, Schedule]) -> None:
        for tenant_pk, tenant in tenants_by_pk.items():
            created = [c for c in self.plan.of("create") if c.tenant.pk == tenant_pk]
            if not created:
                continue  # as in the API, only a new schedule is held to the quota
            count = sum(1 for key in existing if key[0] == tenant_pk)
            deleted = [c for c in self.plan.of("delete") if c.tenant.pk == tenant_pk]
            limit = services.over_quota_limit(
                tenant, count=count - len(deleted), adding=len(created)
            )
            if limit is not None:
                total = count + len(created) - len(deleted)
                self.error(
                    f"the tenant would have {total} schedules; its limit is {limit}",
                    created[0].index,
                    tenant=tenant_key(tenant),
                )


def plan_import(
    document: Document,
    *,
    tenants: models.QuerySet[Tenant],
    only_tenant: Tenant | None = None,
    only_kind: str | None = None,
    prune: bool = False,
) -> ImportPlan:
    """Validate ``document`` against the database and return what importing it would do.

    ``tenants`` are the tenants the file may name (the caller's scope). ``only_tenant`` and
    ``only_kind`` apply a part of the file; ``prune`` plans the deletion of the schedules of
    the file's tenants (and kind) that the file does not name. The built-in history retention
    cleanup and the schedules declared in code are never pruned; an entry may change only the
    state (enabled, paused_until) of a schedule declared in code.
    """
    return Planner(
        document,
        tenants=tenants,
        only_tenant=only_tenant,
        only_kind=only_kind,
        prune=prune,
    ).build()
