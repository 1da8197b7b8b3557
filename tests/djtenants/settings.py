"""Settings of a host project on django-tenants; the database comes from DATABASE_URL."""

import os

import django
from django.core.exceptions import ImproperlyConfigured

from tests.settings import *  # noqa: F403

if not os.environ.get("DATABASE_URL"):
    raise ImproperlyConfigured("The django-tenants project needs DATABASE_URL (PostgreSQL).")

# django-tenants' backend sets the search_path to the active tenant's schema, then public.
DATABASES["default"]["ENGINE"] = "django_tenants.postgresql_backend"  # noqa: F405
DATABASE_ROUTERS = ["django_tenants.routers.TenantSyncRouter"]

# The scheduling app, its job store and its memberships are shared: one set of tables in the
# public schema, whichever tenant a handler runs for (scheduling.E061 checks it).
SHARED_APPS = [
    "django_tenants",
    "tests.djtenants.customers",
    *INSTALLED_APPS,  # noqa: F405
    # The django_tasks executor's queue (django-tasks-db), shared like the app's tables.
    "django_tasks_db",
    *(["django_tasks"] if django.VERSION < (6, 0) else []),
]
TENANT_APPS = [
    "django.contrib.contenttypes",
    "tests.djtenants.notes",
]
INSTALLED_APPS = [*SHARED_APPS, *(app for app in TENANT_APPS if app not in SHARED_APPS)]

TENANT_MODEL = "customers.Client"
TENANT_DOMAIN_MODEL = "customers.Domain"
MIDDLEWARE = [
    "django_tenants.middleware.main.TenantMainMiddleware",
    *MIDDLEWARE,  # noqa: F405
]

# The app's tenant is django-tenants' tenant (scheduling.E062), and every handler runs in its
# tenant's schema.
SCHEDULING_TENANT_MODEL = "customers.Client"
# (HOSTED_TENANT_CONTEXT="" turns it off: tests/test_django_tenants.py shows what it prevents.)
SCHEDULING_TENANT_CONTEXT = (
    os.environ.get("HOSTED_TENANT_CONTEXT", "django_tenants.utils.tenant_context") or None
)

# SCHEDULING_EXECUTOR (the environment, as in the demo's settings) may be "django_tasks": its
# runs go through django-tasks-db's queue, worked by `manage.py db_worker --queue-name
# scheduling`.
TASKS = {
    "default": {
        "BACKEND": "django_tasks_db.DatabaseBackend",
        "QUEUES": ["default", "scheduling"],
    }
}
SCHEDULING_TASKS_QUEUE = "scheduling"
