"""django-scopes: every handler of a tenant's schedule runs inside ``scope(<dimension>=tenant)``.

``SCHEDULING_TENANT_CONTEXT = "scheduling.integrations.scopes.tenant_context"``; the dimension
is ``SCHEDULING_SCOPES_DIMENSION`` (default ``"tenant"``), the name the host's
``ScopedManager(tenant="...")`` declarations use. Outside handlers no scope is active: the
scheduler reads the tenant model through its base manager and never queries a host's model
through its default manager, so neither needs ``scopes_disabled()`` there.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from django_scopes import scope

from ..conf import conf


def tenant_context(tenant: Any) -> AbstractContextManager[None]:
    """Return the scope in which ``tenant``'s handlers run: its dimension set to ``tenant``."""
    return scope(**{conf.SCOPES_DIMENSION: tenant})
