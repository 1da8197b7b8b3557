"""The execution log, report artifacts and the scheduler status."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from scheduling.models import Schedule, SchedulerLease
from tests.factories import make_artifact, make_execution, make_user
from tests.scheduling.api.conftest import client_for

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def test_executions_are_newest_first_and_paged_by_cursor(world_a):
    for hour in range(1, 6):
        make_execution(schedule=world_a.scan, scheduled_for=T0 + timedelta(hours=hour))
    client = world_a.client("viewer")
    seen = []
    url = f"/api/executions/?page_size=2&schedule={world_a.scan.pk}"
    while url:
        response = client.get(url)
        assert response.status_code == 200
        assert "count" not in response.data  # a cursor: no COUNT(*) over the whole log
        seen += [row["scheduled_for"] for row in response.data["results"]]
        url = response.data["next"]
    assert seen == [f"2026-05-01T{h}:00:00Z" for h in (17, 16, 15, 14, 13)]


def test_execution_filters(world_a):
    scan = world_a.scan
    make_execution(schedule=scan, status="failed", trigger="manual", scheduled_for=T0)
    make_execution(
        schedule=scan, status="succeeded", scheduled_for=T0 + timedelta(days=1), finished_at=T0
    )
    client = world_a.client("viewer")

    def ids(query: str) -> list:
        response = client.get("/api/executions/?" + query)
        assert response.status_code == 200, response.data
        return [(r["status"], r["schedule_kind"]) for r in response.data["results"]]

    assert ids("status=failed") == [("failed", "scan")]
    assert ids("status=failed&status=succeeded&kind=scan") == [
        ("succeeded", "scan"),
        ("failed", "scan"),
    ]
    assert ids("trigger=manual") == [("failed", "scan")]
    assert ids("kind=report") == [("succeeded", "report")]
    assert ids("scheduled_for_before=2026-05-01T12:00:00Z") == [("failed", "scan")]
    assert ids("scheduled_for_after=2026-05-02T00:00:00Z&kind=scan") == [("succeeded", "scan")]
    assert ids("finished_before=2026-05-01T13:00:00%2B00:00") == [("succeeded", "scan")]
    # Offsets that Python accepts and PostgreSQL would reject (beyond 15:59) compare in UTC.
    assert ids("scheduled_for_before=2026-05-01T00:00:00-21:00") == [("failed", "scan")]
    assert ids("scheduled_for_after=2026-05-01T15:00:00-21:00&kind=scan") == [("succeeded", "scan")]


@pytest.mark.parametrize(
    "query",
    [
        "status=exploded",
        "kind=weekly",
        "schedule=abc",
        "schedule=99999999999999999999999",
        "scheduled_for_after=yesterday",
        "scheduled_for_after=0001-01-01T00:00:00%2B14:00",
    ],
)
def test_bad_execution_filters_are_400(world_a, query):
    assert world_a.client("viewer").get("/api/executions/?" + query).status_code == 400


def test_a_bad_cursor_is_404(world_a):
    assert world_a.client("viewer").get("/api/executions/?cursor=garbage").status_code == 404


def test_an_artifact_downloads_with_its_content_type_and_file_name(world_a):
    artifact = world_a.artifact
    response = world_a.client("viewer").get(f"/api/report-artifacts/{artifact.pk}/download/")
    assert response.status_code == 200
    assert response.content == b"name,count\nalpha,1\n"
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == f'attachment; filename="{artifact.filename}"'


def test_a_download_answers_any_accept_header(world_a):
    artifact = world_a.artifact
    response = world_a.client("viewer").get(
        f"/api/report-artifacts/{artifact.pk}/download/", HTTP_ACCEPT="text/csv"
    )
    assert response.status_code == 200


def test_a_hostile_file_name_cannot_split_headers(world_a):
    artifact = make_artifact(
        execution=world_a.execution, filename='evil"\r\nSet-Cookie: x=1.html', content_type="x\n"
    )
    response = world_a.client("viewer").get(f"/api/report-artifacts/{artifact.pk}/download/")
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers
    assert response["Content-Type"] == "application/octet-stream"


def test_the_artifact_list_leaves_out_the_content_and_links_the_download(world_a):
    response = world_a.client("viewer").get("/api/report-artifacts/")
    row = response.data["results"][0]
    assert "content" not in row
    assert row["download_url"] == f"/api/report-artifacts/{world_a.artifact.pk}/download/"
    assert row["size"] == len(b"name,count\nalpha,1\n")


def test_the_scheduler_status_reports_the_leader_and_its_heartbeat(world_a):
    now = timezone.now()
    SchedulerLease.objects.create(
        name="default",
        holder="host:1:abc",
        renewed_at=now - timedelta(seconds=2),
        expires_at=now + timedelta(seconds=13),
        last_sync_at=now,
        sync_lag_ms=12,
        job_count=42,
    )
    world_a.scan.__class__.objects.filter(pk=world_a.scan.pk).update(next_run_at=now)
    superuser = client_for(make_user(is_superuser=True))
    data = superuser.get("/api/scheduler/status/").data
    assert data["leader_active"] is True
    assert data["leader"] == "host:1:abc"
    assert 2 <= data["heartbeat_age_seconds"] < 10
    assert data["job_count"] == 42
    assert data["sync_lag_ms"] == 12
    assert [f["id"] for f in data["next_fires"]] == [world_a.scan.pk]

    data = world_a.client("viewer").get("/api/scheduler/status/").data
    assert data["leader_active"] is True
    assert data["leader"] is None  # the host name is for those who see every tenant
    assert data["job_count"] == Schedule.objects.filter(tenant=world_a.tenant).count()


def test_the_scheduler_status_without_a_scheduler(world_a):
    data = world_a.client("viewer").get("/api/scheduler/status/").data
    assert data["leader_active"] is False
    assert data["heartbeat_age_seconds"] is None
    assert data["next_fires"] == []


@pytest.mark.parametrize(
    "raw",
    [
        "p=garbage",
        "p=0001-01-01T00:00:00%2B14:00",
        "r=1&p=2026-01-01T00:00:00",
        "o=-5",
    ],
)
def test_a_tampered_cursor_is_404(world_a, raw):
    cursor = base64.b64encode(raw.encode()).decode()
    response = world_a.client("viewer").get("/api/executions/", {"cursor": cursor})
    assert response.status_code == 404


def test_a_cursor_position_with_a_far_offset_pages_in_utc(world_a):
    for hour in (1, 2, 3):
        make_execution(schedule=world_a.scan, scheduled_for=T0 + timedelta(hours=hour))
    # 2026-05-01T14:00Z written with an offset PostgreSQL would reject (-21:00).
    cursor = base64.b64encode(b"p=2026-04-30T17:00:00-21:00").decode()

    response = world_a.client("viewer").get("/api/executions/", {"cursor": cursor})

    assert response.status_code == 200
    assert [row["scheduled_for"] for row in response.data["results"]] == ["2026-05-01T13:00:00Z"]


@pytest.mark.parametrize(
    "query", ["", "status=failed", "status=failed&status=timed_out", "cursor"], ids=str
)
def test_the_execution_log_reads_one_page_without_distinct_or_count(world_a, query):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for hour in range(6):
        status = "failed" if hour % 2 else "succeeded"
        make_execution(
            schedule=world_a.scan, status=status, scheduled_for=T0 + timedelta(hours=hour)
        )
    client = world_a.client("viewer")
    url = "/api/executions/?page_size=2"
    if query == "cursor":
        url = client.get(url).data["next"]
    elif query:
        url += "&" + query
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200
    assert len(response.data["results"]) == 2
    reads = [
        q["sql"] for q in queries.captured_queries if 'FROM "scheduling_execution"' in q["sql"]
    ]
    # One keyset page: ORDER BY ... LIMIT straight off an index. DISTINCT would make the
    # database sort every matching row first; a COUNT would read them all.
    assert len(reads) == 1, reads
    assert "LIMIT 3" in reads[0]
    assert "DISTINCT" not in reads[0].upper()
    assert "COUNT(" not in reads[0].upper()
