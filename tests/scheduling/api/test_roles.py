"""The role matrix: viewers read, operators run/pause/resume, admins and owners manage."""

from __future__ import annotations

import pytest

from scheduling.models import Execution, Schedule
from tests.factories import make_membership, make_tenant
from tests.scheduling.api.conftest import ROLES, SCHEDULE_KINDS, valid_payload

pytestmark = pytest.mark.django_db

# action -> the lowest role allowed to do it
MINIMUM = {
    "list": "viewer",
    "retrieve": "viewer",
    "next-runs": "viewer",
    "history": "viewer",
    "run": "operator",
    "pause": "operator",
    "resume": "operator",
    "create": "admin",
    "update": "admin",
    "partial_update": "admin",
    "destroy": "admin",
}
SUCCESS = {"create": 201, "destroy": 204, "run": 202}


def _request(client, kind, action, world):
    schedule = world.schedule(kind)
    detail = f"/api/{kind}/{schedule.pk}/"
    if action == "list":
        return client.get(f"/api/{kind}/")
    if action == "retrieve":
        return client.get(detail)
    if action in ("next-runs", "history"):
        return client.get(f"{detail}{action}/")
    if action in ("run", "pause", "resume"):
        return client.post(f"{detail}{action}/", {}, format="json")
    if action == "create":
        return client.post(f"/api/{kind}/", valid_payload(kind, world.tenant), format="json")
    if action == "update":
        body = valid_payload(kind, world.tenant, name="updated")
        return client.put(detail, body, format="json")
    if action == "partial_update":
        return client.patch(detail, {"description": "changed"}, format="json")
    if action == "destroy":
        return client.delete(detail)
    raise AssertionError(action)


@pytest.mark.parametrize("action", list(MINIMUM))
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("kind", SCHEDULE_KINDS)
def test_role_matrix(world_a, kind, role, action):
    allowed = ROLES.index(role) >= ROLES.index(MINIMUM[action])
    schedules = Schedule.objects.count()
    executions = Execution.objects.count()
    response = _request(world_a.client(role), kind, action, world_a)
    if allowed:
        assert response.status_code == SUCCESS.get(action, 200), response.data
    else:
        assert response.status_code == 403, response.data
        assert Schedule.objects.count() == schedules
        assert Execution.objects.count() == executions
        schedule = Schedule.objects.get(pk=world_a.schedule(kind).pk)
        assert (schedule.enabled, schedule.description) == (True, "")


def test_a_role_is_per_tenant(world_a):
    """An admin of one tenant who is a viewer of another cannot create there."""
    other = make_tenant(name="Other", slug="other")
    make_membership(user=world_a.users["admin"], tenant=other, role="viewer")
    response = world_a.client("admin").post(
        "/api/scans/", valid_payload("scans", other), format="json"
    )
    assert response.status_code == 403
    assert not Schedule.objects.filter(tenant=other, name="new scans").exists()


@pytest.mark.parametrize("role", ROLES)
def test_executions_artifacts_and_tenants_are_read_only_for_every_role(world_a, role):
    client = world_a.client(role)
    assert client.get(f"/api/executions/{world_a.execution.pk}/").status_code == 200
    assert client.get(f"/api/report-artifacts/{world_a.artifact.pk}/").status_code == 200
    assert client.get(f"/api/tenants/{world_a.tenant.pk}/").status_code == 200
    for url in (
        f"/api/executions/{world_a.execution.pk}/",
        f"/api/report-artifacts/{world_a.artifact.pk}/",
        f"/api/tenants/{world_a.tenant.pk}/",
    ):
        assert client.delete(url).status_code == 405
        # Tenants change with the tenant model's permission (test_tenants_api.py).
        expected = 403 if "/tenants/" in url else 405
        assert client.patch(url, {}, format="json").status_code == expected
    assert client.post("/api/executions/", {}, format="json").status_code == 405


def test_the_tenant_list_tells_each_users_role(world_a):
    for role in ROLES:
        response = world_a.client(role).get("/api/tenants/")
        assert response.data["results"][0]["role"] == role
        count = Schedule.objects.filter(tenant=world_a.tenant).count()
        assert response.data["results"][0]["schedule_count"] == count
