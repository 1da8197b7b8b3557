"""Schedules declared in code: ``SCHEDULING_DECLARED_SCHEDULES``, synced into the database.

Each entry of the setting is a dict::

    SCHEDULING_DECLARED_SCHEDULES = [
        {
            "kind": "task",                 # scan | report | cleanup | task
            "task_type": "crm_sync",        # the kind's own type field, or "type"
            "name": "CRM sync",
            "trigger_type": "cron",
            "cron_expression": "0 * * * *",
            "options": {"full": False},
            "per_tenant": True,             # a copy for every active tenant; else a system
        },                                  # schedule (no tenant)
    ]

Any configuration field of the kind may appear under its model field name, with the values a
schedules file takes (``values.import_value``: a datetime without an offset is read in the
entry's ``timezone``, else the tenant's, else UTC; ``calendar_time`` is a ``datetime.time`` or
"HH:MM"; ``calendar_weekdays`` "mon,thu" or a list). The type key may be given under the kind's
own field (``scan_type``, ``report_type``, ``cleanup_target``, ``task_type``) or as ``type``.
``adopt: True`` lets the declaration take over a schedule of the same name that operators made.

``sync_declared_schedules()`` runs after ``migrate``, when ``runscheduler`` starts and (for
the per-tenant entries) when a tenant is saved. Keyed by tenant, kind and name, it creates what
is missing and updates what differs from its declaration, bumping ``updated_at`` only then;
``enabled`` and ``paused_until`` are the operators' after creation. A declared schedule whose
entry was removed is disabled and handed over to operators (``declared`` cleared), never
deleted, so its history stays. A schedule of the same name that operators own is a conflict,
left as it is and logged, unless the entry says ``adopt``. An invalid entry is skipped and
logged; the system checks (``scheduling.E050`` to ``E057``) name it. Nothing here raises for
a bad declaration.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import DatabaseError, transaction
from django.utils import timezone

from .. import services, triggers
from ..conf import conf
from ..kinds import KINDS, KindSpec
from ..models import AuditAction, Schedule
from ..tenancy import get_tenant_model, tenant_key
from ..validators import has_null_character
from .export import config_fields
from .values import import_value

if TYPE_CHECKING:
    from tenants.models import Tenant

logger = logging.getLogger("scheduling.declared")

SETTING = "SCHEDULING_DECLARED_SCHEDULES"
SOURCE = "declared"  # the audit trail's source of the sync's writes
TYPE_KEY = "type"  # the generic name of the type key; the kind's own field name works too
OWN_KEYS = ("kind", "name", TYPE_KEY, "per_tenant", "adopt")

# The system checks' ids, by what is wrong with an entry.
E_STRUCTURE = "scheduling.E050"  # not a list of dicts
E_KIND = "scheduling.E051"
E_TYPE = "scheduling.E052"
E_NAME = "scheduling.E053"
E_KEYS = "scheduling.E054"  # unknown keys; per_tenant or adopt not True or False
E_FIELDS = "scheduling.E055"  # the fields' values and the trigger (the model's validation)
E_OPTIONS = "scheduling.E056"
E_DUPLICATE = "scheduling.E057"

# (per_tenant, kind, name): which schedules an entry declares.
Key = tuple[bool, str, str]


@dataclass(frozen=True)
class DeclarationProblem:
    """What is wrong with one entry of the setting (``index`` None: the setting itself)."""

    check_id: str
    message: str
    index: int | None = None
    name: object = None
    field: str | None = None

    def __str__(self) -> str:
        where = SETTING if self.index is None else f"{SETTING}[{self.index}]"
        if self.name is not None:
            where += f" ({self.name!r})"
        target = f"{self.field}: " if self.field and self.field != NON_FIELD_ERRORS else ""
        return f"{where}: {target}{self.message}"


@dataclass
class Declaration:
    """One valid entry: its kind, name, scope and field values as declared."""

    index: int
    spec: KindSpec
    name: str
    per_tenant: bool
    adopt: bool
    # Configuration field -> value as declared (the type key under the kind's own field).
    fields: dict[str, Any]

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def key(self) -> Key:
        return (self.per_tenant, self.kind, self.name)

    def zone(self, tenant: Tenant | None) -> str:
        """The zone a datetime without an offset is read in: the entry's, the tenant's, UTC."""
        return str(self.fields.get("timezone") or getattr(tenant, "timezone", "") or "UTC")

    def values(self, zone: str) -> dict[str, Any]:
        """Return the model values of the declared fields; raise ``ValidationError``."""
        model_fields = {f.name: f for f in config_fields(self.spec.model)}
        values: dict[str, Any] = {}
        errors: dict[str, list[str]] = {}
        for name, raw in self.fields.items():
            try:
                value = import_value(model_fields[name], copy.deepcopy(raw), zone=zone)
            except ValidationError as exc:
                errors[name] = exc.messages
                continue
            # In UTC, as the database gives them back: a comparison sees no change then.
            values[name] = value.astimezone(UTC) if isinstance(value, datetime) else value
        if errors:
            raise ValidationError(errors)
        return values


@dataclass
class Declarations:
    """The setting, read: its valid entries, its problems, and the keys it names."""

    valid: list[Declaration] = field(default_factory=list)
    problems: list[DeclarationProblem] = field(default_factory=list)
    # The keys of every entry, valid or not; None when some entry names none that can be read
    # (then nothing is released: a typo must not disable schedules).
    named: set[Key] | None = field(default_factory=set)


def read_declarations(setting: object = None) -> Declarations:
    """Read and validate ``SCHEDULING_DECLARED_SCHEDULES`` (or ``setting``) without a query.

    Each entry is checked like a schedule: its kind, registered type key and name, its field
    values, then an unsaved instance's ``full_clean()`` (fields, trigger, type and options;
    not the tenant and the unique name, which need the database) and its next run.
    """
    entries = conf.DECLARED_SCHEDULES if setting is None else setting
    result = Declarations()
    if not isinstance(entries, list | tuple):
        result.problems.append(
            DeclarationProblem(
                E_STRUCTURE, f"must be a list of dicts, one per schedule; got {entries!r}"
            )
        )
        result.named = None
        return result
    seen: dict[Key, int] = {}
    for index, raw in enumerate(entries):
        problems, declaration, key = _read_entry(index, raw)
        if key is None:
            result.named = None
        elif result.named is not None:
            result.named.add(key)
        if key is not None and key in seen and not problems:
            problems.append(
                DeclarationProblem(
                    E_DUPLICATE,
                    f"declares the same schedule as {SETTING}[{seen[key]}] (same kind, name "
                    "and per_tenant)",
                    index,
                    key[2],
                )
            )
        elif key is not None:
            seen.setdefault(key, index)
        result.problems.extend(problems)
        if declaration is not None and not problems:
            result.valid.append(declaration)
    return result


def _read_entry(
    index: int, raw: object
) -> tuple[list[DeclarationProblem], Declaration | None, Key | None]:
    """Return the entry's problems, the declaration if it is valid, and its key if readable."""
    if not isinstance(raw, dict):
        return [DeclarationProblem(E_STRUCTURE, f"must be a dict; got {raw!r}", index)], None, None
    name = raw.get("name")
    problems: list[DeclarationProblem] = []

    def problem(check_id: str, message: str, where: str | None = None) -> None:
        problems.append(DeclarationProblem(check_id, message, index, name, where))

    kind = raw.get("kind")
    spec = KINDS.get(kind) if isinstance(kind, str) else None
    if spec is None:
        problem(E_KIND, f"unknown kind {kind!r}; use one of {', '.join(KINDS)}", "kind")
    max_length = Schedule._meta.get_field("name").max_length or 0
    if not isinstance(name, str) or not name.strip():
        problem(E_NAME, "needs a name (a non-empty string)", "name")
    elif (max_length and len(name) > max_length) or has_null_character(name):
        problem(E_NAME, f"the name must be at most {max_length} characters, without NUL", "name")
    per_tenant, adopt = raw.get("per_tenant", False), raw.get("adopt", False)
    for flag, value in (("per_tenant", per_tenant), ("adopt", adopt)):
        if not isinstance(value, bool):
            problem(E_KEYS, f"must be True or False; got {value!r}", flag)
    key: Key | None = None
    if spec is not None and isinstance(name, str) and isinstance(per_tenant, bool):
        key = (per_tenant, spec.kind, name)
    if spec is None or problems or not isinstance(name, str):
        return problems, None, key
    per_tenant, adopt = bool(per_tenant), bool(adopt)

    fields = {k: v for k, v in raw.items() if k not in OWN_KEYS}
    known = {f.name for f in config_fields(spec.model)}
    for unknown in sorted(set(fields) - known, key=str):
        hint = {
            "tenant": "; declare per_tenant: True for a copy per tenant",
            "depends_on": "; declared schedules take no dependencies",
        }.get(str(unknown), f"; a {spec.kind} has {', '.join(sorted(known))}")
        problem(E_KEYS, f"unknown key{hint}", str(unknown))
    type_key = fields.get(spec.type_field, raw.get(TYPE_KEY))
    if TYPE_KEY in raw and spec.type_field in raw and raw[TYPE_KEY] != raw[spec.type_field]:
        problem(E_TYPE, f"'{TYPE_KEY}' and '{spec.type_field}' differ; give one", TYPE_KEY)
    elif not isinstance(type_key, str) or type_key not in spec.registry:
        known_keys = ", ".join(spec.registry.keys()) or "none"
        problem(
            E_TYPE,
            f"unknown {spec.registry.noun} {type_key!r}; registered: {known_keys}",
            spec.type_field,
        )
    elif per_tenant and spec.registry.get(type_key).system_only:
        problem(E_TYPE, f"{type_key!r} runs only as a system schedule: drop per_tenant")
    if problems:
        return problems, None, key
    fields[spec.type_field] = type_key
    declaration = Declaration(index, spec, name, per_tenant, adopt, fields)
    for field_name, message in _validate_offline(declaration):
        check_id = {"options": E_OPTIONS, spec.type_field: E_TYPE}.get(field_name, E_FIELDS)
        problem(check_id, message, field_name)
    return problems, (None if problems else declaration), key


def _validate_offline(declaration: Declaration) -> list[tuple[str, str]]:
    """Validate ``declaration`` as an unsaved system schedule, without the database."""
    try:
        values = declaration.values(declaration.zone(None))
    except ValidationError as exc:
        return [(name, m) for name, messages in exc.message_dict.items() for m in messages]
    # The name is left empty: ``Schedule.clean()`` looks a taken name up in the database.
    schedule = declaration.spec.model(tenant=None, kind=declaration.kind, name="", **values)
    try:
        schedule.full_clean(
            exclude=["tenant", "name"], validate_unique=False, validate_constraints=False
        )
    except ValidationError as exc:
        return [(name, m) for name, messages in exc.message_dict.items() for m in messages]
    try:
        triggers.next_runs(schedule, 1)
    except (ArithmeticError, ValueError) as exc:
        return [(NON_FIELD_ERRORS, f"the trigger cannot compute its next run: {exc}")]
    return []


# -- sync -------------------------------------------------------------------------------------


@dataclass
class SyncSummary:
    """What a sync did, by schedule ("tenant/kind/name"; "-" for the system)."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    # Removed from the setting: disabled and handed over to operators.
    released: list[str] = field(default_factory=list)
    # Operators' schedules of a declared name, left as they are (no ``adopt``).
    conflicts: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    # Invalid entries, skipped (the system checks name them too).
    skipped: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.released)

    def as_dict(self) -> dict[str, list[str]]:
        return {
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "released": self.released,
            "conflicts": self.conflicts,
            "failed": self.failed,
            "skipped": self.skipped,
        }

    def __str__(self) -> str:
        return ", ".join(f"{len(items)} {name}" for name, items in self.as_dict().items())


def sync_declared_schedules(*, tenant: Tenant | None = None) -> SyncSummary:
    """Bring the declared schedules in step with ``SCHEDULING_DECLARED_SCHEDULES``.

    With ``tenant``, only that tenant's copies of the per-tenant entries (a tenant was saved);
    nothing is released then. Invalid entries, conflicts and failed writes are logged and
    counted in the summary; a database error outside one schedule's write propagates.
    """
    declarations = read_declarations()
    summary = SyncSummary()
    for problem in declarations.problems:
        logger.error("%s. Skipped; `manage.py check` reports it.", problem)
        summary.skipped.append(str(problem))
    if tenant is None:
        per_tenant = any(d.per_tenant for d in declarations.valid)
        tenants = _active_tenants() if per_tenant else []
    else:
        tenants = [tenant] if getattr(tenant, "is_active", True) else []
    for declaration in declarations.valid:
        if tenant is None or declaration.per_tenant:
            _sync_declaration(declaration, tenants, summary, only=tenant)
    if tenant is None:
        if declarations.named is None:
            logger.warning(
                "%s cannot be read in full (an entry without a readable kind and name): no "
                "declared schedule is released until it is fixed.",
                SETTING,
            )
        else:
            _release(declarations.named, summary)
    if summary.changed or summary.conflicts or summary.failed:
        logger.info("Declared schedules synced: %s.", summary)
    return summary


def _active_tenants() -> list[Tenant]:
    # The base manager: a host's default manager may need a context the scheduler is not in
    # (a django-scopes ScopedManager refuses every query outside a scope).
    manager = get_tenant_model()._base_manager
    if any(f.name == "is_active" for f in manager.model._meta.get_fields()):
        return list(manager.filter(is_active=True).order_by("pk"))
    return list(manager.order_by("pk"))


def _label(tenant: Tenant | None, kind: str, name: str) -> str:
    return f"{tenant_key(tenant) or '-'}/{kind}/{name}"


def _sync_declaration(
    declaration: Declaration,
    tenants: list[Tenant],
    summary: SyncSummary,
    *,
    only: Tenant | None,
) -> None:
    rows = declaration.spec.model.objects.filter(kind=declaration.kind, name=declaration.name)
    if not declaration.per_tenant:
        rows = rows.filter(tenant__isnull=True)
    elif only is not None:
        rows = rows.filter(tenant=only)
    else:
        rows = rows.filter(tenant__isnull=False)
    existing: dict[int | None, Schedule] = {
        row.tenant_id: row for row in rows.select_related("tenant")
    }
    targets: list[tuple[Tenant | None, Schedule | None]]
    if declaration.per_tenant:
        targets = [(t, existing.pop(t.pk, None)) for t in tenants]
        # The declared copies of inactive tenants follow the declaration too.
        targets += [(row.tenant, row) for row in existing.values() if row.declared]
    else:
        targets = [(None, existing.get(None))]
    for tenant, row in targets:
        _sync_one(declaration, tenant, row, summary)


def _sync_one(
    declaration: Declaration,
    tenant: Tenant | None,
    row: Schedule | None,
    summary: SyncSummary,
) -> None:
    label = _label(tenant, declaration.kind, declaration.name)
    if row is not None and not row.declared and not declaration.adopt:
        logger.warning(
            "%s[%d] declares %s, which operators created: left as it is. Rename one of them, "
            "or set 'adopt': True to hand it over to code.",
            SETTING,
            declaration.index,
            label,
        )
        summary.conflicts.append(label)
        return
    try:
        with transaction.atomic():
            outcome = _write(declaration, tenant, row)
    except ValidationError as exc:
        message = "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())
        logger.error("%s[%d]: %s is not valid: %s", SETTING, declaration.index, label, message)
        summary.failed.append(f"{label}: {message}")
        return
    except DatabaseError as exc:
        logger.error("%s[%d]: %s was not written: %s", SETTING, declaration.index, label, exc)
        summary.failed.append(f"{label}: {exc}")
        return
    getattr(summary, outcome).append(label)


def _write(declaration: Declaration, tenant: Tenant | None, row: Schedule | None) -> str:
    """Create or update one declared schedule; return "created", "updated" or "unchanged"."""
    model = declaration.spec.model
    values = declaration.values(declaration.zone(tenant))
    # A field the entry leaves out takes its default, also on an update: code is the truth.
    for f in config_fields(model):
        if f.name not in values:
            values[f.name] = f.get_default()
    if row is None:
        schedule = model(
            tenant=tenant, kind=declaration.kind, name=declaration.name, declared=True, **values
        )
        services.validate_schedule(schedule)  # not held to the tenant's quota: the project's
        schedule.save()
        services.record_audit(
            schedule=schedule,
            action=AuditAction.CREATE,
            source=SOURCE,
            changes={name: [None, value] for name, value in services.snapshot(schedule).items()},
        )
        return "created"
    before = services.snapshot(row)
    for name, value in values.items():
        if name not in services.DECLARED_OPERATOR_FIELDS:
            setattr(row, name, value)
    row.declared = True
    services.validate_schedule(row)
    if not row.timezone:
        row.timezone = row.default_timezone()  # as save() would
    changes = services.diff(before, services.snapshot(row))
    if not changes:
        return "unchanged"  # no save: updated_at, which the scheduler polls, stays
    row.save()
    services.record_audit(schedule=row, action=AuditAction.CHANGE, source=SOURCE, changes=changes)
    return "updated"


def _release(named: set[Key], summary: SyncSummary) -> None:
    """Disable and hand over to operators the declared schedules no entry names any more."""
    rows = Schedule.objects.filter(declared=True).values_list("pk", "tenant_id", "kind", "name")
    stale = [
        pk for pk, tenant_id, kind, name in rows if (tenant_id is not None, kind, name) not in named
    ]
    for schedule in Schedule.objects.filter(pk__in=stale).select_related("tenant").order_by("pk"):
        label = _label(schedule.tenant, schedule.kind, schedule.name)
        with transaction.atomic():
            before = services.snapshot(schedule)
            Schedule.objects.filter(pk=schedule.pk).update(
                enabled=False, declared=False, updated_at=timezone.now()
            )
            schedule.refresh_from_db()
            services.record_audit(
                schedule=schedule,
                action=AuditAction.DISABLE,
                source=SOURCE,
                changes=services.diff(before, services.snapshot(schedule)),
            )
        logger.warning(
            "%s is no longer in %s: disabled and handed over to operators (its history stays).",
            label,
            SETTING,
        )
        summary.released.append(label)


# -- when it runs ------------------------------------------------------------------------------


def sync_after_migrate(sender: object, using: str = "default", **kwargs: object) -> None:
    """``post_migrate`` of the scheduling app: sync; log, never raise, whatever goes wrong."""
    from django.db import connections, router

    models = (Schedule, get_tenant_model())
    if router.db_for_write(Schedule) != using:
        return  # another database was migrated
    if not all(router.allow_migrate_model(using, model) for model in models):
        return
    try:
        # ``migrate`` to an earlier state (``migrate scheduling zero``) ends without the tables.
        tables = set(connections[using].introspection.table_names())
        if any(model._meta.db_table not in tables for model in models):
            return
        with transaction.atomic(using=using):
            sync_declared_schedules()
    except Exception:
        logger.exception("Declared schedules were not synced after migrate.")


def sync_for_tenant(
    sender: type[Tenant], instance: Tenant, raw: bool = False, **kwargs: object
) -> None:
    """``post_save`` of the tenant model: give an active tenant its per-tenant copies."""
    if raw or not getattr(instance, "is_active", True):
        return
    entries = conf.DECLARED_SCHEDULES
    if not isinstance(entries, list | tuple) or not any(
        isinstance(e, dict) and e.get("per_tenant") is True for e in entries
    ):
        return
    try:
        with transaction.atomic():
            sync_declared_schedules(tenant=instance)
    except Exception:
        logger.exception("Tenant %s did not get its declared schedules.", instance.pk)


def sync_at_start() -> SyncSummary | None:
    """Sync once as ``runscheduler`` starts; log, never raise (the scheduler must start)."""
    try:
        return sync_declared_schedules()
    except Exception:
        logger.exception("Declared schedules were not synced at start; the scheduler goes on.")
        return None
