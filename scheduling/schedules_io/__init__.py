"""Schedules as code: export schedules to YAML or JSON, validate such a file, import it.

The file format (version 1) is a list of entries; an entry's identity is its tenant, kind and
name (unique together), so a file can be applied again and again::

    version: 1
    schedules:
    - tenant: acme                # the tenant's slug (its id for a tenant model without one)
      kind: scan                  # scan | report | cleanup
      name: Homepage              # unique per tenant and kind
      scan_type: http
      target: https://example.com/
      trigger_type: cron
      cron_expression: '*/5 * * * *'
      timezone: Europe/Berlin
      options: {expected_status: 200}
      depends_on:                 # schedules of the same tenant, any kind
      - {kind: report, name: Nightly}

Every configuration field of the entry's kind may appear under its model field name
(``description``, ``enabled``, ``paused_until``, ``interval_seconds``, ``run_at``,
``start_at``, ``end_at``, ``jitter_seconds``, ``timeout_seconds``, ``max_retries``,
``overlap``, ``report_type``, ``format``, ``recipients``, ``cleanup_target``,
``retain_days`` ...). A field left out takes the model's default, also when the entry updates
an existing schedule: the file is the whole truth about the schedules it names. Export leaves
out the fields that are at their default. What the scheduler keeps (``next_run_at``,
``run_count`` ...) and timestamps are not part of a schedule's configuration.

Datetimes are ISO 8601 strings; export writes them in UTC with the offset. A datetime without
an offset is read in the entry's ``timezone`` (else the tenant's). A ``depends_on`` item may
also be a plain name: a schedule of the same kind.

Import validates everything before it changes anything: every entry goes through the same
rules as the admin and the API (``services.validate_schedule``: fields, trigger, registered
type and options, bounds), and the tenants' dependency graphs as they will be after the import
are checked for unknown names and cycles. One bad entry and nothing is applied; each problem
names its position (``schedules[3]`` and, in YAML, the line).
"""

from __future__ import annotations

import copy
import json
import zoneinfo
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import yaml
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import models, transaction
from django.utils import timezone

from .. import services
from ..exceptions import SchedulingError
from ..models import STATE_FIELDS, AuditAction, CleanupConfig, Kind, PeriodicScan, Report, Schedule
from ..tenancy import find_tenant, tenant_key

FORMAT_VERSION = 1
FILE_FORMATS = ("yaml", "json")
KIND_MODELS: dict[str, type[Schedule]] = {
    Kind.SCAN: PeriodicScan,
    Kind.REPORT: Report,
    Kind.CLEANUP: CleanupConfig,
}
IDENTITY_KEYS = ("tenant", "kind", "name")
NOT_CONFIGURATION = STATE_FIELDS | {
    "id",
    "schedule_ptr",
    "tenant",
    "kind",
    "name",
    "created_at",
    "updated_at",
}
# Always written, even at their default: without them an entry is hard to read.
ALWAYS_EXPORTED = ("trigger_type", "timezone")
TEXT_FIELDS = (models.CharField, models.TextField)

Identity = tuple[str, str]  # (kind, name) within one tenant


class ScheduleFileError(SchedulingError):
    """A schedules file that cannot be read at all (syntax, structure)."""


def config_fields(model: type[Schedule]) -> list[models.Field]:
    """Return the fields of ``model`` that make up a schedule's configuration, in order."""
    return [f for f in model._meta.concrete_fields if f.name not in NOT_CONFIGURATION]


# -- export ---------------------------------------------------------------------------------


def _export_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(zoneinfo.ZoneInfo("UTC")).isoformat()
    return value


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
            entry[f.name] = _export_value(value)
    if depends_on is None:
        depends_on = [(dep.kind, dep.name) for dep in schedule.depends_on.all()]
    deps = sorted(depends_on)
    if deps or include_defaults:
        entry["depends_on"] = [{"kind": kind, "name": name} for kind, name in deps]
    return entry


def export_schedules(queryset: models.QuerySet) -> dict[str, Any]:
    """Return the file document of the schedules of ``queryset`` (of ``Schedule``)."""
    entries = []
    for model in KIND_MODELS.values():
        rows = (
            model.objects.filter(pk__in=queryset.values("pk"))
            .select_related("tenant")
            .prefetch_related("depends_on")
        )
        entries.extend(export_entry(row) for row in rows)
    entries.sort(key=lambda e: (e["tenant"], e["kind"], e["name"]))
    return {"version": FORMAT_VERSION, "schedules": entries}


class _Dumper(yaml.SafeDumper):
    """Block style; multi-line text as literal blocks."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def dump(document: dict[str, Any], file_format: str = "yaml") -> str:
    """Serialize a file document as YAML or JSON."""
    if file_format == "json":
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    return yaml.dump(
        document,
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=100,
    )


# -- reading files --------------------------------------------------------------------------


@dataclass
class Document:
    """A parsed schedules file, with the line numbers of its entries where known."""

    data: Any
    entry_lines: list[int | None] = field(default_factory=list)
    field_lines: list[dict[str, int]] = field(default_factory=list)

    def line(self, index: int | None, field_name: str | None = None) -> int | None:
        if index is None or index >= len(self.entry_lines):
            return None
        if field_name and index < len(self.field_lines):
            found = self.field_lines[index].get(field_name)
            if found:
                return found
        return self.entry_lines[index]


def guess_format(name: str, text: str) -> str:
    """Return "json" or "yaml" for a file name (its extension), else its content."""
    lowered = name.lower()
    if lowered.endswith(".json"):
        return "json"
    if lowered.endswith((".yaml", ".yml")):
        return "yaml"
    return "json" if text.lstrip().startswith(("{", "[")) else "yaml"


def parse(text: str, *, file_format: str) -> Document:
    """Parse the text of a schedules file; raise ``ScheduleFileError`` with its position."""
    if file_format == "json":
        try:
            return Document(json.loads(text))
        except json.JSONDecodeError as exc:
            raise ScheduleFileError(
                f"line {exc.lineno} column {exc.colno}: not valid JSON: {exc.msg}"
            ) from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1} column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ScheduleFileError(f"{where}not valid YAML: {problem}") from None
    finally:
        loader.dispose()
    document = Document(data)
    entries = _entries_node(node)
    if entries is not None:
        for item in entries.value:
            document.entry_lines.append(item.start_mark.line + 1)
            lines: dict[str, int] = {}
            if isinstance(item, yaml.MappingNode):
                for key, _value in item.value:
                    if isinstance(key, yaml.ScalarNode):
                        lines.setdefault(str(key.value), key.start_mark.line + 1)
            document.field_lines.append(lines)
    return document


def _entries_node(node: yaml.Node | None) -> yaml.SequenceNode | None:
    if not isinstance(node, yaml.MappingNode):
        return None
    for key, value in node.value:
        if isinstance(key, yaml.ScalarNode) and key.value == "schedules":
            return value if isinstance(value, yaml.SequenceNode) else None
    return None


# -- problems -------------------------------------------------------------------------------


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


def _problems_from(exc: ValidationError, **where: Any) -> list[Problem]:
    if not hasattr(exc, "error_dict"):
        return [Problem(message, **where) for message in exc.messages]
    return [
        Problem(message, field=name, **where)
        for name, messages in exc.message_dict.items()
        for message in messages
    ]


def never_fires_again(schedule: Schedule) -> bool:
    """Return whether an enabled ``schedule`` has no future fire time left."""
    from ..triggers import next_runs

    if not schedule.enabled:
        return False
    try:
        runs = next_runs(schedule, 1)
    except (ArithmeticError, ValueError, SchedulingError):
        return False  # reported as an error by validation
    # A date trigger answers its run time even when that has passed.
    return not runs or runs[0] < timezone.now()


# -- import ---------------------------------------------------------------------------------


@dataclass
class Change:
    """What import does to one schedule."""

    action: str  # "create" | "update" | "delete" | "unchanged"
    schedule: Schedule
    tenant: Any
    index: int | None = None
    depends_on: list[Identity] = field(default_factory=list)
    changes: dict[str, list[Any]] = field(default_factory=dict)
    original: Schedule | None = None  # an update's schedule as it was, for the audit trail

    @property
    def identity(self) -> str:
        return f"{tenant_key(self.tenant)}/{self.schedule.kind}/{self.schedule.name}"

    def as_dict(self) -> dict[str, Any]:
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
        return [c for c in self.changes if c.action == action]

    def summary(self) -> dict[str, int]:
        return {
            action: len(self.of(action)) for action in ("create", "update", "delete", "unchanged")
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "summary": self.summary(),
            "changes": [c.as_dict() for c in self.changes if c.action != "unchanged"],
            "errors": [p.as_dict() for p in self.errors],
            "warnings": [p.as_dict() for p in self.warnings],
        }


class Planner:
    """Turn a parsed file into an ``ImportPlan``; nothing is written."""

    def __init__(
        self,
        document: Document,
        *,
        tenants: models.QuerySet,
        only_tenant: Any = None,
        only_kind: str | None = None,
        prune: bool = False,
    ) -> None:
        self.document = document
        self.tenants = tenants
        self.only_tenant = only_tenant
        self.only_kind = only_kind
        self.prune = prune
        self.plan = ImportPlan()
        self._tenant_cache: dict[str, Any] = {}

    def error(self, message: str, index: int | None = None, **where: Any) -> None:
        line = self.document.line(index, where.get("field"))
        self.plan.errors.append(Problem(message, index=index, line=line, **where))

    def build(self) -> ImportPlan:
        entries = self._entries()
        if entries is None:
            return self.plan
        parsed = [self._parse_entry(index, raw) for index, raw in enumerate(entries)]
        parsed = [p for p in parsed if p is not None]
        tenants = {id(p["tenant"]): p["tenant"] for p in parsed}
        tenants_by_pk = {t.pk: t for t in tenants.values()}
        existing = self._existing(tenants_by_pk)
        self._check_duplicates(parsed)
        for item in parsed:
            self._plan_entry(item, existing)
        if self.prune:
            self._plan_prune(tenants_by_pk, existing, parsed)
        self._check_dependencies(tenants_by_pk, existing)
        self._check_quota(tenants_by_pk, existing)
        for problems in (self.plan.errors, self.plan.warnings):
            problems.sort(key=lambda p: (p.index is None, p.index or 0, p.line or 0))
        return self.plan

    # -- structure

    def _entries(self) -> list | None:
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

    def _tenant(self, key: str) -> Any | None:
        if key not in self._tenant_cache:
            self._tenant_cache[key] = find_tenant(key, self.tenants)
        return self._tenant_cache[key]

    def _parse_entry(self, index: int, raw: Any) -> dict[str, Any] | None:
        if not isinstance(raw, dict):
            self.error("an entry must be a mapping of fields", index)
            return None
        missing = [k for k in IDENTITY_KEYS if raw.get(k) in (None, "")]
        if missing:
            self.error(f"missing {', '.join(missing)}", index, name=raw.get("name"))
            return None
        tenant_name, kind, name = (raw[k] for k in IDENTITY_KEYS)
        where = {"tenant": str(tenant_name), "kind": str(kind), "name": str(name)}
        if kind not in KIND_MODELS:
            self.error(
                f"unknown kind {kind!r}; use one of {', '.join(KIND_MODELS)}",
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
        where["tenant"] = tenant_key(tenant)
        model = KIND_MODELS[kind]
        fields = {f.name: f for f in config_fields(model)}
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
                values[key] = self._convert(fields[key], value, raw, tenant)
            except ValidationError as exc:
                for message in exc.messages:
                    self.error(message, index, field=key, **where)
                ok = False
        depends_on = self._parse_dependencies(index, raw.get("depends_on"), kind, where)
        if not ok or depends_on is None:
            return None
        return {
            "index": index,
            "tenant": tenant,
            "kind": kind,
            "name": name,
            "values": values,
            "depends_on": depends_on,
            "where": where,
        }

    def _convert(self, model_field: models.Field, value: Any, raw: dict, tenant: Any) -> Any:
        if value is None:
            if not model_field.null:
                raise ValidationError("may not be empty (null)")
            return None
        if isinstance(model_field, TEXT_FIELDS) and not model_field.choices:
            if not isinstance(value, str):
                raise ValidationError("must be a string (quote it)")
            return value
        if isinstance(model_field, models.DateTimeField):
            return self._datetime(value, raw, tenant)
        if isinstance(model_field, models.BooleanField) and not isinstance(value, bool):
            raise ValidationError("must be true or false")
        if isinstance(model_field, models.IntegerField) and isinstance(value, bool):
            raise ValidationError("must be a whole number")
        if isinstance(model_field, models.JSONField):
            return value
        return model_field.to_python(value)

    def _datetime(self, value: Any, raw: dict, tenant: Any) -> datetime:
        if isinstance(value, str):
            parsed = models.DateTimeField().to_python(value)
        elif isinstance(value, datetime):
            parsed = value
        elif isinstance(value, date):
            raise ValidationError("must be a date and a time, for example 2026-01-31T09:00")
        else:
            raise ValidationError("must be an ISO 8601 date and time")
        if timezone.is_naive(parsed):
            zone = raw.get("timezone") or getattr(tenant, "timezone", "") or "UTC"
            try:
                parsed = timezone.make_aware(parsed, zoneinfo.ZoneInfo(str(zone)))
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise ValidationError("has no UTC offset and the time zone is unknown") from None
        return parsed

    def _parse_dependencies(
        self, index: int, raw: Any, kind: str, where: dict[str, Any]
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
                and item["kind"] in KIND_MODELS
                and isinstance(item["name"], str)
            ):
                deps.append((item["kind"], item["name"]))
            else:
                self.error(
                    f"each item must be a name or {{kind: scan|report|cleanup, name: ...}}; "
                    f"got {item!r}",
                    index,
                    field="depends_on",
                    **where,
                )
                return None
        return deps

    def _check_duplicates(self, parsed: list[dict[str, Any]]) -> None:
        seen: dict[tuple[Any, str, str], int] = {}
        for item in parsed:
            key = (item["tenant"].pk, item["kind"], item["name"])
            if key in seen:
                self.error(
                    f"the same schedule as schedules[{seen[key]}]",
                    item["index"],
                    field="name",
                    **item["where"],
                )
                item["duplicate"] = True
            else:
                seen[key] = item["index"]

    # -- database

    def _existing(self, tenants_by_pk: dict[Any, Any]) -> dict[tuple[Any, str, str], Schedule]:
        existing: dict[tuple[Any, str, str], Schedule] = {}
        if not tenants_by_pk:
            return existing
        for kind, model in KIND_MODELS.items():
            rows = model.objects.filter(tenant_id__in=list(tenants_by_pk)).prefetch_related(
                "depends_on"
            )
            for row in rows:
                row.tenant = tenants_by_pk[row.tenant_id]  # one object per tenant, no join
                existing[(row.tenant_id, kind, row.name)] = row
        return existing

    def _plan_entry(self, item: dict[str, Any], existing: dict) -> None:
        if item.get("duplicate"):
            return
        tenant, kind, name = item["tenant"], item["kind"], item["name"]
        model = KIND_MODELS[kind]
        current = existing.get((tenant.pk, kind, name))
        values = {
            f.name: f.get_default() for f in config_fields(model) if f.name not in item["values"]
        }
        values.update(item["values"])
        if current is None:
            schedule = model(tenant=tenant, name=name, kind=kind, **values)
            before = None
            original = None
        else:
            before = export_entry(current, include_defaults=True)
            original = copy.copy(current)
            schedule = current
            for key, value in values.items():
                setattr(schedule, key, value)
        where = {"index": item["index"], **item["where"]}
        try:
            services.validate_schedule(schedule, creating=False)
        except ValidationError as exc:
            for problem in _problems_from(exc, **where):
                problem.line = self.document.line(problem.index, problem.field)
                self.plan.errors.append(problem)
        else:
            if never_fires_again(schedule):
                self.plan.warnings.append(
                    Problem(
                        "enabled, but its trigger will never fire again",
                        level="warning",
                        line=self.document.line(item["index"]),
                        **where,
                    )
                )
        after = export_entry(schedule, depends_on=item["depends_on"], include_defaults=True)
        if before is None:
            action, changes = "create", {}
        else:
            changes = {
                key: [before.get(key), value]
                for key, value in after.items()
                if before.get(key) != value
            }
            action = "update" if changes else "unchanged"
        self.plan.changes.append(
            Change(
                action=action,
                schedule=schedule,
                tenant=tenant,
                index=item["index"],
                depends_on=item["depends_on"],
                changes=changes,
                original=original,
            )
        )

    def _plan_prune(
        self, tenants_by_pk: dict[Any, Any], existing: dict, parsed: list[dict[str, Any]]
    ) -> None:
        from ..retention import is_builtin_retention

        named = {(p["tenant"].pk, p["kind"], p["name"]) for p in parsed}
        for key, schedule in sorted(existing.items(), key=lambda kv: (str(kv[0][0]), *kv[0][1:])):
            if key in named or (self.only_kind and schedule.kind != self.only_kind):
                continue
            if is_builtin_retention(schedule):
                continue  # migrate would bring it back; disable it instead
            self.plan.changes.append(
                Change(action="delete", schedule=schedule, tenant=tenants_by_pk[key[0]])
            )

    def _check_dependencies(self, tenants_by_pk: dict[Any, Any], existing: dict) -> None:
        """Check the dependency graph of each tenant as it will be after the import."""
        deleted = {id(c.schedule) for c in self.plan.of("delete")}
        planned = {
            (c.tenant.pk, c.schedule.kind, c.schedule.name): c
            for c in self.plan.changes
            if c.action != "delete"
        }
        for tenant_pk in tenants_by_pk:
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
                    "index": change.index,
                    "field": "depends_on",
                    "tenant": tenant_key(change.tenant),
                    "kind": kind,
                    "name": name,
                }
                for dep in change.depends_on:
                    if dep == (kind, name):
                        self.error("a schedule cannot depend on itself", **where)
                    elif dep not in graph:
                        self.error(f"depends on {dep[0]}/{dep[1]}, which does not exist", **where)
            for cycle in _cycles(graph):
                first = planned.get((tenant_pk, *cycle[0]))
                text = " -> ".join(f"{k}/{n}" for k, n in cycle)
                self.error(
                    f"dependency cycle: {text}",
                    first.index if first else None,
                    field="depends_on",
                    tenant=tenant_key(tenants_by_pk[tenant_pk]),
                    kind=cycle[0][0],
                    name=cycle[0][1],
                )

    def _check_quota(self, tenants_by_pk: dict[Any, Any], existing: dict) -> None:
        for tenant_pk, tenant in tenants_by_pk.items():
            limit = services.max_schedules(tenant)
            if limit is None:
                continue
            count = sum(1 for key in existing if key[0] == tenant_pk)
            created = [c for c in self.plan.of("create") if c.tenant.pk == tenant_pk]
            deleted = [c for c in self.plan.of("delete") if c.tenant.pk == tenant_pk]
            total = count + len(created) - len(deleted)
            if created and total > limit:
                self.error(
                    f"the tenant would have {total} schedules; its limit is {limit}",
                    created[0].index,
                    tenant=tenant_key(tenant),
                )


def _cycles(graph: dict[Identity, list[Identity]]) -> list[list[Identity]]:
    """Return one path per dependency cycle of ``graph`` (A -> B -> A), each reported once."""
    state: dict[Identity, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[Identity]] = []
    for root in sorted(graph):
        if root in state:
            continue
        stack: list[tuple[Identity, Iterable[Identity]]] = [(root, iter(sorted(graph[root])))]
        path = [root]
        state[root] = 1
        while stack:
            node, children = stack[-1]
            child = next(iter(children), None)
            if child is None:
                stack.pop()
                path.pop()
                state[node] = 2
                continue
            if child not in graph:
                continue
            if state.get(child) == 1:
                cycles.append([*path[path.index(child) :], child])
            elif child not in state:
                state[child] = 1
                path.append(child)
                stack.append((child, iter(sorted(graph[child]))))
    return cycles


def plan_import(
    document: Document,
    *,
    tenants: models.QuerySet,
    only_tenant: Any = None,
    only_kind: str | None = None,
    prune: bool = False,
) -> ImportPlan:
    """Validate ``document`` against the database and return what importing it would do.

    ``tenants`` are the tenants the file may name (the caller's scope). ``only_tenant`` and
    ``only_kind`` apply a part of the file; ``prune`` plans the deletion of the schedules of
    the file's tenants (and kind) that the file does not name. The built-in history retention
    cleanup is never pruned.
    """
    return Planner(
        document,
        tenants=tenants,
        only_tenant=only_tenant,
        only_kind=only_kind,
        prune=prune,
    ).build()


def apply_plan(plan: ImportPlan, *, user: Any = None, source: str = "cli") -> dict[str, int]:
    """Apply a valid plan in one transaction, recording each change in the audit trail."""
    if not plan.valid:
        raise ScheduleFileError("the file has errors; nothing was changed")
    writes = [c for c in plan.changes if c.action in ("create", "update")]
    with transaction.atomic():
        before = {id(c): services.snapshot(c.original) for c in writes if c.original is not None}
        for change in writes:
            change.schedule.save()
        saved = {
            (c.tenant.pk, c.schedule.kind, c.schedule.name): c.schedule
            for c in plan.changes
            if c.action != "delete"
        }
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


def _lookup(change: Change, dep: Identity, saved: dict) -> Schedule:
    key = (change.tenant.pk, *dep)
    if key in saved:
        return saved[key]
    return Schedule.objects.get(tenant_id=change.tenant.pk, kind=dep[0], name=dep[1])


# -- validating the database ----------------------------------------------------------------


def validate_database(queryset: models.QuerySet) -> tuple[list[Problem], list[Problem]]:
    """Check stored schedules like a file; return (errors, warnings).

    Finds what rules or code changed under the rows: unregistered type keys, cron expressions
    or options that no longer validate, dependency cycles, and enabled schedules that will
    never fire again.
    """
    errors: list[Problem] = []
    warnings: list[Problem] = []
    graphs: dict[Any, dict[Identity, list[Identity]]] = {}
    tenants: dict[Any, Any] = {}
    for model in KIND_MODELS.values():
        rows = (
            model.objects.filter(pk__in=queryset.values("pk"))
            .select_related("tenant")
            .prefetch_related("depends_on")
            .order_by("tenant_id", "name")
        )
        for row in rows:
            where = {
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
                errors.extend(_problems_from(exc, **where))
                continue
            if never_fires_again(row):
                warnings.append(
                    Problem("enabled, but its trigger will never fire again", "warning", **where)
                )
    for tenant_pk, graph in graphs.items():
        for cycle in _cycles(graph):
            text = " -> ".join(f"{k}/{n}" for k, n in cycle)
            errors.append(
                Problem(
                    f"dependency cycle: {text}",
                    tenant=tenant_key(tenants[tenant_pk]),
                    kind=cycle[0][0],
                    name=cycle[0][1],
                    field="depends_on",
                )
            )
    errors.sort(key=lambda p: (p.tenant or "", p.kind or "", p.name or ""))
    warnings.sort(key=lambda p: (p.tenant or "", p.kind or "", p.name or ""))
    return errors, warnings
