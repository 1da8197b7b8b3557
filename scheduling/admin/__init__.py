"""The app's admin, registered on Django's site when this package is imported.

- ``base``: tenant scoping by role, shared by every admin of the app (and the tenants app).
- ``schedules``: the admins of the schedule kinds and the schedule lookup.
- ``executions``: read-only executions, report artifacts and the scheduler lease.
- ``policies``: alert rules, blackout windows and the audit trail.
- ``forms``, ``views``, ``dashboard``: the pages the schedule admins add to Django's.
- ``apscheduler``: django-apscheduler's own admins, unregistered (they unpickle unsigned state
  and run jobs in the web request).
"""

from . import apscheduler, executions, policies, schedules
from .base import (
    MANAGE_ROLE,
    OPERATE_ROLE,
    VIEW_ROLE,
    NotFoundMixin,
    ReadOnlyAdmin,
    TenantFilter,
    TenantScopedAdmin,
    has_role,
    tenant_admin_registered,
    tenant_ids_for,
)

apscheduler.unregister_apscheduler_admins()

__all__ = [
    "MANAGE_ROLE",
    "OPERATE_ROLE",
    "VIEW_ROLE",
    "NotFoundMixin",
    "ReadOnlyAdmin",
    "TenantFilter",
    "TenantScopedAdmin",
    "apscheduler",
    "executions",
    "has_role",
    "policies",
    "schedules",
    "tenant_admin_registered",
    "tenant_ids_for",
]
