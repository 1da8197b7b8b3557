"""The host's task type and cleanup target: both read the scoped ``Ticket`` model."""

from django_scopes import get_scope

from scheduling.registry import cleanup_target, task_type

from .models import Ticket


@task_type("list_tickets", label="List tickets")
def list_tickets(task, context) -> dict:
    scope = get_scope()
    return {
        "scope": str(scope["event"]) if "event" in scope else None,
        "tickets": sorted(Ticket.objects.values_list("holder", flat=True)),
    }


cleanup_target(
    "tickets", label="Tickets", model="scoped.Ticket", datetime_field="sold_at", tenant_path="event"
)
