"""Invalid input answers 400 with the offending field named, never 500, and saves nothing."""

from __future__ import annotations

import pytest

from scheduling.models import Schedule
from tests.factories import make_membership, make_scan, make_tenant
from tests.scheduling.api.conftest import valid_payload

pytestmark = pytest.mark.django_db


CASES = [
    # (kind, overrides, field, text in the message)
    ("scans", {"trigger_type": "cron", "cron_expression": "61 * * * *"}, "cron_expression", ""),
    ("scans", {"trigger_type": "cron", "cron_expression": "* * *"}, "cron_expression", "5 fields"),
    (
        "scans",
        {"trigger_type": "cron", "cron_expression": "0 0 30 2 *"},
        "cron_expression",
        "never",
    ),
    ("scans", {"trigger_type": "cron", "cron_expression": ""}, "cron_expression", ""),
    ("scans", {"timezone": "Mars/Olympus_Mons"}, "timezone", "IANA"),
    ("scans", {"timezone": "../../etc/passwd"}, "timezone", "IANA"),
    ("scans", {"scan_type": "nmap"}, "scan_type", "Unknown scan type 'nmap'"),
    ("scans", {"scan_type": "test_sleep", "options": {"seconds": "long"}}, "options", "seconds"),
    ("scans", {"scan_type": "test_sleep", "options": {"shell": "rm"}}, "options", "shell"),
    ("scans", {"scan_type": "test_sleep", "options": ["seconds"]}, "options", "JSON object"),
    ("scans", {"options": {"x": 1}}, "options", "takes no options"),
    ("scans", {"options": None}, "options", ""),
    ("reports", {"report_type": "nope"}, "report_type", "Unknown report type"),
    ("reports", {"format": "pdf"}, "format", ""),
    ("reports", {"recipients": "ops@example.com, not-an-address"}, "recipients", "not-an"),
    ("cleanups", {"cleanup_target": "users"}, "cleanup_target", "Unknown cleanup target"),
    ("cleanups", {"retain_days": 0}, "retain_days", ""),
    ("scans", {"unexpected": 1}, "unexpected", "Unknown field"),
    ("scans", {"next_run_at": "2030-01-01T00:00:00Z"}, "next_run_at", "read-only"),
    ("scans", {"interval_seconds": "often"}, "interval_seconds", "valid integer"),
    ("scans", {"interval_seconds": 0}, "interval_seconds", ""),
    ("scans", {"interval_seconds": 10**30}, "interval_seconds", ""),
    ("scans", {"interval_seconds": None}, "interval_seconds", ""),
    ("scans", {"trigger_type": "hourly"}, "trigger_type", ""),
    ("scans", {"trigger_type": "once"}, "run_at", ""),
    ("scans", {"run_at": "0001-01-01T00:00:00+14:00", "trigger_type": "once"}, "run_at", ""),
    ("scans", {"start_at": "2030-01-02T00:00:00Z", "end_at": "2030-01-01T00:00:00Z"}, "end_at", ""),
    ("scans", {"enabled": "maybe"}, "enabled", ""),
    ("scans", {"name": ""}, "name", ""),
    ("scans", {"name": "x" * 201}, "name", ""),
    ("scans", {"name": ["a"]}, "name", ""),
    ("scans", {"depends_on": "1"}, "depends_on", ""),
    ("scans", {"depends_on": [1.5]}, "depends_on", ""),
    ("scans", {"depends_on": [10**30]}, "depends_on", "No schedule"),
    ("scans", {"tenant": None}, "tenant", ""),
    ("scans", {"tenant": True}, "tenant", ""),
    ("scans", {"tenant": {"id": 1}}, "tenant", ""),
    ("scans", {"jitter_seconds": -1}, "jitter_seconds", ""),
    ("scans", {"priority": 10**6}, "priority", ""),
    ("scans", {"description": "nul\x00byte"}, "description", ""),
]


@pytest.mark.parametrize(("kind", "overrides", "field", "text"), CASES)
def test_invalid_create_is_a_400_naming_the_field(world_a, kind, overrides, field, text):
    before = Schedule.objects.count()
    body = valid_payload(kind, world_a.tenant, **overrides)
    response = world_a.client("admin").post(f"/api/{kind}/", body, format="json")
    assert response.status_code == 400, response.data
    assert field in response.data, response.data
    assert text in " ".join(map(str, response.data[field]))
    assert Schedule.objects.count() == before


@pytest.mark.parametrize("body", ["[]", '"scan"', "42", "{", "null"])
def test_a_body_that_is_not_an_object_is_a_400(world_a, body):
    response = world_a.client("admin").post("/api/scans/", body, content_type="application/json")
    assert response.status_code == 400


def test_form_encoded_bodies_are_refused(world_a):
    response = world_a.client("admin").post(
        "/api/scans/", valid_payload("scans", world_a.tenant), format="multipart"
    )
    assert response.status_code == 415


def test_duplicate_name_in_the_same_tenant_is_a_400_on_name(world_a):
    body = valid_payload("scans", world_a.tenant, name=world_a.scan.name)
    response = world_a.client("admin").post("/api/scans/", body, format="json")
    assert response.status_code == 400
    assert "already exists" in str(response.data["name"])


def test_the_same_name_in_another_kind_is_fine(world_a):
    body = valid_payload("reports", world_a.tenant, name=world_a.scan.name)
    response = world_a.client("admin").post("/api/reports/", body, format="json")
    assert response.status_code == 201, response.data


def test_a_dependency_cycle_is_a_400_naming_the_cycle(world_a):
    client = world_a.client("admin")
    a = make_scan(tenant=world_a.tenant, name="A", scan_type="test_echo")
    b = make_scan(tenant=world_a.tenant, name="B", scan_type="test_echo")
    c = make_scan(tenant=world_a.tenant, name="C", scan_type="test_echo")
    assert client.patch(f"/api/scans/{b.pk}/", {"depends_on": [a.pk]}, "json").status_code == 200
    assert client.patch(f"/api/scans/{c.pk}/", {"depends_on": [b.pk]}, "json").status_code == 200

    response = client.patch(f"/api/scans/{a.pk}/", {"depends_on": [c.pk]}, "json")
    assert response.status_code == 400
    assert "A -> C -> B -> A" in str(response.data["depends_on"])
    assert list(a.depends_on.all()) == []


def test_a_two_schedule_cycle_is_named_a_to_b_to_a(world_a):
    client = world_a.client("admin")
    a = make_scan(tenant=world_a.tenant, name="A", scan_type="test_echo")
    b = make_scan(tenant=world_a.tenant, name="B", scan_type="test_echo")
    b.depends_on.set([a])
    response = client.patch(f"/api/scans/{a.pk}/", {"depends_on": [b.pk]}, "json")
    assert response.status_code == 400
    assert "A -> B -> A" in str(response.data["depends_on"])


def test_a_schedule_cannot_depend_on_itself(world_a):
    scan = world_a.scan
    response = world_a.client("admin").patch(
        f"/api/scans/{scan.pk}/", {"depends_on": [scan.pk]}, "json"
    )
    assert response.status_code == 400
    assert "itself" in str(response.data["depends_on"])


def test_dependencies_must_share_the_tenant_even_when_the_user_sees_both(world_a):
    other = make_tenant(name="Other", slug="other")
    make_membership(user=world_a.users["admin"], tenant=other, role="admin")
    foreign = make_scan(tenant=other, name="foreign", scan_type="test_echo")
    body = valid_payload("scans", world_a.tenant, depends_on=[foreign.pk])
    response = world_a.client("admin").post("/api/scans/", body, format="json")
    assert response.status_code == 400
    assert "another tenant" in str(response.data["depends_on"])


def test_dependencies_across_kinds_of_the_same_tenant_are_fine(world_a):
    body = valid_payload("scans", world_a.tenant, depends_on=[world_a.report.pk])
    response = world_a.client("admin").post("/api/scans/", body, format="json")
    assert response.status_code == 201, response.data
    assert response.data["depends_on"] == [world_a.report.pk]


def test_creating_past_the_tenant_quota_is_a_400_that_says_so(world_a):
    world_a.tenant.max_schedules = 3  # the world's scan, report and cleanup
    world_a.tenant.save()
    body = valid_payload("scans", world_a.tenant)
    response = world_a.client("admin").post("/api/scans/", body, format="json")
    assert response.status_code == 400
    assert "limit of 3 schedules" in str(response.data["non_field_errors"])


def test_the_quota_default_comes_from_the_setting(world_a, settings):
    # The world has a scan, a report, a cleanup and a task.
    settings.SCHEDULING_MAX_SCHEDULES_PER_TENANT = 4
    response = world_a.client("admin").post(
        "/api/reports/", valid_payload("reports", world_a.tenant), format="json"
    )
    assert response.status_code == 400
    assert "limit" in str(response.data["non_field_errors"])
    settings.SCHEDULING_MAX_SCHEDULES_PER_TENANT = 5
    response = world_a.client("admin").post(
        "/api/reports/", valid_payload("reports", world_a.tenant), format="json"
    )
    assert response.status_code == 201


def test_updates_are_validated_like_creates(world_a):
    scan = world_a.scan
    response = world_a.client("admin").patch(
        f"/api/scans/{scan.pk}/", {"trigger_type": "cron", "cron_expression": "bad"}, "json"
    )
    assert response.status_code == 400
    assert "cron_expression" in response.data
    scan.refresh_from_db()
    assert scan.trigger_type == "interval"


@pytest.mark.parametrize("depth", [40, 900, 100_000])
def test_deeply_nested_json_is_a_400(world_a, depth):
    body = '{"options": ' + "[" * depth + "]" * depth + "}"
    response = world_a.client("admin").patch(
        f"/api/scans/{world_a.scan.pk}/", body, content_type="application/json"
    )
    assert response.status_code == 400
    assert "nested" in response.data["detail"]


def test_options_nested_a_few_levels_are_fine(world_a):
    body = valid_payload(
        "scans", world_a.tenant, scan_type="test_sleep", options={"record": "", "seconds": 0}
    )
    response = world_a.client("admin").post("/api/scans/", body, format="json")
    assert response.status_code == 201, response.data


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"name": "nul\x00name"}, "name"),
        ({"tenant": "\x00acme"}, "tenant"),
        ({"options": {"record": "\x00", "seconds": 0}}, "options"),
        ({"options": {"key\x00": 1}}, "options"),
        ({"bad\x00key": 1}, "non_field_errors"),
    ],
    ids=["field", "tenant", "nested value", "nested key", "body key"],
)
def test_null_characters_anywhere_in_the_body_are_a_400_naming_the_field(world_a, overrides, field):
    body = valid_payload("scans", world_a.tenant, scan_type="test_sleep", **overrides)
    before = Schedule.objects.count()
    response = world_a.client("admin").post("/api/scans/", body, format="json")
    assert response.status_code == 400
    assert response.data == {field: ["Null characters are not allowed."]}
    assert Schedule.objects.count() == before


@pytest.mark.parametrize("url", ["/api/scans/?name=a%00b", "/api/executions/?status%00=x"])
def test_null_characters_in_query_parameters_are_a_400(world_a, url):
    response = world_a.client("viewer").get(url)
    assert response.status_code == 400
    assert "Null characters are not allowed." in str(response.data)
