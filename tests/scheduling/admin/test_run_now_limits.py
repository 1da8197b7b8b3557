"""Abuse limits in the admin (issue 17): one queued run, sizes as field errors."""

from __future__ import annotations

import pytest
from django.urls import reverse

from scheduling import services
from scheduling.models import Execution, PeriodicScan
from scheduling.validators import OPTIONS_MAX_BYTES
from tests.factories import make_report, make_scan

from .test_actions import act, messages_of

pytestmark = pytest.mark.django_db


def test_run_now_button_points_at_the_run_already_queued(superuser_client, tenant_a):
    scan = make_scan(tenant=tenant_a)
    url = reverse("admin:scheduling_periodicscan_run_now", args=[scan.pk])
    first = superuser_client.post(url, follow=True)
    queued = Execution.objects.get(schedule=scan, trigger="manual")
    assert f"execution {queued.pk}" in messages_of(first)[0]
    assert messages_of(first)[0].startswith("Run queued as")
    again = superuser_client.post(url, follow=True)
    [message] = messages_of(again)
    assert message.startswith("A run is already queued: ")
    assert f"execution {queued.pk}" in message
    assert Execution.objects.filter(schedule=scan, trigger="manual").count() == 1


def test_run_now_action_queues_only_schedules_without_a_queued_run(superuser_client, tenant_a):
    waiting = make_scan(tenant=tenant_a, name="waiting")
    queued = services.run_now(schedule=waiting)
    fresh = make_report(tenant=tenant_a, name="fresh")
    response = act(superuser_client, "run_now", [waiting], model="periodicscan")
    url = reverse("admin:scheduling_execution_change", args=[queued.pk])
    assert messages_of(response) == [
        f'Already queued, not queued again: <a href="{url}">waiting (execution {queued.pk})</a>.'
    ]
    response = act(superuser_client, "run_now", [fresh], model="report")
    new = Execution.objects.get(schedule=fresh)
    url = reverse("admin:scheduling_execution_change", args=[new.pk])
    assert messages_of(response) == [
        "1 run queued; the scheduler starts it within seconds: "
        f'<a href="{url}">fresh (execution {new.pk})</a>.'
    ]
    assert Execution.objects.filter(trigger="manual").count() == 2


def test_add_form_shows_the_size_limits_as_field_errors(superuser_client, tenant_a):
    from .test_calendar_admin import ADD, CALENDAR, form_data

    data = form_data(
        tenant_a,
        **CALENDAR,
        description="d" * 2001,
        scan_type="test_sleep",
        **{"options-test_sleep-record": "x" * OPTIONS_MAX_BYTES},
    )
    response = superuser_client.post(reverse(ADD), data)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors["description"] == ["Ensure this value has at most 2000 characters (it has 2001)."]
    # The options as a whole, above the form: no one field of them is at fault.
    assert "Options may take at most 16384 bytes" in errors["__all__"][0]
    assert not PeriodicScan.objects.exists()
