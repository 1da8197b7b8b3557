from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from .models import Membership, Tenant


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


class TenantAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "timezone", "is_active", "created_at"]
    list_filter = ["is_active"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]


# A host project that swaps SCHEDULING_TENANT_MODEL administers its own model.
if not Tenant._meta.swapped:
    admin.site.register(Tenant, TenantAdmin)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "tenant", "role", "created_at"]
    list_filter = ["role"]
    list_select_related = ["user", "tenant"]
    search_fields = ["user__username", "user__email"]
    autocomplete_fields = ["user"]

    def get_autocomplete_fields(self, request: HttpRequest) -> Any:
        from scheduling.admin import tenant_admin_registered

        fields = list(super().get_autocomplete_fields(request))
        return [*fields, "tenant"] if tenant_admin_registered(self.admin_site) else fields
