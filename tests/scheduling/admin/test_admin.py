from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.urls import reverse

from scheduling.models import AuditEntry, Execution, PeriodicScan
from tests.factories import (
    make_cleanup,
    make_execution,
    make_report,
    make_scan,
    make_tenant,
    make_user,
)

pytestmark = pytest.mark.django_db

MODELS = [
    "scheduling_periodicscan",
    "scheduling_report",
    "scheduling_cleanupconfig",
    "scheduling_execution",
    "scheduling_reportartifact",
    "scheduling_schedulerlease",
    "tenants_tenant",
    "tenants_membership",
]


@pytest.fixture
def admin_client(client):
    user = make_user(is_staff=True, is_superuser=True)
    client.force_login(user)
    return client


@pytest.fixture
def objects():
    tenant = make_tenant(name="Acme")
    scan = make_scan(tenant=tenant, scan_type="test_echo", target="x")
    report = make_report(tenant=tenant)
    cleanup = make_cleanup(tenant=tenant)
    execution = make_execution(schedule=scan, error="boom")
    return {
        "tenant": tenant,
        "scan": scan,
        "report": report,
        "cleanup": cleanup,
        "execution": execution,
    }


@pytest.mark.parametrize("model", MODELS)
def test_every_changelist_opens(admin_client, objects, model):
    response = admin_client.get(reverse(f"admin:{model}_changelist"))
    assert response.status_code == 200


@pytest.mark.parametrize("key", ["scan", "report", "cleanup", "execution", "tenant"])
def test_change_pages_open(admin_client, objects, key):
    obj = objects[key]
    url = reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])
    response = admin_client.get(url)
    assert response.status_code == 200


def test_schedule_page_shows_trigger_sentence_and_next_runs(admin_client, objects):
    scan = objects["scan"]
    response = admin_client.get(reverse("admin:scheduling_periodicscan_change", args=[scan.pk]))
    assert "Every minute" in response.content.decode()
    assert "UTC" in response.content.decode()


def add_form(tenant, **overrides):
    data = {
        "tenant": tenant.pk,
        "name": "nightly",
        "enabled": "on",
        "scan_type": "test_echo",
        "target": "x",
        "options": "{}",
        "trigger_type": "cron",
        "cron_expression": "0 3 * * *",
        "timezone": "Europe/Berlin",
        "jitter_seconds": 0,
        "dst_gap_policy": "run_at_next_valid_time",
        "dst_fold_policy": "once",
        "max_retries": 0,
        "retry_backoff_seconds": 60,
        "overlap": "skip",
        "max_instances": 1,
        "coalesce": "on",
        "priority": 0,
        "executions-TOTAL_FORMS": 0,
        "executions-INITIAL_FORMS": 0,
    }
    data.update(overrides)
    return data


def test_add_schedule_through_the_admin(admin_client, objects):
    response = admin_client.post(
        reverse("admin:scheduling_periodicscan_add"), add_form(objects["tenant"])
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    scan = PeriodicScan.objects.get(name="nightly")
    assert scan.kind == "scan" and scan.cron_expression == "0 3 * * *"


def test_invalid_cron_is_a_form_error_and_saves_nothing(admin_client, objects):
    response = admin_client.post(
        reverse("admin:scheduling_periodicscan_add"),
        add_form(objects["tenant"], cron_expression="0 0 30 2 *"),
    )
    assert response.status_code == 200
    assert "can never fire" in response.content.decode()
    assert not PeriodicScan.objects.filter(name="nightly").exists()


def test_run_now_action_only_queues(admin_client, objects):
    scan = objects["scan"]
    response = admin_client.post(
        reverse("admin:scheduling_periodicscan_changelist"),
        {"action": "run_now", "_selected_action": [scan.pk]},
        follow=True,
    )
    assert "1 run queued" in response.content.decode()
    manual = Execution.objects.get(schedule=scan, trigger="manual")
    assert manual.status == "queued"


def test_executions_are_read_only(admin_client, objects):
    execution = objects["execution"]
    url = reverse("admin:scheduling_execution_change", args=[execution.pk])
    response = admin_client.post(url, {"status": "succeeded"})
    assert response.status_code == 403
    assert admin_client.get(reverse("admin:scheduling_execution_add")).status_code == 403


def test_duplicate_name_is_a_form_error_not_a_crash(admin_client, objects):
    url = reverse("admin:scheduling_periodicscan_add")
    assert admin_client.post(url, add_form(objects["tenant"])).status_code == 302
    response = admin_client.post(url, add_form(objects["tenant"]))
    assert response.status_code == 200
    assert "already exists for this tenant" in response.content.decode()
    assert PeriodicScan.objects.filter(name="nightly").count() == 1


def test_adding_beyond_the_tenants_quota_is_a_form_error(admin_client, objects):
    tenant = objects["tenant"]
    tenant.max_schedules = 3  # scan, report and cleanup already exist
    tenant.save()
    response = admin_client.post(reverse("admin:scheduling_periodicscan_add"), add_form(tenant))
    assert response.status_code == 200
    assert "has reached its limit of 3 schedules" in response.content.decode()
    assert not PeriodicScan.objects.filter(name="nightly").exists()


def test_dependency_cycles_are_a_form_error(admin_client, objects):
    scan, report = objects["scan"], objects["report"]
    report.depends_on.set([scan])
    url = reverse("admin:scheduling_periodicscan_change", args=[scan.pk])
    data = add_form(objects["tenant"], name=scan.name, depends_on=[report.pk])
    response = admin_client.post(url, data)
    assert response.status_code == 200
    assert "This creates a dependency cycle" in response.content.decode()
    assert not scan.depends_on.exists()


def test_admin_edits_are_audited_with_the_admin_as_source(admin_client, objects):
    url = reverse("admin:scheduling_periodicscan_add")
    assert admin_client.post(url, add_form(objects["tenant"])).status_code == 302
    scan = PeriodicScan.objects.get(name="nightly")
    change = reverse("admin:scheduling_periodicscan_change", args=[scan.pk])
    data = add_form(objects["tenant"], cron_expression="0 4 * * *")
    assert admin_client.post(change, data).status_code == 302
    entries = list(AuditEntry.objects.filter(schedule=scan).order_by("created_at", "pk"))
    assert [(e.action, e.source) for e in entries] == [("create", "admin"), ("change", "admin")]
    assert entries[1].changes == {"cron_expression": ["0 3 * * *", "0 4 * * *"]}


def test_next_run_column_shows_local_time_with_utc_on_hover(admin_client):
    tenant = make_tenant(name="Berlin", timezone="Europe/Berlin")
    scan = make_scan(tenant=tenant, scan_type="test_echo", target="x", timezone="Europe/Berlin")
    PeriodicScan.objects.filter(pk=scan.pk).update(
        next_run_at=datetime(2026, 7, 1, 1, 30, tzinfo=UTC)
    )
    page = admin_client.get(reverse("admin:scheduling_periodicscan_changelist")).content.decode()
    assert (
        '<time datetime="2026-07-01T01:30:00+00:00" title="2026-07-01 01:30:00 UTC">'
        "Wed 2026-07-01 03:30:00 CEST</time>"
    ) in page


def test_a_form_with_an_invalid_cron_does_not_describe_it(admin_client, objects):
    response = admin_client.post(
        reverse("admin:scheduling_periodicscan_add"),
        add_form(objects["tenant"], cron_expression="61 25 * * *"),
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert "cron_expression" in response.context["adminform"].form.errors
    assert "25:61" not in page and "At 25" not in page
