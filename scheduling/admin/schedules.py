"""The admins of the schedule kinds: trigger and policy fieldsets, preview, actions."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import flatten_fieldsets, unquote
from django.core.exceptions import ValidationError
from django.db.models import DateTimeField, ManyToManyField, Model, QuerySet, URLField
from django.db.models import Field as DBField
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.text import capfirst
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from .. import services, triggers
from ..exceptions import StateConflict
from ..kinds import relation_of
from ..models import (
    CleanupConfig,
    Execution,
    PeriodicScan,
    Report,
    Schedule,
    ScheduledTask,
    TriggerType,
)
from ..registry import cleanup_targets, report_types, scan_types, task_types
from ..tenancy import scope_q
from . import views
from .base import (
    ADMIN_CSS,
    MANAGE_ROLE,
    OBJECT_ACTIONS_TEMPLATE,
    OPERATE_ROLE,
    VIEW_ROLE,
    TenantFilter,
    TenantScopedAdmin,
    format_duration,
    format_time,
    has_object_role,
    registered_type_filter,
    sees_system_rows,
    status_badge,
    status_label,
    tenant_ids_for,
    truncate,
)
from .filters import ScheduleStateFilter
from .forms import (
    PauseForm,
    ScheduleAdminForm,
    WeekdaysField,
    ZonedSplitDateTimeField,
    ZonedSplitDateTimeWidget,
    kind_of,
    option_field_names,
    option_fieldset_class,
)

if TYPE_CHECKING:
    # django-stubs' names for a fieldset's fields, a fieldset's options and a list of fieldsets.
    from django.contrib.admin.options import _FieldGroups, _FieldOpts, _FieldsetSpec
    from django_stubs_ext import StrOrPromise


class ExecutionInline(admin.TabularInline):
    model = Execution
    fk_name = "schedule"
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = True
    fields = readonly_fields = (
        "scheduled_for_time",
        "attempt",
        "trigger",
        "status_badge",
        "duration",
        "short_error",
    )
    ordering = ["-scheduled_for", "-attempt"]
    verbose_name_plural = _("latest executions")
    LIMIT = 10

    @admin.display(description=_("scheduled for"))
    def scheduled_for_time(self, obj: Execution) -> str:
        return format_time(obj.scheduled_for, obj.effective_timezone)

    @admin.display(description=_("status"))
    def status_badge(self, obj: Execution) -> str:
        return status_badge(obj.status, status_label(obj.status))

    @admin.display(description=_("duration"))
    def duration(self, obj: Execution) -> str:
        return format_duration(obj.duration_ms)

    @admin.display(description=_("error"))
    def short_error(self, obj: Execution) -> str:
        return truncate(obj.error)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Execution]:
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
        # The schedule and the tenant for the time zone the rows read in.
        return qs.filter(pk__in=latest).select_related("schedule", "tenant")

    # An inline's ``obj`` is the parent: the schedule whose page shows it.
    def has_add_permission(self, request: HttpRequest, obj: Schedule | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Schedule | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Schedule | None = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Schedule | None = None) -> bool:
        return has_object_role(request, VIEW_ROLE, obj)


def trigger_fieldset(
    name: StrOrPromise, trigger_types: Collection[str], fields: _FieldGroups, chosen: str
) -> tuple[StrOrPromise, _FieldOpts]:
    # The chosen type's fields are open; the others are collapsed (usable without JavaScript)
    # and the admin's script hides them altogether until their type is chosen.
    classes = ["scheduling-trigger", *(f"scheduling-trigger-{t}" for t in trigger_types)]
    if chosen not in trigger_types:
        classes.append("collapse")
    return (name, {"classes": classes, "fields": fields})


TRIGGER_TYPE_FIELDS: dict[str, tuple[StrOrPromise, _FieldGroups]] = {
    TriggerType.INTERVAL: (_("Interval"), ["interval_seconds"]),
    TriggerType.CRON: (_("Cron"), ["cron_expression"]),
    TriggerType.ONCE: (_("Once"), ["run_at"]),
    TriggerType.CALENDAR: (
        _("Calendar"),
        [("calendar_every", "calendar_unit"), "calendar_time", "calendar_weekdays"],
    ),
}
# Fields that several trigger types share: one fieldset, shown with any of them (a field may
# appear only once in a form).
SHARED_TRIGGER_FIELDS: list[tuple[StrOrPromise, tuple[str, ...], _FieldGroups]] = [
    (
        _("Daylight saving time"),
        (TriggerType.CRON, TriggerType.CALENDAR),
        [("dst_gap_policy", "dst_fold_policy")],
    ),
]


TRIGGER_FIELDSET: tuple[StrOrPromise, _FieldOpts] = (
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


PREVIEW_FIELDSET: tuple[StrOrPromise, _FieldOpts] = (_("Next runs"), {"fields": ["upcoming"]})


POLICY_FIELDSET: tuple[StrOrPromise, _FieldOpts] = (
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
            ("ping_url", "ping_style"),
            "depends_on",
        ],
    },
)


STATE_FIELDSET: tuple[StrOrPromise, _FieldOpts] = (
    _("State"),
    {
        "fields": [
            "trigger_text",
            ("next_run", "last_run_at_time", "last_success_at_time"),
            ("last_status", "run_count", "consecutive_failures"),
            ("created_at_time", "updated_at_time"),
            "declared",
        ]
    },
)


# The change page's buttons (``ScheduleAdmin.object_actions``), by URL name.
OBJECT_ACTION_LABELS: dict[str, StrOrPromise] = {
    "run_now": _("Run now"),
    "pause": _("Pause…"),
    "resume": _("Resume"),
    "enable": _("Enable"),
    "disable": _("Disable"),
}
# How many executions the run-now action's message links to; the rest are counted.
RUNS_LINKED = 10
PAUSE_DISABLED_MESSAGE = _(
    "%(name)s is disabled, so it does not run anyway; an admin must enable it first."
)


# The dates and times a person enters; shown as ``<name>_time`` where they are not edited.
SHOWN_TIME_FIELDS = ("paused_until", "run_at", "start_at", "end_at")


def _renamed(fields: _FieldGroups, names: dict[str, str]) -> _FieldGroups:
    """Return ``fields`` (a fieldset's, with its rows) with the names in ``names`` replaced."""
    return [
        names.get(field, field)
        if isinstance(field, str)
        else tuple(names.get(name, name) for name in field)
        for field in fields
    ]


class ScheduleAdmin(TenantScopedAdmin):
    form = ScheduleAdminForm
    list_display = [
        "name",
        "tenant_column",
        "trigger_text",
        "state",
        "next_run",
        "last_status_badge",
        "last_run_at_time",
        "run_count",
    ]
    list_filter = [TenantFilter, "enabled", ScheduleStateFilter, "last_status", "trigger_type"]
    list_select_related = ["tenant"]
    search_fields = ["name", "description"]
    readonly_fields = [
        "trigger_text",
        "upcoming",
        "next_run",
        "next_run_at",
        "last_run_at",
        "last_success_at",
        "last_status",
        "run_count",
        "consecutive_failures",
        "created_at",
        "updated_at",
        "declared",
        # Times in the schedule's zone (format_time), and the options, where they are shown
        # rather than edited.
        *(
            f"{name}_time"
            for name in ("last_run_at", "last_success_at", "created_at", "updated_at")
        ),
        *(f"{name}_time" for name in SHOWN_TIME_FIELDS),
        "options_summary",
    ]
    autocomplete_fields = ["depends_on"]
    # Dates and times are read and shown in the schedule's zone, which the form names.
    formfield_overrides = {
        DateTimeField: {"form_class": ZonedSplitDateTimeField, "widget": ZonedSplitDateTimeWidget},
        # A heartbeat URL typed without a scheme is an https one.
        URLField: {"assume_scheme": "https"},
    }
    inlines = [ExecutionInline]
    actions = ["run_now", "pause", "resume", "enable", "disable", "duplicate"]
    kind_fields: ClassVar[_FieldGroups] = []
    change_form_template = OBJECT_ACTIONS_TEMPLATE

    class Media:
        js = ["scheduling/admin/schedule_form.js"]
        css = ADMIN_CSS

    # -- pages ------------------------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        opts = self.model._meta
        return [
            path(
                "preview/",
                self.admin_site.admin_view(self.preview_view),
                name=f"{opts.app_label}_{opts.model_name}_preview",
            ),
            path(
                "<path:object_id>/run-now/",
                self.admin_site.admin_view(self.run_now_view),
                name=f"{opts.app_label}_{opts.model_name}_run_now",
            ),
            *(
                path(
                    f"<path:object_id>/{name}/",
                    self.admin_site.admin_view(view),
                    name=f"{opts.app_label}_{opts.model_name}_{name}",
                )
                for name, view in (
                    ("pause", self.pause_view),
                    ("resume", self.resume_view),
                    ("enable", partial(self.enabled_view, enabled=True)),
                    ("disable", partial(self.enabled_view, enabled=False)),
                )
            ),
            *super().get_urls(),
        ]

    def preview_view(self, request: HttpRequest) -> HttpResponse:
        return views.trigger_preview(self, request)

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Schedule | None = None,
    ) -> HttpResponse:
        context["scheduling_object_actions"] = self.object_actions(request, obj)
        if obj is not None and obj.pk is not None and obj.legacy_day_rule:
            # A notice above the form: the runs under the old day rule and under cron's.
            runs = views.day_rule_comparison(obj)
            context["scheduling_day_rule"] = [
                (gettext("Next runs under the old rule"), runs["old"], "old"),
                (gettext("Next runs under cron's rule, once saved"), runs["cron"], "cron"),
            ]
        return super().render_change_form(request, context, add, change, form_url, obj)

    def run_now_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The "Run now" button: queue a manual run, then say which execution it is."""

        def run(schedule: Schedule) -> None:
            execution, created = self.queue_run(request, schedule)
            link = format_html(
                '<a href="{}">{}</a>',
                views.change_url(self, execution),
                gettext("execution %(id)s") % {"id": execution.pk},
            )
            if created:
                text = gettext("Run queued as {}; the scheduler starts it within seconds.")
            else:
                text = gettext("A run is already queued: {}; the scheduler starts it soon.")
            self.message_user(
                request,
                format_html(text, link),
                messages.SUCCESS if created else messages.WARNING,
            )

        return views.object_action(self, request, object_id, run)

    # -- the change page's buttons ------------------------------------------------------------

    def object_actions(self, request: HttpRequest, obj: Schedule | None) -> list[dict[str, str]]:
        """The buttons of ``obj``'s page: those its state allows and the user's role permits.

        An operator may run, pause and resume; an admin may also enable and disable. Pause
        and resume are for an enabled schedule (a disabled one does not run either way).
        """
        if obj is None or obj.pk is None:
            return []
        names = []
        if self.has_operate_permission(request, obj):
            names.append("run_now")
            if obj.enabled:
                names.append("resume" if obj.is_paused() else "pause")
        if self.has_change_permission(request, obj):
            names.append("disable" if obj.enabled else "enable")
        opts = self.model._meta
        return [
            {
                "name": name,
                "label": str(OBJECT_ACTION_LABELS[name]),
                "url": reverse(
                    f"{self.admin_site.name}:{opts.app_label}_{opts.model_name}_{name}",
                    args=[obj.pk],
                ),
            }
            for name in names
        ]

    def next_run_text(self, schedule: Schedule) -> str:
        """Return "its next run: <time>" for a message, or that there is none."""
        if schedule.next_run_at is None:
            return gettext("it has no further run")
        return gettext("its next run: %(when)s") % {
            "when": format_time(schedule.next_run_at, schedule.effective_timezone)
        }

    def pause_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The "Pause…" button: ask until when (empty: until resumed), then pause."""

        def pause(schedule: Schedule) -> HttpResponse | None:
            if not schedule.enabled:
                raise StateConflict(PAUSE_DISABLED_MESSAGE % {"name": schedule.name})
            form = PauseForm(
                request.POST if "apply" in request.POST else None,
                zone=schedule.effective_timezone,  # "until" reads in the schedule's zone
            )
            if not form.is_valid():
                return views.pause_confirmation(self, request, [schedule], form, obj=schedule)
            until = form.cleaned_data["until"]
            services.pause_schedule(
                schedule=schedule, until=until, user=request.user, source="admin"
            )
            if until is None:
                text = gettext("%(name)s paused until resumed.") % {"name": schedule.name}
            else:
                text = gettext("%(name)s paused until %(until)s; %(next)s.") % {
                    "name": schedule.name,
                    "until": format_time(until, schedule.effective_timezone),
                    "next": self.next_run_text(schedule),
                }
            self.message_user(request, text, messages.SUCCESS)
            return None

        return views.object_action(self, request, object_id, pause)

    def resume_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The "Resume" button: end the pause (a disabled schedule stays disabled)."""

        def resume(schedule: Schedule) -> None:
            if schedule.enabled and not schedule.is_paused():
                raise StateConflict(gettext("%(name)s is not paused.") % {"name": schedule.name})
            services.resume_schedule(schedule=schedule, user=request.user, source="admin")
            self.message_user(
                request,
                gettext("%(name)s resumed; %(next)s.")
                % {"name": schedule.name, "next": self.next_run_text(schedule)},
                messages.SUCCESS,
            )

        return views.object_action(self, request, object_id, resume)

    def enabled_view(self, request: HttpRequest, object_id: str, *, enabled: bool) -> HttpResponse:
        """The "Enable" and "Disable" buttons, for an admin (or owner) of the tenant."""

        def switch(schedule: Schedule) -> None:
            if schedule.enabled == enabled:
                message = (
                    _("%(name)s is already enabled.")
                    if enabled
                    else _("%(name)s is already disabled.")
                )
                raise StateConflict(message % {"name": schedule.name})
            services.set_schedule_enabled(
                schedule=schedule, enabled=enabled, user=request.user, source="admin"
            )
            if enabled:
                text = gettext("%(name)s enabled; %(next)s.") % {
                    "name": schedule.name,
                    "next": self.next_run_text(schedule),
                }
            else:
                text = gettext("%(name)s disabled: it does not run until it is enabled.") % {
                    "name": schedule.name
                }
            self.message_user(request, text, messages.SUCCESS)

        return views.object_action(
            self, request, object_id, switch, permission=self.has_change_permission
        )

    def chosen_trigger_type(self, request: HttpRequest, obj: Schedule | None) -> str:
        chosen = request.POST.get("trigger_type") if request.method == "POST" else None
        if chosen is None:
            chosen = obj.trigger_type if obj is not None else request.GET.get("trigger_type")
        return chosen if chosen in TriggerType.values else TriggerType.INTERVAL

    def get_fieldsets(self, request: HttpRequest, obj: Schedule | None = None) -> _FieldsetSpec:
        chosen = self.chosen_trigger_type(request, obj)
        editable = self.has_change_permission(request, obj) if obj else True
        by_type = [
            (name, (trigger_type,), fields)
            for trigger_type, (name, fields) in TRIGGER_TYPE_FIELDS.items()
        ]
        trigger_sets = [
            trigger_fieldset(name, trigger_types, fields, chosen)
            for name, trigger_types, fields in [*by_type, *SHARED_TRIGGER_FIELDS]
            if editable or chosen in trigger_types
        ]
        fieldsets: _FieldsetSpec = [
            (None, {"fields": ["tenant", "name", "description", "enabled", "paused_until"]}),
            (self.model._meta.verbose_name.capitalize(), {"fields": self.kind_fields}),
            *self.options_fieldsets(request, obj, editable),
            TRIGGER_FIELDSET,
            *trigger_sets,
            PREVIEW_FIELDSET,
            POLICY_FIELDSET,
            STATE_FIELDSET,
        ]
        # A date or time shown rather than edited: in the schedule's zone, labelled.
        declared = obj is not None and obj.declared
        shown = {
            name: f"{name}_time"
            for name in SHOWN_TIME_FIELDS
            if not editable or (declared and name not in services.DECLARED_OPERATOR_FIELDS)
        }
        return [
            (name, {**options, "fields": _renamed(options["fields"], shown)})
            for name, options in fieldsets
        ]

    def chosen_type_key(self, request: HttpRequest, obj: Schedule | None, field: str) -> str:
        """The registered type the page is for: posted, else saved, else asked for (?key=)."""
        if request.method == "POST":
            return request.POST.get(field, "")
        if obj is not None:
            return str(getattr(obj, field, ""))
        return request.GET.get(field, "")

    def options_fieldsets(
        self, request: HttpRequest, obj: Schedule | None, editable: bool
    ) -> list[tuple[StrOrPromise, _FieldOpts]]:
        """One fieldset per registered type with options, the chosen type's open (the
        admin's script hides the others); where they are not edited, a summary instead."""
        spec = kind_of(self.model)
        if spec is None:
            return []
        if not editable or (obj is not None and obj.declared):
            return [(_("Options"), {"fields": ["options_summary"]})]
        chosen = self.chosen_type_key(request, obj, spec.type_field)
        fieldsets: list[tuple[StrOrPromise, _FieldOpts]] = []
        for entry in spec.registry:
            names = option_field_names(entry)
            if not names:
                continue
            classes = ["scheduling-options", option_fieldset_class(entry.key)]
            if entry.key != chosen:
                classes.append("collapse")
            label = gettext("Options of %(type)s") % {"type": entry.label}
            fieldsets.append((label, {"classes": classes, "fields": tuple(names)}))
        return fieldsets

    def get_form(
        self, request: HttpRequest, obj: Model | None = None, change: bool = False, **kwargs: Any
    ) -> type[forms.ModelForm[Any]]:
        # The types' option fields are added by the form itself: they are no model fields.
        fields = kwargs.get("fields")
        if fields is None:
            fields = flatten_fieldsets(self.get_fieldsets(request, obj))  # type: ignore[arg-type]
        spec = kind_of(self.model)
        if spec is not None:
            options = {name for entry in spec.registry for name in option_field_names(entry)}
            kwargs["fields"] = [name for name in fields if name not in options]
        return super().get_form(request, obj, change, **kwargs)

    def get_readonly_fields(
        self, request: HttpRequest, obj: Model | None = None
    ) -> list[str] | tuple[str, ...]:
        fields = super().get_readonly_fields(request, obj)
        if isinstance(obj, Schedule) and not obj._state.adding and "tenant" not in fields:
            fields = [*fields, "tenant"]  # fixed once saved (services.check_tenant_unchanged)
        if not (isinstance(obj, Schedule) and obj.declared):
            return fields
        # Declared in code (SCHEDULING_DECLARED_SCHEDULES): operators own only its state.
        shown = flatten_fieldsets(self.get_fieldsets(request, obj))
        editable = services.DECLARED_OPERATOR_FIELDS
        return [*fields, *(f for f in shown if f not in editable and f not in fields)]

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        if isinstance(obj, Schedule) and obj.declared:
            return False  # remove it from SCHEDULING_DECLARED_SCHEDULES instead
        return super().has_delete_permission(request, obj)

    def formfield_for_dbfield(
        self, db_field: DBField[Any, Any], request: HttpRequest, **kwargs: Any
    ) -> forms.Field | None:
        if db_field.name == "calendar_weekdays":
            # Checkboxes, also in the preview's form (built with this method).
            return WeekdaysField(label=capfirst(db_field.verbose_name))
        if db_field.name == "calendar_every":
            kwargs.setdefault("min_value", 1)  # the model's validator, also in the browser
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def formfield_for_manytomany(
        self, db_field: ManyToManyField[Model, Model], request: HttpRequest, **kwargs: object
    ) -> forms.ModelMultipleChoiceField[Model] | None:
        if db_field.name == "depends_on":
            q = scope_q(tenant_ids_for(request, MANAGE_ROLE), sees_system_rows(request))
            qs = Schedule.objects.all()
            kwargs["queryset"] = qs if q is None else qs.filter(q)
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def save_model(
        self, request: HttpRequest, obj: Schedule, form: ScheduleAdminForm, change: bool
    ) -> None:
        form.audit_before = services.snapshot(type(obj).objects.get(pk=obj.pk)) if change else None
        super().save_model(request, obj, form, change)

    def save_related(
        self,
        request: HttpRequest,
        form: ScheduleAdminForm,
        formsets: Sequence[forms.BaseFormSet[Any]],
        change: bool,
    ) -> None:
        super().save_related(request, form, formsets, change)
        # Unticking "enabled", a pause or a new trigger: the next run shown follows at once.
        services.refresh_next_run(form.instance)
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

    @admin.display(description=_("last run at"), ordering="last_run_at")
    def last_run_at_time(self, obj: Schedule) -> str:
        return format_time(obj.last_run_at, obj.effective_timezone)

    @admin.display(description=_("last success at"), ordering="last_success_at")
    def last_success_at_time(self, obj: Schedule) -> str:
        return format_time(obj.last_success_at, obj.effective_timezone)

    @admin.display(description=_("created at"))
    def created_at_time(self, obj: Schedule) -> str:
        return format_time(obj.created_at, obj.effective_timezone)

    @admin.display(description=_("updated at"))
    def updated_at_time(self, obj: Schedule) -> str:
        return format_time(obj.updated_at, obj.effective_timezone)

    @admin.display(description=_("paused until"))
    def paused_until_time(self, obj: Schedule) -> str:
        if obj.is_paused_indefinitely():
            return gettext("Until resumed")
        return format_time(obj.paused_until, obj.effective_timezone)

    @admin.display(description=_("run at"))
    def run_at_time(self, obj: Schedule) -> str:
        return format_time(obj.run_at, obj.effective_timezone)

    @admin.display(description=_("start at"))
    def start_at_time(self, obj: Schedule) -> str:
        return format_time(obj.start_at, obj.effective_timezone)

    @admin.display(description=_("end at"))
    def end_at_time(self, obj: Schedule) -> str:
        return format_time(obj.end_at, obj.effective_timezone)

    @admin.display(description=_("options"))
    def options_summary(self, obj: Schedule) -> str:
        """The options of a schedule shown rather than edited: "label: value" each."""
        options = getattr(obj, "options", None)
        if not isinstance(options, dict) or not options:
            return "-"
        spec = kind_of(type(obj))
        labels: dict[str, str] = {}
        if spec is not None and spec.type_key(obj) in spec.registry:
            form = spec.registry.get(spec.type_key(obj)).options
            if form is not None:
                labels = {
                    name: str(field.label or capfirst(name.replace("_", " ")))
                    for name, field in form.base_fields.items()
                }
        # In the order of the type's form (labelled ones first), not of the stored JSON, which
        # PostgreSQL's jsonb keeps sorted by key length.
        order = {name: index for index, name in enumerate(labels)}
        names = sorted(options, key=lambda name: (order.get(name, len(order)), name))
        return format_html_join(
            "", "<div>{}: {}</div>", ((labels.get(name, name), options[name]) for name in names)
        )

    @admin.display(description=_("trigger"))
    def trigger_text(self, obj: Schedule) -> str:
        try:
            # A form shown again with errors carries the invalid values: describe only what runs.
            triggers.validate_trigger(obj)
        except ValidationError:
            return "-"
        return triggers.describe(obj)

    @admin.display(description=_("state"), ordering="enabled")
    def state(self, obj: Schedule) -> str:
        if not obj.enabled:
            return format_html('<span class="scheduling-state-off">{}</span>', _("Disabled"))
        if obj.is_paused_indefinitely():
            return format_html(
                '<span class="scheduling-state-paused">{}</span>', _("Paused until resumed")
            )
        if obj.paused_until is not None and obj.is_paused():
            until = views.format_run(obj.paused_until, obj.effective_timezone)
            return format_html(
                '<span class="scheduling-state-paused" title="{}">{}</span>',
                until["utc"],
                _("Paused until %(when)s") % {"when": until["local"]},
            )
        return format_html('<span class="scheduling-state-on">{}</span>', _("Enabled"))

    @admin.display(description=_("next run"), ordering="next_run_at")
    def next_run(self, obj: Schedule) -> str:
        """When it runs next, or why it does not: disabled, or paused (until when).

        A paused schedule's next run is the first after the pause (``refresh_next_run``); one
        from before the pause, not yet moved by the scheduler, is not shown.
        """
        if not obj.enabled:
            return format_html('<span class="scheduling-state-off">{}</span>', _("Disabled"))
        if obj.is_paused_indefinitely():
            return format_html(
                '<span class="scheduling-state-paused">{}</span>', _("Paused until resumed")
            )
        if obj.next_run_at is None:
            return "-"
        if obj.paused_until is not None and obj.is_paused() and obj.next_run_at < obj.paused_until:
            until = views.format_run(obj.paused_until, obj.effective_timezone)
            return format_html(
                '<span class="scheduling-state-paused" title="{}">{}</span>',
                until["utc"],
                _("Paused until %(when)s") % {"when": until["local"]},
            )
        when = views.format_run(obj.next_run_at, obj.effective_timezone)
        return format_html(
            '<time datetime="{}" title="{}">{}</time>', when["iso"], when["utc"], when["local"]
        )

    @admin.display(description=_("next runs"))
    def upcoming(self, obj: Schedule | None) -> str:
        opts = self.model._meta
        url = reverse(f"admin:{opts.app_label}_{opts.model_name}_preview")
        if obj is None or obj.pk is None:
            preview: views.Preview = {
                "ok": False,
                "errors": [_("Fill in the trigger to see its next runs.")],
            }
        else:
            preview = views.upcoming_runs(obj)
        rows = format_html_join(
            "",
            '<li><time datetime="{}" title="{}">{}</time></li>',
            ((run["iso"], run["utc"], run["local"]) for run in preview.get("runs", [])),
        )
        if preview["ok"] and not preview["runs"]:
            rows = format_html("<li>{}</li>", _("No further runs."))
        errors = format_html_join("", "<li>{}</li>", ((e,) for e in preview.get("errors", [])))
        note = self.preview_note(obj)
        return format_html(
            '<div class="scheduling-preview" data-preview-url="{}" data-object-id="{}">{}'
            '<ol class="scheduling-preview-runs">{}</ol>'
            '<ul class="scheduling-preview-errors">{}</ul></div>',
            url,
            obj.pk if obj is not None and obj.pk else "",
            format_html('<p class="scheduling-preview-state">{}</p>', note) if note else "",
            rows,
            errors,
        )

    def preview_note(self, obj: Schedule | None) -> str:
        """What the saved schedule's state means for the runs of its preview, if anything."""
        if obj is None or obj.pk is None:
            return ""
        if not obj.enabled:
            return gettext("Disabled: none of these runs happens until it is enabled.")
        if obj.is_paused_indefinitely():
            return gettext("Paused until resumed: no run happens until someone resumes it.")
        if obj.paused_until is not None and obj.is_paused():
            return gettext("Paused until %(when)s: these are the first runs after the pause.") % {
                "when": format_time(obj.paused_until, obj.effective_timezone)
            }
        return ""

    @admin.display(description=_("last status"), ordering="last_status")
    def last_status_badge(self, obj: Schedule) -> str:
        return status_badge(obj.last_status, obj.get_last_status_display())

    # -- actions ------------------------------------------------------------------------------

    def permitted(
        self, request: HttpRequest, queryset: QuerySet[Schedule], role: str
    ) -> list[Schedule]:
        """Return the selected schedules the user holds ``role`` for; warn about the rest."""
        selected = list(queryset.select_related("tenant"))
        allowed = [s for s in selected if has_object_role(request, role, s)]
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
        self, request: HttpRequest, done: int, singular: str, plural: str, **extra: object
    ) -> None:
        self.message_user(
            request,
            ngettext(singular, plural, done) % {"count": done, **extra},
            messages.SUCCESS if done else messages.WARNING,
        )

    def skipped(self, request: HttpRequest, names: list[str], reason: StrOrPromise) -> None:
        if names:
            self.message_user(request, reason % {"names": ", ".join(names)}, messages.WARNING)

    @admin.action(description=_("Run selected schedules now"), permissions=["operate"])
    def run_now(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        # Queues only: the scheduler process claims the execution within its sync interval.
        schedules = self.permitted(request, queryset, OPERATE_ROLE)
        queued: list[tuple[Schedule, Execution]] = []
        waiting: list[tuple[Schedule, Execution]] = []
        for schedule in schedules:
            try:
                execution, created = self.queue_run(request, schedule)
            except StateConflict as exc:  # too many manual runs of it queued already
                self.message_user(request, str(exc), messages.ERROR)
                continue
            (queued if created else waiting).append((schedule, execution))
        if queued or not waiting:
            text = ngettext(
                "{count} run queued; the scheduler starts it within seconds: {runs}.",
                "{count} runs queued; the scheduler starts them within seconds: {runs}.",
                len(queued),
            )
            if not queued:
                text = gettext("No run queued.")
            self.message_user(
                request,
                format_html(text, count=len(queued), runs=self.execution_links(queued)),
                messages.SUCCESS if queued else messages.WARNING,
            )
        if waiting:
            self.message_user(
                request,
                format_html(
                    gettext("Already queued, not queued again: {runs}."),
                    runs=self.execution_links(waiting),
                ),
                messages.WARNING,
            )

    def execution_links(self, runs: list[tuple[Schedule, Execution]]) -> str:
        """Links to the executions of ``runs`` ("nightly (execution 12)"), the first few."""
        shown = runs[:RUNS_LINKED]
        links = format_html_join(
            ", ",
            '<a href="{}">{}</a>',
            (
                (
                    views.change_url(self, execution),
                    gettext("%(name)s (execution %(id)s)")
                    % {"name": schedule.name, "id": execution.pk},
                )
                for schedule, execution in shown
            ),
        )
        more = len(runs) - len(shown)
        if more:
            return format_html("{} {}", links, gettext("and %(count)d more") % {"count": more})
        return links

    def queue_run(self, request: HttpRequest, schedule: Schedule) -> tuple[Execution, bool]:
        """Queue a manual run of ``schedule`` by the user (audited), or return the queued one."""
        return services.queue_run(schedule=schedule, user=request.user, source="admin")

    @admin.action(description=_("Pause selected schedules…"), permissions=["operate"])
    def pause(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> TemplateResponse | None:
        # "Until" reads in the schedules' time zone (UTC when they have several).
        zone = views.shared_zone(queryset)
        if "apply" not in request.POST:
            return views.pause_confirmation(self, request, queryset, PauseForm(zone=zone))
        form = PauseForm(request.POST, zone=zone)
        if not form.is_valid():
            return views.pause_confirmation(self, request, queryset, form)
        until = form.cleaned_data["until"]
        schedules = self.permitted(request, queryset, OPERATE_ROLE)
        disabled = [s.name for s in schedules if not s.enabled]
        for schedule in schedules:
            if schedule.enabled:
                services.pause_schedule(
                    schedule=schedule, until=until, user=request.user, source="admin"
                )
        self.skipped(request, disabled, _("Disabled, left as is: %(names)s."))
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
                when=format_time(until, zone),
            )
        return None

    @admin.action(description=_("Resume selected schedules"), permissions=["operate"])
    def resume(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        # Resume ends a pause; a disabled schedule stays disabled (enabling is an admin's).
        schedules = self.permitted(request, queryset, OPERATE_ROLE)
        now = timezone.now()
        running = [s.name for s in schedules if s.enabled and not s.is_paused(now)]
        disabled = [s.name for s in schedules if not s.enabled]
        paused = [s for s in schedules if s.enabled and s.is_paused(now)]
        for schedule in paused:
            services.resume_schedule(schedule=schedule, user=request.user, source="admin")
        self.skipped(request, running, _("Not paused, left as is: %(names)s."))
        self.skipped(
            request,
            disabled,
            _("Disabled, left as is: resume only ends a pause; an admin must enable %(names)s."),
        )
        self.report(
            request, len(paused), "%(count)d schedule resumed.", "%(count)d schedules resumed."
        )

    def set_enabled(
        self, request: HttpRequest, queryset: QuerySet[Schedule], enabled: bool
    ) -> None:
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
    def enable(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        self.set_enabled(request, queryset, True)

    @admin.action(description=_("Disable selected schedules"), permissions=["change"])
    def disable(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        self.set_enabled(request, queryset, False)

    @admin.action(
        description=_("Duplicate selected schedules (disabled copies)"), permissions=["add"]
    )
    def duplicate(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
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
    kind_fields = ["scan_type", "target"]
    list_filter = [
        *ScheduleAdmin.list_filter,
        registered_type_filter("scan_type", scan_types, _("scan type")),
    ]
    search_fields = [*ScheduleAdmin.search_fields, "target"]


@admin.register(Report)
class ReportAdmin(ScheduleAdmin):
    kind_fields = ["report_type", "format", "recipients"]
    list_filter = [
        *ScheduleAdmin.list_filter,
        registered_type_filter("report_type", report_types, _("report type")),
        "format",
    ]


@admin.register(CleanupConfig)
class CleanupConfigAdmin(ScheduleAdmin):
    kind_fields = ["cleanup_target", "retain_days", "batch_size"]
    list_filter = [
        *ScheduleAdmin.list_filter,
        registered_type_filter("cleanup_target", cleanup_targets, _("cleanup target")),
    ]


@admin.register(ScheduledTask)
class ScheduledTaskAdmin(ScheduleAdmin):
    kind_fields = ["task_type"]
    list_filter = [
        *ScheduleAdmin.list_filter,
        registered_type_filter("task_type", task_types, _("task type")),
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

    def has_add_permission(self, request: HttpRequest, *args: object) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        if isinstance(obj, Schedule) and obj.declared:
            return False  # declared in code, like its kind's row
        return super().has_delete_permission(request, obj)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Model], search_term: str
    ) -> tuple[QuerySet[Model], bool]:
        queryset, distinct = super().get_search_results(request, queryset, search_term)
        # A dependency must be one the user may manage: offer only those tenants' schedules,
        # and system schedules only to those who see them.
        q = scope_q(tenant_ids_for(request, MANAGE_ROLE), sees_system_rows(request))
        return (queryset if q is None else queryset.filter(q)), distinct

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, object] | None = None
    ) -> HttpResponse:
        return HttpResponseRedirect(reverse("admin:app_list", args=["scheduling"]))

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, object] | None = None,
    ) -> HttpResponse:
        self.require_object(request, object_id)
        schedule = self.get_object(request, unquote(object_id))
        if not isinstance(schedule, Schedule):  # None: require_object has answered 404
            raise Http404
        model_name = relation_of(schedule.kind)
        if model_name is None:
            raise Http404
        return HttpResponseRedirect(
            reverse(f"admin:scheduling_{model_name}_change", args=[schedule.pk])
        )
