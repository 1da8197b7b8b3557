"""Admin of the rules around schedules: alert rules, blackout windows and the audit trail.

Imported by ``scheduling.admin``; the same tenant scoping and roles apply as to schedules:
members see their tenants' rows, admins and owners change them, the audit trail is read-only.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin
from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.forms import ModelChoiceField
from django.http import HttpRequest
from django.urls import reverse
from django.utils.dateparse import parse_datetime
from django.utils.dates import WEEKDAYS
from django.utils.html import format_html, format_html_join
from django.utils.text import capfirst
from django.utils.translation import gettext_lazy as _

from ..kinds import KINDS
from ..models import (
    AlertRule,
    AuditAction,
    AuditEntry,
    BlackoutKind,
    BlackoutWindow,
    Schedule,
    history_timezone,
    same_tenant,
)
from ..tenancy import request_tenants
from ..triggers import is_paused_indefinitely
from .base import (
    ADMIN_CSS,
    MANAGE_ROLE,
    ReadOnlyAdmin,
    TenantFilter,
    TenantScopedAdmin,
    format_time,
    has_object_role,
    tenant_ids_for,
    tenant_label,
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


# Weekdays by name; the model stores their numbers (0 = Monday ... 6 = Sunday).
WEEKDAY_CHOICES: list[tuple[str, StrOrPromise]] = [
    ("", "---------"),
    *((str(day), name) for day, name in WEEKDAYS.items()),
]


def weekday_field(name: str) -> forms.TypedChoiceField:
    field = BlackoutWindow._meta.get_field(name)
    return forms.TypedChoiceField(
        label=capfirst(field.verbose_name if isinstance(field, models.Field) else name),
        choices=WEEKDAY_CHOICES,
        coerce=int,
        empty_value=None,
        required=False,
    )


class BlackoutWindowForm(forms.ModelForm):
    """A blackout window with its weekdays picked by name."""

    start_weekday = weekday_field("start_weekday")
    end_weekday = weekday_field("end_weekday")

    class Meta:
        model = BlackoutWindow
        # The admin's fieldsets choose the fields shown.
        fields = ["start_weekday", "end_weekday"]


@admin.register(BlackoutWindow)
class BlackoutWindowAdmin(ScheduleRuleAdmin):
    form = BlackoutWindowForm
    list_display = ["name", "tenant", "applies_to", "kind", "period", "zone"]
    list_filter = [TenantFilter, "kind"]
    search_fields = ["name", "schedule__name"]
    fieldsets = [
        (None, {"fields": ["tenant", "schedule", "name", "kind", "timezone"]}),
        (
            _("Every week"),
            {
                "fields": [("start_weekday", "start_time"), ("end_weekday", "end_time")],
                "description": _(
                    "For weekly windows: from the start day and time to the end day and time, "
                    "in the window's time zone, every week."
                ),
                # Fixed widths keep the start and end rows in the same columns.
                "classes": ["scheduling-weekly"],
            },
        ),
        (_("Date range"), {"fields": ["starts_at", "ends_at"]}),
    ]

    class Media:
        css = ADMIN_CSS

    @admin.display(description=_("period"))
    def period(self, obj: BlackoutWindow) -> str:
        # Each time stays on one line; a long period wraps between them.
        if obj.kind == BlackoutKind.DATES and obj.starts_at and obj.ends_at:
            zone = obj.effective_timezone
            return format_html(
                '<span class="nowrap">{}</span> {} <span class="nowrap">{}</span>',
                format_time(obj.starts_at, zone),
                _("to"),
                format_time(obj.ends_at, zone),
            )
        return format_html('<span class="nowrap">{}</span>', obj.describe())

    @admin.display(description=_("time zone"), ordering="timezone")
    def zone(self, obj: BlackoutWindow) -> str:
        return obj.effective_timezone

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        # The tenant: one the user manages, checked by TenantScopedAdmin, or none.
        initial = super().get_changeform_initial_data(request)
        tenant = initial.get("tenant")
        if tenant and "timezone" not in initial:
            # A new window is in its tenant's time zone.
            managed = request_tenants(request, min_role=MANAGE_ROLE)
            chosen = managed.filter(pk=tenant).first()
            if chosen is not None:
                initial["timezone"] = getattr(chosen, "timezone", "") or "UTC"
        return initial


# Changed fields named in the audit trail's list; the entry's page shows them all.
CHANGED_FIELDS_LISTED = 5


def audited_model(entry: AuditEntry) -> type[Schedule]:
    """Return the model whose fields ``entry`` records: its schedule's kind."""
    spec = KINDS.get(entry.schedule_kind)
    return spec.model if spec is not None else Schedule


def field_label(model: type[Schedule], name: str) -> str:
    """Return how a recorded field is named: its verbose name ("Cron expression")."""
    if name == "execution":  # run, cancel and retry record the execution they concern
        return capfirst(str(_("execution")))
    field = model_field(model, name)
    if field is None:  # a field of an older version of the model
        return capfirst(name.replace("_", " "))
    return capfirst(str(field.verbose_name))


def model_field(model: type[Schedule], name: str) -> models.Field[Any, Any] | None:
    """Return ``model``'s field ``name`` (a many-to-many one too), or None."""
    try:
        field = model._meta.get_field(name)
    except FieldDoesNotExist:
        return None
    return field if isinstance(field, models.Field) else None


def field_order(model: type[Schedule]) -> Callable[[str], tuple[int, str]]:
    """Return the sort key that puts recorded field names in ``model``'s field order.

    The same order on every database: PostgreSQL's jsonb does not keep the order the keys of
    ``changes`` were written in (it sorts them by length). Names the model does not have (an
    execution, a field of an older version) come last.
    """
    positions = {field.name: index for index, field in enumerate(model._meta.get_fields())}
    return lambda name: (positions.get(name, len(positions)), name)


class ChangeFormatter:
    """Shows the values an audit entry recorded (JSON) as the admin shows them elsewhere."""

    def __init__(self, entry: AuditEntry) -> None:
        self.entry = entry
        self.model = audited_model(entry)
        self.zone = history_timezone(
            entry.schedule if entry.schedule_id else None, entry.tenant if entry.tenant_id else None
        )
        self.changes = entry.changes if isinstance(entry.changes, dict) else {}
        # The names of the dependencies it names, in one query (of the entry's tenant only).
        pair = self.changes.get("depends_on")
        ids = {
            pk
            for value in (pair if isinstance(pair, list) else [])
            if isinstance(value, list)
            for pk in value
            if isinstance(pk, int)
        }
        self.names = (
            dict(
                Schedule.objects.filter(same_tenant(entry.tenant_id), pk__in=ids).values_list(
                    "pk", "name"
                )
            )
            if ids
            else {}
        )

    def rows(self) -> list[tuple[str, str]]:
        """Return ``(label, HTML of the change)`` for each recorded field."""
        action = self.entry.action
        order = field_order(self.model)
        rows = []
        for name, pair in sorted(self.changes.items(), key=lambda item: order(item[0])):
            old, new = (list(pair) + [None, None])[:2] if isinstance(pair, list) else (None, pair)
            if action == AuditAction.CREATE or (name == "execution" and old is None):
                change = self.value(name, new)
            elif action == AuditAction.DELETE or (name == "execution" and old == new):
                change = self.value(name, old)
            else:
                change = format_html("{} → {}", self.value(name, old), self.value(name, new))
            rows.append((field_label(self.model, name), change))
        return rows

    def value(self, name: str, value: object) -> str:
        """Return the HTML of one recorded value of field ``name``."""
        if value is None or value == "" or value == []:
            return format_html('<span class="quiet">{}</span>', _("(empty)"))
        if name == "execution" and isinstance(value, int):
            url = reverse("admin:scheduling_execution_change", args=[value])
            return format_html('<a href="{}">{}</a>', url, value)
        if name == "depends_on" and isinstance(value, list):
            return format_html_join(", ", "{}", ((self.names.get(pk, pk),) for pk in value))
        if name == "tenant" and value == self.entry.tenant_id:
            return format_html("{}", tenant_label(self.entry.tenant))
        field = model_field(self.model, name)
        if isinstance(value, bool):
            return format_html("{}", _("yes") if value else _("no"))
        if field is not None and field.choices and isinstance(value, (str, int)):
            return format_html("{}", dict(field.flatchoices).get(value, value))
        if isinstance(field, models.DateTimeField) and isinstance(value, str):
            moment = parse_datetime(value)
            if moment is not None:
                if is_paused_indefinitely(moment):
                    return format_html("{}", _("until resumed"))
                return format_html("{}", format_time(moment, self.zone))
        if isinstance(value, (dict, list)):
            value = json.dumps(value, sort_keys=True, ensure_ascii=False)
        return format_html("<code>{}</code>", value)


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    """Who changed which schedule, through which interface: a record nobody edits."""

    list_display = [
        "when",
        "tenant_column",
        "schedule_name",
        "schedule_kind",
        "action",
        "user",
        "source",
        "changed_fields",
    ]
    list_filter = [TenantFilter, "action", "source", "schedule_kind"]
    list_select_related = ["tenant", "user", "schedule"]
    search_fields = ["schedule_name"]
    date_hierarchy = "created_at"
    show_full_result_count = False
    fields = readonly_fields = (
        "when",
        "tenant_column",
        "schedule",
        "schedule_name",
        "schedule_kind",
        "action",
        "user",
        "source",
        "changes_list",
    )

    def has_delete_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return False

    @admin.display(description=_("when"), ordering="created_at")
    def when(self, obj: AuditEntry) -> str:
        return format_time(
            obj.created_at,
            history_timezone(
                obj.schedule if obj.schedule_id else None, obj.tenant if obj.tenant_id else None
            ),
        )

    @admin.display(description=_("changed"))
    def changed_fields(self, obj: AuditEntry) -> str:
        """The recorded fields by name, the first few; "-" for an action without any."""
        model = audited_model(obj)
        changes = obj.changes if isinstance(obj.changes, dict) else {}
        names = [field_label(model, name) for name in sorted(changes, key=field_order(model))]
        if not names:
            return "-"
        shown = ", ".join(names[:CHANGED_FIELDS_LISTED])
        more = len(names) - CHANGED_FIELDS_LISTED
        return shown + (_(" and %(count)d more") % {"count": more} if more > 0 else "")

    @admin.display(description=_("changes"))
    def changes_list(self, obj: AuditEntry) -> str:
        rows = ChangeFormatter(obj).rows()
        if not rows:
            return "-"
        return format_html(
            '<ul class="scheduling-changes">{}</ul>',
            format_html_join("", "<li><strong>{}</strong>: {}</li>", rows),
        )
