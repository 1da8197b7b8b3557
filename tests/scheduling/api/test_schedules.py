"""Schedules through the API: CRUD, actions, next runs, the audit trail."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.utils import timezone

from scheduling.models import AuditEntry, Execution, PeriodicScan, Schedule, Status
from tests.factories import make_scan
from tests.scheduling.api.conftest import SCHEDULE_KINDS, valid_payload

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("kind", SCHEDULE_KINDS)
def test_admin_creates_reads_updates_and_deletes_each_kind(world_a, kind):
    client = world_a.client("admin")
    response = client.post(f"/api/{kind}/", valid_payload(kind, world_a.tenant), format="json")
    assert response.status_code == 201, response.data
    created = response.data
    assert created["tenant"] == world_a.tenant.pk
    assert created["tenant_slug"] == world_a.tenant.slug
    assert created["timezone"] == "UTC"
    assert created["trigger_description"] == "Every 5 minutes"
    pk = created["id"]

    response = client.get(f"/api/{kind}/{pk}/")
    assert response.status_code == 200
    assert response.data["name"] == f"new {kind}"

    response = client.patch(f"/api/{kind}/{pk}/", {"interval_seconds": 600}, format="json")
    assert response.status_code == 200, response.data
    assert Schedule.objects.get(pk=pk).interval_seconds == 600

    body = {k: v for k, v in valid_payload(kind, world_a.tenant).items() if k != "tenant"}
    body["name"] = "renamed"
    response = client.put(f"/api/{kind}/{pk}/", body, format="json")
    assert response.status_code == 200, response.data
    assert Schedule.objects.get(pk=pk).name == "renamed"

    response = client.delete(f"/api/{kind}/{pk}/")
    assert response.status_code == 204
    assert not Schedule.objects.filter(pk=pk).exists()


def test_tenant_can_be_given_by_id_and_cannot_be_changed(world_a, world_b):
    client = world_a.client("admin")
    body = valid_payload("scans", world_a.tenant, tenant=world_a.tenant.pk)
    response = client.post("/api/scans/", body, format="json")
    assert response.status_code == 201, response.data

    # A user who is admin in both tenants still cannot move a schedule between them.
    from tests.factories import make_membership

    make_membership(user=world_a.users["admin"], tenant=world_b.tenant, role="admin")
    response = client.patch(
        f"/api/scans/{response.data['id']}/", {"tenant": world_b.tenant.slug}, format="json"
    )
    assert response.status_code == 400
    assert "cannot be changed" in str(response.data["tenant"])


def test_scheduler_state_fields_are_read_only(world_a):
    client = world_a.client("admin")
    scan = world_a.scan
    response = client.patch(f"/api/scans/{scan.pk}/", {"run_count": 99}, format="json")
    assert response.status_code == 400
    assert response.data["run_count"] == ["This field is read-only."]
    scan.refresh_from_db()
    assert scan.run_count == 0


def test_updates_never_overwrite_scheduler_state(world_a):
    scan = world_a.scan
    client = world_a.client("admin")
    response = client.get(f"/api/scans/{scan.pk}/")
    assert response.status_code == 200
    # The scheduler records a run between the client's read and its write.
    PeriodicScan.objects.filter(pk=scan.pk).update(run_count=7, last_status=Status.SUCCEEDED)
    response = client.patch(f"/api/scans/{scan.pk}/", {"description": "x"}, format="json")
    assert response.status_code == 200
    scan.refresh_from_db()
    assert (scan.run_count, scan.last_status, scan.description) == (7, "succeeded", "x")


def test_run_queues_a_manual_execution_and_answers_202(world_a):
    scan = world_a.scan
    response = world_a.client("operator").post(f"/api/scans/{scan.pk}/run/")
    assert response.status_code == 202, response.data
    execution = Execution.objects.get(pk=response.data["id"])
    assert execution.status == Status.QUEUED
    assert execution.trigger == "manual"
    assert execution.claimed_by == ""  # the web process never runs it
    assert response.data["triggered_by"] == world_a.users["operator"].username
    assert response.data["status"] == "queued"


def test_run_rejects_a_body_with_keys(world_a):
    response = world_a.client("operator").post(
        f"/api/scans/{world_a.scan.pk}/run/", {"now": True}, format="json"
    )
    assert response.status_code == 400
    assert "now" in response.data
    assert not Execution.objects.filter(schedule=world_a.scan).exists()


def test_pause_until_a_future_instant_and_resume(world_a):
    scan = world_a.scan
    client = world_a.client("operator")
    until = timezone.now() + timedelta(hours=2)
    response = client.post(f"/api/scans/{scan.pk}/pause/", {"until": until.isoformat()}, "json")
    assert response.status_code == 200, response.data
    scan.refresh_from_db()
    assert scan.paused_until == until
    assert scan.enabled

    response = client.post(f"/api/scans/{scan.pk}/resume/")
    assert response.status_code == 200
    scan.refresh_from_db()
    assert scan.paused_until is None
    assert response.data["paused_until"] is None


def test_pause_without_until_pauses_until_an_operator_resumes(world_a):
    scan = world_a.scan
    client = world_a.client("operator")
    response = client.post(f"/api/scans/{scan.pk}/pause/")
    assert response.status_code == 200
    assert response.data["enabled"] is True
    assert response.data["paused_until"] == "8000-01-01T00:00:00Z"
    scan.refresh_from_db()
    assert scan.enabled and scan.is_paused_indefinitely()
    runs = client.get(f"/api/scans/{scan.pk}/next-runs/")
    assert runs.status_code == 200 and runs.data["runs"] == []  # none until resumed
    assert client.post(f"/api/scans/{scan.pk}/resume/").status_code == 200
    scan.refresh_from_db()
    assert scan.enabled and scan.paused_until is None


def test_resume_of_a_disabled_schedule_is_a_conflict_and_only_an_admin_enables(world_a):
    scan = world_a.scan
    admin, operator = world_a.client("admin"), world_a.client("operator")
    assert admin.patch(f"/api/scans/{scan.pk}/", {"enabled": False}, "json").status_code == 200
    response = operator.post(f"/api/scans/{scan.pk}/resume/")
    assert response.status_code == 409
    assert "an admin must enable it" in response.data["detail"]
    assert operator.patch(f"/api/scans/{scan.pk}/", {"enabled": True}, "json").status_code == 403
    scan.refresh_from_db()
    assert not scan.enabled
    assert not AuditEntry.objects.filter(schedule=scan, action="resume").exists()
    assert admin.patch(f"/api/scans/{scan.pk}/", {"enabled": True}, "json").status_code == 200
    scan.refresh_from_db()
    assert scan.enabled


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"until": "2001-01-01T00:00:00Z"}, "until"),
        ({"until": "tomorrow"}, "until"),
        ({"until": 5}, "until"),
        ({"for": "1h"}, "for"),
    ],
)
def test_pause_rejects_past_or_malformed_until(world_a, body, field):
    scan = world_a.scan
    response = world_a.client("operator").post(f"/api/scans/{scan.pk}/pause/", body, "json")
    assert response.status_code == 400
    assert field in response.data
    scan.refresh_from_db()
    assert scan.enabled and scan.paused_until is None


@time_machine.travel(datetime(2026, 3, 28, 12, 0, tzinfo=UTC), tick=False)
def test_next_runs_follows_the_schedule_time_zone(world_a):
    scan = make_scan(
        tenant=world_a.tenant,
        scan_type="test_echo",
        trigger_type="cron",
        cron_expression="30 2 * * *",
        interval_seconds=None,
        timezone="Europe/Berlin",
    )
    response = world_a.client("viewer").get(f"/api/scans/{scan.pk}/next-runs/?count=1")
    assert response.status_code == 200, response.data
    # 29 March 2026: 02:30 does not exist in Berlin; it fires at 03:00 CEST (01:00 UTC).
    assert response.data["runs"] == ["2026-03-29T01:00:00Z"]
    assert response.data["timezone"] == "Europe/Berlin"
    assert response.data["description"].endswith("(Europe/Berlin)")


@time_machine.travel(datetime(2026, 3, 28, 12, 0, tzinfo=UTC), tick=False)
def test_next_runs_defaults_to_five(world_a):
    scan = make_scan(
        tenant=world_a.tenant,
        scan_type="test_echo",
        interval_seconds=3600,
        start_at=datetime(2026, 3, 28, 12, 30, tzinfo=UTC),
    )
    response = world_a.client("viewer").get(f"/api/scans/{scan.pk}/next-runs/")
    assert response.status_code == 200, response.data
    assert response.data["runs"] == [f"2026-03-28T{h}:30:00Z" for h in range(12, 17)]


def test_next_runs_count_is_capped(world_a):
    response = world_a.client("viewer").get(f"/api/scans/{world_a.scan.pk}/next-runs/?count=5000")
    assert response.status_code == 200
    assert len(response.data["runs"]) == 100


@pytest.mark.parametrize("count", ["0", "-3", "abc", "1.5", "99999999999999999999"])
def test_next_runs_rejects_a_bad_count(world_a, count):
    response = world_a.client("viewer").get(
        f"/api/scans/{world_a.scan.pk}/next-runs/", {"count": count}
    )
    assert response.status_code == 400
    assert "count" in response.data


def test_every_change_and_action_is_in_the_history_with_old_and_new_values(world_a):
    client = world_a.client("admin")
    response = client.post("/api/scans/", valid_payload("scans", world_a.tenant), format="json")
    pk = response.data["id"]
    client.patch(f"/api/scans/{pk}/", {"interval_seconds": 900, "description": "d"}, "json")
    client.post(f"/api/scans/{pk}/run/")
    client.post(f"/api/scans/{pk}/pause/")
    client.post(f"/api/scans/{pk}/resume/")

    response = world_a.client("viewer").get(f"/api/scans/{pk}/history/")
    assert response.status_code == 200
    entries = response.data["results"]
    assert [e["action"] for e in entries] == ["resume", "pause", "run", "change", "create"]
    assert all(e["user"] == world_a.users["admin"].username for e in entries)
    assert all(e["source"] == "api" for e in entries)
    change = entries[3]["changes"]
    assert change == {"interval_seconds": [300, 900], "description": ["", "d"]}
    assert entries[2]["changes"]["execution"][1] == Execution.objects.get(schedule_id=pk).pk
    assert entries[1]["changes"] == {"paused_until": [None, "8000-01-01T00:00:00Z"]}
    assert entries[4]["changes"]["name"] == [None, "new scans"]


def test_a_no_op_update_records_nothing(world_a):
    scan = world_a.scan
    world_a.client("admin").patch(f"/api/scans/{scan.pk}/", {"name": scan.name}, "json")
    assert not AuditEntry.objects.filter(schedule=scan).exists()


def test_delete_keeps_the_last_configuration_in_the_audit_trail(world_a):
    scan = world_a.scan
    assert world_a.client("admin").delete(f"/api/scans/{scan.pk}/").status_code == 204
    entry = AuditEntry.objects.get(action="delete")
    assert entry.schedule is None
    assert entry.schedule_name == scan.name
    assert entry.changes["target"] == ["x", None]


def test_list_filters_and_ordering(world_a):
    make_scan(tenant=world_a.tenant, name="zz disabled", scan_type="test_sleep", enabled=False)
    client = world_a.client("viewer")
    names = [s["name"] for s in client.get("/api/scans/?enabled=false").data["results"]]
    assert names == ["zz disabled"]
    names = [s["name"] for s in client.get("/api/scans/?scan_type=test_echo").data["results"]]
    assert names == ["A scan"]
    names = [s["name"] for s in client.get("/api/scans/?ordering=-name").data["results"]]
    assert names == ["zz disabled", "A scan"]
    response = client.get(f"/api/scans/?tenant={world_a.tenant.slug}")
    assert response.data["count"] == 2
    assert client.get("/api/scans/?trigger_type=weekly").status_code == 400


@pytest.mark.parametrize("action", ["run", "pause", "resume"])
@pytest.mark.parametrize("body", ["[]", '"now"', "0"])
def test_actions_reject_a_body_that_is_not_an_object(world_a, action, body):
    response = world_a.client("operator").post(
        f"/api/scans/{world_a.scan.pk}/{action}/", body, content_type="application/json"
    )
    assert response.status_code == 400
