"""purge: execution retention applied now, exactly, in batches that keep the database writable."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connections, transaction
from django.test import override_settings
from django.utils import timezone

from scheduling.models import Execution, Status
from tests.factories import make_execution, make_membership, make_tenant, make_user
from tests.scheduling.cli.conftest import cli, echo_scan

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def history(db):
    """Executions on both sides of each tenant's retention; returns the ids purge must take."""
    acme = make_tenant(slug="acme", execution_retention_days=10)
    beta = make_tenant(slug="beta")  # the setting's default: 30 days below
    acme_scan, beta_scan = echo_scan(acme), echo_scan(beta)

    def finished(scan, age, status=Status.SUCCEEDED):
        return make_execution(schedule=scan, status=status, finished_at=NOW - age)

    doomed = {
        finished(acme_scan, timedelta(days=11)).pk,
        finished(acme_scan, timedelta(days=10, seconds=1), Status.FAILED).pk,
        finished(beta_scan, timedelta(days=31), Status.MISSED).pk,
    }
    kept = {
        finished(acme_scan, timedelta(days=9, hours=23)).pk,
        finished(beta_scan, timedelta(days=29)).pk,
        # Active executions are never purged, however old.
        make_execution(
            schedule=acme_scan,
            status=Status.RUNNING,
            scheduled_for=NOW - timedelta(days=50),
            finished_at=None,
        ).pk,
    }
    return {"doomed": doomed, "kept": kept}


@pytest.fixture
def frozen():
    with (
        time_machine.travel(NOW, tick=False),
        override_settings(SCHEDULING_EXECUTION_RETENTION_DAYS=30),
    ):
        yield


def test_deletes_exactly_the_rows_past_each_tenants_retention(history, frozen):
    result = cli("purge", "--format", "json")

    assert result.code == 0, result.err
    assert result.data == {
        "dry_run": False,
        "deleted": 3,
        "tenants": [
            {
                "tenant": "acme",
                "retain_days": 10,
                "cutoff": (NOW - timedelta(days=10)).isoformat(),
                "deleted": 2,
            },
            {
                "tenant": "beta",
                "retain_days": 30,
                "cutoff": (NOW - timedelta(days=30)).isoformat(),
                "deleted": 1,
            },
        ],
    }
    assert set(Execution.objects.values_list("pk", flat=True)) == history["kept"]


def test_table_shows_progress_and_a_summary_for_one_tenant(history, frozen):
    result = cli("purge", "--tenant", "acme", "--batch-size", "1")

    assert result.code == 0
    assert "Purging executions" in result.out
    assert "Deleted 2 execution(s) of 1 tenant(s)." in result.out
    left = Execution.objects.filter(pk__in=history["doomed"])
    assert list(left.values_list("tenant__slug", flat=True)) == ["beta"]


def test_dry_run_counts_and_deletes_nothing(history, frozen):
    table = cli("purge", "--dry-run")
    data = cli("purge", "--dry-run", "--format", "json").data

    assert "Would delete 3 execution(s) of 2 tenant(s)." in table.out
    assert (data["dry_run"], data["deleted"]) == (True, 3)
    assert Execution.objects.count() == 6


def test_only_admins_purge(history, frozen):
    user = make_user(username="otto")
    acme = Execution.objects.filter(tenant__slug="acme").first().tenant
    make_membership(user=user, tenant=acme, role="operator")
    result = cli("purge", "--tenant", "acme", "--user", "otto")
    assert (result.code, result.err) == (2, "Your role in tenant 'acme' does not allow purge.")
    # Without --tenant: only the tenants the user administers, here none.
    assert cli("purge", "--user", "otto", "--format", "json").data["tenants"] == []
    assert Execution.objects.count() == 6


@pytest.mark.django_db(transaction=True)
def test_a_large_purge_lets_a_concurrent_writer_in_between_batches():
    tenant = make_tenant(slug="big", execution_retention_days=30)
    scan = echo_scan(tenant, name="busy")
    writer_scan = echo_scan(make_tenant(slug="writer"), name="writer")
    old = timezone.now() - timedelta(days=60)
    first = datetime(2020, 1, 1, tzinfo=UTC)
    # A hundred batches: enough commits for the writer to get in between many of them (the
    # purge's own speed on large tables is measured by bench/, not here).
    total = 10_000
    batch = 100
    with transaction.atomic():
        for start in range(0, total, 5_000):
            Execution.objects.bulk_create(
                Execution(
                    schedule=scan,
                    schedule_name=scan.name,
                    schedule_kind="scan",
                    tenant=tenant,
                    scheduled_for=first + timedelta(seconds=n),
                    status=Status.SUCCEEDED,
                    queued_at=old,
                    started_at=old,
                    finished_at=old,
                    duration_ms=5,
                )
                for n in range(start, start + 5_000)
            )
    recent = make_execution(schedule=scan)

    # After each of its inserts, the writer reads how many of the purged rows are left: what
    # the purge has committed by then.
    seen: list[int] = []
    written: list[int] = []
    failures: list[BaseException] = []
    purging = threading.Event()
    stop = threading.Event()

    def write() -> None:
        # Its own connection (Django's are per thread), inserting like the scheduler does.
        try:
            n = 0
            while not stop.is_set():
                Execution.objects.create(
                    schedule=writer_scan,
                    schedule_name=writer_scan.name,
                    schedule_kind="scan",
                    tenant_id=writer_scan.tenant_id,
                    scheduled_for=first + timedelta(seconds=n),
                    status=Status.QUEUED,
                )
                written.append(n)
                n += 1
                if purging.is_set():
                    seen.append(Execution.objects.filter(schedule=scan, pk__lt=recent.pk).count())
                time.sleep(0.005)
        except BaseException as exc:  # reported by the assertions below
            failures.append(exc)
        finally:
            connections.close_all()

    writer = threading.Thread(target=write, name="concurrent-writer")
    writer.start()
    try:
        purging.set()
        result = cli("purge", "--format", "json", "--batch-size", str(batch))
    finally:
        stop.set()
        writer.join(timeout=60)

    assert result.code == 0, result.err
    assert result.data["deleted"] == total
    assert not failures, failures
    # The writer got in while the purge ran, again and again: between its inserts it saw the
    # purge's batches committed one at a time (a purge in one transaction would show it only
    # all rows or none, and on SQLite keep its inserts waiting until the end).
    between = sorted({left for left in seen if 0 < left < total}, reverse=True)
    assert len(between) >= 10, f"the writer saw only {len(between)} states of the purge"
    # Each commit deleted one batch: the write lock is held for one batch at a time.
    assert all((total - left) % batch == 0 for left in between), between[:20]
    assert list(Execution.objects.filter(schedule=scan).values_list("pk", flat=True)) == [recent.pk]
    assert Execution.objects.filter(schedule=writer_scan).count() == len(written)
