"""Which tenants a user may see and change: the one place tenant scoping is decided.

The resolver is pluggable (``SCHEDULING_TENANT_RESOLVER``) so that a host project with its own
organisation and membership rules can answer these questions itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from django.apps import apps
from django.db.models import Q

from .conf import conf

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
    from django.db.models import QuerySet
    from django.http import HttpRequest

    # The tenant model is swappable (SCHEDULING_TENANT_MODEL). Type checking resolves it the
    # way django-stubs resolves the foreign keys to it, from the settings mypy runs with; the
    # code reads attributes beyond ``pk`` with ``getattr`` so that any tenant model works.
    from tenants.models import Tenant


def get_tenant_model() -> type[Tenant]:
    """Return the tenant model named by ``SCHEDULING_TENANT_MODEL``."""
    # The model is only known at run time; the cast names it as the type checker sees it.
    return cast("type[Tenant]", apps.get_model(conf.TENANT_MODEL, require_ready=False))


class MembershipResolver:
    """Default rules: superusers see every tenant; others the tenants they are members of."""

    def tenant_ids(
        self, user: AbstractBaseUser | AnonymousUser, *, min_role: str | None = None
    ) -> set[int] | None:
        """Return the ids of the tenants ``user`` holds at least ``min_role`` in (None: all)."""
        if not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", False):
            return set()
        if getattr(user, "is_superuser", False):
            return None
        from tenants.models import ROLE_RANK, Membership, Role

        # By id: the user model is swappable, so the type checker cannot match the instance
        # with Membership.user. An authenticated user always has one (AnonymousUser's is None).
        user_id = user.pk
        if user_id is None:
            return set()
        memberships = Membership.objects.filter(user_id=user_id).values_list("tenant_id", "role")
        floor = ROLE_RANK[Role(min_role)] if min_role else 0
        return {tid for tid, role in memberships if ROLE_RANK.get(Role(role), -1) >= floor}

    def roles(self, user: AbstractBaseUser | AnonymousUser) -> list[tuple[Tenant, str]]:
        """Return the tenants ``user`` is a member of, each with the name of their role there."""
        if not getattr(user, "is_authenticated", False) or user.pk is None:
            return []
        from tenants.models import Membership

        memberships = Membership.objects.filter(user_id=user.pk).select_related("tenant")
        pairs = [(m.tenant, str(m.get_role_display())) for m in memberships]
        return sorted(pairs, key=lambda pair: (str(pair[0]), pair[0].pk))


# Who sees and changes system schedules (no tenant) besides superusers.
SYSTEM_PERMISSION = "scheduling.manage_system_schedules"


def sees_system(user: AbstractBaseUser | AnonymousUser) -> bool:
    """Return whether ``user`` may see and change system schedules and their executions."""
    if not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", False):
        return False
    if getattr(user, "is_superuser", False):
        return True
    has_perm = getattr(user, "has_perm", None)  # PermissionsMixin's; a custom user may lack it
    return bool(has_perm is not None and has_perm(SYSTEM_PERMISSION))


def scope_q(ids: set[int] | None, system: bool, field: str = "tenant") -> Q | None:
    """Return the filter of rows in tenants ``ids`` (and with no tenant when ``system``).

    None when there is nothing to filter (``ids`` is None: every tenant, and ``system``).
    """
    if ids is None and system:
        return None
    rows = Q(**{f"{field}_id__in": ids}) if ids is not None else Q(**{f"{field}__isnull": False})
    return rows | Q(**{f"{field}__isnull": True}) if system else rows


def visible_tenant_ids(
    user: AbstractBaseUser | AnonymousUser, *, min_role: str | None = None
) -> set[int] | None:
    """Return the tenant ids ``user`` may see (None means every tenant)."""
    return conf.get_tenant_resolver().tenant_ids(user, min_role=min_role)


def request_scope(request: HttpRequest) -> set[int] | None:
    """Return the tenants ``request`` itself is limited to, or None (no limit).

    Asks the resolver's optional ``request_tenant_ids(request)``: a project on django-tenants
    answers ``{request.tenant.pk}`` on a tenant's domain, so that its admin and API there show
    only that tenant whoever logs in (and no system schedules). Cached on the request.
    """
    if "_scheduling_request_scope" not in request.__dict__:
        hook = getattr(conf.get_tenant_resolver(), "request_tenant_ids", None)
        limit = hook(request) if hook is not None else None
        request.__dict__["_scheduling_request_scope"] = None if limit is None else set(limit)
    scope: set[int] | None = request.__dict__["_scheduling_request_scope"]
    return scope


def request_tenant_ids(request: HttpRequest, *, min_role: str | None = None) -> set[int] | None:
    """Return the tenant ids the request's user may see (None: every tenant), within the
    request's own scope (``request_scope``)."""
    ids = visible_tenant_ids(request.user, min_role=min_role)
    scope = request_scope(request)
    if scope is None:
        return ids
    return set(scope) if ids is None else ids & scope


def request_tenants(request: HttpRequest, *, min_role: str | None = None) -> QuerySet[Tenant]:
    """Return a queryset of the tenants the request's user may see, within its scope."""
    qs = get_tenant_model()._default_manager.all()
    ids = request_tenant_ids(request, min_role=min_role)
    return qs if ids is None else qs.filter(pk__in=ids)


def request_sees_system(request: HttpRequest) -> bool:
    """Return whether the request shows system schedules: not within one tenant's scope."""
    return sees_system(request.user) and request_scope(request) is None


def tenant_roles(user: AbstractBaseUser | AnonymousUser) -> list[tuple[Tenant, str]]:
    """Return the tenants ``user`` holds a role in, with the role's name, for display.

    Empty when the resolver does not tell roles (an optional ``roles(user)`` method).
    """
    roles = getattr(conf.get_tenant_resolver(), "roles", None)
    return list(roles(user)) if roles is not None else []


def tenants_visible_to(
    user: AbstractBaseUser | AnonymousUser, *, min_role: str | None = None
) -> QuerySet[Tenant]:
    """Return a queryset of the tenants ``user`` may see."""
    qs = get_tenant_model()._default_manager.all()
    ids = visible_tenant_ids(user, min_role=min_role)
    return qs if ids is None else qs.filter(pk__in=ids)


def tenant_key(tenant: Tenant | None) -> str | None:
    """Return how the CLI and exported files name ``tenant``: its slug, else its id.

    None for no tenant (a system schedule and its executions).
    """
    if tenant is None:
        return None
    slug = getattr(tenant, "slug", None)
    return str(slug) if slug else str(tenant.pk)


def find_tenant(key: str | int, queryset: QuerySet[Tenant]) -> Tenant | None:
    """Return the tenant of ``queryset`` named ``key`` (slug, or id), or None."""
    key = str(key)
    model = queryset.model
    if any(f.name == "slug" for f in model._meta.get_fields()):
        tenant = queryset.filter(slug=key).first()
        if tenant is not None:
            return tenant
    if key.isdigit():
        return queryset.filter(pk=int(key)).first()
    return None
