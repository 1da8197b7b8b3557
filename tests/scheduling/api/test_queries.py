"""Every list endpoint runs a constant number of queries, whatever the number of rows."""

from __future__ import annotations

import itertools

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from scheduling.models import AuditEntry
from tests.factories import (
    make_artifact,
    make_cleanup,
    make_execution,
    make_report,
    make_scan,
    make_tenant,
)
from tests.scheduling.api.conftest import CLEANUP_TARGET, REPORT_TYPE

pytestmark = pytest.mark.django_db
_names = itertools.count()


def _grow(world, rows: int) -> None:
    """Give tenant A ``rows`` objects of every kind, with dependencies and audit entries."""
    tenant = world.tenant
    for _ in range(rows):
        n = next(_names)
        scan = make_scan(
            tenant=tenant, name=f"scan {n}", scan_type="test_echo", next_run_at=timezone.now()
        )
        scan.depends_on.set([world.scan, world.report])
        report = make_report(tenant=tenant, name=f"report {n}", report_type=REPORT_TYPE)
        make_cleanup(tenant=tenant, name=f"cleanup {n}", cleanup_target=CLEANUP_TARGET)
        execution = make_execution(schedule=report, triggered_by=world.users["admin"])
        make_artifact(execution=execution)
        AuditEntry.objects.create(
            tenant=tenant,
            schedule=world.scan,
            schedule_name=world.scan.name,
            schedule_kind="scan",
            action="change",
            user=world.users["admin"],
        )
        make_tenant()  # tenants the user cannot see


LISTS = [
    "/api/scans/",
    "/api/reports/",
    "/api/cleanups/",
    "/api/executions/",
    "/api/report-artifacts/",
    "/api/tenants/",
    "/api/scheduler/status/",
    "/api/scans/{scan}/history/",
]


def _count(client, url: str) -> tuple[int, int]:
    # Each real request loads its user afresh: no permission cache carries over between them.
    user = client.handler._force_user
    for cache in ("_perm_cache", "_user_perm_cache", "_group_perm_cache"):
        user.__dict__.pop(cache, None)
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200
    data = response.data
    rows = len(data.get("results", data.get("next_fires", [])))
    return len(ctx.captured_queries), rows


@pytest.mark.parametrize("url", LISTS)
@pytest.mark.parametrize("role", ["viewer", "superuser"])
def test_list_queries_do_not_grow_with_rows(world_a, url, role):
    from tests.factories import make_user
    from tests.scheduling.api.conftest import client_for

    user = make_user(is_superuser=True) if role == "superuser" else world_a.users[role]
    client = client_for(user)
    url = url.format(scan=world_a.scan.pk)
    _grow(world_a, 4)
    few, few_rows = _count(client, url)
    _grow(world_a, 45)
    many, many_rows = _count(client, url)
    assert many_rows > few_rows or url == "/api/tenants/"
    assert many == few, f"{url}: {few} queries for {few_rows} rows, {many} for {many_rows}"


def test_a_schedule_list_page_runs_at_most_seven_queries(world_a, django_assert_max_num_queries):
    _grow(world_a, 49)
    client = world_a.client("viewer")
    # memberships, the user's and the groups' permissions (may they see system schedules?),
    # count, page, depends_on prefetch (+ one spare)
    with django_assert_max_num_queries(7):
        response = client.get("/api/scans/")
    assert len(response.data["results"]) == 50
