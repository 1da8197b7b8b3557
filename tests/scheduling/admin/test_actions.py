"""Admin actions: what each does, what it refuses, and who may use it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.urls import reverse

from scheduling.models import AuditEntry, Execution, PeriodicScan, Schedule
from scheduling.triggers import PAUSED_INDEFINITELY
from tests.factories import make_report, make_scan

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:scheduling_periodicscan_changelist"
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def act(client, action, schedules, model="periodicscan", **extra):
    data = {"action": action, "_selected_action": [s.pk for s in schedules], **extra}
    return client.post(reverse(f"admin:scheduling_{model}_changelist"), data, follow=True)


def messages_of(response):
    # The messages shown on the page the action redirected to.
    return [str(m) for m in response.context["messages"]]


def test_run_now_queues_one_manual_execution_per_schedule_and_runs_nothing(
    superuser_client, tenant_a
):
    scans = [make_scan(tenant=tenant_a) for _ in range(3)]
    response = act(superuser_client, "run_now", scans)
    assert response.redirect_chain
    executions = Execution.objects.filter(trigger="manual").select_related("schedule")
    links = ", ".join(
        f'<a href="{reverse("admin:scheduling_execution_change", args=[e.pk])}">'
        f"{e.schedule.name} (execution {e.pk})</a>"
        for e in executions.order_by("schedule__name")
    )
    assert messages_of(response) == [
        f"3 runs queued; the scheduler starts them within seconds: {links}."
    ]
    assert sorted(e.schedule_id for e in executions) == sorted(s.pk for s in scans)
    assert {e.status for e in executions} == {"queued"}  # queued, never started in the request
    assert AuditEntry.objects.filter(action="run", source="admin").count() == 3


def test_pause_asks_until_when_before_doing_anything(superuser_client, tenant_a):
    scan = make_scan(tenant=tenant_a, name="nightly")
    response = act(superuser_client, "pause", [scan])
    assert response.status_code == 200
    page = response.content.decode()
    assert "Pause this periodic scan:" in page
    assert "nightly" in page and 'name="until_0"' in page
    scan.refresh_from_db()
    assert scan.enabled and scan.paused_until is None


@time_machine.travel(NOW, tick=False)
def test_pause_until_a_time_pauses_and_says_until_when(superuser_client, tenant_a):
    scans = [make_scan(tenant=tenant_a) for _ in range(3)]
    response = act(
        superuser_client,
        "pause",
        scans,
        apply="yes",
        until_0="2026-03-05",
        until_1="08:00:00",
    )
    assert response.redirect_chain
    # Read in the schedules' zone (tenant A's, Europe/Berlin), not in UTC.
    assert messages_of(response) == ["3 schedules paused until 2026-03-05 08:00:00 CET."]
    until = datetime(2026, 3, 5, 7, 0, tzinfo=UTC)
    for scan in scans:
        scan.refresh_from_db()
        assert scan.enabled and scan.paused_until == until
    entry = AuditEntry.objects.filter(action="pause", source="admin").first()
    assert entry.changes["paused_until"][1].startswith("2026-03-05T07:00:00")


@time_machine.travel(NOW, tick=False)
def test_pause_without_a_time_pauses_until_resumed(superuser_client, tenant_a):
    scan = make_scan(tenant=tenant_a)
    response = act(superuser_client, "pause", [scan], apply="yes", until_0="", until_1="")
    assert messages_of(response) == ["1 schedule paused until resumed."]
    scan.refresh_from_db()
    # Still enabled: a pause, which an operator's resume ends, not an admin's disable.
    assert scan.enabled and scan.paused_until == PAUSED_INDEFINITELY
    assert scan.is_paused() and scan.is_paused_indefinitely()
    page = superuser_client.get(reverse(CHANGELIST)).content.decode()
    assert "Paused until resumed" in page and "8000" not in page


@time_machine.travel(NOW, tick=False)
def test_pause_until_a_past_time_is_refused_on_the_confirmation_page(superuser_client, tenant_a):
    scan = make_scan(tenant=tenant_a)
    response = act(
        superuser_client, "pause", [scan], apply="yes", until_0="2026-03-01", until_1="08:00"
    )
    assert response.status_code == 200
    assert "Choose a time in the future." in response.content.decode()
    scan.refresh_from_db()
    assert scan.enabled and scan.paused_until is None


@time_machine.travel(NOW, tick=False)
def test_resume_clears_pauses_and_leaves_disabled_and_running_schedules(superuser_client, tenant_a):
    paused = make_scan(tenant=tenant_a, paused_until=NOW + timedelta(days=1))
    forever = make_scan(tenant=tenant_a, paused_until=PAUSED_INDEFINITELY)
    disabled = make_scan(tenant=tenant_a, name="switched off", enabled=False)
    running = make_scan(tenant=tenant_a, name="busy one")
    response = act(superuser_client, "resume", [paused, forever, disabled, running])
    assert messages_of(response) == [
        "Not paused, left as is: busy one.",
        "Disabled, left as is: resume only ends a pause; an admin must enable switched off.",
        "2 schedules resumed.",
    ]
    for scan in (paused, forever):
        scan.refresh_from_db()
        assert scan.enabled and scan.paused_until is None
    disabled.refresh_from_db()
    assert not disabled.enabled


@time_machine.travel(NOW, tick=False)
def test_operator_pauses_until_resumed_and_resumes_but_cannot_enable_what_an_admin_disabled(
    staff_client, tenant_a
):
    scan = make_scan(tenant=tenant_a)
    switched_off = make_scan(tenant=tenant_a, name="switched off", enabled=False)
    client = staff_client({tenant_a: "operator"})
    act(client, "pause", [scan], apply="yes", until_0="", until_1="")
    scan.refresh_from_db()
    assert scan.enabled and scan.is_paused_indefinitely()
    response = act(client, "resume", [scan, switched_off])
    assert "an admin must enable switched off" in " ".join(messages_of(response))
    scan.refresh_from_db()
    switched_off.refresh_from_db()
    assert scan.enabled and scan.paused_until is None
    assert not switched_off.enabled
    act(client, "enable", [switched_off])  # not offered to operators; posting it does nothing
    switched_off.refresh_from_db()
    assert not switched_off.enabled


def test_enable_and_disable_say_what_changed(superuser_client, tenant_a):
    on = make_scan(tenant=tenant_a, name="on")
    off = make_scan(tenant=tenant_a, name="off", enabled=False)
    response = act(superuser_client, "disable", [on, off])
    assert messages_of(response) == ["Already disabled: off.", "1 schedule disabled."]
    on.refresh_from_db()
    assert not on.enabled
    response = act(superuser_client, "enable", [on, off])
    assert messages_of(response) == ["2 schedules enabled."]
    assert set(Schedule.objects.values_list("enabled", flat=True)) == {True}
    assert AuditEntry.objects.filter(action="enable", source="admin").count() == 2


def test_duplicate_makes_disabled_copies_with_unique_names(superuser_client, tenant_a):
    upstream = make_scan(tenant=tenant_a, name="upstream")
    scan = make_scan(tenant=tenant_a, name="nightly", scan_type="test_echo", target="x")
    scan.depends_on.set([upstream])
    act(superuser_client, "duplicate", [scan])
    response = act(superuser_client, "duplicate", [scan])
    assert messages_of(response) == ["1 schedule duplicated as a disabled copy: nightly (copy 2)."]
    first = PeriodicScan.objects.get(name="nightly (copy)")
    second = PeriodicScan.objects.get(name="nightly (copy 2)")
    for copy in (first, second):
        assert not copy.enabled
        assert copy.scan_type == "test_echo" and copy.target == "x"
        assert copy.tenant_id == tenant_a.pk and copy.run_count == 0
        assert list(copy.depends_on.values_list("pk", flat=True)) == [upstream.pk]
    assert AuditEntry.objects.filter(action="create", source="admin").count() == 2


def test_duplicate_beyond_the_quota_is_refused_with_the_reason(superuser_client, tenant_a):
    tenant_a.max_schedules = 1
    tenant_a.save()
    scan = make_scan(tenant=tenant_a, name="only one", scan_type="test_echo", target="x")
    response = act(superuser_client, "duplicate", [scan])
    [message] = messages_of(response)
    assert message.startswith("only one was not duplicated: The tenant Tenant A has reached")
    assert PeriodicScan.objects.count() == 1


def test_actions_work_on_every_schedule_kind(superuser_client, tenant_a):
    report = make_report(tenant=tenant_a)
    response = act(superuser_client, "disable", [report], model="report")
    assert messages_of(response) == ["1 schedule disabled."]


def action_names(client):
    response = client.get(reverse(CHANGELIST))
    assert response.status_code == 200
    form = response.context["action_form"]
    return set() if form is None else {name for name, _label in form.fields["action"].choices}


def test_viewer_sees_no_actions_and_posting_one_changes_nothing(staff_client, tenant_a):
    scan = make_scan(tenant=tenant_a)
    client = staff_client({tenant_a: "viewer"})
    assert action_names(client) == set()
    for action in (
        "run_now",
        "pause",
        "resume",
        "enable",
        "disable",
        "duplicate",
        "delete_selected",
    ):
        act(client, action, [scan], apply="yes")
    assert not Execution.objects.exists()
    assert Schedule.objects.count() == 1
    scan.refresh_from_db()
    assert scan.enabled


def test_operator_may_run_pause_and_resume_but_not_manage(staff_client, tenant_a):
    scan = make_scan(tenant=tenant_a)
    client = staff_client({tenant_a: "operator"})
    assert action_names(client) == {"", "run_now", "pause", "resume"}
    act(client, "disable", [scan])
    act(client, "duplicate", [scan])
    scan.refresh_from_db()
    assert scan.enabled and Schedule.objects.count() == 1
    act(client, "run_now", [scan])
    assert Execution.objects.filter(schedule=scan, trigger="manual").count() == 1


def test_admin_role_has_every_action(staff_client, tenant_a):
    client = staff_client({tenant_a: "admin"})
    assert action_names(client) == {
        "",
        "run_now",
        "pause",
        "resume",
        "enable",
        "disable",
        "duplicate",
        "delete_selected",
    }


def test_actions_skip_schedules_of_tenants_where_the_role_is_too_low(
    staff_client, tenant_a, tenant_b
):
    mine = make_scan(tenant=tenant_a)
    watched = make_scan(tenant=tenant_b)
    client = staff_client({tenant_a: "admin", tenant_b: "viewer"})
    response = act(client, "disable", [mine, watched])
    assert messages_of(response) == [
        "1 schedule was left unchanged: your role in its tenant does not allow this.",
        "1 schedule disabled.",
    ]
    watched.refresh_from_db()
    assert watched.enabled
