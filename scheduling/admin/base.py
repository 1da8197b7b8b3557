"""What every admin of the app shares: tenant scoping by role, filters, badges.

Staff who are not superusers get their rights from their tenant memberships (through the
pluggable tenant resolver), not from Django's model permissions, and each object is checked
against the role in its own tenant: a viewer may look; an operator may also run, pause and
resume; an admin or owner may also add, edit, enable, disable, duplicate and delete. Another
tenant's object is not found, on every page and in every choice list.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.utils import unquote
from django.core.exceptions import BadRequest, ValidationError
from django.db.models import ForeignKey, Model, QuerySet
from django.forms import ModelChoiceField
from django.http import Http404, HttpRequest, HttpResponse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

# Every time the admin shows, one way (the reports share it): the schedule's zone where
# there is one, else the current time zone.
from ..formats import format_time as format_time
from ..models import Status
from ..tenancy import (
    get_tenant_model,
    request_sees_system,
    request_tenant_ids,
    request_tenants,
    scope_q,
)

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise

    from ..registry import Registry

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

# The change form with buttons (cancel, retry, run now) next to "History": the admin puts
# them in its context as ``scheduling_object_actions`` (``{"name", "label", "url"}`` each).
OBJECT_ACTIONS_TEMPLATE = "admin/scheduling/change_form_actions.html"


def status_label(status: str) -> str:
    """The label of ``status`` in the active language (``get_status_display()`` builds the
    list of choices anew for each row)."""
    try:
        return str(Status(status).label)
    except ValueError:
        return status


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


def tenant_ids_for(request: HttpRequest, role: str) -> set[int] | None:
    """Return the ids of the tenants where the user holds ``role`` (None: all), once per request."""
    cache: dict[str, set[int] | None] = request.__dict__.setdefault("_scheduling_tenant_ids", {})
    if role not in cache:
        cache[role] = request_tenant_ids(request, min_role=role)
    return cache[role]


def has_role(request: HttpRequest, role: str, tenant_id: int | None = None) -> bool:
    """Return whether the user holds ``role`` in ``tenant_id`` (None: in any tenant)."""
    ids = tenant_ids_for(request, role)
    if ids is None:
        return True
    return bool(ids) if tenant_id is None else tenant_id in ids


def sees_system_rows(request: HttpRequest) -> bool:
    """Return whether the user sees system schedules and their executions (once per request)."""
    if "_scheduling_sees_system" not in request.__dict__:
        request.__dict__["_scheduling_sees_system"] = request_sees_system(request)
    return bool(request.__dict__["_scheduling_sees_system"])


def has_object_role(request: HttpRequest, role: str, obj: object | None) -> bool:
    """Return whether the user holds ``role`` for ``obj`` (None: in any tenant).

    A row with an empty tenant (a system schedule, its executions) needs ``sees_system``.
    """
    if obj is None or not hasattr(obj, "tenant_id"):
        return has_role(request, role)
    if obj.tenant_id is None:
        return sees_system_rows(request)
    return has_role(request, role, obj.tenant_id)


def only_tenant_choice(request: HttpRequest, *, may_be_empty: bool) -> Any | None:
    """Return the id of the one tenant a new row of the user's can belong to, if there is one.

    That is the only tenant they manage, unless the row may also have none (a system schedule,
    for those who see system rows): then there is no one choice to make for them.
    """
    if may_be_empty:
        return None
    managed = request_tenants(request, min_role=MANAGE_ROLE)
    ids = list(managed.values_list("pk", flat=True)[:2])
    return ids[0] if len(ids) == 1 else None


def reject_null_characters(params: Iterable[tuple[str, list[str]]]) -> None:
    """Answer 400 for query parameters that contain U+0000 (``(name, [values])`` pairs).

    PostgreSQL cannot compare text with a NUL in it and would fail the query with a 500.
    """
    for name, values in params:
        if any("\x00" in value for value in [name, *values]):
            raise BadRequest(_("Null characters are not allowed in %(name)s.") % {"name": name})


class NotFoundMixin(admin.ModelAdmin):
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

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, object] | None = None
    ) -> HttpResponse:
        reject_null_characters(request.GET.lists())
        return super().changelist_view(request, extra_context)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Model], search_term: str
    ) -> tuple[QuerySet[Model], bool]:
        # Also reached by the autocomplete view, for the tenant and schedule widgets.
        reject_null_characters([("q", [search_term])])
        return super().get_search_results(request, queryset, search_term)

    def get_object(
        self, request: HttpRequest, object_id: str, from_field: str | None = None
    ) -> Model | None:
        try:
            return super().get_object(request, object_id, from_field)
        except OverflowError:  # SQLite: "Python int too large to convert to SQLite INTEGER"
            return None

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, object] | None = None,
    ) -> HttpResponse:
        self.require_object(request, object_id)
        return super().change_view(request, object_id, form_url, extra_context)

    def history_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, object] | None = None
    ) -> HttpResponse:
        self.require_object(request, object_id)
        return super().history_view(request, object_id, extra_context)

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, object] | None = None
    ) -> HttpResponse:
        self.require_object(request, object_id)
        return super().delete_view(request, object_id, extra_context)


class TenantFilter(admin.SimpleListFilter):
    """Filter by tenant, offering only the tenants the user may see."""

    title = _("tenant")
    parameter_name = "tenant"

    def lookups(
        self, request: HttpRequest, model_admin: admin.ModelAdmin
    ) -> list[tuple[str, StrOrPromise]]:
        choices: list[tuple[str, StrOrPromise]] = [
            (str(pk), name) for pk, name in tenant_choices(request)
        ]
        if sees_system_rows(request):
            choices.append((SYSTEM_CHOICE, _("System (no tenant)")))
        return choices

    def queryset(self, request: HttpRequest, queryset: QuerySet[Model]) -> QuerySet[Model]:
        value = self.value()
        if not value:
            return queryset
        if value == SYSTEM_CHOICE and sees_system_rows(request):
            return queryset.filter(tenant__isnull=True)
        if not value.isdigit() or value not in {str(pk) for pk, _name in tenant_choices(request)}:
            return queryset.none()
        return queryset.filter(tenant_id=int(value))


# The tenant filter's value for system rows (no tenant), offered to those who see them.
SYSTEM_CHOICE = "system"


def tenant_label(tenant: object | None) -> str:
    """Return how a row's tenant is shown: its name, or "(system)" for a system row."""
    return str(tenant) if tenant is not None else str(_("(system)"))


def tenant_choices(request: HttpRequest) -> list[tuple[int, str]]:
    cache: list[tuple[int, str]] = request.__dict__.setdefault("_scheduling_tenant_choices", [])
    if not cache:
        # The tenants whose rows the admin's querysets show (VIEW_ROLE, known by now).
        ids = tenant_ids_for(request, VIEW_ROLE)
        tenants = get_tenant_model()._default_manager.order_by("name", "pk")
        if ids is not None:
            tenants = tenants.filter(pk__in=ids)
        cache.extend((t.pk, str(t)) for t in tenants)
    return cache


def registered_type_filter(
    field: str, registry: Registry[Any], title: StrOrPromise
) -> type[admin.SimpleListFilter]:
    """Return a filter on a registered type key; its choices come from the registry, not the DB."""

    class RegisteredTypeFilter(admin.SimpleListFilter):
        parameter_name = field

        def lookups(
            self, request: HttpRequest, model_admin: admin.ModelAdmin
        ) -> list[tuple[str, StrOrPromise]]:
            return registry.choices()

        def queryset(self, request: HttpRequest, queryset: QuerySet[Model]) -> QuerySet[Model]:
            value = self.value()
            return queryset.filter(**{field: value}) if value else queryset

    RegisteredTypeFilter.title = title
    return RegisteredTypeFilter


class TenantScopedAdmin(NotFoundMixin, admin.ModelAdmin):
    """Limit querysets, choices and rights to the tenants and roles of the user."""

    def action_checkbox(self, obj: Model) -> SafeString:
        # The markup of ModelAdmin.action_checkbox, written directly: it renders a form widget
        # through the template engine for each row, a third of a changelist page's time.
        return format_html(
            '<input type="checkbox" name="{}" value="{}" class="action-select" aria-label="{}">',
            ACTION_CHECKBOX_NAME,
            str(obj.pk),
            format_html(gettext("Select this object for an action - {}"), str(obj)),
        )

    def get_autocomplete_fields(self, request: HttpRequest) -> list[str]:
        # A host project's own tenant model may have no admin to autocomplete against.
        fields = list(super().get_autocomplete_fields(request))
        if "tenant" in [f.name for f in self.model._meta.fields] and tenant_admin_registered(
            self.admin_site
        ):
            fields.append("tenant")
        return fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[Model]:
        qs = super().get_queryset(request)
        q = scope_q(tenant_ids_for(request, VIEW_ROLE), sees_system_rows(request))
        return qs if q is None else qs.filter(q)

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        """The add form's tenant: ``?tenant=<id>`` of one the user manages, else their only
        choice (``only_tenant_choice``); anything else in ``?tenant=`` is ignored."""
        initial = super().get_changeform_initial_data(request)
        field = next((f for f in self.model._meta.fields if f.name == "tenant"), None)
        if field is None:
            return initial
        tenant = initial.pop("tenant", "")
        managed = request_tenants(request, min_role=MANAGE_ROLE)
        try:
            named = isinstance(tenant, str) and managed.filter(pk=tenant).exists()
        except (ValueError, TypeError, OverflowError, ValidationError):
            named = False  # not a tenant's id
        if named:
            initial["tenant"] = tenant
        else:
            may_be_empty = field.null and sees_system_rows(request)
            only = only_tenant_choice(request, may_be_empty=may_be_empty)
            if only is not None:
                initial["tenant"] = str(only)
        return initial

    def formfield_for_foreignkey(
        self,
        db_field: ForeignKey[Model | None, Model | None],
        request: HttpRequest,
        **kwargs: object,
    ) -> ModelChoiceField[Model] | None:
        if db_field.name == "tenant":
            kwargs["queryset"] = request_tenants(request, min_role=MANAGE_ROLE)
            if not sees_system_rows(request):
                kwargs["required"] = True  # empty would make a system schedule
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return has_role(request, VIEW_ROLE)

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return has_object_role(request, VIEW_ROLE, obj)

    def has_add_permission(self, request: HttpRequest, *args: object) -> bool:
        return has_role(request, MANAGE_ROLE)

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return has_object_role(request, MANAGE_ROLE, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return has_object_role(request, MANAGE_ROLE, obj)

    def has_operate_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        """Whether the user may run, pause and resume (operator and above)."""
        return has_object_role(request, OPERATE_ROLE, obj)

    @admin.display(description=_("tenant"), ordering="tenant")
    def tenant_column(self, obj: Model) -> str:
        """The tenant column and field: "(system)" instead of an empty value."""
        return tenant_label(getattr(obj, "tenant", None))


def format_duration(ms: int | None) -> str:
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{ms} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    minutes, seconds = divmod(ms // 1000, 60)
    return f"{minutes} min {seconds} s"


def format_lateness(lateness: timedelta | None) -> str:
    """How late a run started after its time, like a duration; "-" when it has not started."""
    if lateness is None:
        return "-"
    ms = round(lateness.total_seconds() * 1000)
    if ms < 0:
        return _("%(duration)s early") % {"duration": format_duration(-ms)}
    return format_duration(ms)


TRUNCATE_AT = 120


def truncate(text: str, limit: int = TRUNCATE_AT) -> str:
    """Return the first line of ``text``, cut to ``limit`` characters (escaped by the caller)."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first[:limit] + ("…" if len(first) > limit or len(text.strip()) > len(first) else "")


class ReadOnlyAdmin(TenantScopedAdmin):
    """History is a record: viewable by the tenant's members, deleted only by superusers."""

    def has_add_permission(self, request: HttpRequest, *args: object) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return request.user.is_superuser
