"""Host names and tracebacks through the API are for the tenant's admins (issue 17, item 9)."""

from __future__ import annotations

import pytest

from tests.factories import make_execution, make_membership, make_user
from tests.scheduling.api.conftest import client_for

pytestmark = pytest.mark.django_db

TRACEBACK = 'Traceback (most recent call last):\n  File "/srv/app/secret_module.py", line 3'
WORKER = "scan-host-7:4242"


@pytest.fixture
def failed(world_a):
    return make_execution(
        schedule=world_a.scan,
        status="failed",
        error="connection refused",
        traceback=TRACEBACK,
        worker=WORKER,
    )


def list_and_detail(client, execution):
    listing = client.get("/api/executions/", {"status": "failed"})
    detail = client.get(f"/api/executions/{execution.pk}/")
    assert (listing.status_code, detail.status_code) == (200, 200)
    [row] = [r for r in listing.data["results"] if r["id"] == execution.pk]
    return row, detail.data


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_members_below_admin_get_the_error_but_null_traceback_and_worker(world_a, failed, role):
    for data in list_and_detail(world_a.client(role), failed):
        assert data["error"] == "connection refused"
        assert data["traceback"] is None and data["worker"] is None


@pytest.mark.parametrize("role", ["admin", "owner"])
def test_admins_and_owners_get_traceback_and_worker(world_a, failed, role):
    for data in list_and_detail(world_a.client(role), failed):
        assert data["traceback"] == TRACEBACK and data["worker"] == WORKER


def test_superusers_get_traceback_and_worker(world_a, failed):
    client = client_for(make_user(is_superuser=True, is_staff=True))
    for data in list_and_detail(client, failed):
        assert data["traceback"] == TRACEBACK and data["worker"] == WORKER


def test_a_viewer_probing_another_tenants_execution_gets_404(world_a, world_b, failed):
    assert world_b.client("viewer").get(f"/api/executions/{failed.pk}/").status_code == 404
    assert world_b.client("admin").get(f"/api/executions/{failed.pk}/").status_code == 404


def test_the_role_is_judged_per_row_with_a_constant_number_of_queries(
    world_a, world_b, failed, django_assert_max_num_queries
):
    user = make_user()
    make_membership(user=user, tenant=world_a.tenant, role="admin")
    make_membership(user=user, tenant=world_b.tenant, role="viewer")
    for _n in range(20):
        make_execution(schedule=world_b.scan, status="failed", traceback=TRACEBACK, worker=WORKER)
        make_execution(schedule=world_a.scan, status="failed", traceback=TRACEBACK, worker=WORKER)
    client = client_for(user)
    with django_assert_max_num_queries(6):
        response = client.get("/api/executions/", {"status": "failed", "limit": 100})
    assert response.status_code == 200
    rows = response.data["results"]
    shown = {row["tenant"] for row in rows if row["worker"] == WORKER}
    hidden = {row["tenant"] for row in rows if row["worker"] is None}
    assert shown == {world_a.tenant.pk} and hidden == {world_b.tenant.pk}


def test_the_operators_run_and_retry_answers_hide_them_too(world_a, failed):
    response = world_a.client("operator").post(f"/api/executions/{failed.pk}/retry/")
    assert response.status_code == 202, response.data
    assert response.data["worker"] is None and response.data["traceback"] is None
