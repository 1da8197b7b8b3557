"""A host project on django-multitenant: its tenant is ``mtaccounts.Account``."""

import os

from tests.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "django_multitenant", "tests.hostapps.multitenant"]  # noqa: F405

SCHEDULING_TENANT_MODEL = "mtaccounts.Account"
SCHEDULING_TENANT_CONTEXT = "scheduling.integrations.multitenant.tenant_context"
# django-multitenant keeps the current tenant in a thread-local, or with TENANT_USE_ASGIREF in
# asgiref's context-aware local, which an async handler's event loop (on a thread of its own)
# sees too. The tests run both (HOST_TENANT_USE_ASGIREF=1).
TENANT_USE_ASGIREF = os.environ.get("HOST_TENANT_USE_ASGIREF") == "1"
