"""Multi-row writes shared by the admin, the API and the CLI.

Every function that changes what the scheduler must do bumps ``updated_at`` (the change
marker the sync loop polls): bulk ``update()`` calls do not run ``auto_now``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.db.models import Case, F, QuerySet, Value, When
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from .conf import conf
from .exceptions import StateConflict
from .models import (
    STATE_FIELDS,
    AuditAction,
    AuditEntry,
    CleanupConfig,
    Execution,
    Schedule,
    TriggerKind,
    same_tenant,
)
from .retention import RETENTION_NAME, RETENTION_OPTION
from .triggers import PAUSED_INDEFINITELY, next_runs
from .validators import AUDIT_ENTRY_MAX_BYTES, AUDIT_VALUE_MAX_BYTES, json_size

if TYPE_CHECKING:
    from _typeshed import SupportsRichComparison
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

    from tenants.models import Tenant

    # Who acts: a request's user (maybe anonymous), the CLI's --user, or nobody (the system).
    Actor: TypeAlias = AbstractBaseUser | AnonymousUser | None

# A node of a dependency graph: a schedule's pk, or a (kind, name) pair in a schedules file.
# Sortable, so that the walk and the cycles it reports do not depend on row order.
_Node = TypeVar("_Node", bound="SupportsRichComparison")


# What operators may change on a schedule declared in code (``declared``, from
# SCHEDULING_DECLARED_SCHEDULES): its state. Everything else follows the declaration.
DECLARED_OPERATOR_FIELDS = frozenset({"enabled", "paused_until"})
DECLARED_MESSAGE = gettext_lazy(
    "Declared in code: change or remove it in SCHEDULING_DECLARED_SCHEDULES; here only "
    "enabled and paused_until may be changed."
)


def max_schedules(tenant: Tenant) -> int | None:
    """Return how many schedules ``tenant`` may have (None: no limit)."""
    limit = getattr(tenant, "max_schedules", None)
    return limit if limit is not None else conf.MAX_SCHEDULES_PER_TENANT


def count_towards_quota(tenant: Tenant) -> int:
    """Return how many of ``tenant``'s schedules count against its quota."""
    # Schedules declared in code and the built-in history retention cleanup are the
    # project's and the app's, not the tenant's.
    total = Schedule.objects.filter(tenant=tenant, declared=False).count()
    builtin = CleanupConfig.objects.filter(
        tenant=tenant, name=RETENTION_NAME, **{f"options__{RETENTION_OPTION}": True}
    ).count()
    return total - builtin


def over_quota_limit(tenant: Tenant, *, adding: int = 1, count: int | None = None) -> int | None:
    """Return ``tenant``'s limit if ``adding`` more schedules would pass it, else None.

    ``count`` is how many schedules the tenant has now; a caller that has them in hand (the
    importer) passes it. Without it they are counted, and only for a tenant with a limit.
    """
    limit = max_schedules(tenant)
    if limit is None:
        return None
    if count is None:
        count = count_towards_quota(tenant)
    return limit if count + adding > limit else None


def check_quota(tenant: Tenant) -> None:
    """Raise ``ValidationError`` when ``tenant`` cannot have one more schedule."""
    limit = over_quota_limit(tenant)
    if limit is not None:
        raise ValidationError(
            _(
                "The tenant %(tenant)s has reached its limit of %(limit)d schedules; "
                "delete one or ask for a higher quota."
            )
            % {"tenant": tenant, "limit": limit},
            code="quota",
        )


def validate_dependencies(schedule: Schedule, depends_on: Iterable[Schedule]) -> None:
    """Reject self-dependencies, other tenants' schedules and cycles ("A -> B -> A")."""
    depends_on = list(depends_on)
    errors: list[str] = []
    for dep in depends_on:
        if schedule.pk is not None and dep.pk == schedule.pk:
            errors.append(_("A schedule cannot depend on itself."))
        elif dep.tenant_id != schedule.tenant_id:
            errors.append(
                _("%(name)s belongs to another tenant; dependencies must share the tenant.")
                % {"name": dep.name}
            )
    if errors:
        raise ValidationError({"depends_on": errors})
    if schedule.pk is None or not depends_on:
        return  # nothing can depend on a schedule that does not exist yet

    # The tenant's dependency graph with this schedule's edges replaced by the new ones.
    through = Schedule.depends_on.through
    edges: dict[int, list[int]] = {}
    for src, dst in through.objects.filter(
        same_tenant(schedule.tenant_id, "from_schedule__tenant")
    ).values_list("from_schedule_id", "to_schedule_id"):
        if src != schedule.pk:
            edges.setdefault(src, []).append(dst)
    edges[schedule.pk] = [dep.pk for dep in depends_on]

    # Only a cycle through this schedule is its doing; one elsewhere is not this edit's error.
    path = next((c for c in find_cycles(edges, roots=[schedule.pk]) if c[0] == schedule.pk), None)
    if path:
        names = dict(Schedule.objects.filter(pk__in=path).values_list("pk", "name").order_by())
        names[schedule.pk] = schedule.name
        cycle = " -> ".join(names.get(pk, str(pk)) for pk in path)
        raise ValidationError(
            {"depends_on": _("This creates a dependency cycle: %(cycle)s.") % {"cycle": cycle}},
            code="cycle",
        )


def find_cycles(
    graph: Mapping[_Node, Iterable[_Node]], *, roots: Iterable[_Node] | None = None
) -> list[list[_Node]]:
    """Return one path per dependency cycle met walking ``graph`` (A -> B -> A), each once.

    ``graph`` maps a node to the nodes it depends on; a node that is not a key depends on
    nothing. The depth-first walk starts from each of ``roots`` (default: every node) and takes
    children in sorted order, so the answer does not depend on row order. A cycle through the
    first root, if there is one, is among the paths, starting at that root.
    """
    state: dict[_Node, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[_Node]] = []
    for root in sorted(graph) if roots is None else roots:
        if root in state or root not in graph:
            continue
        stack: list[tuple[_Node, Iterator[_Node]]] = [(root, iter(sorted(graph[root])))]
        path = [root]
        state[root] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
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


def validate_schedule(
    schedule: Schedule,
    *,
    depends_on: Iterable[Schedule] | None = None,
    creating: bool = False,
) -> None:
    """Run every rule a schedule must pass before it is saved; raise ``ValidationError``.

    The model layer (``full_clean``: fields, trigger, registered type and its options,
    constraints), sane bounds, the dependencies and, for a new schedule, the tenant's quota.
    Errors are keyed by field; the name clash of the unique constraint is keyed on ``name``.
    """
    if not schedule.kind:
        schedule.kind = getattr(type(schedule), "KIND", "") or schedule.kind
    errors: dict[str, list[str]] = {}
    if creating and schedule.tenant is not None:
        try:
            check_quota(schedule.tenant)
        except ValidationError as exc:
            errors.setdefault(NON_FIELD_ERRORS, []).extend(exc.messages)
    try:
        schedule.full_clean()  # includes check_limits, through Schedule.clean()
    except ValidationError as exc:
        for field, messages in _name_clash_on_name(schedule, exc).items():
            errors.setdefault(field, []).extend(messages)
    if depends_on is not None and "depends_on" not in errors:
        try:
            validate_dependencies(schedule, depends_on)
        except ValidationError as exc:
            errors.setdefault("depends_on", []).extend(exc.message_dict["depends_on"])
    if not errors:
        errors = _check_computable(schedule)
    if errors:
        raise ValidationError(errors)


def _name_clash_on_name(schedule: Schedule, exc: ValidationError) -> dict[str, list[str]]:
    result: dict[str, list[str]] = {}
    for field, error_list in exc.error_dict.items():
        for error in error_list:
            if field == NON_FIELD_ERRORS and error.code in ("unique_together", "unique"):
                result.setdefault("name", []).append(
                    _("A %(kind)s named %(name)s already exists in this tenant.")
                    % {"kind": type(schedule)._meta.verbose_name, "name": schedule.name}
                )
            else:
                result.setdefault(field, []).extend(ValidationError([error]).messages)
    return result


def _check_computable(schedule: Schedule) -> dict[str, list[str]]:
    """A trigger that validates but cannot compute its next run is still an error."""
    try:
        next_runs(schedule, 1)
    except (ArithmeticError, ValueError) as exc:
        return {NON_FIELD_ERRORS: [_("The trigger cannot compute its next run: %s") % exc]}
    return {}


def create_schedule(
    *,
    model: type[Schedule],
    tenant: Tenant | None,
    user: Actor = None,
    source: str | None = None,
    **fields: Any,
) -> Schedule:
    """Validate and save a new schedule of kind ``model``; raise ``ValidationError``.

    With a ``source`` ("api", "admin", "cli") the creation is recorded in the audit trail.
    """
    depends_on = fields.pop("depends_on", None)
    schedule = model(tenant=tenant, **fields)
    with transaction.atomic():
        if tenant is not None:
            _lock_tenant(tenant)  # the quota count and the insert must not interleave
        validate_schedule(schedule, depends_on=depends_on, creating=True)
        schedule.save()
        if depends_on:
            schedule.depends_on.set(depends_on)
        if source is not None:
            created = snapshot(schedule)
            record_audit(
                schedule=schedule,
                action=AuditAction.CREATE,
                user=user,
                source=source,
                changes={name: [None, value] for name, value in created.items()},
            )
    return schedule


TENANT_FIXED_MESSAGE = gettext_lazy("The tenant of a schedule cannot be changed.")


def check_tenant_unchanged(schedule: Schedule, tenant_id: int | None) -> None:
    """Refuse moving the saved ``schedule`` to tenant ``tenant_id`` (``ValidationError``).

    A schedule's quota, executions, audit trail and dependencies belong to its tenant: moving
    it would skip the destination's quota and show the source's history to the destination.
    """
    if not schedule._state.adding and tenant_id != schedule.tenant_id:
        raise ValidationError({"tenant": TENANT_FIXED_MESSAGE}, code="tenant_fixed")


def update_schedule(
    *, schedule: Schedule, data: dict[str, Any], user: Actor = None, source: str = "api"
) -> Schedule:
    """Apply ``data`` to ``schedule``, validate, save and record the changed fields.

    The tenant is fixed: ``data`` naming another one raises ``ValidationError``.
    """
    data = dict(data)
    if "tenant" in data or "tenant_id" in data:
        tenant = data.pop("tenant", None)
        check_tenant_unchanged(
            schedule, data.pop("tenant_id", tenant.pk if tenant is not None else None)
        )
    depends_on = data.pop("depends_on", None)
    before = snapshot(schedule)
    for name, value in data.items():
        setattr(schedule, name, value)
    with transaction.atomic():
        if depends_on is not None and schedule.tenant is not None:
            _lock_tenant(schedule.tenant)  # two concurrent edits could each close half a cycle
        validate_schedule(schedule, depends_on=depends_on)
        schedule.save()
        if depends_on is not None:
            schedule.depends_on.set(depends_on)
        refresh_next_run(schedule)
        changes = diff(before, snapshot(schedule))
        if changes:
            record_audit(
                schedule=schedule,
                action=AuditAction.CHANGE,
                user=user,
                source=source,
                changes=changes,
            )
    return schedule


def delete_schedule(*, schedule: Schedule, user: Actor = None, source: str = "api") -> None:
    """Delete ``schedule``, keeping its last configuration in the audit trail.

    A schedule declared in code cannot be deleted (``StateConflict``): remove its declaration
    from SCHEDULING_DECLARED_SCHEDULES, which disables it and hands it over to operators.
    """
    if schedule.declared:
        raise StateConflict(
            _(
                "%(name)s is declared in code; remove it from SCHEDULING_DECLARED_SCHEDULES "
                "(the next migrate or scheduler start disables it and hands it over) to delete it."
            )
            % {"name": schedule.name}
        )
    with transaction.atomic():
        before = snapshot(schedule)
        record_audit(
            schedule=schedule,
            action=AuditAction.DELETE,
            user=user,
            source=source,
            changes={name: [value, None] for name, value in before.items()},
        )
        schedule.delete()


def _lock_tenant(tenant: Tenant) -> None:
    # A row lock on PostgreSQL; on SQLite the IMMEDIATE transaction already serializes writers.
    # The base manager: the row is locked whatever context a host's default manager needs.
    type(tenant)._base_manager.select_for_update().filter(pk=tenant.pk).exists()


# Manual runs of one schedule (each with other options) that may wait to start at once.
MAX_QUEUED_RUNS = 10


def run_now(
    *,
    schedule: Schedule,
    user: Actor = None,
    source: str | None = None,
    options: dict[str, Any] | None = None,
) -> Execution:
    """Queue a manual run, or return the identical one still queued (see ``queue_run``)."""
    execution, _created = queue_run(schedule=schedule, user=user, source=source, options=options)
    return execution


def queue_run(
    *,
    schedule: Schedule,
    user: Actor = None,
    source: str | None = None,
    options: dict[str, Any] | None = None,
) -> tuple[Execution, bool]:
    """Queue a manual run; return it and whether it is new (like ``get_or_create``).

    The scheduler picks it up within its sync interval. ``options`` (already cleaned:
    ``kinds.clean_run_options``) are this run's own, merged over the schedule's when it runs.
    While a manual run of ``schedule`` with the same options has not started, that run is
    returned instead of queueing another (a button pressed 30 times runs once); a run with
    other options is queued, up to ``MAX_QUEUED_RUNS`` waiting (then ``StateConflict``).
    With a ``source`` a new run is recorded in the audit trail.
    """
    now = timezone.now()
    with transaction.atomic():
        # Concurrent requests queue one run: they wait here for each other (a row lock on
        # PostgreSQL; on SQLite the IMMEDIATE transaction already serializes writers). NO KEY
        # UPDATE does not block the scheduler's inserts of executions referencing the row.
        lock = Schedule.objects.filter(pk=schedule.pk)
        if connection.features.has_select_for_no_key_update:
            lock = lock.select_for_update(no_key=True)
        else:
            lock = lock.select_for_update()
        lock.exists()
        pending = list(
            Execution.objects.queued()
            .filter(schedule=schedule, trigger=TriggerKind.MANUAL)
            .order_by("pk")
        )
        wanted = json.loads(json.dumps(options or {}))  # as stored: tuples become lists
        for queued in pending:
            if (queued.options or {}) == wanted:
                return queued, False
        if len(pending) >= MAX_QUEUED_RUNS:
            raise StateConflict(
                _(
                    "%(count)d manual runs of %(name)s are queued already; wait for them to "
                    "start (or cancel one) before queueing another."
                )
                % {"count": len(pending), "name": schedule.name}
            )
        execution = Execution.for_occurrence(
            schedule, now, trigger=TriggerKind.MANUAL, options=options, now=now
        )
        # The FK's model is AUTH_USER_MODEL, which the stubs pin to the test settings' User.
        execution.triggered_by = _signed_in(user)  # type: ignore[assignment]
        execution.save(force_insert=True)
        if source is not None:
            record_audit(
                schedule=schedule,
                action=AuditAction.RUN,
                user=user,
                source=source,
                changes={"execution": [None, execution.pk]},
            )
    return execution, True


def _signed_in(user: Actor) -> AbstractBaseUser | None:
    """Return ``user`` if signed in: an anonymous user or the system is recorded as nobody."""
    return user if user is not None and user.is_authenticated else None


def _change_one(
    schedule: Schedule,
    change: Callable[[QuerySet[Schedule]], int],
    *,
    action: str,
    user: Actor,
    source: str | None,
) -> Schedule:
    """Apply the bulk ``change`` to ``schedule`` alone; with a ``source``, audit it."""
    with transaction.atomic():
        before = snapshot(schedule) if source is not None else {}
        change(Schedule.objects.filter(pk=schedule.pk))
        schedule.refresh_from_db()
        refresh_next_run(schedule)
        if source is not None:
            record_audit(
                schedule=schedule,
                action=action,
                user=user,
                source=source,
                changes=diff(before, snapshot(schedule)),
            )
    return schedule


def refresh_next_run(schedule: Schedule) -> None:
    """Store the next run ``schedule`` has after a change of its state or trigger.

    The scheduler's sync writes its own within ``SCHEDULING_SYNC_INTERVAL`` (or when a
    scheduler next runs); until then every page would show the run from before the change,
    one that a pause or a disable has cancelled.
    """
    expected = schedule.expected_next_run()
    if expected != schedule.next_run_at:
        Schedule.objects.filter(pk=schedule.pk).update(next_run_at=expected)
        schedule.next_run_at = expected


def pause_schedule(
    *,
    schedule: Schedule,
    until: datetime | None = None,
    user: Actor = None,
    source: str | None = None,
) -> Schedule:
    """Pause ``schedule`` until ``until`` (or until resumed); audited with a source."""
    return _change_one(
        schedule,
        lambda queryset: pause_schedules(queryset=queryset, until=until),
        action=AuditAction.PAUSE,
        user=user,
        source=source,
    )


RESUME_DISABLED_MESSAGE = gettext_lazy(
    "%(name)s is disabled; resume only ends a pause: an admin must enable it."
)


def resume_schedule(
    *, schedule: Schedule, user: Actor = None, source: str | None = None
) -> Schedule:
    """End the pause of ``schedule``; audited with a source.

    A disabled schedule stays disabled (``StateConflict``): enabling it is an admin's decision.
    """
    if not schedule.enabled:
        raise StateConflict(RESUME_DISABLED_MESSAGE % {"name": schedule.name})
    return _change_one(
        schedule,
        lambda queryset: resume_schedules(queryset=queryset),
        action=AuditAction.RESUME,
        user=user,
        source=source,
    )


def pause_schedules(*, queryset: QuerySet[Schedule], until: datetime | None = None) -> int:
    """Pause the schedules of ``queryset``; without ``until`` they stay paused until resumed.

    "Until resumed" is ``PAUSED_INDEFINITELY``, still a pause: ``enabled`` is left alone, so
    that whoever may resume (an operator) can end it, and a disable stays an admin's. The
    pause is the operator's: reactivating the tenant does not end it (``set_tenant_active``).
    """
    changes: dict[str, Any] = {
        "paused_until": until or PAUSED_INDEFINITELY,
        "paused_until_before_deactivation": None,
        "updated_at": timezone.now(),
    }
    if until is None:
        # No run until someone resumes: nothing to show as the next one (``refresh_next_run``).
        changes["next_run_at"] = None
    return queryset.update(**changes)


def resume_schedules(*, queryset: QuerySet[Schedule]) -> int:
    """Clear the pause of the schedules of ``queryset``; disabled ones stay disabled."""
    return queryset.update(
        paused_until=None, paused_until_before_deactivation=None, updated_at=timezone.now()
    )


def set_enabled(*, queryset: QuerySet[Schedule], enabled: bool) -> int:
    """Enable or disable the schedules of ``queryset``."""
    if not enabled:
        # A disabled schedule has no next run (``refresh_next_run``).
        return queryset.update(enabled=False, next_run_at=None, updated_at=timezone.now())
    return queryset.update(enabled=True, updated_at=timezone.now())


def set_schedule_enabled(
    *, schedule: Schedule, enabled: bool, user: Actor = None, source: str | None = None
) -> Schedule:
    """Enable or disable ``schedule``; audited with a source."""
    return _change_one(
        schedule,
        lambda queryset: set_enabled(queryset=queryset, enabled=enabled),
        action=AuditAction.ENABLE if enabled else AuditAction.DISABLE,
        user=user,
        source=source,
    )


TENANT_NOT_DEACTIVATABLE = gettext_lazy("The tenant model %(model)s has no is_active field.")


def set_tenant_active(
    *, tenant: Tenant, active: bool, user: Actor = None, source: str | None = None
) -> int:
    """Activate or deactivate ``tenant`` with its schedules; return how many were changed.

    Deactivating pauses every schedule of the tenant that is not paused until resumed already
    (one paused until a time keeps that time in ``paused_until_before_deactivation``).
    Reactivating gives exactly those schedules their pause back: schedules an operator had
    paused before stay paused, and one resumed or paused by hand meanwhile keeps what the
    operator did. Both are idempotent. With a ``source``, each schedule's change is audited.
    """
    if not any(f.name == "is_active" for f in type(tenant)._meta.get_fields()):
        raise TypeError(TENANT_NOT_DEACTIVATABLE % {"model": type(tenant)._meta.label})
    now = timezone.now()
    schedules = Schedule.objects.filter(tenant_id=tenant.pk)
    with transaction.atomic():
        _lock_tenant(tenant)
        if active:
            changed = _resume_for_tenant(schedules, now)
        else:
            changed = _pause_for_tenant(schedules, now)
        was_active = bool(tenant.is_active)
        if was_active != active:
            tenant.is_active = active
            tenant.save(update_fields=["is_active"])
        if source is not None and changed:
            AuditEntry.objects.bulk_create(
                AuditEntry(
                    tenant_id=tenant.pk,
                    schedule_id=pk,
                    schedule_name=name,
                    schedule_kind=kind,
                    action=AuditAction.RESUME if active else AuditAction.PAUSE,
                    # As in record_audit: the stubs pin AUTH_USER_MODEL to the test settings'.
                    user=_signed_in(user),  # type: ignore[misc]
                    source=source,
                    changes=bounded_changes(
                        {
                            "paused_until": [_json(before), _json(after)],
                            "tenant_is_active": [was_active, active],
                        }
                    ),
                )
                for pk, name, kind, before, after in changed
            )
    return len(changed)


_TenantChange: TypeAlias = tuple[int, str, str, "datetime | None", "datetime | None"]


def _pause_for_tenant(schedules: QuerySet[Schedule], now: datetime) -> list[_TenantChange]:
    """Pause ``schedules`` for their tenant's deactivation, keeping each one's own pause."""
    targets = schedules.filter(paused_until_before_deactivation__isnull=True).exclude(
        paused_until__gte=PAUSED_INDEFINITELY
    )
    rows = list(targets.values_list("pk", "name", "kind", "paused_until"))
    pks = [row[0] for row in rows]
    if not pks:
        return []
    marked = Schedule.objects.filter(pk__in=pks)
    # In two statements: MySQL would give the second SET the value the first one wrote.
    marked.update(
        paused_until_before_deactivation=Case(
            When(paused_until__gt=now, then=F("paused_until")), default=Value(now)
        )
    )
    marked.update(paused_until=PAUSED_INDEFINITELY, next_run_at=None, updated_at=now)
    return [(pk, name, kind, until, PAUSED_INDEFINITELY) for pk, name, kind, until in rows]


def _resume_for_tenant(schedules: QuerySet[Schedule], now: datetime) -> list[_TenantChange]:
    """Give the schedules paused by their tenant's deactivation their own pause back."""
    marked = schedules.filter(paused_until_before_deactivation__isnull=False)
    # Still under the pause the deactivation set (an operator's change since clears the mark,
    # or leaves another paused_until that is theirs to keep).
    ours = marked.filter(paused_until__gte=PAUSED_INDEFINITELY)
    rows = list(ours.values_list("pk", "name", "kind", "paused_until_before_deactivation"))
    restored = [
        (pk, name, kind, until if until is not None and until > now else None)
        for pk, name, kind, until in rows
    ]
    ours.filter(paused_until_before_deactivation__gt=now).update(
        paused_until=F("paused_until_before_deactivation"), updated_at=now
    )
    ours.filter(paused_until_before_deactivation__lte=now).update(paused_until=None, updated_at=now)
    marked.update(paused_until_before_deactivation=None)
    return [(pk, name, kind, PAUSED_INDEFINITELY, after) for pk, name, kind, after in restored]


def _json(value: object) -> object:
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


# Fields a copy does not take over: identity, bookkeeping and the scheduler's state.
NOT_COPIED = STATE_FIELDS | {
    "id",
    "schedule_ptr",
    "kind",
    "created_at",
    "updated_at",
    "tenant",
    "declared",  # a copy is the operators'
}


def copy_name(*, tenant: Tenant | None, kind: str, name: str) -> str:
    """Return "<name> (copy)", or "(copy 2)", "(copy 3)"... if taken, within the length limit."""
    max_length = Schedule._meta.get_field("name").max_length
    suffixes = [_(" (copy)")] + [_(" (copy %(n)d)") % {"n": n} for n in range(2, 1000)]
    longest = max(len(s) for s in suffixes)
    # A CharField may have no max_length (PostgreSQL's unlimited varchar): nothing to cut then.
    base = name if max_length is None else name[: max_length - longest]
    taken = set(
        Schedule.objects.filter(
            same_tenant(tenant.pk if tenant else None), kind=kind, name__startswith=base
        ).values_list("name", flat=True)
    )
    for suffix in suffixes:
        if base + suffix not in taken:
            return base + suffix
    raise ValidationError(_("Too many copies of %(name)s already exist.") % {"name": name})


def duplicate_schedule(
    *, schedule: Schedule, user: Actor = None, source: str | None = None
) -> Schedule:
    """Create a disabled copy of ``schedule`` named "... (copy)"; raise ``ValidationError``.

    The copy starts disabled so that it never fires alongside the original before someone
    has looked at it. It counts against the tenant's quota like any new schedule.
    """
    original = schedule.get_kind_object()
    fields = {
        field.name: getattr(original, field.name)
        for field in original._meta.concrete_fields
        if field.name not in NOT_COPIED and not field.primary_key
    }
    fields["name"] = copy_name(tenant=original.tenant, kind=original.kind, name=original.name)
    fields["enabled"] = False
    fields["paused_until"] = None
    fields["depends_on"] = list(original.depends_on.all())
    return create_schedule(
        model=type(original), tenant=original.tenant, user=user, source=source, **fields
    )


AUDIT_IGNORED = STATE_FIELDS | {"updated_at", "created_at", "schedule_ptr", "id", "kind"}


def snapshot(schedule: Schedule) -> dict[str, object]:
    """Return the audited field values of ``schedule`` as JSON-able data."""
    data: dict[str, object] = {}
    for field in schedule._meta.concrete_fields:
        if field.name in AUDIT_IGNORED:
            continue
        value = field.value_from_object(schedule)
        data[field.name] = json.loads(json.dumps(value, cls=DjangoJSONEncoder))
    if schedule.pk:
        data["depends_on"] = sorted(schedule.depends_on.values_list("pk", flat=True))
    return data


def diff(before: dict[str, object], after: dict[str, object]) -> dict[str, list[object]]:
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
    user: Actor = None,
    source: str = "api",
    changes: dict[str, list[object]] | None = None,
) -> AuditEntry:
    """Record that ``user`` did ``action`` to ``schedule`` through ``source``."""
    return AuditEntry.objects.create(
        tenant_id=schedule.tenant_id,
        schedule=schedule if schedule.pk and action != AuditAction.DELETE else None,
        schedule_name=schedule.name,
        schedule_kind=schedule.kind,
        action=action,
        # The FK's model is AUTH_USER_MODEL, which the stubs pin to the test settings' User.
        user=_signed_in(user),  # type: ignore[misc]
        source=source,
        changes=bounded_changes(changes or {}),
    )


def _truncated(value: object, size: int, keep: int) -> str:
    """A marker standing for ``value`` (``size`` bytes of JSON): its first ``keep`` characters."""
    text = json.dumps(value, cls=DjangoJSONEncoder, ensure_ascii=False)
    return _("%(start)s… [truncated: %(size)d bytes]") % {"start": text[:keep], "size": size}


def bounded_changes(changes: dict[str, list[object]]) -> dict[str, list[object]]:
    """Return ``changes`` with each value and the whole under the audit limits.

    A value longer than ``AUDIT_VALUE_MAX_BYTES`` as JSON becomes a string: its start and a
    "[truncated: N bytes]" marker. If the entry is still over ``AUDIT_ENTRY_MAX_BYTES``, the
    largest values are cut to a short marker until it fits.
    """
    cut: dict[str, list[object]] = {}
    sizes: list[tuple[int, int, str, int]] = []  # (size kept, original size, field, 0/1)
    for name, pair in changes.items():
        values = list(pair)
        for index, value in enumerate(values):
            size = kept = json_size(value)
            if size > AUDIT_VALUE_MAX_BYTES:
                values[index] = _truncated(value, size, AUDIT_VALUE_MAX_BYTES // 4)
                kept = json_size(values[index])
            sizes.append((kept, size, name, index))
        cut[name] = values
    total = json_size(cut)
    for kept, size, name, index in sorted(sizes, reverse=True):
        if total <= AUDIT_ENTRY_MAX_BYTES:
            break
        cut[name][index] = _truncated(changes[name][index], size, 200)
        total -= kept - json_size(cut[name][index])
    return cut
