"""List filters: the history by schedule (``?schedule=<id>``), schedules by state.

The dashboard's cards and bars link to lists narrowed by these (``dashboard.py``), so each
filter here matches its count there exactly.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from django.contrib import admin
from django.db.models import Model, Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from ..models import FAILING_SCHEDULES, Schedule
from ..tenancy import scope_q
from .base import (
    SYSTEM_CHOICE,
    VIEW_ROLE,
    TenantFilter,
    sees_system_rows,
    tenant_ids_for,
    tenant_label,
)

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise

# Schedules offered as choices: those that ran last. Any other visible schedule is reachable
# with ?schedule=<id> (the links of the schedule and dashboard pages use it).
SCHEDULE_CHOICES = 30
MAX_ID = 2**63 - 1  # a larger number would overflow the database's integer


def schedule_choice_label(schedule: Schedule) -> str:
    return f"{schedule.name} ({schedule.get_kind_display()}, {tenant_label(schedule.tenant)})"


class ScheduleFilter(admin.SimpleListFilter):
    """Filter history rows by their schedule, among the schedules the user may see.

    Works on any model with a ``schedule`` foreign key to ``Schedule`` (the one table of every
    kind). A schedule the user may not see, or that does not exist, matches no row and is not
    named, so the filter cannot be used to probe another tenant.
    """

    title = _("schedule")
    parameter_name = "schedule"

    def visible_schedules(self, request: HttpRequest) -> QuerySet[Schedule]:
        """The schedules the user may see, of the tenant chosen in the tenant filter if any."""
        schedules = Schedule.objects.select_related("tenant")
        q = scope_q(tenant_ids_for(request, VIEW_ROLE), sees_system_rows(request))
        if q is not None:
            schedules = schedules.filter(q)
        tenant = request.GET.get(TenantFilter.parameter_name, "")
        if tenant == SYSTEM_CHOICE:
            schedules = schedules.filter(tenant__isnull=True)
        elif tenant.isascii() and tenant.isdigit() and int(tenant) <= MAX_ID:
            schedules = schedules.filter(tenant_id=int(tenant))
        return schedules

    def selected_pk(self) -> int | None:
        """The chosen schedule's id; None for a value that cannot be one."""
        value = self.value() or ""
        if not (value.isascii() and value.isdigit()) or int(value) > MAX_ID:
            return None
        return int(value)

    def lookups(
        self, request: HttpRequest, model_admin: admin.ModelAdmin
    ) -> list[tuple[str, StrOrPromise]]:
        visible = self.visible_schedules(request)
        shown = list(visible.order_by("-last_run_at", "pk")[:SCHEDULE_CHOICES])
        selected = self.selected_pk()
        if selected is not None and all(s.pk != selected for s in shown):
            shown.extend(visible.filter(pk=selected))
        shown.sort(key=lambda s: (s.name.casefold(), s.pk))
        return [(str(s.pk), schedule_choice_label(s)) for s in shown]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Model]) -> QuerySet[Model]:
        if self.value() is None:
            return queryset
        selected = self.selected_pk()
        if selected is None:
            return queryset.none()
        # The queryset is scoped to the user's tenants already: another tenant's schedule
        # finds nothing here.
        return queryset.filter(schedule_id=selected)


# The states the dashboard counts beyond enabled (a field with its own filter) and all.
PAUSED, FAILING = "paused", "failing"


def schedule_state_q(state: str, now: datetime) -> Q:
    """Return the filter of the schedules in ``state`` at ``now`` (``PAUSED`` or ``FAILING``)."""
    if state == PAUSED:
        return Q(paused_until__gt=now)
    return FAILING_SCHEDULES


class ScheduleStateFilter(admin.SimpleListFilter):
    """Filter schedules that are paused, or failing (enabled, and their last run failed)."""

    title = _("state")
    parameter_name = "state"

    def lookups(
        self, request: HttpRequest, model_admin: admin.ModelAdmin
    ) -> list[tuple[str, StrOrPromise]]:
        return [(PAUSED, _("Paused")), (FAILING, _("Failing"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Model]) -> QuerySet[Model]:
        value = self.value()
        if value in (PAUSED, FAILING):
            return queryset.filter(schedule_state_q(value, timezone.now()))
        return queryset
