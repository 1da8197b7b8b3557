"""Change notification: changes reach a running scheduler long before its next poll."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import F
from django.utils import timezone

from scheduling import services
from scheduling.models import Schedule
from scheduling.scheduler.notify import CHANNEL, ChangeListener, CommitWatch
from tests.ci import OTHER_RUN
from tests.factories import make_tenant
from tests.scheduling.processes import start_scheduler, stop, wait_for
from tests.scheduling.test_process import echo_scan

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def listener():
    """A connection of the test's own that LISTENs on the scheduler's channel."""
    if not ChangeListener.available():
        if connection.vendor != "postgresql":
            pytest.skip(f"{OTHER_RUN}LISTEN/NOTIFY is PostgreSQL's; this run uses SQLite.")
        pytest.skip("LISTEN/NOTIFY needs psycopg 3.2+.")
    import psycopg

    with psycopg.connect(**connection.get_connection_params(), autocommit=True) as conn:
        conn.execute(f"LISTEN {CHANNEL}")

        def received(timeout: float = 2.0) -> int:
            return sum(1 for _ in conn.notifies(timeout=timeout, stop_after=100))

        yield received


def test_config_changes_notify_and_the_schedulers_own_updates_do_not(listener):
    tenant = make_tenant()
    scan = echo_scan(tenant, name="watched")
    assert listener() >= 1  # created

    Schedule.objects.filter(pk=scan.pk).update(run_count=F("run_count") + 1)
    assert listener(timeout=0.5) == 0  # state only: updated_at unchanged

    services.pause_schedule(schedule=scan, until=timezone.now() + timedelta(hours=1))
    assert listener() >= 1  # a bulk QuerySet.update() that bumps updated_at

    services.run_now(schedule=scan)
    assert listener() >= 1  # a manual run queued

    scan.delete()
    assert listener() >= 1


@pytest.fixture
def sqlite_only():
    if not CommitWatch.available():
        pytest.skip(f"{OTHER_RUN}SQLite's commit watch; PostgreSQL notifies instead (tests above).")


@pytest.mark.usefixtures("sqlite_only")
def test_the_commit_watch_sees_other_connections_commits_only():
    import sqlite3

    tenant = make_tenant()
    watch = CommitWatch()
    assert not watch.committed()  # the first look only takes the count
    Schedule.objects.filter(tenant=tenant).update(run_count=1)  # this connection's own commit
    assert not watch.committed()
    with sqlite3.connect(connection.settings_dict["NAME"]) as other:
        other.execute("UPDATE tenants_tenant SET name = 'renamed' WHERE id = ?", [tenant.pk])
    assert watch.committed()
    assert not watch.committed()  # seen once
    connection.close()  # a new connection starts its own count: no false alarm
    assert not watch.committed()


@pytest.mark.process
def test_changes_and_manual_runs_reach_the_scheduler_before_the_next_poll(tmp_path):
    """PostgreSQL notifies the scheduler; on SQLite its commit watch sees the commit."""
    from django_apscheduler.models import DjangoJob

    from scheduling.models import Execution

    log = tmp_path / "scheduler.log"
    tenant = make_tenant()
    first = echo_scan(tenant, name="first", interval_seconds=3600)
    process = start_scheduler("--sync-interval", "30", log=log)
    try:
        assert wait_for(lambda: DjangoJob.objects.exists(), 30), log.read_text()
        time.sleep(1)  # past the start's own sync
        created = time.monotonic()
        scan = echo_scan(tenant, name="second", interval_seconds=3600)
        assert wait_for(
            lambda: DjangoJob.objects.filter(id=f"schedule:{scan.pk}").exists(), 10, 0.02
        ), log.read_text()
        lag = time.monotonic() - created
        print(f"change -> job store, 30 s sync interval, {connection.vendor}: {lag * 1000:.0f} ms")
        assert lag < 3, "the change waited for the 30 s poll"

        queued = time.monotonic()
        execution = services.run_now(schedule=first)
        assert wait_for(
            lambda: Execution.objects.filter(pk=execution.pk, status="succeeded").exists(), 10, 0.02
        ), log.read_text()
        assert time.monotonic() - queued < 3, "the manual run waited for the 30 s poll"
    finally:
        stop(process)
