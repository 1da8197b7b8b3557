"""django-multitenant: every handler of a tenant's schedule runs with that tenant current.

``SCHEDULING_TENANT_CONTEXT = "scheduling.integrations.multitenant.tenant_context"``. The
tenant model must be django-multitenant's tenant (a ``TenantModel``, whose ``tenant_value``
the ``TenantManager`` filters by). django-multitenant keeps the current tenant per thread, and
the executors' worker threads run one handler after another: the tenant is unset after each
run, also when the handler fails, so the next run of that thread starts with none. An
``async def`` handler's event loop runs on a thread of its own: it sees the tenant only when
django-multitenant keeps it in a context-aware local (its setting ``TENANT_USE_ASGIREF``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django_multitenant.utils import set_current_tenant, unset_current_tenant


@contextmanager
def tenant_context(tenant: Any) -> Iterator[None]:
    """Make ``tenant`` django-multitenant's current tenant while the body runs."""
    set_current_tenant(tenant)
    try:
        yield
    finally:
        unset_current_tenant()
