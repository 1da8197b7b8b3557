"""A host project on django-scopes whose tenant model is itself scoped (``scoped.Event``)."""

from tests.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "tests.hostapps.scoped"]  # noqa: F405

SCHEDULING_TENANT_MODEL = "scoped.Event"
SCHEDULING_TENANT_CONTEXT = "scheduling.integrations.scopes.tenant_context"
SCHEDULING_SCOPES_DIMENSION = "event"
# The scheduler's own queries on the tenant model, outside any scope: the per-tenant retention
# cleanup (on migrate and on a tenant's creation) and a per-tenant declared schedule (on
# migrate, at runscheduler's start and on a tenant's creation).
SCHEDULING_RETENTION_SCHEDULE = True
SCHEDULING_DECLARED_SCHEDULES = [
    {
        "kind": "task",
        "task_type": "list_tickets",
        "name": "nightly tickets",
        "per_tenant": True,
        "trigger_type": "cron",
        "cron_expression": "0 3 * * *",
        "options": {},
    }
]
