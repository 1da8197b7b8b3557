"""Admin of alert rules, blackout windows and the audit trail: validation, scoping, roles."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from scheduling import services
from scheduling.models import AlertRule, AuditEntry, BlackoutWindow
from tests.factories import make_alert_rule, make_scan

pytestmark = pytest.mark.django_db


def blackout_form(tenant, **overrides):
    data = {
        "tenant": tenant.pk,
        "schedule": "",
        "name": "Weekend maintenance",
        "kind": "weekly",
        "timezone": "Europe/Berlin",
        "start_weekday": 5,
        "start_time": "22:00",
        "end_weekday": 6,
        "end_time": "06:00",
        "starts_at_0": "",
        "starts_at_1": "",
        "ends_at_0": "",
        "ends_at_1": "",
    }
    data.update(overrides)
    return data


def alert_form(tenant, **overrides):
    data = {
        "tenant": tenant.pk,
        "schedule": "",
        "name": "Three failures",
        "enabled": "on",
        "consecutive_failures": 3,
        "not_succeeded_multiple": "",
        "email_admins": "on",
        "webhook_url": "",
        "cooldown_seconds": 3600,
    }
    data.update(overrides)
    return data


def make_window(tenant, **overrides):
    fields = {
        "name": "Weekend",
        "kind": "weekly",
        "start_weekday": 5,
        "start_time": dt.time(22),
        "end_weekday": 6,
        "end_time": dt.time(6),
        "timezone": "Europe/Berlin",
    }
    fields.update(overrides)
    return BlackoutWindow.objects.create(tenant=tenant, **fields)


def test_weekly_blackout_window_is_created_and_listed_in_words(superuser_client, tenant_a):
    response = superuser_client.post(
        reverse("admin:scheduling_blackoutwindow_add"), blackout_form(tenant_a)
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    window = BlackoutWindow.objects.get()
    assert window.contains(dt.datetime(2026, 11, 28, 23, 0, tzinfo=dt.UTC))  # Saturday 24:00 Berlin
    assert not window.contains(dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC))
    page = superuser_client.get(reverse("admin:scheduling_blackoutwindow_changelist"))
    assert "Sat 22:00 to Sun 06:00" in page.content.decode()


def test_blackout_window_with_missing_fields_is_a_form_error(superuser_client, tenant_a):
    response = superuser_client.post(
        reverse("admin:scheduling_blackoutwindow_add"),
        blackout_form(tenant_a, kind="dates", start_weekday="", end_weekday=""),
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "A date window needs a start." in errors["starts_at"]
    assert "A date window needs an end." in errors["ends_at"]
    assert not BlackoutWindow.objects.exists()


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"consecutive_failures": ""}, "consecutive_failures", "Set at least one condition"),
        ({"email_admins": ""}, "webhook_url", "otherwise nobody is told"),
        ({"webhook_url": "not a url"}, "webhook_url", "Enter a valid URL."),
        ({"consecutive_failures": 0}, "consecutive_failures", "greater than or equal to 1"),
    ],
)
def test_alert_rule_validation_errors_are_shown_on_the_form(
    superuser_client, tenant_a, overrides, field, message
):
    response = superuser_client.post(
        reverse("admin:scheduling_alertrule_add"), alert_form(tenant_a, **overrides)
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert any(message in error for error in errors[field]), errors
    assert not AlertRule.objects.exists()


def test_alert_rule_for_one_schedule_is_created(superuser_client, tenant_a):
    scan = make_scan(tenant=tenant_a, name="Homepage")
    response = superuser_client.post(
        reverse("admin:scheduling_alertrule_add"), alert_form(tenant_a, schedule=scan.pk)
    )
    assert response.status_code == 302
    assert AlertRule.objects.get().schedule_id == scan.pk
    assert (
        "Homepage"
        in superuser_client.get(reverse("admin:scheduling_alertrule_changelist")).content.decode()
    )


@pytest.fixture
def rules(tenant_a, tenant_b):
    objects = {}
    for tenant, label in ((tenant_a, "Alpha"), (tenant_b, "Bravo-secret")):
        scan = make_scan(tenant=tenant, name=f"{label} scan")
        objects[tenant.slug] = {
            "scan": scan,
            "rule": make_alert_rule(tenant=tenant, name=f"{label} rule", schedule=scan),
            "window": make_window(tenant, name=f"{label} window"),
        }
        services.pause_schedule(schedule=scan, source="admin")
    return objects


@pytest.mark.parametrize("model", ["alertrule", "blackoutwindow", "auditentry"])
def test_staff_of_tenant_a_sees_nothing_of_tenant_b(staff_client, tenant_a, rules, model):
    client = staff_client({tenant_a: "admin"})
    page = client.get(reverse(f"admin:scheduling_{model}_changelist")).content.decode()
    assert "Alpha" in page
    assert "Bravo-secret" not in page
    theirs = {
        "alertrule": rules["tenant-b"]["rule"].pk,
        "blackoutwindow": rules["tenant-b"]["window"].pk,
        "auditentry": AuditEntry.objects.get(schedule_name="Bravo-secret scan").pk,
    }[model]
    response = client.get(reverse(f"admin:scheduling_{model}_change", args=[theirs]))
    assert response.status_code == 404


def test_another_tenants_schedule_cannot_be_chosen_for_a_rule(staff_client, tenant_a, rules):
    client = staff_client({tenant_a: "admin"})
    response = client.post(
        reverse("admin:scheduling_alertrule_add"),
        alert_form(tenant_a, schedule=rules["tenant-b"]["scan"].pk),
    )
    assert response.status_code == 200
    assert "schedule" in response.context["adminform"].form.errors
    assert AlertRule.objects.filter(tenant=tenant_a).count() == 1
    results = client.get(
        reverse("admin:autocomplete"),
        {
            "app_label": "scheduling",
            "model_name": "alertrule",
            "field_name": "schedule",
            "term": "",
        },
    )
    names = [item["text"] for item in json.loads(results.content)["results"]]
    assert names == ["Alpha scan"]


def test_superuser_cannot_pair_a_schedule_with_another_tenant(superuser_client, tenant_a, rules):
    response = superuser_client.post(
        reverse("admin:scheduling_blackoutwindow_add"),
        blackout_form(tenant_a, schedule=rules["tenant-b"]["scan"].pk),
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["schedule"] == [
        "The schedule belongs to another tenant."
    ]


def test_viewers_read_rules_but_cannot_add_or_change_them(staff_client, tenant_a, rules):
    client = staff_client({tenant_a: "viewer"})
    rule = rules["tenant-a"]["rule"]
    assert client.get(reverse("admin:scheduling_alertrule_changelist")).status_code == 200
    assert client.get(reverse("admin:scheduling_alertrule_add")).status_code == 403
    change_url = reverse("admin:scheduling_alertrule_change", args=[rule.pk])
    response = client.post(change_url, alert_form(tenant_a, name="renamed"))
    assert response.status_code == 403
    rule.refresh_from_db()
    assert rule.name == "Alpha rule"


def test_the_audit_trail_is_read_only_even_for_superusers(superuser_client, rules):
    entry = AuditEntry.objects.first()
    assert superuser_client.get(reverse("admin:scheduling_auditentry_add")).status_code == 403
    delete_url = reverse("admin:scheduling_auditentry_delete", args=[entry.pk])
    assert superuser_client.post(delete_url, {"post": "yes"}).status_code == 403
    assert AuditEntry.objects.filter(pk=entry.pk).exists()
    page = superuser_client.get(reverse("admin:scheduling_auditentry_change", args=[entry.pk]))
    assert page.status_code == 200
    assert "<strong>Paused until</strong>: " in page.content.decode()


@pytest.mark.parametrize("model", ["alertrule", "blackoutwindow", "auditentry"])
def test_changelist_queries_do_not_grow_with_rows(superuser_client, tenant_a, model):
    def count_queries():
        with CaptureQueriesContext(connection) as queries:
            response = superuser_client.get(reverse(f"admin:scheduling_{model}_changelist"))
        assert response.status_code == 200
        return len(queries)

    def add_rows(n):
        for i in range(n):
            scan = make_scan(tenant=tenant_a, name=f"scan {model} {i} {AuditEntry.objects.count()}")
            make_alert_rule(tenant=tenant_a, schedule=scan)
            make_window(tenant_a, schedule=scan)
            services.pause_schedule(schedule=scan, source="admin")

    add_rows(5)
    few = count_queries()
    add_rows(40)
    assert count_queries() == few
