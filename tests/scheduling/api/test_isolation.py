"""Tenant isolation: another tenant's objects are 404 everywhere and never leak."""

from __future__ import annotations

import pytest
from django.utils import timezone

from scheduling.models import CleanupConfig, PeriodicScan, Report, ReportArtifact, Schedule
from tests.factories import make_user
from tests.scheduling.api.conftest import (
    ROLES,
    SCHEDULE_KINDS,
    client_for,
    tenant_state,
    valid_payload,
)

pytestmark = pytest.mark.django_db

MISSING_ID = 987_654_321


def _schedule_routes() -> list[tuple[str, str, str, object]]:
    routes = []
    for kind in SCHEDULE_KINDS:
        detail = f"/api/{kind}/{{{kind}}}/"
        routes += [
            (kind, "get", detail, None),
            (kind, "put", detail, "put"),
            (kind, "patch", detail, {"name": "hijacked", "enabled": False}),
            (kind, "delete", detail, None),
            (kind, "post", detail + "run/", None),
            (kind, "post", detail + "pause/", {"until": "2099-01-01T00:00:00Z"}),
            (kind, "post", detail + "resume/", None),
            (kind, "get", detail + "next-runs/", None),
            (kind, "get", detail + "history/", None),
        ]
    return routes


# Every route that takes an id: (label, method, path template, body).
ROUTES = [
    *_schedule_routes(),
    ("tenants", "get", "/api/tenants/{tenant}/", None),
    ("executions", "get", "/api/executions/{execution}/", None),
    ("executions", "post", "/api/executions/{execution}/cancel/", {}),
    ("executions", "post", "/api/executions/{execution}/retry/", {}),
    ("report-artifacts", "get", "/api/report-artifacts/{artifact}/", None),
    ("report-artifacts", "get", "/api/report-artifacts/{artifact}/download/", None),
]


def _ids(world) -> dict[str, int]:
    return {
        "scans": world.scan.pk,
        "reports": world.report.pk,
        "cleanups": world.cleanup.pk,
        "tasks": world.task.pk,
        "tenant": world.tenant.pk,
        "execution": world.execution.pk,
        "artifact": world.artifact.pk,
    }


def _body(kind, body, world_a):
    if body == "put":
        payload = valid_payload(kind, world_a.tenant, name="hijacked")
        payload.pop("tenant")
        return payload
    return body


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(
    ("label", "method", "template", "body"),
    ROUTES,
    ids=[f"{m.upper()} {t}" for _l, m, t, _b in ROUTES],
)
def test_another_tenants_ids_are_404_and_change_nothing(
    world_a, world_b, role, label, method, template, body
):
    client = world_a.client(role)
    before = tenant_state(world_b.tenant)
    url = template.format(**_ids(world_b))
    payload = _body(label, body, world_a)
    response = getattr(client, method)(url, payload, format="json")
    assert response.status_code == 404, (url, response.status_code)

    # Exactly what a nonexistent id answers: nothing tells that the object exists.
    missing = template.format(**dict.fromkeys(_ids(world_b), MISSING_ID))
    other = getattr(client, method)(missing, payload, format="json")
    assert (other.status_code, other.json()) == (404, response.json())
    assert tenant_state(world_b.tenant) == before


LISTS = {
    "/api/scans/": PeriodicScan,
    "/api/reports/": Report,
    "/api/cleanups/": CleanupConfig,
    "/api/report-artifacts/": ReportArtifact,
}


@pytest.mark.parametrize("url", [*LISTS, "/api/tenants/"])
@pytest.mark.parametrize("role", ROLES)
def test_lists_and_counts_show_only_the_users_tenants(world_a, world_b, role, url):
    response = world_a.client(role).get(url)
    assert response.status_code == 200
    model = LISTS.get(url)
    count = model.objects.filter(tenant=world_a.tenant).count() if model else 1
    assert response.data["count"] == count
    key = "id" if url == "/api/tenants/" else "tenant"
    assert {row[key] for row in response.data["results"]} == {world_a.tenant.pk}


def test_the_execution_log_shows_only_the_users_tenants(world_a, world_b):
    response = world_a.client("viewer").get("/api/executions/")
    assert response.status_code == 200
    assert [row["id"] for row in response.data["results"]] == [world_a.execution.pk]


@pytest.mark.parametrize(
    "query",
    [
        "/api/scans/?tenant={tenant}",
        "/api/scans/?tenant={slug}",
        "/api/reports/?tenant={tenant}",
        "/api/cleanups/?tenant={slug}",
        "/api/executions/?tenant={tenant}",
        "/api/executions/?tenant={slug}",
        "/api/executions/?schedule={report}",
        "/api/report-artifacts/?tenant={tenant}",
        "/api/report-artifacts/?report={report}",
        "/api/report-artifacts/?execution={execution}",
    ],
)
def test_filtering_by_another_tenants_ids_gives_an_empty_list(world_a, world_b, query):
    url = query.format(
        tenant=world_b.tenant.pk,
        slug=world_b.tenant.slug,
        report=world_b.report.pk,
        execution=world_b.execution.pk,
    )
    response = world_a.client("owner").get(url)
    assert response.status_code == 200
    assert response.data["results"] == []


def test_the_scheduler_status_shows_only_the_users_next_fires(world_a, world_b):
    soon = timezone.now()
    Schedule.objects.update(next_run_at=soon)
    response = world_a.client("viewer").get("/api/scheduler/status/")
    assert response.status_code == 200
    assert {f["tenant"] for f in response.data["next_fires"]} == {world_a.tenant.pk}
    # A's enabled schedules, not the whole scheduler's jobs
    assert response.data["job_count"] == Schedule.objects.filter(tenant=world_a.tenant).count()
    assert response.data["leader"] is None


@pytest.mark.parametrize("value", ["slug", "pk"])
def test_creating_in_another_tenant_is_the_400_of_a_nonexistent_tenant(world_a, world_b, value):
    client = world_a.client("owner")
    foreign = getattr(world_b.tenant, value)
    missing = "no-such-tenant" if value == "slug" else MISSING_ID
    response = client.post("/api/scans/", valid_payload("scans", foreign), format="json")
    nothing = client.post("/api/scans/", valid_payload("scans", missing), format="json")
    assert response.status_code == nothing.status_code == 400
    assert str(response.data["tenant"]).replace(str(foreign), "?") == str(
        nothing.data["tenant"]
    ).replace(str(missing), "?")
    assert not Schedule.objects.filter(name="new scans").exists()


@pytest.mark.parametrize("kind", SCHEDULE_KINDS)
def test_depending_on_another_tenants_schedule_is_the_400_of_a_nonexistent_id(
    world_a, world_b, kind
):
    client = world_a.client("owner")
    foreign = world_b.schedule(kind).pk
    response = client.patch(
        f"/api/{kind}/{world_a.schedule(kind).pk}/", {"depends_on": [foreign]}, "json"
    )
    nothing = client.patch(
        f"/api/{kind}/{world_a.schedule(kind).pk}/", {"depends_on": [MISSING_ID]}, "json"
    )
    assert response.status_code == nothing.status_code == 400
    assert str(response.data["depends_on"]).replace(str(foreign), "?") == str(
        nothing.data["depends_on"]
    ).replace(str(MISSING_ID), "?")


def test_a_user_without_membership_sees_nothing(world_a):
    client = client_for(make_user())
    for url in ("/api/scans/", "/api/tenants/", "/api/report-artifacts/"):
        assert client.get(url).data["count"] == 0
    assert client.get("/api/executions/").data["results"] == []
    assert client.get(f"/api/scans/{world_a.scan.pk}/").status_code == 404


def test_a_superuser_sees_every_tenant(world_a, world_b):
    client = client_for(make_user(is_superuser=True))
    assert client.get("/api/scans/").data["count"] == 2
    assert client.get("/api/tenants/").data["count"] == 2
    response = client.get("/api/tenants/")
    assert {row["role"] for row in response.data["results"]} == {"owner"}


def test_anonymous_requests_are_401(world_a):
    from rest_framework.test import APIClient

    for url in ("/api/scans/", f"/api/scans/{world_a.scan.pk}/", "/api/scheduler/status/"):
        assert APIClient().get(url).status_code == 401
