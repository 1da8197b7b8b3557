"""Admin of tenants and memberships, scoped like the schedules' admin.

A staff member who is not a superuser sees the tenants they are a member of, and the
memberships of the tenants where they are an admin or owner, read-only: creating tenants,
changing quotas and granting roles is left to users who see every tenant. A tenant's scan allow
list (internal networks its scans may reach) is read-only for everyone but superusers.
"""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Model, QuerySet
from django.http import HttpRequest

from scheduling.admin import (
    MANAGE_ROLE,
    VIEW_ROLE,
    NotFoundMixin,
    has_role,
    tenant_admin_registered,
    tenant_ids_for,
)
from tenants.models import Membership, Tenant


def sees_every_tenant(request: HttpRequest) -> bool:
    return tenant_ids_for(request, VIEW_ROLE) is None


def is_autocomplete_for_schedules(request: HttpRequest) -> bool:
    match = request.resolver_match
    return bool(
        match and match.url_name == "autocomplete" and request.GET.get("app_label") == "scheduling"
    )


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Membership]:
        qs = super().get_queryset(request).select_related("user")
        ids = tenant_ids_for(request, MANAGE_ROLE)
        return qs if ids is None else qs.filter(tenant_id__in=ids)

    # An inline's ``obj`` is the parent: the tenant whose page shows it.
    def has_view_permission(self, request: HttpRequest, obj: Tenant | None = None) -> bool:
        if sees_every_tenant(request):
            return super().has_view_permission(request, obj)
        return has_role(request, MANAGE_ROLE, getattr(obj, "pk", None))

    def has_add_permission(self, request: HttpRequest, obj: Tenant | None = None) -> bool:
        return sees_every_tenant(request) and super().has_add_permission(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Tenant | None = None) -> bool:
        return sees_every_tenant(request) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Tenant | None = None) -> bool:
        return sees_every_tenant(request) and super().has_delete_permission(request, obj)


class ScopedReadOnlyAdmin(NotFoundMixin, admin.ModelAdmin):
    """Full rights for users who see every tenant; others may view, in their tenants only."""

    role = VIEW_ROLE
    tenant_attr = "tenant_id"

    def has_module_permission(self, request: HttpRequest) -> bool:
        if sees_every_tenant(request):
            return super().has_module_permission(request)
        return has_role(request, self.role)

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        if sees_every_tenant(request):
            return super().has_view_permission(request, obj)
        return has_role(request, self.role, getattr(obj, self.tenant_attr, None))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return sees_every_tenant(request) and super().has_add_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return sees_every_tenant(request) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return sees_every_tenant(request) and super().has_delete_permission(request, obj)


class TenantAdmin(ScopedReadOnlyAdmin):
    list_display = ["name", "slug", "timezone", "is_active", "created_at"]
    list_filter = ["is_active"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]
    tenant_attr = "pk"
    # Opens internal networks to the tenant's scans and webhooks: superusers only, even where
    # a resolver lets other staff change tenants.
    superuser_fields = ["scan_allow_networks"]

    def get_readonly_fields(self, request: HttpRequest, obj: Model | None = None) -> list[str]:
        fields = list(super().get_readonly_fields(request, obj))
        if not getattr(request.user, "is_superuser", False):
            fields += [f for f in self.superuser_fields if f not in fields]
        return fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[Model]:
        qs = super().get_queryset(request)
        ids = tenant_ids_for(request, VIEW_ROLE)
        return qs if ids is None else qs.filter(pk__in=ids)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Model], search_term: str
    ) -> tuple[QuerySet[Model], bool]:
        queryset, distinct = super().get_search_results(request, queryset, search_term)
        if is_autocomplete_for_schedules(request):
            # A schedule may only be put in a tenant the user manages.
            ids = tenant_ids_for(request, MANAGE_ROLE)
            if ids is not None:
                queryset = queryset.filter(pk__in=ids)
        return queryset, distinct


# A host project that swaps SCHEDULING_TENANT_MODEL administers its own model.
if not Tenant._meta.swapped:
    admin.site.register(Tenant, TenantAdmin)


@admin.register(Membership)
class MembershipAdmin(ScopedReadOnlyAdmin):
    list_display = ["user", "tenant", "role", "created_at"]
    list_filter = ["role"]
    list_select_related = ["user", "tenant"]
    search_fields = ["user__username", "user__email"]
    autocomplete_fields = ["user"]
    role = MANAGE_ROLE

    def get_queryset(self, request: HttpRequest) -> QuerySet[Model]:
        qs = super().get_queryset(request)
        ids = tenant_ids_for(request, MANAGE_ROLE)
        return qs if ids is None else qs.filter(tenant_id__in=ids)

    def get_autocomplete_fields(self, request: HttpRequest) -> list[str]:
        fields = list(super().get_autocomplete_fields(request))
        return [*fields, "tenant"] if tenant_admin_registered(self.admin_site) else fields
