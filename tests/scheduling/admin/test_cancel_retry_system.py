"""The admin's cancel, retry and run-now buttons and actions, and system schedules (no tenant)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from scheduling import runner, services
from scheduling.models import (
    AuditEntry,
    Execution,
    PeriodicScan,
    Schedule,
    ScheduledTask,
)
from scheduling.registry import task_type, task_types
from tests.factories import (
    make_cleanup,
    make_execution,
    make_report,
    make_scan,
    make_user,
)
from tests.scheduling.admin.test_admin import add_form

pytestmark = pytest.mark.django_db

TASK_TYPE = "admin_test_task"
SYSTEM_NAME = "System-only housekeeping"


@pytest.fixture(autouse=True)
def admin_task_type():
    """A task type of this module's own, so the task kind does not depend on other tests'."""
    added = TASK_TYPE not in task_types
    if added:
        task_type(TASK_TYPE, label="Admin test task")(lambda task, context: {"ok": True})
    yield
    if added:
        task_types.unregister(TASK_TYPE)


def make_task(*, tenant, **overrides):
    fields = {"name": f"task {Schedule.objects.count()}", "interval_seconds": 60}
    fields.update(overrides)
    return ScheduledTask.objects.create(
        tenant=tenant, task_type=TASK_TYPE, trigger_type="interval", **fields
    )


def change_url(obj):
    return reverse(f"admin:scheduling_{obj._meta.model_name}_change", args=[obj.pk])


def button_url(execution, name):
    return reverse(f"admin:scheduling_execution_{name}", args=[execution.pk])


def run_now_url(schedule):
    return reverse(f"admin:scheduling_{schedule._meta.model_name}_run_now", args=[schedule.pk])


def messages_of(response):
    return [str(m) for m in response.context["messages"]]


def page_of(client, obj):
    response = client.get(change_url(obj))
    assert response.status_code == 200
    return response.content.decode()


def has_button(page, url):
    return f'action="{url}"' in page


@pytest.fixture
def scan_a(tenant_a):
    return make_scan(tenant=tenant_a, scan_type="test_echo", target="x", name="Alpha scan")


@pytest.fixture
def scan_b(tenant_b):
    return make_scan(tenant=tenant_b, scan_type="test_echo", target="x", name="Bravo scan")


# -- the execution page's buttons --------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "buttons"),
    [
        ("queued", {"cancel"}),
        ("running", {"cancel"}),
        ("failed", {"retry"}),
        ("timed_out", {"retry"}),
        ("interrupted", {"retry"}),
        ("missed", {"retry"}),
        ("succeeded", set()),
        ("cancelled", set()),
        ("skipped", set()),
    ],
)
def test_execution_page_offers_the_buttons_its_state_allows(
    staff_client, tenant_a, scan_a, status, buttons
):
    execution = make_execution(schedule=scan_a, status=status)
    page = page_of(staff_client({tenant_a: "operator"}), execution)
    shown = {name for name in ("cancel", "retry") if has_button(page, button_url(execution, name))}
    assert shown == buttons
    if buttons:
        assert "csrfmiddlewaretoken" in page


def test_viewer_sees_no_buttons(staff_client, tenant_a, scan_a):
    queued = make_execution(schedule=scan_a, status="queued")
    failed = make_execution(schedule=scan_a, status="failed")
    client = staff_client({tenant_a: "viewer"})
    assert not has_button(page_of(client, queued), button_url(queued, "cancel"))
    assert not has_button(page_of(client, failed), button_url(failed, "retry"))
    assert not has_button(page_of(client, scan_a), run_now_url(scan_a))


def test_no_retry_button_once_a_later_attempt_exists_or_the_schedule_is_gone(
    superuser_client, tenant_a, scan_a
):
    failed = make_execution(schedule=scan_a, status="failed")
    make_execution(schedule=scan_a, status="queued", scheduled_for=failed.scheduled_for, attempt=2)
    assert not has_button(page_of(superuser_client, failed), button_url(failed, "retry"))
    orphan = make_execution(schedule=scan_a, status="failed")
    Execution.objects.filter(pk=orphan.pk).update(schedule=None)
    assert not has_button(page_of(superuser_client, orphan), button_url(orphan, "retry"))


def test_cancel_button_cancels_audits_and_redirects(staff_client, tenant_a, scan_a):
    execution = make_execution(schedule=scan_a, status="queued")
    client = staff_client({tenant_a: "operator"})
    response = client.post(button_url(execution, "cancel"), follow=True)
    assert response.redirect_chain == [(change_url(execution), 302)]
    assert messages_of(response) == [f"Execution {execution.pk} cancelled."]
    execution.refresh_from_db()
    assert execution.status == "cancelled"
    assert execution.error == f"Cancelled by {client.user.username}."
    entry = AuditEntry.objects.get(action="cancel")
    assert (entry.source, entry.schedule_id, entry.user_id) == ("admin", scan_a.pk, client.user.pk)
    assert entry.changes == {"execution": [execution.pk, execution.pk]}
    # a finished execution has no cancel button any more
    assert not has_button(response.content.decode(), button_url(execution, "cancel"))


def test_retry_button_queues_the_next_attempt_and_goes_to_it(staff_client, tenant_a, scan_a):
    failed = make_execution(schedule=scan_a, status="failed", options={"message": "again"})
    client = staff_client({tenant_a: "operator"})
    response = client.post(button_url(failed, "retry"), follow=True)
    queued = Execution.objects.get(schedule=scan_a, attempt=2)
    assert response.redirect_chain == [(change_url(queued), 302)]
    assert (queued.status, queued.trigger, queued.scheduled_for) == (
        "queued",
        "retry",
        failed.scheduled_for,
    )
    assert queued.options == {"message": "again"} and queued.triggered_by == client.user
    [message] = messages_of(response)
    link = f'<a href="{change_url(queued)}">execution {queued.pk} (attempt 2)</a>'
    assert message == f"Retry queued as {link}; the scheduler starts it within seconds."
    assert link in response.content.decode()  # a link, not escaped text
    entry = AuditEntry.objects.get(action="retry")
    assert (entry.source, entry.schedule_id) == ("admin", scan_a.pk)
    assert entry.changes == {"execution": [failed.pk, queued.pk]}


def test_retrying_a_manual_run_keeps_it_manual(superuser_client, tenant_a):
    """The retry of a failed manual run is not retried by itself and leaves a once schedule be.

    Queued with trigger "retry", it was: its failure queued automatic retries (a manual run
    gets none), and its end disabled a once schedule whose own run was still to come.
    """
    once = make_scan(
        tenant=tenant_a,
        scan_type="test_echo",
        target="x",
        trigger_type="once",
        interval_seconds=None,
        run_at=timezone.now() + timedelta(days=7),
        max_retries=3,
    )
    manual = services.run_now(schedule=once)
    manual.mark_failed("boom")
    runner.finish(manual)
    superuser_client.post(button_url(manual, "retry"))
    retry = runner.load(Execution.objects.get(attempt=2).pk)
    assert retry.trigger == "manual"
    retry.mark_failed("boom again")
    runner.finish(retry)
    assert Execution.objects.filter(schedule=once).count() == 2  # no automatic attempt 3
    superuser_client.post(button_url(retry, "retry"))
    third = runner.load(Execution.objects.get(attempt=3).pk)
    third.mark_succeeded({"ok": True})
    runner.finish(third)
    once.refresh_from_db()
    assert once.enabled


def test_buttons_need_the_csrf_token(tenant_a, scan_a):
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user(is_staff=True, is_superuser=True))
    queued = make_execution(schedule=scan_a, status="queued")
    assert client.post(button_url(queued, "cancel")).status_code == 403
    assert client.post(run_now_url(scan_a)).status_code == 403
    queued.refresh_from_db()
    assert queued.status == "queued" and Execution.objects.count() == 1


@pytest.mark.parametrize(("status", "button"), [("queued", "cancel"), ("failed", "retry")])
def test_viewer_post_is_refused_and_changes_nothing(staff_client, tenant_a, scan_a, status, button):
    execution = make_execution(schedule=scan_a, status=status)
    response = staff_client({tenant_a: "viewer"}).post(button_url(execution, button))
    assert response.status_code == 403
    execution.refresh_from_db()
    assert execution.status == status
    assert Execution.objects.count() == 1
    assert not AuditEntry.objects.exists()


@pytest.mark.parametrize(("status", "button"), [("queued", "cancel"), ("failed", "retry")])
def test_another_tenants_execution_is_not_found(staff_client, tenant_a, scan_b, status, button):
    theirs = make_execution(schedule=scan_b, status=status)
    client = staff_client({tenant_a: "owner"})
    assert client.post(button_url(theirs, button)).status_code == 404
    assert client.get(change_url(theirs)).status_code == 404
    theirs.refresh_from_db()
    assert theirs.status == status
    assert Execution.objects.count() == 1 and not AuditEntry.objects.exists()


@pytest.mark.parametrize("button", ["cancel", "retry"])
def test_unknown_ids_are_not_found(superuser_client, button):
    for object_id in ("999999", "not-a-number", "99999999999999999999999"):
        url = reverse(f"admin:scheduling_execution_{button}", args=[object_id])
        assert superuser_client.post(url).status_code == 404


@pytest.mark.parametrize(("status", "button"), [("queued", "cancel"), ("failed", "retry")])
def test_a_get_changes_nothing(superuser_client, scan_a, status, button):
    execution = make_execution(schedule=scan_a, status=status)
    response = superuser_client.get(button_url(execution, button))
    assert response.status_code == 405
    execution.refresh_from_db()
    assert execution.status == status and Execution.objects.count() == 1


def test_cancelling_a_finished_execution_is_an_error_message(superuser_client, scan_a):
    execution = make_execution(schedule=scan_a, status="succeeded", result={"ok": True})
    response = superuser_client.post(button_url(execution, "cancel"), follow=True)
    assert response.redirect_chain == [(change_url(execution), 302)]
    assert messages_of(response) == [
        f"Execution {execution.pk} has already finished (succeeded); only a queued or running "
        "execution can be cancelled."
    ]
    assert [m.level_tag for m in response.context["messages"]] == ["error"]
    execution.refresh_from_db()
    assert execution.status == "succeeded" and execution.result == {"ok": True}
    assert not AuditEntry.objects.exists()


def test_retrying_twice_is_an_error_message(superuser_client, scan_a):
    failed = make_execution(schedule=scan_a, status="failed")
    superuser_client.post(button_url(failed, "retry"), follow=True)
    response = superuser_client.post(button_url(failed, "retry"), follow=True)
    retry = Execution.objects.get(attempt=2)
    assert response.redirect_chain == [(change_url(failed), 302)]
    assert messages_of(response) == [
        f"Attempt 2 of this occurrence exists already (execution {retry.pk}, queued); "
        "retry that one instead."
    ]
    assert Execution.objects.count() == 2
    assert AuditEntry.objects.filter(action="retry").count() == 1


def test_cancel_audits_nothing_when_the_schedule_is_gone(superuser_client, scan_a):
    execution = make_execution(schedule=scan_a, status="running")
    scan_a.delete()
    response = superuser_client.post(button_url(execution, "cancel"))
    assert response.status_code == 302
    execution.refresh_from_db()
    assert execution.status == "cancelled"
    assert not AuditEntry.objects.filter(action="cancel").exists()


def test_execution_page_shows_a_runs_options_only_when_set(superuser_client, scan_a):
    manual = make_execution(schedule=scan_a, trigger="manual", options={"depth": 3})
    plain = make_execution(schedule=scan_a)
    page = page_of(superuser_client, manual)
    assert "field-options_block" in page
    assert "&quot;depth&quot;: 3" in page
    assert "field-options_block" not in page_of(superuser_client, plain)


# -- the changelist's actions ------------------------------------------------------------------


def act(client, action, executions):
    data = {"action": action, "_selected_action": [e.pk for e in executions]}
    return client.post(reverse("admin:scheduling_execution_changelist"), data, follow=True)


def test_cancel_action_cancels_active_ones_and_says_why_not_the_others(
    staff_client, tenant_a, scan_a
):
    queued = make_execution(schedule=scan_a, status="queued")
    running = make_execution(schedule=scan_a, status="running")
    done = make_execution(schedule=scan_a, status="succeeded")
    response = act(
        staff_client({tenant_a: "operator"}), "cancel_executions", [queued, running, done]
    )
    assert response.redirect_chain
    assert messages_of(response) == [
        f"1 execution was left unchanged: Execution {done.pk} has already finished (succeeded); "
        "only a queued or running execution can be cancelled.",
        "2 executions cancelled.",
    ]
    statuses = dict(Execution.objects.values_list("pk", "status"))
    assert statuses == {queued.pk: "cancelled", running.pk: "cancelled", done.pk: "succeeded"}
    assert AuditEntry.objects.filter(action="cancel", source="admin").count() == 2


def test_retry_action_retries_failed_ones_and_says_why_not_the_others(superuser_client, scan_a):
    failed = make_execution(schedule=scan_a, status="failed")
    timed_out = make_execution(schedule=scan_a, status="timed_out")
    succeeded = make_execution(schedule=scan_a, status="succeeded")
    response = act(superuser_client, "retry_executions", [failed, timed_out, succeeded])
    assert messages_of(response) == [
        f"1 execution was left unchanged: Execution {succeeded.pk} is succeeded; only a "
        "failed, timed-out, interrupted or missed execution can be retried.",
        "2 retries queued; the scheduler starts them within seconds.",
    ]
    retries = Execution.objects.filter(trigger="retry", status="queued", attempt=2)
    assert {e.scheduled_for for e in retries} == {failed.scheduled_for, timed_out.scheduled_for}
    assert AuditEntry.objects.filter(action="retry", source="admin").count() == 2


def test_actions_refuse_executions_of_tenants_where_the_user_only_views(
    staff_client, tenant_a, tenant_b, scan_a, scan_b
):
    mine = make_execution(schedule=scan_a, status="queued")
    viewed = make_execution(schedule=scan_b, status="queued")
    client = staff_client({tenant_a: "operator", tenant_b: "viewer"})
    response = act(client, "cancel_executions", [mine, viewed])
    assert messages_of(response) == [
        "1 execution was left unchanged: your role in its tenant does not allow this.",
        "1 execution cancelled.",
    ]
    viewed.refresh_from_db()
    assert viewed.status == "queued"


def test_a_viewer_is_not_offered_the_actions(staff_client, tenant_a, scan_a):
    queued = make_execution(schedule=scan_a, status="queued")
    client = staff_client({tenant_a: "viewer"})
    response = client.get(reverse("admin:scheduling_execution_changelist"))
    assert "cancel_executions" not in response.content.decode()
    act(client, "cancel_executions", [queued])
    queued.refresh_from_db()
    assert queued.status == "queued"


def test_actions_ignore_another_tenants_ids(staff_client, tenant_a, scan_b):
    theirs = make_execution(schedule=scan_b, status="queued")
    act(staff_client({tenant_a: "owner"}), "cancel_executions", [theirs])
    theirs.refresh_from_db()
    assert theirs.status == "queued"


# -- the schedule page's "Run now" button ------------------------------------------------------


KINDS = {
    "scan": lambda tenant: make_scan(tenant=tenant, scan_type="test_echo", target="x"),
    "report": lambda tenant: make_report(tenant=tenant),
    "cleanup": lambda tenant: make_cleanup(tenant=tenant),
    "task": lambda tenant: make_task(tenant=tenant),
}


@pytest.mark.parametrize("kind", KINDS)
def test_run_now_button_queues_a_manual_run_and_links_to_it(staff_client, tenant_a, kind):
    schedule = KINDS[kind](tenant_a)
    client = staff_client({tenant_a: "operator"})
    assert has_button(page_of(client, schedule), run_now_url(schedule))
    response = client.post(run_now_url(schedule), follow=True)
    assert response.redirect_chain == [(change_url(schedule), 302)]
    execution = Execution.objects.get(schedule=schedule)
    assert (execution.trigger, execution.status, execution.triggered_by) == (
        "manual",
        "queued",
        client.user,
    )
    link = f'<a href="{change_url(execution)}">execution {execution.pk}</a>'
    assert messages_of(response) == [
        f"Run queued as {link}; the scheduler starts it within seconds."
    ]
    assert link in response.content.decode()
    entry = AuditEntry.objects.get(action="run")
    assert (entry.source, entry.schedule_id) == ("admin", schedule.pk)


def test_run_now_is_refused_to_a_viewer_on_get_and_for_another_tenant(
    staff_client, tenant_a, scan_a, scan_b
):
    viewer = staff_client({tenant_a: "viewer"})
    assert viewer.post(run_now_url(scan_a)).status_code == 403
    operator = staff_client({tenant_a: "operator"})
    assert operator.get(run_now_url(scan_a)).status_code == 405
    assert operator.post(run_now_url(scan_b)).status_code == 404
    assert not Execution.objects.exists() and not AuditEntry.objects.exists()


def test_run_now_url_of_another_kind_is_not_found(superuser_client, scan_a):
    # The scan's id on the reports' URL: no report has it.
    url = reverse("admin:scheduling_report_run_now", args=[scan_a.pk])
    assert superuser_client.post(url).status_code == 404
    assert not Execution.objects.exists()


# -- system schedules --------------------------------------------------------------------------


@pytest.fixture
def system_scan(db):
    scan = make_scan(tenant=None, scan_type="test_echo", target="x", name=SYSTEM_NAME)
    Schedule.objects.filter(pk=scan.pk).update(last_status="failed", consecutive_failures=2)
    return scan


@pytest.fixture
def system_execution(system_scan):
    return make_execution(schedule=system_scan, status="queued", error=f"{SYSTEM_NAME} error")


SCHEDULE_CHANGELISTS = [
    "scheduling_periodicscan",
    "scheduling_execution",
    "scheduling_auditentry",
]


def tenant_filter_choices(response):
    [spec] = [f for f in response.context["cl"].filter_specs if f.title == "tenant"]
    return [(value, str(label)) for value, label in spec.lookup_choices]


def system_form(tenant, **overrides):
    """The add form of ``test_admin`` with the tenant left empty."""
    return {**add_form(tenant, **overrides), "tenant": ""}


def test_superuser_creates_a_system_schedule(superuser_client, tenant_a):
    response = superuser_client.post(
        reverse("admin:scheduling_periodicscan_add"), system_form(tenant_a)
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    scan = PeriodicScan.objects.get(name="nightly")
    assert scan.tenant is None and scan.timezone == "Europe/Berlin"


def test_superuser_sees_system_rows_marked_and_can_filter_them(
    superuser_client, scan_a, system_scan, system_execution
):
    for model in ("scheduling_periodicscan", "scheduling_execution"):
        url = reverse(f"admin:{model}_changelist")
        response = superuser_client.get(url)
        assert response.context["cl"].result_count == (2 if model.endswith("scan") else 1)
        page = response.content.decode()
        assert SYSTEM_NAME in page and "(system)" in page
        assert ("system", "System (no tenant)") in tenant_filter_choices(response)
        response = superuser_client.get(url, {"tenant": "system"})
        assert response.context["cl"].result_count == 1
        assert "Alpha scan" not in response.content.decode()
    page = page_of(superuser_client, system_execution)
    assert "(system)" in page
    assert has_button(page, button_url(system_execution, "cancel"))
    assert has_button(page_of(superuser_client, system_scan), run_now_url(system_scan))


def test_superuser_operates_system_rows(superuser_client, system_scan, system_execution):
    superuser_client.post(button_url(system_execution, "cancel"))
    system_execution.refresh_from_db()
    assert system_execution.status == "cancelled"
    superuser_client.post(run_now_url(system_scan))
    assert Execution.objects.filter(schedule=system_scan, trigger="manual").exists()
    assert set(AuditEntry.objects.values_list("action", "tenant_id")) == {
        ("cancel", None),
        ("run", None),
    }


@pytest.fixture
def a_admin(staff_client, tenant_a, scan_a, system_scan, system_execution):
    AuditEntry.objects.create(
        tenant=None,
        schedule=system_scan,
        schedule_name=SYSTEM_NAME,
        schedule_kind="scan",
        action="change",
    )
    return staff_client({tenant_a: "admin"})


@pytest.mark.parametrize("model", SCHEDULE_CHANGELISTS)
def test_tenant_admin_never_sees_system_rows_in_lists_counts_or_filters(a_admin, model):
    url = reverse(f"admin:{model}_changelist")
    response = a_admin.get(url)
    assert SYSTEM_NAME not in response.content.decode()
    assert response.context["cl"].result_count == (1 if model.endswith("scan") else 0)
    assert [value for value, _label in tenant_filter_choices(response)] != []
    assert "system" not in [value for value, _label in tenant_filter_choices(response)]
    response = a_admin.get(url, {"tenant": "system"})
    assert response.context["cl"].result_count == 0
    assert SYSTEM_NAME not in response.content.decode()


def test_tenant_admin_gets_404_on_system_rows(a_admin, system_scan, system_execution):
    for url in (
        change_url(system_scan),
        reverse("admin:scheduling_periodicscan_history", args=[system_scan.pk]),
        reverse("admin:scheduling_periodicscan_delete", args=[system_scan.pk]),
        reverse("admin:scheduling_schedule_change", args=[system_scan.pk]),
        change_url(system_execution),
    ):
        response = a_admin.get(url)
        assert response.status_code == 404, url
        assert SYSTEM_NAME not in response.content.decode()
    assert a_admin.post(run_now_url(system_scan)).status_code == 404
    assert a_admin.post(button_url(system_execution, "cancel")).status_code == 404
    system_execution.refresh_from_db()
    assert system_execution.status == "queued"
    assert Execution.objects.filter(schedule=system_scan).count() == 1


def test_tenant_admins_actions_leave_system_rows_alone(a_admin, system_scan, system_execution):
    a_admin.post(
        reverse("admin:scheduling_periodicscan_changelist"),
        {"action": "disable", "_selected_action": [system_scan.pk]},
    )
    act(a_admin, "cancel_executions", [system_execution])
    system_scan.refresh_from_db()
    system_execution.refresh_from_db()
    assert system_scan.enabled and system_execution.status == "queued"


def log_in_superuser(client):
    client.force_login(make_user(is_staff=True, is_superuser=True))
    return client


def test_dashboard_numbers_leave_system_rows_out_for_a_tenant_admin(a_admin, scan_a, system_scan):
    Schedule.objects.filter(pk=system_scan.pk).update(next_run_at=system_scan.created_at)
    make_execution(schedule=system_scan, status="failed")
    url = reverse("admin:scheduling_dashboard")
    response = a_admin.get(url)
    dashboard = response.context["dashboard"]
    assert dashboard.counts["total"] == 1 and dashboard.counts["failing"] == 0
    assert dashboard.totals.total == 0
    assert response.context["health"]["job_count"] == 1
    assert SYSTEM_NAME not in response.content.decode()

    response = log_in_superuser(a_admin).get(url)
    dashboard = response.context["dashboard"]
    assert dashboard.counts["total"] == 2 and dashboard.counts["failing"] == 1
    assert dashboard.totals.failed == 1
    assert "<td>(system)</td>" in response.content.decode()


def autocomplete(client, model, field):
    response = client.get(
        reverse("admin:autocomplete"),
        {"app_label": "scheduling", "model_name": model, "field_name": field, "term": ""},
    )
    assert response.status_code == 200, response.content[:500]
    return [item["text"] for item in json.loads(response.content)["results"]]


def test_dependency_choices_leave_system_schedules_out_for_a_tenant_admin(a_admin, system_scan):
    assert autocomplete(a_admin, "periodicscan", "depends_on") == ["Alpha scan"]
    form = a_admin.get(reverse("admin:scheduling_periodicscan_add")).context["adminform"].form
    assert system_scan not in form.fields["depends_on"].queryset
    assert SYSTEM_NAME in autocomplete(log_in_superuser(a_admin), "periodicscan", "depends_on")


def test_tenant_admins_add_form_without_a_tenant_is_a_form_error(a_admin, tenant_a):
    url = reverse("admin:scheduling_periodicscan_add")
    form = a_admin.get(url).context["adminform"].form
    assert form.fields["tenant"].required
    response = a_admin.post(url, system_form(tenant_a, name="sneaky system scan"))
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["tenant"] == ["This field is required."]
    assert not PeriodicScan.objects.filter(name="sneaky system scan").exists()


def test_tenant_admin_cannot_move_a_schedule_to_the_system(a_admin, tenant_a, scan_a):
    # The tenant of a saved schedule is read-only (issue 17, item 5): a posted empty tenant is
    # not a field of the form, so the rest saves and the schedule stays in its tenant.
    assert "tenant" not in a_admin.get(change_url(scan_a)).context["adminform"].form.fields
    data = system_form(tenant_a, name=scan_a.name)
    response = a_admin.post(change_url(scan_a), data)
    assert response.status_code == 302
    scan_a.refresh_from_db()
    assert scan_a.tenant == tenant_a


def test_a_system_schedule_cannot_depend_on_a_tenants_schedule(superuser_client, tenant_a, scan_a):
    response = superuser_client.post(
        reverse("admin:scheduling_periodicscan_add"),
        system_form(tenant_a, depends_on=[scan_a.pk]),
    )
    assert response.status_code == 200
    assert "belongs to another tenant" in response.content.decode()
    assert not PeriodicScan.objects.filter(name="nightly").exists()


def test_system_permission_holder_sees_and_runs_system_schedules(
    staff_client, tenant_a, scan_a, system_scan
):
    client = staff_client({tenant_a: "operator"})
    client.user.user_permissions.add(
        Permission.objects.get(
            codename="manage_system_schedules", content_type__app_label="scheduling"
        )
    )
    response = client.get(reverse("admin:scheduling_periodicscan_changelist"))
    assert response.context["cl"].result_count == 2
    assert ("system", "System (no tenant)") in tenant_filter_choices(response)
    response = client.post(
        reverse("admin:scheduling_periodicscan_changelist"),
        {"action": "run_now", "_selected_action": [system_scan.pk, scan_a.pk]},
        follow=True,
    )
    [message] = messages_of(response)
    assert message.startswith("2 runs queued; the scheduler starts them within seconds: ")
    assert Execution.objects.filter(schedule=system_scan, trigger="manual").count() == 1


class EveryTenantResolver:
    """A host's rule: its staff hold every role in every tenant, yet see no system rows."""

    def tenant_ids(self, user, *, min_role=None):
        return None if user.is_authenticated and user.is_staff else set()


@pytest.mark.parametrize("model", ["scheduling_periodicscan", "scheduling_execution"])
def test_every_tenant_is_not_every_row(staff_client, scan_a, system_scan, system_execution, model):
    """A resolver answering "all tenants" (None) still leaves system rows to those who see them."""
    client = staff_client({})
    resolver = f"{__name__}.EveryTenantResolver"
    with override_settings(SCHEDULING_TENANT_RESOLVER=resolver):
        response = client.get(reverse(f"admin:{model}_changelist"))
        assert SYSTEM_NAME not in response.content.decode()
        assert response.context["cl"].result_count == (1 if model.endswith("scan") else 0)
        dashboard = client.get(reverse("admin:scheduling_dashboard")).context["dashboard"]
        assert dashboard.counts["total"] == 1 and dashboard.counts["failing"] == 0
        assert autocomplete(client, "periodicscan", "depends_on") == ["Alpha scan"]
        add = client.get(reverse("admin:scheduling_periodicscan_add")).context["adminform"].form
        assert list(add.fields["depends_on"].queryset) == [scan_a.schedule_ptr]
        assert client.post(run_now_url(system_scan)).status_code == 404


# -- query counts ------------------------------------------------------------------------------


def count_queries(client, url):
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200
    return len(ctx.captured_queries)


@pytest.mark.parametrize("as_superuser", [True, False], ids=["superuser", "operator"])
def test_pages_with_buttons_do_not_grow_with_history(
    staff_client, superuser_client, tenant_a, as_superuser, django_assert_max_num_queries
):
    client = superuser_client if as_superuser else staff_client({tenant_a: "operator"})
    scan = make_scan(tenant=tenant_a, scan_type="test_echo", target="x")
    system = make_scan(tenant=None, scan_type="test_echo", target="x", name=SYSTEM_NAME)
    failed = make_execution(schedule=scan, status="failed")
    queued = make_execution(schedule=scan, status="queued")
    make_execution(schedule=system, status="failed")
    urls = [
        change_url(failed),
        change_url(queued),
        change_url(scan),
        reverse("admin:scheduling_execution_changelist"),
        reverse("admin:scheduling_periodicscan_changelist"),
    ]
    few = {url: count_queries(client, url) for url in urls}
    for i in range(60):
        make_execution(schedule=scan, status="failed" if i % 2 else "queued")
        make_execution(schedule=system, status="failed")
        make_scan(tenant=tenant_a if i % 2 else None, scan_type="test_echo", target="x")
    for url in urls:
        with django_assert_max_num_queries(few[url]):
            response = client.get(url)
        assert response.status_code == 200


def test_cancel_action_queries_grow_per_execution_only(
    superuser_client, tenant_a, scan_a, django_assert_max_num_queries
):
    """A fixed cost per cancelled execution (its writes and audit entry), nothing per row shown."""

    def queued(n):
        return [make_execution(schedule=scan_a, status="queued") for _ in range(n)]

    def cancel_queries(executions):
        with CaptureQueriesContext(connection) as ctx:
            act(superuser_client, "cancel_executions", executions)
        return len(ctx.captured_queries)

    cancel_queries(queued(1))  # the first cancel ever creates its /metrics counter rows
    one, three = cancel_queries(queued(1)), cancel_queries(queued(3))
    per_execution = (three - one) // 2
    six = queued(6)
    with django_assert_max_num_queries(one + 5 * per_execution):
        act(superuser_client, "cancel_executions", six)
    assert not Execution.objects.filter(status="queued").exists()
