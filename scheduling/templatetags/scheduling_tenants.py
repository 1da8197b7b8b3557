"""Template tags of the admin pages about tenants: the roles of the user who is logged in."""

from __future__ import annotations

from typing import Any

from django import template

from ..tenancy import tenant_roles

register = template.Library()

# The user tools name this many of the user's tenants; the rest is a link to all of them.
SHOWN_ROLES = 3


@register.inclusion_tag("admin/scheduling/user_roles.html", takes_context=True)
def user_roles(context: dict[str, Any]) -> dict[str, Any]:
    """Render the roles of the logged-in user: "Acme: Operator, Beta: Viewer"."""
    roles = tenant_roles(context["request"].user) if "request" in context else []
    return {"roles": roles[:SHOWN_ROLES], "more": max(len(roles) - SHOWN_ROLES, 0)}
