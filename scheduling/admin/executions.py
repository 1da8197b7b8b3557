"""Read-only history: executions, report artifacts and the scheduler lease."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import ChangeList
from django.db.models import DurationField, ExpressionWrapper, F, Model, QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from .. import runner, services
from ..exceptions import StateConflict
from ..kinds import relation_of
from ..models import (
    ACTIVE_STATUSES,
    RETRYABLE_STATUSES,
    AuditAction,
    Execution,
    ReportArtifact,
    SchedulerLease,
)
from . import views
from .base import (
    ADMIN_CSS,
    MANAGE_ROLE,
    OBJECT_ACTIONS_TEMPLATE,
    VIEW_ROLE,
    ReadOnlyAdmin,
    TenantFilter,
    format_duration,
    format_lateness,
    format_time,
    has_object_role,
    status_badge,
    status_label,
    truncate,
)
from .dashboard import dashboard_view
from .filters import ScheduleFilter
from .pagination import CappedCountChangeList, CappedCountPaginator


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


# How many refusals of a cancel or retry action are listed by name; the rest are counted.
CONFLICTS_SHOWN = 5


# What a run leaves about the servers: shown only to who may manage the execution's tenant.
INTERNAL_FIELDS = frozenset({"traceback_block", "worker", "claimed_by"})


# How late a run started: the ordering of the "lateness" column.
LATENESS = ExpressionWrapper(F("started_at") - F("scheduled_for"), output_field=DurationField())

# The list shows an error's first line; hovering shows the text, up to this many characters
# (the change page shows all of it).
ERROR_TITLE_LIMIT = 2000


def pre_block(text: str) -> str:
    return format_html('<pre class="scheduling-pre">{}</pre>', text) if text else "-"


@admin.register(Execution)
class ExecutionAdmin(ReadOnlyAdmin):
    # Compact enough for a 1400 px screen with both sidebars open (scheduling.css): the kind
    # and the trigger are filters, a retry's attempt number sits by its status, and the error
    # takes the width left, cut to one line with the text on hover.
    list_display = [
        "id",
        "schedule_link",
        "tenant_column",
        "scheduled_for_time",
        "status_attempt",
        "duration",
        "lateness",
        "short_error",
    ]
    # "finished at" also takes the dashboard's hours (finished_at__gte / __lt), and shows them.
    list_filter = [
        "status",
        ScheduleFilter,
        ("finished_at", admin.DateFieldListFilter),
        "schedule_kind",
        "trigger",
        TenantFilter,
    ]
    # The schedule for its time zone (``Execution.effective_timezone``), with no query per row.
    list_select_related = ["tenant", "schedule"]
    search_fields = ["schedule_name", "error"]
    # A history grows to millions of rows; a page view reads a page of them, not all of them:
    # the count stops at the paginator's limit, no second count of the unfiltered table, no
    # facet counts (one COUNT per filter choice), and no date hierarchy (its links come from
    # a DISTINCT over every matching row's date; the "finished at" filter narrows by date).
    paginator = CappedCountPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    inlines = [ArtifactInline]
    actions = ["cancel_executions", "retry_executions"]

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return CappedCountChangeList

    def get_queryset(self, request: HttpRequest) -> QuerySet[Model]:
        # The change page's title and breadcrumb (``str(execution)``) read in the schedule's
        # zone when the schedule and tenant come with the row.
        return super().get_queryset(request).select_related("tenant", "schedule")

    change_form_template = OBJECT_ACTIONS_TEMPLATE
    fields = readonly_fields = (
        "schedule_link",
        "schedule_kind",
        "tenant_column",
        "scheduled_for_time",
        "attempt",
        "trigger",
        "options_block",
        "status_badge",
        "queued_at_time",
        "started_at_time",
        "lateness",
        "finished_at_time",
        "duration",
        "result_block",
        "error_block",
        "traceback_block",
        "worker",
        "claimed_by",
        "triggered_by",
        "run_after_time",
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
        opts = self.model._meta
        buttons = [
            path(
                f"<path:object_id>/{name}/",
                self.admin_site.admin_view(view),
                name=f"{opts.app_label}_{opts.model_name}_{name}",
            )
            for name, view in (("cancel", self.cancel_view), ("retry", self.retry_view))
        ]
        return [dashboard, *buttons, *super().get_urls()]

    def get_fields(self, request: HttpRequest, obj: Model | None = None) -> Any:
        # A run's own options are shown only for the (manual) runs that have some.
        fields = super().get_fields(request, obj)
        if not getattr(obj, "options", None):
            fields = [name for name in fields if name != "options_block"]
        if not has_object_role(request, MANAGE_ROLE, obj):
            # Host names and server paths: for the tenant's admins and owners, and superusers.
            fields = [name for name in fields if name not in INTERNAL_FIELDS]
        return fields

    # -- cancel and retry: the change page's buttons and the changelist's actions ------------

    def object_actions(self, request: HttpRequest, obj: Execution | None) -> list[dict[str, str]]:
        """The buttons of ``obj``'s page: those its state allows, for an operator or above."""
        if obj is None or not self.has_operate_permission(request, obj):
            return []
        if obj.status in ACTIVE_STATUSES:
            name, label = "cancel", gettext("Cancel")
        elif obj.status in RETRYABLE_STATUSES and not self.retried_already(obj):
            name, label = "retry", gettext("Retry")
        else:
            return []
        opts = self.model._meta
        url = reverse(
            f"{self.admin_site.name}:{opts.app_label}_{opts.model_name}_{name}", args=[obj.pk]
        )
        return [{"name": name, "label": label, "url": url}]

    def retried_already(self, obj: Execution) -> bool:
        """Whether the schedule is gone or a later attempt of the occurrence exists."""
        if obj.schedule_id is None:
            return True
        return Execution.objects.filter(
            schedule_id=obj.schedule_id, scheduled_for=obj.scheduled_for, attempt__gt=obj.attempt
        ).exists()

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Execution | None = None,
    ) -> HttpResponse:
        context["scheduling_object_actions"] = self.object_actions(request, obj)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def cancel_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return views.object_action(self, request, object_id, partial(self.cancel_one, request))

    def retry_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return views.object_action(self, request, object_id, partial(self.retry_one, request))

    def cancel_one(self, request: HttpRequest, execution: Execution) -> str | None:
        self.cancel(request, execution)
        self.message_user(
            request, gettext("Execution %(id)s cancelled.") % {"id": execution.pk}, messages.SUCCESS
        )
        return None

    def retry_one(self, request: HttpRequest, execution: Execution) -> str | None:
        queued = self.retry(request, execution)
        url = views.change_url(self, queued)
        link = format_html(
            '<a href="{}">{}</a>',
            url,
            gettext("execution %(id)s (attempt %(attempt)s)")
            % {"id": queued.pk, "attempt": queued.attempt},
        )
        self.message_user(
            request,
            format_html(
                gettext("Retry queued as {}; the scheduler starts it within seconds."), link
            ),
            messages.SUCCESS,
        )
        return url

    def cancel(self, request: HttpRequest, execution: Execution) -> Execution:
        """Cancel ``execution`` and audit it; ``StateConflict`` when it has finished."""
        runner.cancel(execution, by=request.user)
        self.audit(request, execution, AuditAction.CANCEL, execution)
        return execution

    def retry(self, request: HttpRequest, execution: Execution) -> Execution:
        """Queue the next attempt of ``execution`` and audit it; ``StateConflict`` if refused."""
        queued = runner.retry(execution, by=request.user)
        self.audit(request, execution, AuditAction.RETRY, queued)
        return queued

    def audit(
        self, request: HttpRequest, execution: Execution, action: str, result: Execution
    ) -> None:
        # On the schedule, while it exists (as the API and the CLI record it).
        if execution.schedule is not None:
            services.record_audit(
                schedule=execution.schedule,
                action=action,
                user=request.user,
                source="admin",
                changes={"execution": [execution.pk, result.pk]},
            )

    @admin.action(description=_("Cancel selected executions"), permissions=["operate"])
    def cancel_executions(self, request: HttpRequest, queryset: QuerySet[Execution]) -> None:
        done = self.apply(request, queryset, self.cancel)
        self.message_user(
            request,
            ngettext("%(count)d execution cancelled.", "%(count)d executions cancelled.", done)
            % {"count": done},
            messages.SUCCESS if done else messages.WARNING,
        )

    @admin.action(description=_("Retry selected executions"), permissions=["operate"])
    def retry_executions(self, request: HttpRequest, queryset: QuerySet[Execution]) -> None:
        done = self.apply(request, queryset, self.retry)
        self.message_user(
            request,
            ngettext(
                "%(count)d retry queued; the scheduler starts it within seconds.",
                "%(count)d retries queued; the scheduler starts them within seconds.",
                done,
            )
            % {"count": done},
            messages.SUCCESS if done else messages.WARNING,
        )

    def apply(
        self,
        request: HttpRequest,
        queryset: QuerySet[Execution],
        act: Callable[[HttpRequest, Execution], Execution],
    ) -> int:
        """Do ``act`` to each selected execution the user may operate; say why not the rest."""
        done, refused, conflicts = 0, 0, []
        for execution in queryset.select_related("schedule", "tenant").order_by("pk"):
            if not self.has_operate_permission(request, execution):
                refused += 1
                continue
            try:
                act(request, execution)
            except StateConflict as exc:
                conflicts.append(str(exc))
            else:
                done += 1
        if refused:
            self.message_user(
                request,
                ngettext(
                    "%(count)d execution was left unchanged: your role in its tenant does not "
                    "allow this.",
                    "%(count)d executions were left unchanged: your role in their tenants does "
                    "not allow this.",
                    refused,
                )
                % {"count": refused},
                messages.ERROR,
            )
        if conflicts:
            shown = conflicts[:CONFLICTS_SHOWN]
            more = len(conflicts) - len(shown)
            text = " ".join(shown)
            if more:
                text += " " + gettext("(%(count)d more like these.)") % {"count": more}
            self.message_user(
                request,
                ngettext(
                    "%(count)d execution was left unchanged: %(reasons)s",
                    "%(count)d executions were left unchanged: %(reasons)s",
                    len(conflicts),
                )
                % {"count": len(conflicts), "reasons": text},
                messages.WARNING,
            )
        return done

    @admin.display(description=_("status"), ordering="status")
    def status_badge(self, obj: Execution) -> str:
        return status_badge(obj.status, status_label(obj.status))

    @admin.display(description=_("status"), ordering="status")
    def status_attempt(self, obj: Execution) -> str:
        """The list's status column: the badge, and which attempt when it is a retry."""
        badge = status_badge(obj.status, status_label(obj.status))
        if obj.attempt <= 1:
            return badge
        return format_html(
            '{} <span class="scheduling-attempt">{}</span>',
            badge,
            gettext("attempt %(number)d") % {"number": obj.attempt},
        )

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

    @admin.display(description=_("lateness"), ordering=LATENESS)
    def lateness(self, obj: Execution) -> str:
        return format_lateness(obj.lateness)

    @admin.display(description=_("scheduled for"), ordering="scheduled_for")
    def scheduled_for_time(self, obj: Execution) -> str:
        # Date and clock time each in one piece: a narrow column breaks between them.
        day, _space, clock = format_time(obj.scheduled_for, obj.effective_timezone).partition(" ")
        return format_html(
            '<span class="scheduling-nowrap">{}</span> <span class="scheduling-nowrap">{}</span>',
            day,
            clock,
        )

    @admin.display(description=_("queued at"))
    def queued_at_time(self, obj: Execution) -> str:
        return format_time(obj.queued_at, obj.effective_timezone)

    @admin.display(description=_("started at"))
    def started_at_time(self, obj: Execution) -> str:
        return format_time(obj.started_at, obj.effective_timezone)

    @admin.display(description=_("finished at"))
    def finished_at_time(self, obj: Execution) -> str:
        return format_time(obj.finished_at, obj.effective_timezone)

    @admin.display(description=_("run after"))
    def run_after_time(self, obj: Execution) -> str:
        return format_time(obj.run_after, obj.effective_timezone)

    @admin.display(description=_("error"))
    def short_error(self, obj: Execution) -> str:
        if not obj.error.strip():
            return "-"
        return format_html(
            '<span class="scheduling-error" title="{}">{}</span>',
            obj.error[:ERROR_TITLE_LIMIT],
            truncate(obj.error),
        )

    @admin.display(description=_("error"))
    def error_block(self, obj: Execution) -> str:
        return pre_block(obj.error)

    @admin.display(description=_("traceback"))
    def traceback_block(self, obj: Execution) -> str:
        return pre_block(obj.traceback)

    @admin.display(description=_("options"))
    def options_block(self, obj: Execution) -> str:
        if not obj.options:
            return "-"
        return pre_block(json.dumps(obj.options, indent=2, sort_keys=True, default=str))

    @admin.display(description=_("result"))
    def result_block(self, obj: Execution) -> str:
        if obj.result is None:
            return "-"
        return pre_block(json.dumps(obj.result, indent=2, sort_keys=True, default=str))


@admin.register(ReportArtifact)
class ReportArtifactAdmin(ReadOnlyAdmin):
    list_display = ["filename", "tenant_column", "format", "size", "created_at_time", "download"]
    list_filter = ["format", TenantFilter]
    # The report for its time zone (``ReportArtifact.effective_timezone``).
    list_select_related = ["tenant", "report"]
    exclude = ["content", "tenant", "created_at"]
    readonly_fields = [
        "tenant_column",
        "report",
        "execution",
        "format",
        "filename",
        "content_type",
        "size",
        "checksum",
        "created_at_time",
        "download",
    ]

    @admin.display(description=_("download"))
    def download(self, obj: ReportArtifact) -> str:
        return download_link(obj)

    @admin.display(description=_("created at"), ordering="created_at")
    def created_at_time(self, obj: ReportArtifact) -> str:
        return format_time(obj.created_at, obj.effective_timezone)

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
    list_display = [
        "name",
        "holder",
        "renewed_at_time",
        "expires_at_time",
        "last_sync_at_time",
        "job_count",
    ]
    # The scheduler's own times, in the current time zone (they belong to no schedule).
    fields = readonly_fields = (
        "name",
        "holder",
        "acquired_at_time",
        "renewed_at_time",
        "expires_at_time",
        "last_sync_at_time",
        "sync_lag_ms",
        "job_count",
    )

    @admin.display(description=_("acquired at"))
    def acquired_at_time(self, obj: SchedulerLease) -> str:
        return format_time(obj.acquired_at)

    @admin.display(description=_("renewed at"), ordering="renewed_at")
    def renewed_at_time(self, obj: SchedulerLease) -> str:
        return format_time(obj.renewed_at)

    @admin.display(description=_("expires at"), ordering="expires_at")
    def expires_at_time(self, obj: SchedulerLease) -> str:
        return format_time(obj.expires_at)

    @admin.display(description=_("last sync at"), ordering="last_sync_at")
    def last_sync_at_time(self, obj: SchedulerLease) -> str:
        return format_time(obj.last_sync_at)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False
