"""Admin of the rules around schedules: alert rules, blackout windows and the audit trail.

Imported by ``scheduling.admin``; the same tenant scoping and roles apply as to schedules:
members see their tenants' rows, admins and owners change them, the audit trail is read-only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib import admin
from django.db import models
from django.forms import ModelChoiceField
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from ..models import AlertRule, AuditEntry, BlackoutWindow, Schedule
from .base import (
    MANAGE_ROLE,
    ReadOnlyAdmin,
    TenantFilter,
    TenantScopedAdmin,
    has_object_role,
    tenant_ids_for,
)

if TYPE_CHECKING:
    from django.contrib.admin.options import _FieldsetSpec
    from django_stubs_ext import StrOrPromise


class ScheduleRuleAdmin(TenantScopedAdmin):
    """A rule of a tenant that may name one of the tenant's schedules (empty: all of them)."""

    autocomplete_fields = ["schedule"]
    list_select_related = ["tenant", "schedule"]
    show_full_result_count = False

    def formfield_for_foreignkey(
        self,
        db_field: models.ForeignKey[models.Model | None, models.Model | None],
        request: HttpRequest,
        **kwargs: object,
    ) -> ModelChoiceField[models.Model] | None:
        if db_field.name == "schedule":
            # Only schedules of tenants the user manages, also for a POST that bypasses the widget.
            ids = tenant_ids_for(request, MANAGE_ROLE)
            queryset = Schedule.objects.all()
            kwargs["queryset"] = queryset if ids is None else queryset.filter(tenant_id__in=ids)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    @admin.display(description=_("applies to"), ordering="schedule__name")
    def applies_to(self, obj: AlertRule | BlackoutWindow) -> StrOrPromise:
        schedule = obj.schedule if obj.schedule_id else None
        return schedule.name if schedule is not None else _("every schedule of the tenant")


@admin.register(AlertRule)
class AlertRuleAdmin(ScheduleRuleAdmin):
    list_display = [
        "name",
        "tenant",
        "applies_to",
        "enabled",
        "consecutive_failures",
        "not_succeeded_multiple",
        "email_admins",
        "has_webhook",
        "cooldown_seconds",
    ]
    list_filter = [TenantFilter, "enabled", "email_admins"]
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    search_fields = ["name", "schedule__name"]
    fieldsets = [
        (None, {"fields": ["tenant", "schedule", "name", "enabled"]}),
        (_("When"), {"fields": ["consecutive_failures", "not_succeeded_multiple"]}),
        (_("How"), {"fields": ["email_admins", "webhook_url", "cooldown_seconds"]}),
    ]

    @admin.display(description=_("webhook"), boolean=True)
    def has_webhook(self, obj: AlertRule) -> bool:
        return bool(obj.webhook_url)

    @admin.display(description=_("webhook URL"))
    def masked_webhook_url(self, obj: AlertRule) -> str:
        return obj.masked_webhook_url() or "-"

    def get_fieldsets(self, request: HttpRequest, obj: models.Model | None = None) -> _FieldsetSpec:
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None or has_object_role(request, MANAGE_ROLE, obj):
            return fieldsets
        # The URL's path and query carry secrets: the tenant's admins and owners see it whole.
        return [
            (
                name,
                {
                    **options,
                    "fields": [
                        "masked_webhook_url" if field == "webhook_url" else field
                        for field in options["fields"]
                    ],
                },
            )
            for name, options in fieldsets
        ]

    def get_readonly_fields(
        self, request: HttpRequest, obj: models.Model | None = None
    ) -> list[str] | tuple[str, ...]:
        return [*super().get_readonly_fields(request, obj), "masked_webhook_url"]


@admin.register(BlackoutWindow)
class BlackoutWindowAdmin(ScheduleRuleAdmin):
    list_display = ["name", "tenant", "applies_to", "kind", "period", "timezone"]
    list_filter = [TenantFilter, "kind"]
    search_fields = ["name", "schedule__name"]
    fieldsets = [
        (None, {"fields": ["tenant", "schedule", "name", "kind", "timezone"]}),
        (
            _("Every week"),
            {
                "fields": [("start_weekday", "start_time"), ("end_weekday", "end_time")],
                "description": _("For weekly windows. Weekdays: 0 = Monday ... 6 = Sunday."),
            },
        ),
        (_("Date range"), {"fields": ["starts_at", "ends_at"]}),
    ]

    @admin.display(description=_("period"))
    def period(self, obj: BlackoutWindow) -> str:
        return obj.describe()


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    """Who changed which schedule, through which interface: a record nobody edits."""

    list_display = [
        "created_at",
        "tenant_column",
        "schedule_name",
        "schedule_kind",
        "action",
        "user",
        "source",
    ]
    list_filter = [TenantFilter, "action", "source", "schedule_kind"]
    list_select_related = ["tenant", "user"]
    search_fields = ["schedule_name"]
    date_hierarchy = "created_at"
    show_full_result_count = False
    readonly_fields = [
        "created_at",
        "tenant",
        "schedule",
        "schedule_name",
        "schedule_kind",
        "action",
        "user",
        "source",
        "changes",
    ]

    def has_delete_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return False
