"""Read-only history: executions, report artifacts and the scheduler lease."""

from __future__ import annotations

import json

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.db.models import Model
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from ..kinds import relation_of
from ..models import (
    Execution,
    ReportArtifact,
    SchedulerLease,
)
from . import views
from .base import (
    ADMIN_CSS,
    VIEW_ROLE,
    ReadOnlyAdmin,
    TenantFilter,
    format_duration,
    has_object_role,
    status_badge,
    truncate,
)
from .dashboard import dashboard_view


class ArtifactInline(admin.TabularInline):
    model = ReportArtifact
    extra = 0
    max_num = 0
    can_delete = False
    fields = readonly_fields = ("filename", "format", "size", "download")

    @admin.display(description=_("download"))
    def download(self, obj: ReportArtifact) -> str:
        return download_link(obj)

    # An inline's ``obj`` is the parent: the execution whose page shows it.
    def has_view_permission(self, request: HttpRequest, obj: Execution | None = None) -> bool:
        return has_object_role(request, VIEW_ROLE, obj)


def download_link(artifact: ReportArtifact) -> str:
    url = reverse("admin:scheduling_reportartifact_download", args=[artifact.pk])
    return format_html('<a href="{}" download>{}</a>', url, _("Download"))


def pre_block(text: str) -> str:
    return format_html('<pre class="scheduling-pre">{}</pre>', text) if text else "-"


@admin.register(Execution)
class ExecutionAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "schedule_link",
        "schedule_kind",
        "tenant",
        "scheduled_for",
        "attempt",
        "trigger",
        "status_badge",
        "duration",
        "short_error",
    ]
    list_filter = ["status", "schedule_kind", "trigger", TenantFilter]
    list_select_related = ["tenant"]
    search_fields = ["schedule_name", "error"]
    date_hierarchy = "scheduled_for"
    show_full_result_count = False
    inlines = [ArtifactInline]
    fields = readonly_fields = (
        "schedule_link",
        "schedule_kind",
        "tenant",
        "scheduled_for",
        "attempt",
        "trigger",
        "status_badge",
        "queued_at",
        "started_at",
        "finished_at",
        "duration",
        "result_block",
        "error_block",
        "traceback_block",
        "worker",
        "claimed_by",
        "triggered_by",
        "run_after",
    )

    class Media:
        css = ADMIN_CSS

    def get_urls(self) -> list[URLPattern]:
        # The dashboard lives here because executions are what it summarises; its name is
        # site-wide: reverse("admin:scheduling_dashboard").
        dashboard = path(
            "dashboard/",
            self.admin_site.admin_view(dashboard_view),
            {"admin_site": self.admin_site},
            name="scheduling_dashboard",
        )
        return [dashboard, *super().get_urls()]

    @admin.display(description=_("status"), ordering="status")
    def status_badge(self, obj: Execution) -> str:
        return status_badge(obj.status, obj.get_status_display())

    @admin.display(description=_("schedule"), ordering="schedule_name")
    def schedule_link(self, obj: Execution) -> str:
        model_name = relation_of(obj.schedule_kind)
        if obj.schedule_id is None or model_name is None:
            return obj.schedule_name
        url = reverse(f"admin:scheduling_{model_name}_change", args=[obj.schedule_id])
        return format_html('<a href="{}">{}</a>', url, obj.schedule_name)

    @admin.display(description=_("duration"), ordering="duration_ms")
    def duration(self, obj: Execution) -> str:
        return format_duration(obj.duration_ms)

    @admin.display(description=_("error"))
    def short_error(self, obj: Execution) -> str:
        return truncate(obj.error)

    @admin.display(description=_("error"))
    def error_block(self, obj: Execution) -> str:
        return pre_block(obj.error)

    @admin.display(description=_("traceback"))
    def traceback_block(self, obj: Execution) -> str:
        return pre_block(obj.traceback)

    @admin.display(description=_("result"))
    def result_block(self, obj: Execution) -> str:
        if obj.result is None:
            return "-"
        return pre_block(json.dumps(obj.result, indent=2, sort_keys=True, default=str))


@admin.register(ReportArtifact)
class ReportArtifactAdmin(ReadOnlyAdmin):
    list_display = ["filename", "tenant", "format", "size", "created_at", "download"]
    list_filter = ["format", TenantFilter]
    list_select_related = ["tenant"]
    exclude = ["content"]
    readonly_fields = [
        "tenant",
        "report",
        "execution",
        "format",
        "filename",
        "content_type",
        "size",
        "checksum",
        "created_at",
        "download",
    ]

    @admin.display(description=_("download"))
    def download(self, obj: ReportArtifact) -> str:
        return download_link(obj)

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "<path:object_id>/download/",
                self.admin_site.admin_view(self.download_view),
                name="scheduling_reportartifact_download",
            ),
            *super().get_urls(),
        ]

    def download_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return views.artifact_download(self, request, unquote(object_id))


@admin.register(SchedulerLease)
class SchedulerLeaseAdmin(admin.ModelAdmin):
    list_display = ["name", "holder", "renewed_at", "expires_at", "last_sync_at", "job_count"]
    readonly_fields = [f.name for f in SchedulerLease._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False
