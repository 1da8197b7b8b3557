"""Admin: schedules of each kind, read-only executions and artifacts, the lease.

Staff who are not superusers get their rights from their tenant memberships (through the
pluggable tenant resolver), not from Django's model permissions, and each object is checked
against the role in its own tenant: a viewer may look; an operator may also run, pause and
resume; an admin or owner may also add, edit, enable, disable, duplicate and delete. Another
tenant's object is not found, on every page and in every choice list.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import BadRequest, ValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from . import admin_views, services, triggers
from .admin_forms import PauseForm
from .models import (
    KIND_ATTRS,
    CleanupConfig,
    Execution,
    PeriodicScan,
    Report,
    ReportArtifact,
    Schedule,
    SchedulerLease,
    TriggerType,
)
from .registry import cleanup_targets, report_types, scan_types
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
# Membership roles needed for each kind of right (see the module docstring).
VIEW_ROLE, OPERATE_ROLE, MANAGE_ROLE = "viewer", "operator", "admin"
ADMIN_CSS = {"all": ["scheduling/admin/scheduling.css"]}


def status_badge(status: str, label: str) -> str:
    if not status:
        return "-"
    colour = STATUS_COLOURS.get(status, "#6e7781")
    return format_html(
        '<span class="scheduling-badge" style="color:#fff;background:{};padding:1px 6px;'
        'border-radius:8px">{}</span>',
        colour,
        label,
    )


def tenant_admin_registered(site: admin.AdminSite) -> bool:
    """Return whether the tenant model has an admin with search fields (for autocomplete)."""
    model_admin = site._registry.get(get_tenant_model())
    return bool(model_admin and model_admin.search_fields)


def tenant_ids_for(request: HttpRequest, role: str) -> set | None:
    """Return the ids of the tenants where the user holds ``role`` (None: all), once per request."""
    cache = request.__dict__.setdefault("_scheduling_tenant_ids", {})
    if role not in cache:
        cache[role] = visible_tenant_ids(request.user, min_role=role)
    return cache[role]


def has_role(request: HttpRequest, role: str, tenant_id: Any = None) -> bool:
    """Return whether the user holds ``role`` in ``tenant_id`` (None: in any tenant)."""
    ids = tenant_ids_for(request, role)
    if ids is None:
        return True
    return bool(ids) if tenant_id is None else tenant_id in ids


def reject_null_characters(params: Any) -> None:
    """Answer 400 for query parameters that contain U+0000 (``(name, [values])`` pairs).

    PostgreSQL cannot compare text with a NUL in it and would fail the query with a 500.
    """
    for name, values in params:
        if any("\x00" in value for value in [name, *values]):
            raise BadRequest(_("Null characters are not allowed in %(name)s.") % {"name": name})


class NotFoundMixin:
    """Answer 404 for an object the user cannot see, like for one that does not exist, and 400
    for list and search parameters with null characters.

    Django redirects to the index with "doesn't exist" there; a plain 404 is what the API and
    the rest of the app answer for another tenant's id.
    """

    def require_object(self, request: HttpRequest, object_id: str | None) -> None:
        if object_id is not None and self.get_object(request, unquote(object_id)) is None:
            opts = self.model._meta
            raise Http404(
                _("%(name)s with ID “%(key)s” doesn't exist.")
                % {"name": opts.verbose_name, "key": object_id}
            )

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> Any:
        reject_null_characters(request.GET.lists())
        return super().changelist_view(request, extra_context)  # type: ignore[misc]

    def get_search_results(self, request: HttpRequest, queryset: Any, search_term: str) -> Any:
        # Also reached by the autocomplete view, for the tenant and schedule widgets.
        reject_null_characters([("q", [search_term])])
        return super().get_search_results(request, queryset, search_term)  # type: ignore[misc]

    def get_object(self, request: HttpRequest, object_id: str, from_field: Any = None) -> Any:
        try:
            return super().get_object(request, object_id, from_field)
        except OverflowError:  # SQLite: "Python int too large to convert to SQLite INTEGER"
            return None

    def change_view(self, request: HttpRequest, object_id: str, *args: Any, **kwargs: Any) -> Any:
        self.require_object(request, object_id)
        return super().change_view(request, object_id, *args, **kwargs)

    def history_view(self, request: HttpRequest, object_id: str, *args: Any, **kwargs: Any) -> Any:
        self.require_object(request, object_id)
        return super().history_view(request, object_id, *args, **kwargs)

    def delete_view(self, request: HttpRequest, object_id: str, *args: Any, **kwargs: Any) -> Any:
        self.require_object(request, object_id)
        return super().delete_view(request, object_id, *args, **kwargs)


class TenantFilter(admin.SimpleListFilter):
    """Filter by tenant, offering only the tenants the user may see."""

    title = _("tenant")
    parameter_name = "tenant"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> Any:
        return [(str(pk), name) for pk, name in tenant_choices(request)]

    def queryset(self, request: HttpRequest, queryset: Any) -> Any:
        value = self.value()
        if not value:
            return queryset
        if not value.isdigit() or value not in {str(pk) for pk, _name in tenant_choices(request)}:
            return queryset.none()
        return queryset.filter(tenant_id=int(value))


def tenant_choices(request: HttpRequest) -> list[tuple[Any, str]]:
    cache = request.__dict__.setdefault("_scheduling_tenant_choices", [])
    if not cache:
        cache.extend(
            (t.pk, str(t)) for t in tenants_visible_to(request.user).order_by("name", "pk")
        )
    return cache


def registered_type_filter(field: str, registry: Any, title: Any) -> type[admin.SimpleListFilter]:
    """Return a filter on a registered type key; its choices come from the registry, not the DB."""

    class RegisteredTypeFilter(admin.SimpleListFilter):
        parameter_name = field

        def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> Any:
            return registry.choices()

        def queryset(self, request: HttpRequest, queryset: Any) -> Any:
            value = self.value()
            return queryset.filter(**{field: value}) if value else queryset

    RegisteredTypeFilter.title = title
    return RegisteredTypeFilter


class TenantScopedAdmin(NotFoundMixin, admin.ModelAdmin):
    """Limit querysets, choices and rights to the tenants and roles of the user."""

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
        ids = tenant_ids_for(request, VIEW_ROLE)
        return qs if ids is None else qs.filter(tenant_id__in=ids)

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "tenant":
            kwargs["queryset"] = tenants_visible_to(request.user, min_role=MANAGE_ROLE)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return has_role(request, VIEW_ROLE)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return has_role(request, VIEW_ROLE, getattr(obj, "tenant_id", None))

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return has_role(request, MANAGE_ROLE)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return has_role(request, MANAGE_ROLE, getattr(obj, "tenant_id", None))

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return has_role(request, MANAGE_ROLE, getattr(obj, "tenant_id", None))

    def has_operate_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Whether the user may run, pause and resume (operator and above)."""
        return has_role(request, OPERATE_ROLE, getattr(obj, "tenant_id", None))


class ExecutionInline(admin.TabularInline):
    model = Execution
    fk_name = "schedule"
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = True
    fields = ["scheduled_for", "attempt", "trigger", "status_badge", "duration", "short_error"]
    readonly_fields = fields
    ordering = ["-scheduled_for", "-attempt"]
    verbose_name_plural = _("latest executions")
    LIMIT = 10

    @admin.display(description=_("status"))
    def status_badge(self, obj: Execution) -> str:
        return status_badge(obj.status, obj.get_status_display())

    @admin.display(description=_("duration"))
    def duration(self, obj: Execution) -> str:
        return format_duration(obj.duration_ms)

    @admin.display(description=_("error"))
    def short_error(self, obj: Execution) -> str:
        return truncate(obj.error)

    def get_queryset(self, request: HttpRequest) -> Any:
        # The latest few only: the full history is on the executions page.
        qs = super().get_queryset(request)
        parent_id = (
            request.resolver_match.kwargs.get("object_id") if request.resolver_match else None
        )
        if parent_id is None:
            return qs.none()
        try:
            latest = list(
                Execution.objects.filter(schedule_id=unquote(parent_id))
                .order_by("-scheduled_for", "-attempt")
                .values_list("pk", flat=True)[: self.LIMIT]
            )
        except (ValueError, OverflowError):
            return qs.none()
        return qs.filter(pk__in=latest)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return has_role(request, VIEW_ROLE, getattr(obj, "tenant_id", None))


def format_duration(ms: int | None) -> str:
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{ms} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    minutes, seconds = divmod(ms // 1000, 60)
    return f"{minutes} min {seconds} s"


TRUNCATE_AT = 120


def truncate(text: str, limit: int = TRUNCATE_AT) -> str:
    """Return the first line of ``text``, cut to ``limit`` characters (escaped by the caller)."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first[:limit] + ("…" if len(first) > limit or len(text.strip()) > len(first) else "")


class ScheduleAdminForm(forms.ModelForm):
    """Adds the rules that span rows: the tenant's quota and the dependency graph."""

    def _post_clean(self) -> None:
        super()._post_clean()
        schedule = self.instance
        if not schedule.tenant_id:
            return
        if schedule._state.adding:
            try:
                services.check_quota(schedule.tenant)
            except ValidationError as exc:
                self.add_error(None, exc)
        depends_on = self.cleaned_data.get("depends_on")
        if depends_on is not None and "depends_on" not in self.errors:
            try:
                services.validate_dependencies(schedule, depends_on)
            except ValidationError as exc:
                self.add_error("depends_on", exc.message_dict["depends_on"])


def trigger_fieldset(name: Any, trigger_type: str, fields: list, chosen: str) -> tuple:
    # The chosen type's fields are open; the others are collapsed (usable without JavaScript)
    # and the admin's script hides them altogether until their type is chosen.
    classes = ["scheduling-trigger", f"scheduling-trigger-{trigger_type}"]
    if trigger_type != chosen:
        classes.append("collapse")
    return (name, {"classes": classes, "fields": fields})


TRIGGER_TYPE_FIELDS = {
    TriggerType.INTERVAL: (_("Interval"), ["interval_seconds"]),
    TriggerType.CRON: (_("Cron"), ["cron_expression", ("dst_gap_policy", "dst_fold_policy")]),
    TriggerType.ONCE: (_("Once"), ["run_at"]),
}
TRIGGER_FIELDSET = (
    _("Trigger"),
    {
        "fields": [
            "trigger_type",
            ("start_at", "end_at"),
            "timezone",
            ("jitter_seconds", "stagger"),
        ]
    },
)
PREVIEW_FIELDSET = (_("Next runs"), {"fields": ["upcoming"]})
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
            ("next_run_at", "last_run_at"),
            ("last_status", "run_count", "consecutive_failures"),
            ("created_at", "updated_at"),
        ]
    },
)


class ScheduleAdmin(TenantScopedAdmin):
    form = ScheduleAdminForm
    list_display = [
        "name",
        "tenant",
        "trigger_text",
        "state",
        "next_run",
        "last_status_badge",
        "last_run_at",
        "run_count",
    ]
    list_filter: list[Any] = [TenantFilter, "enabled", "last_status", "trigger_type"]
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
    autocomplete_fields = ["depends_on"]
    inlines = [ExecutionInline]
    actions = ["run_now", "pause", "resume", "enable", "disable", "duplicate"]
    kind_fields: list[str] = []

    class Media:
        js = ["scheduling/admin/schedule_form.js"]
        css = ADMIN_CSS

    # -- pages ------------------------------------------------------------------------------

    def get_urls(self) -> list:
        opts = self.model._meta
        return [
            path(
                "preview/",
                self.admin_site.admin_view(self.preview_view),
                name=f"{opts.app_label}_{opts.model_name}_preview",
            ),
            *super().get_urls(),
        ]

    def preview_view(self, request: HttpRequest) -> HttpResponse:
        return admin_views.trigger_preview(self, request)

    def chosen_trigger_type(self, request: HttpRequest, obj: Any) -> str:
        chosen = request.POST.get("trigger_type") if request.method == "POST" else None
        if chosen is None:
            chosen = obj.trigger_type if obj is not None else request.GET.get("trigger_type")
        return chosen if chosen in TriggerType.values else TriggerType.INTERVAL

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        chosen = self.chosen_trigger_type(request, obj)
        editable = self.has_change_permission(request, obj) if obj else True
        trigger_sets = [
            trigger_fieldset(name, trigger_type, fields, chosen)
            for trigger_type, (name, fields) in TRIGGER_TYPE_FIELDS.items()
            if editable or trigger_type == chosen
        ]
        return [
            (None, {"fields": ["tenant", "name", "description", "enabled", "paused_until"]}),
            (self.model._meta.verbose_name.capitalize(), {"fields": self.kind_fields}),
            TRIGGER_FIELDSET,
            *trigger_sets,
            PREVIEW_FIELDSET,
            POLICY_FIELDSET,
            STATE_FIELDSET,
        ]

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "depends_on":
            ids = tenant_ids_for(request, MANAGE_ROLE)
            qs = Schedule.objects.all()
            kwargs["queryset"] = qs if ids is None else qs.filter(tenant_id__in=ids)
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        form.audit_before = services.snapshot(type(obj).objects.get(pk=obj.pk)) if change else None
        super().save_model(request, obj, form, change)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        after = services.snapshot(form.instance)
        before = getattr(form, "audit_before", None)
        if before is None:
            action, changes = "create", {name: [None, value] for name, value in after.items()}
        else:
            action, changes = "change", services.diff(before, after)
        if changes:
            services.record_audit(
                schedule=form.instance,
                action=action,
                user=request.user,
                source="admin",
                changes=changes,
            )

    # -- columns and read-only fields ---------------------------------------------------------

    @admin.display(description=_("trigger"))
    def trigger_text(self, obj: Any) -> str:
        try:
            # A form shown again with errors carries the invalid values: describe only what runs.
            triggers.validate_trigger(obj)
        except ValidationError:
            return "-"
        return triggers.describe(obj)

    @admin.display(description=_("state"), ordering="enabled")
    def state(self, obj: Any) -> str:
        if not obj.enabled:
            return format_html('<span class="scheduling-state-off">{}</span>', _("Disabled"))
        if obj.is_paused():
            until = admin_views.format_run(obj.paused_until, obj.effective_timezone)
            return format_html(
                '<span class="scheduling-state-paused" title="{}">{}</span>',
                until["utc"],
                _("Paused until %(when)s") % {"when": until["local"]},
            )
        return format_html('<span class="scheduling-state-on">{}</span>', _("Enabled"))

    @admin.display(description=_("next run"), ordering="next_run_at")
    def next_run(self, obj: Any) -> str:
        if obj.next_run_at is None:
            return "-"
        when = admin_views.format_run(obj.next_run_at, obj.effective_timezone)
        return format_html(
            '<time datetime="{}" title="{}">{}</time>', when["iso"], when["utc"], when["local"]
        )

    @admin.display(description=_("next runs"))
    def upcoming(self, obj: Any) -> str:
        opts = self.model._meta
        url = reverse(f"admin:{opts.app_label}_{opts.model_name}_preview")
        if obj is None or obj.pk is None:
            preview = {"ok": False, "errors": [_("Fill in the trigger to see its next runs.")]}
        else:
            preview = admin_views.upcoming_runs(obj)
        rows = format_html_join(
            "",
            '<li><time datetime="{}" title="{}">{}</time></li>',
            ((run["iso"], run["utc"], run["local"]) for run in preview.get("runs", [])),
        )
        if preview["ok"] and not preview["runs"]:
            rows = format_html("<li>{}</li>", _("No further runs."))
        errors = format_html_join("", "<li>{}</li>", ((e,) for e in preview.get("errors", [])))
        return format_html(
            '<div class="scheduling-preview" data-preview-url="{}" data-object-id="{}">'
            '<ol class="scheduling-preview-runs">{}</ol>'
            '<ul class="scheduling-preview-errors">{}</ul></div>',
            url,
            obj.pk if obj is not None and obj.pk else "",
            rows,
            errors,
        )

    @admin.display(description=_("last status"), ordering="last_status")
    def last_status_badge(self, obj: Any) -> str:
        return status_badge(obj.last_status, obj.get_last_status_display())

    # -- actions ------------------------------------------------------------------------------

    def permitted(self, request: HttpRequest, queryset: Any, role: str) -> list[Schedule]:
        """Return the selected schedules the user holds ``role`` for; warn about the rest."""
        ids = tenant_ids_for(request, role)
        selected = list(queryset.select_related("tenant"))
        allowed = [s for s in selected if ids is None or s.tenant_id in ids]
        refused = len(selected) - len(allowed)
        if refused:
            self.message_user(
                request,
                ngettext(
                    "%(count)d schedule was left unchanged: your role in its tenant does not "
                    "allow this.",
                    "%(count)d schedules were left unchanged: your role in their tenants does "
                    "not allow this.",
                    refused,
                )
                % {"count": refused},
                messages.ERROR,
            )
        return allowed

    def report(
        self, request: HttpRequest, done: int, singular: str, plural: str, **extra: Any
    ) -> None:
        self.message_user(
            request,
            ngettext(singular, plural, done) % {"count": done, **extra},
            messages.SUCCESS if done else messages.WARNING,
        )

    def skipped(self, request: HttpRequest, names: list[str], reason: Any) -> None:
        if names:
            self.message_user(request, reason % {"names": ", ".join(names)}, messages.WARNING)

    @admin.action(description=_("Run selected schedules now"), permissions=["operate"])
    def run_now(self, request: HttpRequest, queryset: Any) -> None:
        # Queues only: the scheduler process claims the execution within its sync interval.
        schedules = self.permitted(request, queryset, OPERATE_ROLE)
        for schedule in schedules:
            services.run_now(schedule=schedule, user=request.user, source="admin")
        self.report(
            request,
            len(schedules),
            "%(count)d run queued; the scheduler starts it within seconds.",
            "%(count)d runs queued; the scheduler starts them within seconds.",
        )

    @admin.action(description=_("Pause selected schedules…"), permissions=["operate"])
    def pause(self, request: HttpRequest, queryset: Any) -> Any:
        if "apply" not in request.POST:
            return admin_views.pause_confirmation(self, request, queryset, PauseForm())
        form = PauseForm(request.POST)
        if not form.is_valid():
            return admin_views.pause_confirmation(self, request, queryset, form)
        until = form.cleaned_data["until"]
        schedules = self.permitted(request, queryset, OPERATE_ROLE)
        disabled = [s.name for s in schedules if not s.enabled]
        for schedule in schedules:
            if schedule.enabled:
                services.pause_schedule(
                    schedule=schedule, until=until, user=request.user, source="admin"
                )
        self.skipped(request, disabled, _("Already paused or disabled, left as is: %(names)s."))
        done = len(schedules) - len(disabled)
        if until is None:
            self.report(
                request,
                done,
                "%(count)d schedule paused until resumed.",
                "%(count)d schedules paused until resumed.",
            )
        else:
            self.report(
                request,
                done,
                "%(count)d schedule paused until %(when)s.",
                "%(count)d schedules paused until %(when)s.",
                when=timezone.localtime(until).strftime("%Y-%m-%d %H:%M %Z"),
            )
        return None

    @admin.action(description=_("Resume selected schedules"), permissions=["operate"])
    def resume(self, request: HttpRequest, queryset: Any) -> None:
        schedules = self.permitted(request, queryset, OPERATE_ROLE)
        now = timezone.now()
        running = [s.name for s in schedules if s.enabled and not s.is_paused(now)]
        for schedule in schedules:
            if not schedule.enabled or schedule.is_paused(now):
                services.resume_schedule(schedule=schedule, user=request.user, source="admin")
        self.skipped(request, running, _("Not paused, left as is: %(names)s."))
        self.report(
            request,
            len(schedules) - len(running),
            "%(count)d schedule resumed.",
            "%(count)d schedules resumed.",
        )

    def set_enabled(self, request: HttpRequest, queryset: Any, enabled: bool) -> None:
        schedules = self.permitted(request, queryset, MANAGE_ROLE)
        unchanged = [s.name for s in schedules if s.enabled == enabled]
        for schedule in schedules:
            if schedule.enabled != enabled:
                services.set_schedule_enabled(
                    schedule=schedule, enabled=enabled, user=request.user, source="admin"
                )
        done = len(schedules) - len(unchanged)
        if enabled:
            self.skipped(request, unchanged, _("Already enabled: %(names)s."))
            self.report(
                request, done, "%(count)d schedule enabled.", "%(count)d schedules enabled."
            )
        else:
            self.skipped(request, unchanged, _("Already disabled: %(names)s."))
            self.report(
                request, done, "%(count)d schedule disabled.", "%(count)d schedules disabled."
            )

    @admin.action(description=_("Enable selected schedules"), permissions=["change"])
    def enable(self, request: HttpRequest, queryset: Any) -> None:
        self.set_enabled(request, queryset, True)

    @admin.action(description=_("Disable selected schedules"), permissions=["change"])
    def disable(self, request: HttpRequest, queryset: Any) -> None:
        self.set_enabled(request, queryset, False)

    @admin.action(
        description=_("Duplicate selected schedules (disabled copies)"), permissions=["add"]
    )
    def duplicate(self, request: HttpRequest, queryset: Any) -> None:
        copies = []
        for schedule in self.permitted(request, queryset, MANAGE_ROLE):
            try:
                copy = services.duplicate_schedule(
                    schedule=schedule, user=request.user, source="admin"
                )
            except ValidationError as exc:
                self.message_user(
                    request,
                    _("%(name)s was not duplicated: %(reason)s")
                    % {"name": schedule.name, "reason": " ".join(exc.messages)},
                    messages.ERROR,
                )
            else:
                copies.append(copy.name)
        if copies:
            self.message_user(
                request,
                ngettext(
                    "%(count)d schedule duplicated as a disabled copy: %(names)s.",
                    "%(count)d schedules duplicated as disabled copies: %(names)s.",
                    len(copies),
                )
                % {"count": len(copies), "names": ", ".join(copies)},
                messages.SUCCESS,
            )


@admin.register(PeriodicScan)
class PeriodicScanAdmin(ScheduleAdmin):
    kind_fields = ["scan_type", "target", "options"]
    list_filter = [
        *ScheduleAdmin.list_filter,
        registered_type_filter("scan_type", scan_types, _("scan type")),
    ]
    search_fields = [*ScheduleAdmin.search_fields, "target"]


@admin.register(Report)
class ReportAdmin(ScheduleAdmin):
    kind_fields = ["report_type", "format", "recipients", "options"]
    list_filter = [
        *ScheduleAdmin.list_filter,
        registered_type_filter("report_type", report_types, _("report type")),
        "format",
    ]


@admin.register(CleanupConfig)
class CleanupConfigAdmin(ScheduleAdmin):
    kind_fields = ["cleanup_target", "retain_days", "batch_size", "options"]
    list_filter = [
        *ScheduleAdmin.list_filter,
        registered_type_filter("cleanup_target", cleanup_targets, _("cleanup target")),
    ]


@admin.register(Schedule)
class ScheduleLookupAdmin(TenantScopedAdmin):
    """Schedules of every kind, for the dependency autocomplete; hidden from the index.

    Its pages lead to the schedule's own kind; deleting a kind also deletes this parent row,
    so its delete permission follows the same rules.
    """

    search_fields = ["name"]
    ordering = ["name", "pk"]

    def get_model_perms(self, request: HttpRequest) -> dict[str, bool]:
        return {}

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_search_results(self, request: HttpRequest, queryset: Any, search_term: str) -> Any:
        queryset, distinct = super().get_search_results(request, queryset, search_term)
        # A dependency must be one the user may manage: offer only those tenants' schedules.
        ids = tenant_ids_for(request, MANAGE_ROLE)
        return (queryset if ids is None else queryset.filter(tenant_id__in=ids)), distinct

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> Any:
        return HttpResponseRedirect(reverse("admin:app_list", args=["scheduling"]))

    def change_view(self, request: HttpRequest, object_id: str, *args: Any, **kwargs: Any) -> Any:
        self.require_object(request, object_id)
        schedule = self.get_object(request, unquote(object_id))
        model_name = KIND_ATTRS.get(schedule.kind)
        if model_name is None:
            raise Http404
        return HttpResponseRedirect(
            reverse(f"admin:scheduling_{model_name}_change", args=[schedule.pk])
        )


class ReadOnlyAdmin(TenantScopedAdmin):
    """History is a record: viewable by the tenant's members, deleted only by superusers."""

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_superuser


class ArtifactInline(admin.TabularInline):
    model = ReportArtifact
    extra = 0
    max_num = 0
    can_delete = False
    fields = ["filename", "format", "size", "download"]
    readonly_fields = fields

    @admin.display(description=_("download"))
    def download(self, obj: ReportArtifact) -> str:
        return download_link(obj)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return has_role(request, VIEW_ROLE, getattr(obj, "tenant_id", None))


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
    fields = readonly_fields = [
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
    ]

    class Media:
        css = ADMIN_CSS

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

    @admin.display(description=_("schedule"), ordering="schedule_name")
    def schedule_link(self, obj: Execution) -> str:
        model_name = KIND_ATTRS.get(obj.schedule_kind)
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

    def get_urls(self) -> list:
        return [
            path(
                "<path:object_id>/download/",
                self.admin_site.admin_view(self.download_view),
                name="scheduling_reportartifact_download",
            ),
            *super().get_urls(),
        ]

    def download_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return admin_views.artifact_download(self, request, unquote(object_id))


@admin.register(SchedulerLease)
class SchedulerLeaseAdmin(admin.ModelAdmin):
    list_display = ["name", "holder", "renewed_at", "expires_at", "last_sync_at", "job_count"]
    readonly_fields = [f.name for f in SchedulerLease._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# Alert rules, blackout windows and the audit trail register themselves in their own module.
from . import admin_policies  # noqa: E402, F401
