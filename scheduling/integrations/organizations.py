"""django-organizations: who sees which tenant, from the organizations' members.

With ``SCHEDULING_TENANT_MODEL = "organizations.Organization"`` (or a project's own model built
on django-organizations' abstract models) and ``SCHEDULING_TENANT_RESOLVER =
"scheduling.integrations.organizations.OrganizationResolver"``, each organization is a tenant
and its ``OrganizationUser`` rows are the memberships. Roles:

- the organization's owner (its ``OrganizationOwner``): ``owner``;
- a member with ``is_admin``: ``admin``;
- any other member: ``member_role``, ``viewer`` unless a subclass says otherwise.

Superusers see every tenant; inactive users none.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

from django.contrib.auth import get_user_model
from django.core.exceptions import FieldDoesNotExist, ImproperlyConfigured
from django.db.models import Model, QuerySet

from ..tenancy import get_tenant_model

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

    from tenants.models import Tenant

# The member row (``OrganizationUser``) of an organization's owner, seen from any member row.
OWNER_MEMBER = "organization__owner__organization_user"


class OrganizationResolver:
    """Tenants are organizations; roles come from ``is_admin`` and the organization's owner."""

    # The role of a member who is neither an admin nor the owner: "viewer" sees the tenant's
    # schedules and history, "operator" may also run, pause and resume them.
    member_role = "viewer"

    def __init__(self) -> None:
        from tenants.models import Role

        if self.member_role not in Role.values:
            raise ImproperlyConfigured(
                f"{type(self).__name__}.member_role is {self.member_role!r}; it must be one of "
                f"{', '.join(repr(value) for value in Role.values)}."
            )

    def tenant_ids(
        self, user: AbstractBaseUser | AnonymousUser, *, min_role: str | None = None
    ) -> set[int] | None:
        """Return the ids of the organizations ``user`` holds at least ``min_role`` in.

        None (every tenant) for a superuser.
        """
        if not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", False):
            return set()
        if getattr(user, "is_superuser", False):
            return None
        from tenants.models import ROLE_RANK, Role

        floor = ROLE_RANK[Role(min_role)] if min_role else 0
        members = self._members().filter(user_id=user.pk)
        return {
            org_id for org_id, role, _user in self._roles(members) if ROLE_RANK[Role(role)] >= floor
        }

    def roles(self, user: AbstractBaseUser | AnonymousUser) -> list[tuple[Tenant, str]]:
        """Return the organizations ``user`` is a member of, each with their role's name."""
        if not getattr(user, "is_authenticated", False) or user.pk is None:
            return []
        from tenants.models import Role

        members = self._members().filter(user_id=user.pk)
        role_of = {org_id: role for org_id, role, _user in self._roles(members)}
        tenants = get_tenant_model()._default_manager.filter(pk__in=role_of)
        pairs = [(tenant, str(Role(role_of[tenant.pk]).label)) for tenant in tenants]
        return sorted(pairs, key=lambda pair: (str(pair[0]), pair[0].pk))

    def alert_recipients(self, tenant: Tenant) -> list[str]:
        """Return the e-mail addresses of the organization's active owner and admins."""
        user_model = get_user_model()
        email = user_model.get_email_field_name()
        members = self._members().filter(organization_id=tenant.pk)
        if _has_field(user_model, "is_active"):
            members = members.filter(user__is_active=True)
        managers = {
            user_id for _org, role, user_id in self._roles(members) if role in ("owner", "admin")
        }
        addresses = (
            user_model._default_manager.filter(pk__in=managers)
            .exclude(**{email: ""})
            .order_by(email)
            .values_list(email, flat=True)
        )
        return [str(address) for address in addresses]

    def _members(self) -> QuerySet[Any]:
        """Return every member row (``OrganizationUser``) of the tenant model's organizations."""
        # The type checker sees the default tenant model, which has no organization users.
        tenant_model: type[Model] = get_tenant_model()
        try:
            relation = tenant_model._meta.get_field("organization_users")
        except FieldDoesNotExist:
            raise ImproperlyConfigured(
                f"{type(self).__name__} needs a django-organizations organization model as "
                f"SCHEDULING_TENANT_MODEL; {tenant_model._meta.label} has no organization_users."
            ) from None
        member_model = cast("type[Model]", relation.related_model)
        return member_model._default_manager.all()

    def _roles(self, members: QuerySet[Any]) -> Iterator[tuple[int, str, Any]]:
        """Yield ``(organization id, role, user id)`` for each row of ``members``, in one query."""
        # django-organizations' simpler base models (OrganizationBase) have neither admins nor
        # an owner: every member has the member role there.
        fields = ["organization_id", "user_id", "pk"]
        if _has_field(members.model, "is_admin"):
            fields.append("is_admin")
        if _has_field(get_tenant_model(), "owner"):
            fields.append(OWNER_MEMBER)
        for row in members.values(*fields):
            if row.get(OWNER_MEMBER) == row["pk"]:
                role = "owner"
            elif row.get("is_admin"):
                role = "admin"
            else:
                role = self.member_role
            yield row["organization_id"], role, row["user_id"]


def _has_field(model: type[Model], name: str) -> bool:
    try:
        model._meta.get_field(name)
    except FieldDoesNotExist:
        return False
    return True
