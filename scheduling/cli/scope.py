"""Who acts, and on what: the ``--user``, ``--tenant`` and ``--kind`` every verb is run with.

Without ``--user`` the shell user sees every tenant, as with ``manage.py shell``. With it, only
the tenants the tenant resolver lets that user see exist, and the verbs that change something
need a role in the schedule's tenant (run, pause, resume, cancel, retry: operator; add, remove,
enable, disable, import, purge: admin, as in the API).
An id or a tenant outside the scope is "not found", never "forbidden", so that an error never
tells that another tenant's schedule exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from django.contrib.auth import get_user_model
from django.db.models import Q, QuerySet
from django.http import Http404

from ..kinds import KINDS, relations
from ..models import Execution, Schedule, ScheduleQuerySet
from ..tenancy import (
    find_tenant,
    get_tenant_model,
    sees_system,
    tenant_key,
    tenants_visible_to,
    visible_tenant_ids,
)
from .exceptions import CLIError

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

OPERATOR, ADMIN = "operator", "admin"

_QuerySet = TypeVar("_QuerySet", bound=QuerySet)
# The schedules an ambiguous name is listed with in its error, at most.
AMBIGUOUS_SHOWN = 5


@dataclass(frozen=True)
class ScheduleName:
    """A schedule named at the command line rather than by id.

    ``NAME``, ``TENANT/NAME`` or ``TENANT/KIND/NAME`` (as the verbs print it); ``literal``
    (``--name``) takes the text as the name alone, for a name that holds a slash or digits only.
    """

    text: str
    literal: bool = False

    def __str__(self) -> str:
        return self.text


# What picks one schedule: its id, or its name (within --tenant, --kind and --user).
ScheduleRef: TypeAlias = int | ScheduleName


def find_user(username: str) -> AbstractBaseUser:
    """Return the user ``--user`` names; an unknown one is bad input."""
    model = get_user_model()
    try:
        return model._default_manager.get_by_natural_key(username)
    except model.DoesNotExist:
        raise CLIError(f"Unknown user {username!r}.") from None


class Scope:
    """The tenant, kind and user of one command; every query of a verb is narrowed by it."""

    def __init__(
        self, *, tenant: str | None = None, kind: str | None = None, user: str | None = None
    ) -> None:
        self.tenant_key = tenant
        self._tenant: Any = None
        self.kind = kind
        self.user = find_user(user) if user else None
        self._admin_ids: set[int] | None = None
        self._admin_ids_known = False

    def tenants(self, role: str | None = None) -> QuerySet:
        """Return the tenants in scope: all, or those ``--user`` holds ``role`` in."""
        if self.user is None:
            return get_tenant_model()._default_manager.all()
        return tenants_visible_to(self.user, min_role=role)

    def tenant(self) -> Any | None:
        """Return the ``--tenant`` tenant, or None; an unknown or invisible one is bad input."""
        if self.tenant_key is not None and self._tenant is None:
            self._tenant = find_tenant(self.tenant_key, self.tenants())
            if self._tenant is None:
                raise CLIError(f"Unknown tenant {self.tenant_key!r}.")
        return self._tenant

    def tenant_ids(self) -> list[Any] | None:
        """Return the ids of the tenants in scope, or None for every tenant."""
        tenant = self.tenant()
        if tenant is not None:
            return [tenant.pk]
        if self.user is not None:
            return list(self.tenants().values_list("pk", flat=True))
        return None

    def sees_internals(self, tenant_id: int | None) -> bool:
        """Return whether ``--user`` sees the internals of a row of tenant ``tenant_id``.

        Worker host names and tracebacks (with server paths) are for superusers and the admins
        and owners of the row's tenant (system rows: those who see them); without ``--user``,
        the shell user sees everything. The user's admin tenants are read once per command.
        """
        if self.user is None:
            return True
        if tenant_id is None:
            return sees_system(self.user)
        if not self._admin_ids_known:
            self._admin_ids = visible_tenant_ids(self.user, min_role=ADMIN)
            self._admin_ids_known = True
        return self._admin_ids is None or tenant_id in self._admin_ids

    def sees_scheduler_hosts(self) -> bool:
        """Return whether ``--user`` sees the lease holder's host name: who sees every tenant."""
        return self.user is None or visible_tenant_ids(self.user) is None

    def require_role(self, tenant: Any, role: str, verb: str) -> None:
        """Refuse ``verb`` in ``tenant`` unless ``--user`` holds at least ``role`` there."""
        if self.user is None:
            return
        if tenant is None:  # a system schedule or its execution
            if not sees_system(self.user):
                raise CLIError(f"Only superusers may {verb} system schedules.")
            return
        ids = visible_tenant_ids(self.user, min_role=role)
        if ids is not None and tenant.pk not in ids:
            raise CLIError(f"Your role in tenant {tenant_key(tenant)!r} does not allow {verb}.")

    def schedules(self) -> ScheduleQuerySet[Schedule]:
        """Return the schedules in scope, each with its tenant and its kind's row."""
        return self.in_scope(
            Schedule.objects.select_related("tenant", *relations()), kind_field="kind"
        )

    def in_scope(self, queryset: _QuerySet, *, kind_field: str) -> _QuerySet:
        """Limit ``queryset`` (rows with a ``tenant``) to the tenant, user and kind in scope."""
        tenant = self.tenant()
        if tenant is not None:
            queryset = queryset.filter(tenant=tenant)
        elif self.user is not None:
            rows = Q(tenant__in=self.tenants())
            if sees_system(self.user):
                rows |= Q(tenant__isnull=True)
            queryset = queryset.filter(rows)
        if self.kind:
            queryset = queryset.filter(**{kind_field: self.kind})
        return queryset

    def get_execution(self, pk: int) -> Execution:
        """Return execution ``pk`` in scope, with its schedule; outside the scope: not found."""
        queryset = self.in_scope(
            Execution.objects.select_related("tenant", "schedule"), kind_field="schedule_kind"
        )
        execution = queryset.filter(pk=pk).first()
        if execution is None:
            raise CLIError(f"Execution {pk} not found.")
        return execution

    def find_schedule(self, ref: ScheduleRef) -> Schedule:
        """Return the schedule ``ref`` picks in scope, as its kind.

        A name that matches no schedule in scope is not found; one that matches several (a scan
        and a report of that name, or one in each of two tenants) is ambiguous. Either is bad
        input, one line that names only schedules in scope.
        """
        if isinstance(ref, int):
            return self.get_schedule(ref)
        wanted = Q(name=ref.text)
        tenant_part, slash, rest = ref.text.partition("/")
        if slash and not ref.literal:
            tenant = find_tenant(tenant_part, self.tenants())
            if tenant is not None:
                wanted |= Q(tenant=tenant, name=rest)
                kind, slash, name = rest.partition("/")
                if slash and kind in KINDS:
                    wanted |= Q(tenant=tenant, kind=kind, name=name)
        matches = self.schedules().filter(wanted).order_by("tenant_id", "kind", "pk")
        found = list(matches[: AMBIGUOUS_SHOWN + 1])
        if not found:
            raise CLIError(f"Schedule {ref.text!r} not found.")
        if len(found) > 1:
            count = len(found) if len(found) <= AMBIGUOUS_SHOWN else matches.count()
            shown = ", ".join(
                f"{tenant_key(s.tenant) or '(system)'}/{s.kind}/{s.name} ({s.pk})"
                for s in found[:AMBIGUOUS_SHOWN]
            )
            more = f" and {count - AMBIGUOUS_SHOWN} more" if count > AMBIGUOUS_SHOWN else ""
            raise CLIError(
                f"{ref.text!r} names {count} schedules: {shown}{more}; give its id, or "
                "narrow it with TENANT/KIND/NAME, --tenant or --kind."
            )
        return found[0].get_kind_object()

    def get_schedule(self, pk: int) -> Schedule:
        """Return schedule ``pk`` in scope, as its kind; outside the scope it is not found."""
        tenant = self.tenant()
        try:
            if tenant is not None:
                schedule = self.schedules().get_for_tenant(tenant, pk)
            else:
                schedule = self.schedules().get(pk=pk)
        except (Http404, Schedule.DoesNotExist):
            raise CLIError(f"Schedule {pk} not found.") from None
        return schedule.get_kind_object()
