"""The demo project's own task type: what a host project registers for its own functions."""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.db.models import Count

from scheduling.models import Execution, Schedule
from scheduling.registry import task_type


class DigestOptions(forms.Form):
    period_hours = forms.IntegerField(
        min_value=1, max_value=24 * 31, initial=24, help_text="How far back to count."
    )


@task_type("demo_digest", label="Demo: tenant digest", options=DigestOptions)
def tenant_digest(task, context) -> dict:
    """Count the tenant's schedules and its executions of the last hours, by status."""
    since = context.now() - timedelta(hours=task.options["period_hours"])
    executions = Execution.objects.filter(tenant=context.tenant, scheduled_for__gte=since)
    by_status = dict(
        executions.order_by()
        .values_list("status")
        .annotate(n=Count("pk"))
        .values_list("status", "n")
    )
    return {
        "schedules": Schedule.objects.filter(tenant=context.tenant).count(),
        "executions": by_status,
        "since": since.isoformat(),
    }
