"""The buttons of the schedule and execution pages, and what those pages show right after a
pause, a resume, a disable or an enable (issue 18, items 5 and 6)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
import time_machine
from django.urls import reverse
from rest_framework.test import APIClient

from scheduling import services
from scheduling.models import AuditEntry, Execution, PeriodicScan, Schedule
from scheduling.triggers import PAUSED_INDEFINITELY
from tests.factories import make_execution, make_scan, make_user

from .test_actions import act
from .test_admin import add_form

pytestmark = pytest.mark.django_db

# A Monday, half past nine in UTC (the zone of the schedules below).
NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
STALE = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # the next run the scheduler stored
UNTIL = datetime(2026, 3, 2, 12, 15, tzinfo=UTC)
AFTER_PAUSE = datetime(2026, 3, 2, 13, 0, tzinfo=UTC)  # the first hour after UNTIL


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def scan(tenant_a):
    """An hourly scan whose next run the scheduler has stored (10:00)."""
    scan = make_scan(
        tenant=tenant_a,
        name="hourly",
        scan_type="test_echo",
        target="x",
        trigger_type="cron",
        cron_expression="0 * * * *",
        timezone="UTC",
    )
    Schedule.objects.filter(pk=scan.pk).update(next_run_at=STALE)
    scan.refresh_from_db()
    return scan


def url(schedule, name):
    return reverse(f"admin:scheduling_periodicscan_{name}", args=[schedule.pk])


def page_of(client, obj):
    opts = obj._meta
    response = client.get(
        reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
    )
    assert response.status_code == 200
    return response.content.decode()


def buttons(page):
    """{name: URL} of the buttons next to "History", each a POST form with a CSRF token."""
    found = re.findall(
        r'<form method="post" action="([^"]+)" class="scheduling-object-action">'
        r'<input type="hidden" name="csrfmiddlewaretoken" value="[^"]+">'
        r'<button type="submit" name="(\w+)"',
        page,
    )
    return {name: action for action, name in found}


def messages_of(response):
    return [str(m) for m in response.context["messages"]]


def iso(moment):
    return f'datetime="{moment.isoformat()}"'


def next_run_field(page):
    """What the "Next run" field of a schedule's page shows."""
    match = re.search(
        r'fieldBox field-next_run">\s*<label>Next run:</label>\s*<div class="readonly">(.*?)</div>',
        page,
        re.S,
    )
    assert match
    return match.group(1)


# -- which buttons a schedule's page offers ----------------------------------------------------


@pytest.mark.parametrize(
    ("role", "state", "expected"),
    [
        ("viewer", "running", set()),
        ("operator", "running", {"run_now", "pause"}),
        ("operator", "paused", {"run_now", "resume"}),
        ("operator", "paused until resumed", {"run_now", "resume"}),
        ("operator", "disabled", {"run_now"}),
        ("admin", "running", {"run_now", "pause", "disable"}),
        ("admin", "paused", {"run_now", "resume", "disable"}),
        ("admin", "disabled", {"run_now", "enable"}),
        ("owner", "disabled", {"run_now", "enable"}),
    ],
)
def test_schedule_page_offers_the_buttons_its_state_and_the_role_allow(
    staff_client, tenant_a, scan, role, state, expected
):
    fields = {
        "running": {},
        "paused": {"paused_until": UNTIL},
        "paused until resumed": {"paused_until": PAUSED_INDEFINITELY},
        "disabled": {"enabled": False},
    }[state]
    PeriodicScan.objects.filter(pk=scan.pk).update(**fields)
    shown = buttons(page_of(staff_client({tenant_a: role}), scan))
    assert set(shown) == expected
    assert all(action == url(scan, name) for name, action in shown.items())


def test_a_disabled_schedule_that_is_also_paused_offers_resume_once_enabled(
    staff_client, tenant_a, scan
):
    PeriodicScan.objects.filter(pk=scan.pk).update(enabled=False, paused_until=UNTIL)
    client = staff_client({tenant_a: "admin"})
    assert set(buttons(page_of(client, scan))) == {"run_now", "enable"}
    client.post(url(scan, "enable"))
    assert set(buttons(page_of(client, scan))) == {"run_now", "resume", "disable"}


# -- pause ---------------------------------------------------------------------------------


def test_pause_button_asks_until_when_on_a_page_of_its_own(staff_client, tenant_a, scan):
    client = staff_client({tenant_a: "operator"})
    response = client.post(url(scan, "pause"))
    assert response.status_code == 200
    page = response.content.decode()
    assert "Pause this periodic scan:" in page and 'name="until_0"' in page
    change = reverse("admin:scheduling_periodicscan_change", args=[scan.pk])
    assert f'<a href="{change}">hourly</a>' in page  # the breadcrumbs lead back to it
    assert 'name="action"' not in page  # it posts to its own URL, not the changelist's
    scan.refresh_from_db()
    assert scan.paused_until is None and not AuditEntry.objects.exists()


def test_pause_until_a_time_shows_the_first_run_after_the_pause_at_once(
    staff_client, tenant_a, scan
):
    client = staff_client({tenant_a: "operator"})
    response = client.post(
        url(scan, "pause"),
        {"apply": "yes", "until_0": "2026-03-02", "until_1": "12:15:00"},
        follow=True,
    )
    assert response.redirect_chain == [
        (reverse("admin:scheduling_periodicscan_change", args=[scan.pk]), 302)
    ]
    assert messages_of(response) == [
        "hourly paused until 2026-03-02 12:15:00 UTC; its next run: 2026-03-02 13:00:00 UTC."
    ]
    scan.refresh_from_db()
    assert (scan.paused_until, scan.next_run_at) == (UNTIL, AFTER_PAUSE)
    # Before the scheduler has synced: the page shows no run that the pause cancelled.
    page = response.content.decode()
    assert iso(AFTER_PAUSE) in next_run_field(page) and iso(STALE) not in page
    assert "Paused until 2026-03-02 12:15:00 UTC: these are the first runs after the pause." in page
    assert set(buttons(page)) == {"run_now", "resume"}
    entry = AuditEntry.objects.get(action="pause")
    assert (entry.source, entry.user) == ("admin", client.user)
    # The changelist and the API say the same.
    changelist = client.get(reverse("admin:scheduling_periodicscan_changelist")).content.decode()
    assert iso(AFTER_PAUSE) in changelist and iso(STALE) not in changelist
    api = APIClient()
    api.force_authenticate(client.user)
    assert api.get(f"/api/scans/{scan.pk}/").data["next_run_at"] == "2026-03-02T13:00:00Z"


def test_pause_without_a_time_shows_paused_instead_of_a_next_run(staff_client, tenant_a, scan):
    client = staff_client({tenant_a: "operator"})
    response = client.post(
        url(scan, "pause"), {"apply": "yes", "until_0": "", "until_1": ""}, follow=True
    )
    assert messages_of(response) == ["hourly paused until resumed."]
    scan.refresh_from_db()
    assert scan.is_paused_indefinitely() and scan.next_run_at is None and scan.enabled
    page = response.content.decode()
    assert iso(STALE) not in page and "8000" not in page
    assert "Paused until resumed: no run happens until someone resumes it." in page
    assert next_run_field(page) == (
        '<span class="scheduling-state-paused">Paused until resumed</span>'
    )


def test_pause_until_a_past_time_is_refused_on_its_page(staff_client, tenant_a, scan):
    client = staff_client({tenant_a: "operator"})
    response = client.post(
        url(scan, "pause"), {"apply": "yes", "until_0": "2026-03-01", "until_1": "08:00"}
    )
    assert response.status_code == 200
    assert "Choose a time in the future." in response.content.decode()
    scan.refresh_from_db()
    assert scan.paused_until is None and scan.next_run_at == STALE


def test_pause_of_a_disabled_schedule_is_refused_with_the_reason(superuser_client, scan):
    PeriodicScan.objects.filter(pk=scan.pk).update(enabled=False)
    response = superuser_client.post(url(scan, "pause"), {"apply": "yes"}, follow=True)
    assert messages_of(response) == [
        "hourly is disabled, so it does not run anyway; an admin must enable it first."
    ]
    scan.refresh_from_db()
    assert scan.paused_until is None and not AuditEntry.objects.exists()


# -- resume ----------------------------------------------------------------------------------


def test_resume_ends_the_pause_and_shows_the_next_run(staff_client, tenant_a, scan):
    services.pause_schedule(schedule=scan)
    client = staff_client({tenant_a: "operator"})
    response = client.post(url(scan, "resume"), follow=True)
    assert messages_of(response) == ["hourly resumed; its next run: 2026-03-02 10:00:00 UTC."]
    scan.refresh_from_db()
    assert scan.paused_until is None and scan.next_run_at == STALE
    assert iso(STALE) in response.content.decode()
    assert AuditEntry.objects.filter(action="resume", source="admin").count() == 1


def test_resume_does_not_enable_a_disabled_schedule(staff_client, tenant_a, scan):
    PeriodicScan.objects.filter(pk=scan.pk).update(enabled=False, paused_until=UNTIL)
    client = staff_client({tenant_a: "admin"})
    response = client.post(url(scan, "resume"), follow=True)
    assert messages_of(response) == [
        "hourly is disabled; resume only ends a pause: an admin must enable it."
    ]
    scan.refresh_from_db()
    assert not scan.enabled and scan.paused_until == UNTIL
    assert not AuditEntry.objects.exists()


def test_resume_of_a_schedule_that_is_not_paused_says_so(superuser_client, scan):
    response = superuser_client.post(url(scan, "resume"), follow=True)
    assert messages_of(response) == ["hourly is not paused."]
    assert not AuditEntry.objects.exists()


# -- enable and disable -------------------------------------------------------------------------


def test_disable_shows_disabled_instead_of_a_next_run_everywhere(staff_client, tenant_a, scan):
    client = staff_client({tenant_a: "admin"})
    response = client.post(url(scan, "disable"), follow=True)
    assert messages_of(response) == ["hourly disabled: it does not run until it is enabled."]
    scan.refresh_from_db()
    assert not scan.enabled and scan.next_run_at is None
    page = response.content.decode()
    assert next_run_field(page) == '<span class="scheduling-state-off">Disabled</span>'
    # The preview still lists the trigger's runs (for whoever edits it), saying they do not
    # happen.
    assert "Disabled: none of these runs happens until it is enabled." in page
    changelist = client.get(reverse("admin:scheduling_periodicscan_changelist")).content.decode()
    assert iso(STALE) not in changelist
    assert (
        '<td class="field-next_run"><span class="scheduling-state-off">Disabled</span></td>'
        in changelist
    )
    entry = AuditEntry.objects.get(action="disable")
    assert (entry.source, entry.changes) == ("admin", {"enabled": [True, False]})


def test_enable_shows_the_next_run_at_once(staff_client, tenant_a, scan):
    services.set_schedule_enabled(schedule=scan, enabled=False)
    client = staff_client({tenant_a: "owner"})
    response = client.post(url(scan, "enable"), follow=True)
    assert messages_of(response) == ["hourly enabled; its next run: 2026-03-02 10:00:00 UTC."]
    scan.refresh_from_db()
    assert scan.enabled and scan.next_run_at == STALE
    assert iso(STALE) in response.content.decode()


def test_enable_of_an_enabled_schedule_says_so(superuser_client, scan):
    response = superuser_client.post(url(scan, "enable"), follow=True)
    assert messages_of(response) == ["hourly is already enabled."]
    assert not AuditEntry.objects.exists()


def test_unticking_enabled_in_the_form_also_drops_the_next_run(superuser_client, tenant_a, scan):
    data = add_form(tenant_a, name="hourly", cron_expression="0 * * * *", timezone="UTC")
    del data["enabled"]
    response = superuser_client.post(
        reverse("admin:scheduling_periodicscan_change", args=[scan.pk]), data
    )
    assert response.status_code == 302
    scan.refresh_from_db()
    assert not scan.enabled and scan.next_run_at is None


def test_disabling_through_the_api_drops_the_next_run(tenant_a, scan):
    api = APIClient()
    api.force_authenticate(make_user(is_staff=True, is_superuser=True))
    response = api.patch(f"/api/scans/{scan.pk}/", {"enabled": False}, format="json")
    assert response.status_code == 200
    assert response.data["next_run_at"] is None


# -- who may press them ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["pause", "resume", "enable", "disable"])
def test_buttons_answer_get_with_405_and_another_tenants_schedule_with_404(
    staff_client, tenant_a, tenant_b, scan, name
):
    client = staff_client({tenant_a: "owner"})
    assert client.get(url(scan, name)).status_code == 405
    theirs = make_scan(tenant=tenant_b, scan_type="test_echo", target="x")
    assert client.post(url(theirs, name), {"apply": "yes"}).status_code == 404
    theirs.refresh_from_db()
    assert theirs.enabled and theirs.paused_until is None


@pytest.mark.parametrize(
    ("role", "name", "status"),
    [
        ("viewer", "pause", 403),
        ("viewer", "resume", 403),
        ("operator", "disable", 403),
        ("operator", "enable", 403),
        ("admin", "disable", 302),
    ],
)
def test_buttons_follow_the_role(staff_client, tenant_a, scan, role, name, status):
    if name in ("resume", "enable"):
        PeriodicScan.objects.filter(pk=scan.pk).update(
            paused_until=UNTIL if name == "resume" else None, enabled=name != "enable"
        )
    client = staff_client({tenant_a: role})
    assert client.post(url(scan, name), {"apply": "yes"}).status_code == status
    assert AuditEntry.objects.exists() == (status == 302)


# -- run now ---------------------------------------------------------------------------------


def test_run_now_action_links_the_first_executions_and_counts_the_rest(superuser_client, tenant_a):
    scans = [
        make_scan(tenant=tenant_a, name=f"scan {n:02}", scan_type="test_echo", target="x")
        for n in range(12)
    ]
    response = act(superuser_client, "run_now", scans)
    [message] = messages_of(response)
    executions = Execution.objects.select_related("schedule").order_by("schedule__name")
    first = executions[0]
    link = reverse("admin:scheduling_execution_change", args=[first.pk])
    assert message.startswith(
        "12 runs queued; the scheduler starts them within seconds: "
        f'<a href="{link}">scan 00 (execution {first.pk})</a>, '
    )
    assert message.count("<a href=") == 10 and message.endswith(" and 2 more.")


def test_run_now_action_escapes_schedule_names(superuser_client, tenant_a):
    scan = make_scan(tenant=tenant_a, name="<b>bold</b>", scan_type="test_echo", target="x")
    response = act(superuser_client, "run_now", [scan])
    [message] = messages_of(response)
    assert "&lt;b&gt;bold&lt;/b&gt; (execution" in message and "<b>" not in message


# -- the execution page --------------------------------------------------------------------------


def test_a_missed_execution_can_be_retried_from_its_page(staff_client, tenant_a, scan):
    missed = make_execution(schedule=scan, status="missed", started_at=None, duration_ms=None)
    client = staff_client({tenant_a: "operator"})
    shown = buttons(page_of(client, missed))
    assert shown == {"retry": reverse("admin:scheduling_execution_retry", args=[missed.pk])}
    response = client.post(shown["retry"], follow=True)
    retry = Execution.objects.get(schedule=scan, attempt=2)
    assert (retry.status, retry.trigger, retry.scheduled_for) == (
        "queued",
        "retry",
        missed.scheduled_for,
    )
    assert response.redirect_chain[-1][0] == reverse(
        "admin:scheduling_execution_change", args=[retry.pk]
    )
    assert set(buttons(response.content.decode())) == {"cancel"}


# -- the dashboard ------------------------------------------------------------------------------


def test_a_disabled_schedule_is_not_listed_as_failing(superuser_client, tenant_a):
    failing = make_scan(tenant=tenant_a, name="still failing", last_status="failed")
    switched_off = make_scan(
        tenant=tenant_a, name="switched off", last_status="failed", consecutive_failures=4
    )
    services.set_schedule_enabled(schedule=switched_off, enabled=False)
    response = superuser_client.get(reverse("admin:scheduling_dashboard"))
    page = response.content.decode()
    section = page[page.index('id="failing-schedules"') :]
    section = section[: section.index("</table>")]
    assert failing.name in section and switched_off.name not in section
    assert response.context["dashboard"].counts["failing"] == 1
    assert list(Schedule.objects.failing()) == [Schedule.objects.get(pk=failing.pk)]
