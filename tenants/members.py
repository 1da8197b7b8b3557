"""Who may add, change and remove a tenant's members, and the writes that do it.

Owners and admins manage their own tenant's members, never above their own role: an admin may
add, change and remove viewers, operators and admins, but neither make nor touch an owner.
Users who manage every tenant (superusers) count as owners everywhere. A member is made staff
on joining, so that the role they were given lets them log in to the admin.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils.translation import gettext_lazy as _

from .models import ROLE_RANK, Membership, Role

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser


def may_manage(as_role: str | None, role: str) -> bool:
    """Return whether a holder of ``as_role`` may grant, change or remove the role ``role``."""
    if not as_role:
        return False
    rank = ROLE_RANK[Role(as_role)]
    return rank >= ROLE_RANK[Role.ADMIN] and ROLE_RANK[Role(role)] <= rank


def grantable_roles(as_role: str | None) -> list[Role]:
    """Return the roles a holder of ``as_role`` may grant, lowest first."""
    return sorted((role for role in Role if may_manage(as_role, role)), key=ROLE_RANK.__getitem__)


def find_user(identifier: str) -> AbstractBaseUser | None:
    """Return the user with the username ``identifier``, else with that e-mail address.

    None when there is no such user; a ValidationError when several users share the address.
    """
    user_model = get_user_model()
    users = user_model._default_manager
    identifier = identifier.strip()
    if not identifier:
        return None
    user = users.filter(**{user_model.USERNAME_FIELD: identifier}).first()
    if user is not None or "@" not in identifier:
        return user
    matches = list(users.filter(**{f"{user_model.get_email_field_name()}__iexact": identifier})[:2])
    if len(matches) > 1:
        raise ValidationError(
            _("Several users have the e-mail address %(email)s: enter the username instead."),
            code="ambiguous",
            params={"email": identifier},
        )
    return matches[0] if matches else None


def validate_new_user(*, username: str, email: str = "", password: str = "") -> None:
    """Check a new user's username and password as creating them would; raise ValidationError."""
    user_model = get_user_model()
    errors: dict[str, list[ValidationError]] = {}
    field = user_model._meta.get_field(user_model.USERNAME_FIELD)
    try:
        field.clean(username, None)  # type: ignore[union-attr]
        if user_model._default_manager.filter(**{user_model.USERNAME_FIELD: username}).exists():
            raise ValidationError(
                _("A user with the username %(username)s exists already."),
                code="unique",
                params={"username": username},
            )
    except ValidationError as exc:
        errors["username"] = exc.error_list
    if password:
        candidate = user_model(**{user_model.USERNAME_FIELD: username})
        if email:
            setattr(candidate, user_model.get_email_field_name(), email)
        try:
            validate_password(password, candidate)
        except ValidationError as exc:
            errors["password"] = exc.error_list
    if errors:
        raise ValidationError(errors)


def create_user(*, username: str, email: str = "", password: str = "") -> AbstractBaseUser:
    """Create a user; without a password they cannot log in until they set one (the admin
    shows a link for that)."""
    validate_new_user(username=username, email=email, password=password)
    user_model = get_user_model()
    fields: dict[str, Any] = {user_model.USERNAME_FIELD: username}
    if email:
        fields[user_model.get_email_field_name()] = user_model._default_manager.normalize_email(
            email
        )
    # create_user() leaves the password unusable when it is None.
    user: AbstractBaseUser = user_model._default_manager.create_user(
        password=password or None, **fields
    )
    return user


def make_staff(user: AbstractBaseUser) -> bool:
    """Let ``user`` log in to the admin (their roles decide what they see); return if changed."""
    if getattr(user, "is_staff", True):
        return False
    # Through setattr: a swappable user model's type does not declare is_staff.
    setattr(user, "is_staff", True)  # noqa: B010
    fields = ["is_staff"]
    user.save(update_fields=fields)
    return True


def check_may_manage(as_role: str | None, role: str, tenant: object) -> None:
    """Raise PermissionDenied unless a holder of ``as_role`` in ``tenant`` may manage ``role``."""
    if not may_manage(as_role, role):
        raise PermissionDenied(
            _("Your role in %(tenant)s does not let you manage members with the role %(role)s.")
            % {"tenant": tenant, "role": Role(role).label}
        )


@transaction.atomic
def grant_membership(membership: Membership, *, as_role: str) -> Membership:
    """Save the new ``membership``, as a holder of ``as_role`` in its tenant; its user becomes
    staff.

    A ValidationError when the user is a member of that tenant already: their role is changed on
    their membership, where the rules for changing it apply.
    """
    check_may_manage(as_role, membership.role, membership.tenant)
    current = Membership.objects.filter(
        user_id=membership.user_id, tenant_id=membership.tenant_id
    ).first()
    if current is not None:
        raise ValidationError(
            _("%(user)s is a member of %(tenant)s already, as %(role)s."),
            code="member",
            params={
                "user": membership.user,
                "tenant": membership.tenant,
                "role": current.get_role_display(),
            },
        )
    make_staff(membership.user)
    membership.save()
    return membership


def add_member(*, tenant: Any, user: AbstractBaseUser, role: str, as_role: str) -> Membership:
    """Give ``user`` the role ``role`` in ``tenant``, as a holder of ``as_role`` there."""
    return grant_membership(Membership(user_id=user.pk, tenant=tenant, role=role), as_role=as_role)


@transaction.atomic
def change_role(membership: Membership, *, role: str, as_role: str) -> None:
    """Change a member's role, as a holder of ``as_role`` in their tenant."""
    previous = Membership.objects.select_for_update().get(pk=membership.pk).role
    check_may_manage(as_role, previous, membership.tenant)
    check_may_manage(as_role, role, membership.tenant)
    membership.role = role
    membership.save(update_fields=["role"])


def remove_member(membership: Membership, *, as_role: str) -> None:
    """Remove a member from their tenant, as a holder of ``as_role`` there."""
    check_may_manage(as_role, membership.role, membership.tenant)
    membership.delete()
