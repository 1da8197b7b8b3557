"""/healthz, /metrics and the check_scheduler deployment check."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection
from django.test import override_settings
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from scheduling import runner
from scheduling.checks import check_scheduler
from scheduling.models import SchedulerLease
from tests.factories import make_scan, make_tenant

ROOT = Path(__file__).resolve().parents[2]


def lease(**fields) -> SchedulerLease:
    now = timezone.now()
    values = {
        "name": "default",
        "holder": "host:1:abc",
        "renewed_at": now,
        "expires_at": now + timedelta(seconds=15),
    }
    values.update(fields)
    return SchedulerLease.objects.create(**values)


@pytest.mark.django_db
class TestHealthz:
    def test_no_scheduler_ever_is_503(self, client):
        response = client.get("/healthz")
        assert response.status_code == 503
        assert response.json() == {
            "status": "unhealthy",
            "leader_active": False,
            "heartbeat_age_seconds": None,
            "max_heartbeat_age_seconds": 30.0,
        }

    def test_a_fresh_heartbeat_is_200(self, client):
        lease(renewed_at=timezone.now() - timedelta(seconds=2))
        response = client.get("/healthz")
        assert response.status_code == 200
        data = response.json()
        assert (data["status"], data["leader_active"]) == ("ok", True)
        assert 1 < data["heartbeat_age_seconds"] < 10
        assert "host" not in response.content.decode()  # no host names on this endpoint
        assert "no-cache" in response["Cache-Control"]

    @override_settings(SCHEDULING_HEALTH_MAX_HEARTBEAT_AGE=5)
    def test_a_stale_heartbeat_is_503_even_before_the_lease_expires(self, client):
        lease(renewed_at=timezone.now() - timedelta(seconds=8))
        response = client.get("/healthz")
        assert response.status_code == 503
        assert response.json()["leader_active"] is True

    def test_a_released_lease_is_503(self, client):
        lease(holder="", expires_at=timezone.now())
        assert client.get("/healthz").status_code == 503

    def test_an_unreadable_database_is_503(self, client, monkeypatch):
        def broken():
            raise DatabaseError("gone")

        monkeypatch.setattr("scheduling.monitoring.get_lease", broken)
        response = client.get("/healthz")
        assert response.status_code == 503
        assert response.json()["status"] == "error"

    def test_only_get(self, client):
        assert client.post("/healthz").status_code == 405


def samples(body: str) -> dict[tuple[str, frozenset], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


def value(found: dict, name: str, **labels: str) -> float:
    return found[(name, frozenset(labels.items()))]


@pytest.mark.django_db
def test_metrics_expose_the_documented_series_with_correct_values(client):
    tenant = make_tenant()
    echo = make_scan(tenant=tenant, scan_type="test_echo", target="x")
    failing = make_scan(tenant=tenant, scan_type="test_sleep", target="x", options={"fail": True})
    make_scan(tenant=tenant, scan_type="test_echo", target="x", enabled=False)
    now = timezone.now()
    for n in range(3):
        execution = runner.claim(echo, now - timedelta(seconds=3, milliseconds=n))
        runner.execute(execution.pk)
    execution = runner.claim(failing, now - timedelta(seconds=20))
    runner.execute(execution.pk)
    runner.claim(echo, now + timedelta(minutes=5))  # queued, not yet run
    lease(last_sync_at=now, sync_lag_ms=250, job_count=2)

    response = client.get("/metrics")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    openmetrics = client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert openmetrics["Content-Type"].startswith("application/openmetrics-text")
    assert openmetrics.content.decode().endswith("# EOF\n")
    found = samples(response.content.decode())
    # A counter of finished executions (queued and running ones are the gauges below).
    executions = "scheduling_executions_total"
    assert value(found, executions, kind="scan", status="succeeded") == 3
    assert value(found, executions, kind="scan", status="failed") == 1
    assert value(found, executions, kind="report", status="succeeded") == 0
    assert (
        "scheduling_executions_total",
        frozenset({"kind": "scan", "status": "queued"}.items()),
    ) not in found
    assert value(found, "scheduling_queue_depth", kind="scan") == 1
    assert value(found, "scheduling_running_executions", kind="scan") == 0

    duration = "scheduling_execution_duration_seconds"
    assert value(found, f"{duration}_count", kind="scan") == 4
    assert value(found, f"{duration}_bucket", kind="scan", le="+Inf") == 4
    assert value(found, f"{duration}_bucket", kind="scan", le="60.0") == 4
    assert 0 <= value(found, f"{duration}_sum", kind="scan") < 5

    lateness = "scheduling_execution_lateness_seconds"
    assert value(found, f"{lateness}_count", kind="scan") == 4
    assert value(found, f"{lateness}_bucket", kind="scan", le="2.5") == 0
    assert value(found, f"{lateness}_bucket", kind="scan", le="5.0") == 3
    assert value(found, f"{lateness}_bucket", kind="scan", le="30.0") == 4
    assert 29 <= value(found, f"{lateness}_sum", kind="scan") < 35

    assert value(found, "scheduling_schedules", kind="scan", state="enabled") == 2
    assert value(found, "scheduling_schedules", kind="scan", state="disabled") == 1
    assert value(found, "scheduling_jobs") == 2
    assert value(found, "scheduling_leader_present") == 1
    assert value(found, "scheduling_sync_lag_seconds") == 0.25
    assert 0 <= value(found, "scheduling_heartbeat_age_seconds") < 10
    assert value(found, "scheduling_last_sync_timestamp_seconds") == pytest.approx(
        now.timestamp(), abs=1
    )


@pytest.mark.django_db
def test_metrics_without_a_scheduler_say_no_leader(client):
    found = samples(client.get("/metrics").content.decode())
    assert value(found, "scheduling_leader_present") == 0
    assert value(found, "scheduling_jobs") == 0
    assert not any(name == "scheduling_sync_lag_seconds" for name, _labels in found)


@pytest.mark.django_db
class TestCheckScheduler:
    def test_warns_when_no_scheduler_holds_a_fresh_lease(self):
        [warning] = check_scheduler()
        assert warning.id == "scheduling.W002"
        assert warning.hint and "runscheduler" in warning.hint

        lease(renewed_at=timezone.now() - timedelta(minutes=5))
        [stale] = check_scheduler()
        assert "heartbeat" in stale.msg

    def test_is_quiet_while_a_scheduler_runs(self):
        lease()
        assert check_scheduler() == []

    def test_runs_with_check_deploy_only(self):
        err = StringIO()
        call_command("check", stderr=err, stdout=StringIO())
        assert "scheduling.W002" not in err.getvalue()
        # Only this app's deployment checks: other apps' (mail, security) depend on the
        # Django version and the settings of the tests.
        call_command("check", "--deploy", "--tag", "scheduling", stderr=err, stdout=StringIO())
        assert "scheduling.W002" in err.getvalue()


def start_scheduler(log: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "SCHEDULING_DB_PATH": connection.settings_dict["NAME"],
        "PYTHONUNBUFFERED": "1",
    }
    with log.open("ab") as handle:
        return subprocess.Popen(
            [sys.executable, "manage.py", "runscheduler", "-v", "2", "--lease-ttl", "3"],
            cwd=ROOT,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


def wait_for_status(client, status: int, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get("/healthz").status_code == status:
            return True
        time.sleep(0.2)
    return False


@pytest.mark.process
@pytest.mark.django_db(transaction=True)
@override_settings(SCHEDULING_HEALTH_MAX_HEARTBEAT_AGE=10)
def test_healthz_follows_the_scheduler_stopping_and_restarting(client, tmp_path):
    log = tmp_path / "scheduler.log"
    assert client.get("/healthz").status_code == 503
    processes: list[subprocess.Popen] = []
    try:
        processes.append(start_scheduler(log))
        assert wait_for_status(client, 200), log.read_text()[-3000:]

        processes[0].send_signal(signal.SIGTERM)
        assert processes[0].wait(timeout=30) == 0, log.read_text()[-3000:]
        assert client.get("/healthz").status_code == 503  # the lease was released

        processes.append(start_scheduler(log))
        assert wait_for_status(client, 200), log.read_text()[-3000:]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)


@pytest.mark.django_db
def test_a_scrape_takes_a_fixed_number_of_queries(client, django_assert_max_num_queries):
    tenant = make_tenant()
    for _ in range(5):
        scan = make_scan(tenant=tenant, scan_type="test_echo", target="x")
        runner.execute(runner.claim(scan, timezone.now()).pk)
    lease()
    with django_assert_max_num_queries(6):
        assert client.get("/metrics").status_code == 200
    with django_assert_max_num_queries(1):
        assert client.get("/healthz").status_code == 200
