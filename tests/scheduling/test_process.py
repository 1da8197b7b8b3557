"""Properties of the real ``runscheduler`` process: exactly once, crash recovery, SIGTERM.

These start real processes against the test database file, bound them in time and kill
them in ``finally``.
"""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection

from scheduling.models import Execution, Status
from tests.factories import make_scan, make_tenant
from tests.scheduling.processes import start_scheduler, stop, wait_for
from tests.servers import maintenance_connection

pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]


def echo_scan(tenant, **fields):
    fields.setdefault("scan_type", "test_echo")
    fields.setdefault("target", "x")
    return make_scan(tenant=tenant, **fields)


def test_two_schedulers_fire_every_occurrence_exactly_once(tmp_path):
    tenant = make_tenant()
    # A leader that misses a renewal on a loaded machine legitimately fails over to the other
    # process: the new leader then catches up, every missed occurrence (no coalescing), at once.
    scans = [
        echo_scan(
            tenant,
            interval_seconds=1,
            misfire_grace_seconds=30,
            coalesce=False,
            overlap="allow",
            max_instances=30,
        )
        for _ in range(5)
    ]
    log = tmp_path / "schedulers.log"
    processes = [
        start_scheduler("--max-seconds", "24", "--lease-ttl", "5", log=log) for _ in range(2)
    ]
    try:
        for process in processes:
            assert process.wait(timeout=120) == 0, log.read_text()[-3000:]
    finally:
        for process in processes:
            stop(process)
    rows = list(
        Execution.objects.filter(schedule__in=scans).values_list(
            "schedule_id", "scheduled_for", "attempt", "status", "claimed_by"
        )
    )
    # Exactly once across both processes, whichever of them fired an occurrence.
    per_occurrence = Counter((pk, when) for pk, when, attempt, _s, _c in rows if attempt == 1)
    assert per_occurrence and max(per_occurrence.values()) == 1
    for scan in scans:
        times = sorted(when for pk, when in per_occurrence if pk == scan.pk)
        assert len(times) >= 5, f"scan {scan.pk} fired only {len(times)} times"
        gaps = {b - a for a, b in zip(times, times[1:], strict=False)}
        assert gaps == {timedelta(seconds=1)}, f"missing occurrences for scan {scan.pk}"
    statuses = Counter(status for *_x, status, _c in rows)
    if len({claimed for *_x, claimed in rows}) == 1:
        assert set(statuses) == {Status.SUCCEEDED}
    else:
        # A failover: the new leader interrupts what the old one had claimed but not run.
        assert set(statuses) <= {Status.SUCCEEDED, Status.INTERRUPTED}, statuses
        assert statuses[Status.SUCCEEDED] > statuses[Status.INTERRUPTED]


def test_kill_9_during_a_long_execution_is_recovered_as_interrupted(tmp_path):
    tenant = make_tenant()
    slow = echo_scan(tenant, scan_type="test_sleep", options={"seconds": 60}, interval_seconds=3600)
    Execution.objects.all().delete()
    from scheduling import services

    services.run_now(schedule=slow)
    log = tmp_path / "scheduler.log"
    first = start_scheduler("--lease-ttl", "3", log=log)
    try:
        assert wait_for(
            lambda: Execution.objects.filter(schedule=slow, status=Status.RUNNING).exists(), 30
        ), log.read_text()[-3000:]
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        stop(first)
    assert Execution.objects.get(schedule=slow).status == Status.RUNNING  # left behind

    ticker = echo_scan(tenant, interval_seconds=1)
    second = start_scheduler("--lease-ttl", "3", log=log)
    try:
        assert wait_for(
            lambda: Execution.objects.filter(schedule=slow, status=Status.INTERRUPTED).exists(),
            30,
        ), log.read_text()[-3000:]
        assert wait_for(
            lambda: Execution.objects.filter(schedule=ticker, status=Status.SUCCEEDED).count() >= 2,
            20,
        ), log.read_text()[-3000:]
    finally:
        second.send_signal(signal.SIGTERM)
        try:
            second.wait(timeout=20)
        finally:
            stop(second)
    interrupted = Execution.objects.get(schedule=slow)
    assert "stopped before it finished" in interrupted.error


def test_sigterm_exits_0_within_the_grace_period_leaving_nothing_running(tmp_path):
    tenant = make_tenant()
    slow = echo_scan(tenant, scan_type="test_sleep", options={"seconds": 30}, interval_seconds=1)
    quick = echo_scan(tenant, scan_type="test_sleep", options={"seconds": 0.5}, interval_seconds=1)
    log = tmp_path / "scheduler.log"
    process = start_scheduler("--grace", "2", log=log)
    try:
        assert wait_for(
            lambda: (
                Execution.objects.filter(schedule=slow, status=Status.RUNNING).exists()
                and Execution.objects.filter(schedule=quick, status=Status.SUCCEEDED).exists()
            ),
            30,
        ), log.read_text()[-3000:]
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=20)
        elapsed = time.monotonic() - started
    finally:
        stop(process)
    assert code == 0, log.read_text()[-3000:]
    assert elapsed < 8, f"took {elapsed:.1f} s to stop with a 2 s grace period"
    assert (
        not Execution.objects.filter(status__in=[Status.RUNNING, Status.QUEUED])
        .exclude(claimed_by="")
        .exists()
    )
    assert Execution.objects.filter(schedule=slow, status=Status.INTERRUPTED).exists()
    from scheduling.models import SchedulerLease

    assert SchedulerLease.objects.get().holder == ""  # released for the next process


def test_overlap_skip_never_runs_two_at_once(tmp_path):
    tenant = make_tenant()
    slow = echo_scan(tenant, scan_type="test_sleep", options={"seconds": 2.5}, interval_seconds=1)
    log = tmp_path / "scheduler.log"
    process = start_scheduler("--max-seconds", "9", log=log)
    try:
        assert process.wait(timeout=60) == 0, log.read_text()[-3000:]
    finally:
        stop(process)
    rows = list(Execution.objects.filter(schedule=slow).order_by("scheduled_for"))
    ran = [r for r in rows if r.started_at is not None]
    assert any(r.status == Status.SKIPPED and "still running" in r.error for r in rows)
    assert len(ran) >= 2
    for earlier, later in zip(ran, ran[1:], strict=False):
        assert later.started_at >= earlier.finished_at, "two executions overlapped"


@contextlib.contextmanager
def database_unavailable():
    """Make the test database unusable for every other process for the duration."""
    if connection.vendor == "postgresql":
        name = connection.settings_dict["NAME"]
        # The test's own connection stays: it watches the outage end.
        own = connection.cursor().connection.info.backend_pid
        with maintenance_connection(connection.settings_dict) as server:
            # New connections are refused, and the open ones are dropped.
            server.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
            server.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> %s",
                [name, own],
            )
            try:
                yield
            finally:
                server.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
        return
    blocker = sqlite3.connect(connection.settings_dict["NAME"], timeout=30)
    try:
        blocker.execute("BEGIN EXCLUSIVE")  # nobody else can read or write now
        yield
        blocker.rollback()
    finally:
        blocker.close()


def test_scheduler_survives_a_database_that_is_unavailable_for_seconds(tmp_path, monkeypatch):
    tenant = make_tenant()
    ticker = echo_scan(tenant, interval_seconds=1, misfire_grace_seconds=60)
    log = tmp_path / "scheduler.log"
    monkeypatch.setenv("SCHEDULING_SQLITE_TIMEOUT", "0.5")
    process = start_scheduler("--lease-ttl", "30", log=log)
    monkeypatch.delenv("SCHEDULING_SQLITE_TIMEOUT")
    try:
        assert wait_for(
            lambda: Execution.objects.filter(schedule=ticker, status=Status.SUCCEEDED).exists(),
            60,
        ), log.read_text()[-3000:]
        with database_unavailable():
            time.sleep(5)
        before = Execution.objects.filter(schedule=ticker).count()
        # It recovers by itself: it fires again and says the outage is over.
        assert wait_for(
            lambda: Execution.objects.filter(schedule=ticker).count() >= before + 3, 60
        ), log.read_text()[-3000:]
        assert wait_for(lambda: "Database available again" in log.read_text(), 60), log.read_text()[
            -3000:
        ]
        assert process.poll() is None, "the scheduler died while the database was unavailable"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, log.read_text()[-3000:]
    finally:
        stop(process)
    # An outage is logged when it starts and when it is over, not per retry: however often
    # the scheduler retried meanwhile (or however many outages a loaded machine made of it),
    # the two lines alternate, and the last says it is over.
    outage_lines = [
        "unavailable" if "Database unavailable (" in line else "available again"
        for line in log.read_text().splitlines()
        if "Database unavailable (" in line or "Database available again" in line
    ]
    assert outage_lines[0] == "unavailable" and outage_lines[-1] == "available again"
    assert all(a != b for a, b in zip(outage_lines, outage_lines[1:], strict=False)), outage_lines
    per_occurrence = Counter(
        Execution.objects.filter(schedule=ticker, attempt=1).values_list("scheduled_for", flat=True)
    )
    assert max(per_occurrence.values()) == 1
