"""Who may do what: tenant scoping of querysets and the role each action needs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from django.contrib.auth import get_permission_codename
from django.utils.translation import gettext_lazy as _
from rest_framework.permissions import SAFE_METHODS, BasePermission

from ..tenancy import get_tenant_model, request_sees_system, request_tenant_ids

if TYPE_CHECKING:
    from django.db.models import Model
    from rest_framework.request import Request
    from rest_framework.views import APIView

VIEWER, OPERATOR, ADMIN, OWNER = "viewer", "operator", "admin", "owner"
# Lowest to highest; a role may do everything the roles before it may.
ROLES = (VIEWER, OPERATOR, ADMIN, OWNER)


class TenantOwned(Protocol):
    """A row of one tenant (a schedule, an execution, a report artifact)."""

    tenant_id: int | None


def tenant_ids(request: Request, min_role: str | None = None) -> set[int] | None:
    """Return the ids of the tenants the requester holds ``min_role`` in (None: all).

    Cached on the request: a list, its permission checks and its serializer ask repeatedly.
    """
    cache: dict[str | None, set[int] | None] = request.__dict__.setdefault(
        "_scheduling_tenant_ids", {}
    )
    if min_role not in cache:
        cache[min_role] = request_tenant_ids(request, min_role=min_role)
    return cache[min_role]


def sees_system_rows(request: Request) -> bool:
    """Return whether the requester sees system schedules and their executions (cached)."""
    if "_scheduling_sees_system" not in request.__dict__:
        request.__dict__["_scheduling_sees_system"] = request_sees_system(request)
    return bool(request.__dict__["_scheduling_sees_system"])


def has_role(request: Request, tenant_id: int | None, min_role: str | None) -> bool:
    """Return whether the requester holds at least ``min_role`` in tenant ``tenant_id``.

    For a system row (``tenant_id`` None): whether the requester sees system rows.
    """
    if tenant_id is None:
        return sees_system_rows(request)
    ids = tenant_ids(request, min_role)
    return ids is None or tenant_id in ids


def effective_role(request: Request, tenant_id: int) -> str | None:
    """Return the highest role the requester holds in ``tenant_id`` (superusers: owner)."""
    for role in reversed(ROLES):
        if has_role(request, tenant_id, role):
            return role
    return None


class TenantRolePermission(BasePermission):
    """Viewers read; operators run, pause and resume; admins and owners create, change, delete.

    The view's ``required_roles`` maps actions to the minimum role; other unsafe actions need
    ``admin``. Objects of tenants the user cannot see never get here: the view's queryset
    leaves them out, so they answer 404 before any permission is checked.
    """

    message = _("Your role in this tenant does not allow this action.")

    def required_role(self, request: Request, view: APIView) -> str | None:
        roles: dict[str, str] = getattr(view, "required_roles", {})
        action = getattr(view, "action", None)
        if action in roles:
            return roles[action]
        return None if request.method in SAFE_METHODS else ADMIN

    def has_permission(self, request: Request, view: APIView) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        role = self.required_role(request, view)
        if role is not None and getattr(view, "action", None) == "create":
            # The tenant of the new object is checked by the serializer; here: any at all.
            ids = tenant_ids(request, role)
            return ids is None or bool(ids)
        return True

    def has_object_permission(self, request: Request, view: APIView, obj: TenantOwned) -> bool:
        role = self.required_role(request, view)
        return role is None or has_role(request, obj.tenant_id, role)


class TenantPermission(BasePermission):
    """Tenants: members read theirs; creating and changing them take the model's permission.

    Creating needs ``add`` on the tenant model (superusers have every permission); changing
    needs ``change`` and, for a user who does not see every tenant, the role ``admin`` in that
    tenant: a permission granted for one's own tenant never reaches another's, which answers
    404 anyway (the view's queryset leaves it out).
    """

    message = _("Creating or changing tenants needs the tenant model's add or change permission.")

    def has_permission(self, request: Request, view: APIView) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        action = getattr(view, "action", None)
        if request.method in SAFE_METHODS or action is None:
            return True  # no action: the method is not allowed (405)
        verb = "add" if action == "create" else "change"
        opts = get_tenant_model()._meta
        codename = get_permission_codename(verb, opts)
        return bool(request.user.has_perm(f"{opts.app_label}.{codename}"))

    def has_object_permission(self, request: Request, view: APIView, obj: Model) -> bool:
        if request.method in SAFE_METHODS:
            return True
        if has_role(request, obj.pk, ADMIN):
            return True
        self.message = _("Only an admin or owner of this tenant may change it.")
        return False
