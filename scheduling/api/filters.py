"""Query filters (django-filter). They narrow the already tenant-scoped querysets, so a filter
naming another tenant's id or slug matches nothing: an empty list, never that tenant's data."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TypeVar

import django_filters
from django import forms
from django.db.models import Model, QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django_filters import fields as filter_fields

from ..models import (
    CleanupConfig,
    Execution,
    Kind,
    PeriodicScan,
    Report,
    ReportArtifact,
    ReportFormat,
    Schedule,
    ScheduledTask,
    Status,
    TriggerKind,
    TriggerType,
)

MAX_ID = 2**63 - 1

_QS = TypeVar("_QS", bound=QuerySet[Model])


class SafeIsoDateTimeField(filter_fields.IsoDateTimeField):
    """An ISO 8601 datetime that the database can compare, in UTC.

    UTC also because PostgreSQL rejects offsets beyond 15:59 that Python accepts (-21:00).
    """

    def to_python(self, value: str | datetime | None) -> datetime | None:
        result: datetime | None = super().to_python(value)
        if result is not None:
            try:
                result = result.astimezone(UTC)
            except (OverflowError, ValueError):
                raise forms.ValidationError(_("Enter a date between years 1 and 9999.")) from None
        return result


class SafeIsoDateTimeRangeField(filter_fields.RangeField):
    widget = filter_fields.DateRangeWidget

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__((SafeIsoDateTimeField(), SafeIsoDateTimeField()), *args, **kwargs)


class DateTimeRangeFilter(django_filters.RangeFilter):
    """``<name>_after`` and ``<name>_before`` (ISO 8601), inclusive."""

    field_class = SafeIsoDateTimeRangeField


class IdFilter(django_filters.Filter):
    field_class = forms.IntegerField

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_ID)
        super().__init__(*args, **kwargs)


def filter_tenant(queryset: _QS, name: str, value: str) -> _QS:
    """Filter by the tenant's id or slug."""
    value = value.strip()
    if value.isdecimal():
        number = int(value)
        return queryset.filter(tenant_id=number) if number <= MAX_ID else queryset.none()
    return queryset.filter(tenant__slug=value)


def tenant_filter() -> django_filters.CharFilter:
    return django_filters.CharFilter(
        method=filter_tenant, help_text=_("The tenant's id or slug."), max_length=100
    )


class ScheduleFilter(django_filters.FilterSet):
    tenant = tenant_filter()
    enabled = django_filters.BooleanFilter()
    trigger_type = django_filters.ChoiceFilter(choices=TriggerType.choices)
    last_status = django_filters.MultipleChoiceFilter(choices=Status.choices)
    name = django_filters.CharFilter(lookup_expr="icontains", max_length=200)
    paused = django_filters.BooleanFilter(
        method="filter_paused", help_text=_("Paused until a future instant.")
    )
    next_run_at = DateTimeRangeFilter()
    last_run_at = DateTimeRangeFilter()
    updated_at = DateTimeRangeFilter()

    class Meta:
        model = Schedule
        fields = ["tenant", "enabled", "trigger_type", "last_status", "name"]

    def filter_paused(self, queryset: _QS, name: str, value: bool | None) -> _QS:
        if value is None:
            return queryset
        paused = {"paused_until__gt": timezone.now()}
        return queryset.filter(**paused) if value else queryset.exclude(**paused)


class PeriodicScanFilter(ScheduleFilter):
    scan_type = django_filters.CharFilter(max_length=64)

    class Meta(ScheduleFilter.Meta):
        model = PeriodicScan
        fields = [*ScheduleFilter.Meta.fields, "scan_type"]


class ReportFilter(ScheduleFilter):
    report_type = django_filters.CharFilter(max_length=64)
    format = django_filters.ChoiceFilter(choices=ReportFormat.choices)

    class Meta(ScheduleFilter.Meta):
        model = Report
        fields = [*ScheduleFilter.Meta.fields, "report_type", "format"]


class CleanupConfigFilter(ScheduleFilter):
    cleanup_target = django_filters.CharFilter(max_length=64)

    class Meta(ScheduleFilter.Meta):
        model = CleanupConfig
        fields = [*ScheduleFilter.Meta.fields, "cleanup_target"]


class ScheduledTaskFilter(ScheduleFilter):
    task_type = django_filters.CharFilter(max_length=64)

    class Meta(ScheduleFilter.Meta):
        model = ScheduledTask
        fields = [*ScheduleFilter.Meta.fields, "task_type"]


class ExecutionFilter(django_filters.FilterSet):
    tenant = tenant_filter()
    schedule = IdFilter(field_name="schedule_id")
    # A column of the row itself: no join can repeat a row, so no DISTINCT, which would make
    # the database sort every matching row of the history before returning the first page.
    status = django_filters.MultipleChoiceFilter(choices=Status.choices, distinct=False)
    kind = django_filters.ChoiceFilter(field_name="schedule_kind", choices=Kind.choices)
    trigger = django_filters.ChoiceFilter(choices=TriggerKind.choices)
    scheduled_for = DateTimeRangeFilter()
    finished = DateTimeRangeFilter(field_name="finished_at")

    class Meta:
        model = Execution
        fields = ["tenant", "schedule", "status", "kind", "trigger"]


class ReportArtifactFilter(django_filters.FilterSet):
    tenant = tenant_filter()
    report = IdFilter(field_name="report_id")
    execution = IdFilter(field_name="execution_id")
    format = django_filters.ChoiceFilter(choices=ReportFormat.choices)
    created_at = DateTimeRangeFilter()

    class Meta:
        model = ReportArtifact
        fields = ["tenant", "report", "execution", "format"]
