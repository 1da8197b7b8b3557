"""Admin: schedules of each kind, read-only executions and artifacts, the lease."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from . import services, triggers
from .models import (
    CleanupConfig,
    Execution,
    PeriodicScan,
    Report,
    ReportArtifact,
    SchedulerLease,
)
from .tenancy import get_tenant_model, tenants_visible_to, visible_tenant_ids

STATUS_COLOURS = {
    "succeeded": "#1a7f37",
    "failed": "#cf222e",
    "timed_out": "#bc4c00",
    "interrupted": "#bc4c00",
    "missed": "#6e7781",
    "skipped": "#6e7781",
    "running": "#0969da",
    "queued": "#8250df",
}


def status_badge(status: str, label: str) -> str:
    if not status:
        return "-"
    colour = STATUS_COLOURS.get(status, "#6e7781")
    return format_html(
        '<span style="color:#fff;background:{};padding:1px 6px;border-radius:8px">{}</span>',
        colour,
        label,
    )


def tenant_admin_registered(site: admin.AdminSite) -> bool:
    """Return whether the tenant model has an admin with search fields (for autocomplete)."""
    model_admin = site._registry.get(get_tenant_model())
    return bool(model_admin and model_admin.search_fields)


class TenantScopedAdmin(admin.ModelAdmin):
    """Limit querysets and tenant choices to the tenants the user may see."""

    def get_autocomplete_fields(self, request: HttpRequest) -> list[str]:
        # A host project's own tenant model may have no admin to autocomplete against.
        fields = list(super().get_autocomplete_fields(request))
        if "tenant" in [f.name for f in self.model._meta.fields] and tenant_admin_registered(
            self.admin_site
        ):
            fields.append("tenant")
        return fields

    def get_queryset(self, request: HttpRequest) -> Any:
        qs = super().get_queryset(request)
        ids = visible_tenant_ids(request.user)
        return qs if ids is None else qs.filter(tenant_id__in=ids)

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "tenant":
            kwargs["queryset"] = tenants_visible_to(request.user, min_role="admin")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class ExecutionInline(admin.TabularInline):
    model = Execution
    fk_name = "schedule"
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = True
    fields = ["scheduled_for", "attempt", "trigger", "status", "duration_ms", "short_error"]
    readonly_fields = fields
    ordering = ["-scheduled_for"]

    @admin.display(description=_("error"))
    def short_error(self, obj: Execution) -> str:
        return obj.error[:120]

    def get_queryset(self, request: HttpRequest) -> Any:
        # The latest few only: the full history is on the executions page.
        qs = super().get_queryset(request)
        parent_id = (
            request.resolver_match.kwargs.get("object_id") if request.resolver_match else None
        )
        if parent_id is None:
            return qs.none()
        latest = list(
            Execution.objects.filter(schedule_id=parent_id)
            .order_by("-scheduled_for", "-attempt")
            .values_list("pk", flat=True)[:10]
        )
        return qs.filter(pk__in=latest)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


TRIGGER_FIELDSET = (
    _("Trigger"),
    {
        "fields": [
            "trigger_type",
            "interval_seconds",
            "cron_expression",
            "run_at",
            ("start_at", "end_at"),
            "timezone",
            "jitter_seconds",
            ("dst_gap_policy", "dst_fold_policy"),
        ]
    },
)
POLICY_FIELDSET = (
    _("Policy"),
    {
        "classes": ["collapse"],
        "fields": [
            "timeout_seconds",
            ("max_retries", "retry_backoff_seconds"),
            ("overlap", "max_instances"),
            ("misfire_grace_seconds", "coalesce"),
            "priority",
            "max_executions",
            "depends_on",
        ],
    },
)
STATE_FIELDSET = (
    _("State"),
    {
        "fields": [
            "trigger_text",
            "upcoming",
            ("next_run_at", "last_run_at"),
            ("last_status", "run_count", "consecutive_failures"),
            ("created_at", "updated_at"),
        ]
    },
)


class ScheduleAdmin(TenantScopedAdmin):
    list_display = [
        "name",
        "tenant",
        "trigger_text",
        "enabled",
        "paused_until",
        "next_run_at",
        "last_status_badge",
        "last_run_at",
        "run_count",
    ]
    list_filter = ["enabled", "trigger_type", "last_status", "tenant"]
    list_select_related = ["tenant"]
    search_fields = ["name", "description"]
    readonly_fields = [
        "trigger_text",
        "upcoming",
        "next_run_at",
        "last_run_at",
        "last_status",
        "run_count",
        "consecutive_failures",
        "created_at",
        "updated_at",
    ]
    filter_horizontal = ["depends_on"]
    inlines = [ExecutionInline]
    actions = ["run_now", "pause", "resume", "enable", "disable"]
    kind_fields: list[str] = []

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        return [
            (None, {"fields": ["tenant", "name", "description", "enabled", "paused_until"]}),
            (self.model._meta.verbose_name.capitalize(), {"fields": self.kind_fields}),
            TRIGGER_FIELDSET,
            POLICY_FIELDSET,
            STATE_FIELDSET,
        ]

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "depends_on":
            from .models import Schedule

            kwargs["queryset"] = Schedule.objects.visible_to(request.user).select_related("tenant")
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    @admin.display(description=_("trigger"))
    def trigger_text(self, obj: Any) -> str:
        return triggers.describe(obj)

    @admin.display(description=_("next runs"))
    def upcoming(self, obj: Any) -> str:
        if obj is None or obj.pk is None:
            return "-"
        try:
            runs = triggers.next_runs(obj, 5)
        except Exception as exc:  # an unusable stored trigger is shown, not raised
            return str(exc)
        return ", ".join(f"{r:%Y-%m-%d %H:%M:%S} UTC" for r in runs) or _("never again")

    @admin.display(description=_("last status"), ordering="last_status")
    def last_status_badge(self, obj: Any) -> str:
        return status_badge(obj.last_status, obj.get_last_status_display())

    @admin.action(description=_("Run selected schedules now"))
    def run_now(self, request: HttpRequest, queryset: Any) -> None:
        count = 0
        for schedule in queryset:
            services.run_now(schedule=schedule, user=request.user)
            count += 1
        self.message_user(request, _("%d run(s) queued.") % count)

    @admin.action(description=_("Pause selected schedules"))
    def pause(self, request: HttpRequest, queryset: Any) -> None:
        count = services.pause_schedules(queryset=queryset)
        self.message_user(request, _("%d schedule(s) paused.") % count)

    @admin.action(description=_("Resume selected schedules"))
    def resume(self, request: HttpRequest, queryset: Any) -> None:
        count = services.resume_schedules(queryset=queryset)
        self.message_user(request, _("%d schedule(s) resumed.") % count)

    @admin.action(description=_("Enable selected schedules"))
    def enable(self, request: HttpRequest, queryset: Any) -> None:
        count = services.set_enabled(queryset=queryset, enabled=True)
        self.message_user(request, _("%d schedule(s) enabled.") % count)

    @admin.action(description=_("Disable selected schedules"))
    def disable(self, request: HttpRequest, queryset: Any) -> None:
        count = services.set_enabled(queryset=queryset, enabled=False)
        self.message_user(request, _("%d schedule(s) disabled.") % count)


@admin.register(PeriodicScan)
class PeriodicScanAdmin(ScheduleAdmin):
    kind_fields = ["scan_type", "target", "options"]
    list_filter = [*ScheduleAdmin.list_filter, "scan_type"]


@admin.register(Report)
class ReportAdmin(ScheduleAdmin):
    kind_fields = ["report_type", "format", "recipients", "options"]
    list_filter = [*ScheduleAdmin.list_filter, "report_type", "format"]


@admin.register(CleanupConfig)
class CleanupConfigAdmin(ScheduleAdmin):
    kind_fields = ["cleanup_target", "retain_days", "batch_size", "options"]
    list_filter = [*ScheduleAdmin.list_filter, "cleanup_target"]


class ReadOnlyAdmin(TenantScopedAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ArtifactInline(admin.TabularInline):
    model = ReportArtifact
    extra = 0
    max_num = 0
    can_delete = False
    fields = ["filename", "format", "size", "download"]
    readonly_fields = fields

    @admin.display(description=_("download"))
    def download(self, obj: ReportArtifact) -> str:
        from django.urls import reverse

        url = reverse("admin:scheduling_reportartifact_download", args=[obj.pk])
        return format_html('<a href="{}">{}</a>', url, _("Download"))


@admin.register(Execution)
class ExecutionAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "schedule_name",
        "schedule_kind",
        "tenant",
        "scheduled_for",
        "attempt",
        "trigger",
        "status_badge",
        "duration_ms",
        "short_error",
    ]
    list_filter = ["status", "schedule_kind", "trigger", "tenant"]
    list_select_related = ["tenant"]
    search_fields = ["schedule_name", "error"]
    date_hierarchy = "scheduled_for"
    show_full_result_count = False
    inlines = [ArtifactInline]
    readonly_fields = [
        "schedule",
        "schedule_name",
        "schedule_kind",
        "tenant",
        "scheduled_for",
        "attempt",
        "trigger",
        "status",
        "queued_at",
        "started_at",
        "finished_at",
        "duration_ms",
        "result",
        "error",
        "traceback",
        "worker",
        "claimed_by",
        "triggered_by",
        "run_after",
    ]

    def get_urls(self) -> list:
        from django.urls import path

        from .admin_dashboard import dashboard_view

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

    @admin.display(description=_("error"))
    def short_error(self, obj: Execution) -> str:
        return obj.error[:120] + ("…" if len(obj.error) > 120 else "")


@admin.register(ReportArtifact)
class ReportArtifactAdmin(ReadOnlyAdmin):
    list_display = ["filename", "tenant", "format", "size", "created_at"]
    list_filter = ["format", "tenant"]
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
    ]

    def get_urls(self) -> list:
        from django.urls import path

        return [
            path(
                "<path:object_id>/download/",
                self.admin_site.admin_view(self.download_view),
                name="scheduling_reportartifact_download",
            ),
            *super().get_urls(),
        ]

    def download_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        from django.http import Http404

        artifact = self.get_object(request, object_id)
        if artifact is None or not self.has_view_permission(request, artifact):
            raise Http404
        response = HttpResponse(artifact.content, content_type=artifact.content_type)
        response["Content-Disposition"] = f'attachment; filename="{artifact.filename}"'
        return response


@admin.register(SchedulerLease)
class SchedulerLeaseAdmin(admin.ModelAdmin):
    list_display = ["name", "holder", "renewed_at", "expires_at", "last_sync_at", "job_count"]
    readonly_fields = [f.name for f in SchedulerLease._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
