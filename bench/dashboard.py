"""Benchmark: the admin's scheduling dashboard with 10,000 schedules and 1,000,000 executions.

``python bench/dashboard.py [--quick]`` fills a fresh SQLite database (the project's WAL
settings, see ``_setup``) with 100 tenants, 10,000 interval scans (every minute, 5 minutes,
hour or day; a twentieth of them failing) and 1,000,000 finished executions spread over the
last 30 days, 4% of them in the last 24 hours (``--quick``: 1,000 schedules and 100,000
executions). It then requests the dashboard through Django's test client, server side (no
network, no browser), as a superuser (every tenant), as the staff member of one tenant and
as the staff member of ten tenants: one warm-up request, then the median and the maximum of
several, with the query count of one request and the time of the hourly aggregate alone.

Target: the median under 1 s for each user with 10,000 schedules and 1,000,000 executions.
The fixtures take about a minute on a 2-CPU machine; the whole run a few minutes.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import _setup

RUNS = 7
TARGET_S = 1.0
TENANTS = 100
RECENT_SHARE = 0.04  # executions that finished in the last 24 hours
INTERVALS = (60, 300, 3600, 86_400)
# Outcomes of the generated executions, with their weights.
OUTCOMES = (("succeeded", 90), ("failed", 6), ("timed_out", 1), ("skipped", 2), ("missed", 1))


def _db_datetime(value: datetime) -> str:
    """The text Django's SQLite backend stores for an aware datetime (naive UTC)."""
    return str(value.astimezone(UTC).replace(tzinfo=None))


def make_schedules(n: int, tenants: list[Any], now: datetime) -> list[int]:
    """Insert ``n`` scans with next runs over the next day; a twentieth of them failing."""
    from django.db import connection, transaction

    from scheduling.models import Schedule

    pks: list[int] = []
    share = n // len(INTERVALS)
    for i, seconds in enumerate(INTERVALS):
        count = n - share * (len(INTERVALS) - 1) if i == len(INTERVALS) - 1 else share
        pks += _setup.make_scans(
            count,
            tenants=tenants,
            interval_seconds=seconds,
            stamped_at=now - timedelta(days=30),
        )
    rng = random.Random(1)
    table = connection.ops.quote_name(Schedule._meta.db_table)
    rows = []
    for pk in pks:
        failing = rng.random() < 0.05
        rows.append(
            (
                _db_datetime(now + timedelta(seconds=rng.uniform(0, 86_400))),
                _db_datetime(now - timedelta(seconds=rng.uniform(0, 3600))),
                "failed" if failing else "succeeded",
                rng.randint(1, 9) if failing else 0,
                pk,
            )
        )
    sql = (
        f"UPDATE {table} SET next_run_at = %s, last_run_at = %s, last_status = %s, "  # noqa: S608
        "consecutive_failures = %s WHERE id = %s"
    )
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(sql, rows)
    return pks


def make_executions(n: int, schedules: list[tuple[int, int, str]], now: datetime) -> None:
    """Insert ``n`` finished executions of ``schedules`` (pk, tenant id, name) in one go.

    Each schedule gets the same number of rows; the m-th row of a schedule has m as its
    microseconds, so (schedule, scheduled_for, attempt) stays unique.
    """
    from django.db import connection, transaction

    from scheduling.models import Execution

    prototype = _setup._row_template(
        Execution(
            schedule_id=schedules[0][0],
            schedule_name=schedules[0][2],
            schedule_kind="scan",
            tenant_id=schedules[0][1],
            scheduled_for=now,
            status="succeeded",
            started_at=now,
            finished_at=now,
            duration_ms=120,
            worker="bench:1",
            claimed_by="bench:1:0",
        )
    )
    columns = list(prototype)
    index = {column: i for i, column in enumerate(columns)}
    statuses = [status for status, _weight in OUTCOMES]
    weights = [weight for _status, weight in OUTCOMES]
    rng = random.Random(2)
    recent = int(n * RECENT_SHARE)
    sql = _setup._insert_sql(Execution, columns)
    base = list(prototype.values())
    start = now.timestamp()
    batch: list[tuple[Any, ...]] = []
    with transaction.atomic(), connection.cursor() as cursor:
        for k in range(n):
            pk, tenant_id, name = schedules[k % len(schedules)]
            age = rng.uniform(0, 86_400) if k < recent else rng.uniform(86_400, 30 * 86_400)
            finished = datetime.fromtimestamp(start - age, UTC)
            scheduled = finished.replace(microsecond=k // len(schedules)) - timedelta(seconds=1)
            status = rng.choices(statuses, weights)[0]
            row = base.copy()
            row[index["schedule_id"]] = pk
            row[index["schedule_name"]] = name
            row[index["tenant_id"]] = tenant_id
            row[index["status"]] = status
            row[index["scheduled_for"]] = _db_datetime(scheduled)
            row[index["queued_at"]] = row[index["scheduled_for"]]
            row[index["started_at"]] = row[index["scheduled_for"]]
            row[index["finished_at"]] = _db_datetime(finished)
            batch.append(tuple(row))
            if len(batch) == 50_000:
                cursor.executemany(sql, batch)
                batch.clear()
        if batch:
            cursor.executemany(sql, batch)


def make_staff(tenants: list[Any]) -> Any:
    from tests.factories import make_membership, make_user

    user = make_user(is_staff=True)
    for tenant in tenants:
        make_membership(user=user, tenant=tenant, role="operator")
    return user


def time_dashboard(user: Any) -> dict[str, Any]:
    """Median/max server time of the dashboard for ``user``, its queries, its hourly query."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse

    from scheduling.admin.figures import hourly_outcomes
    from scheduling.models import Execution
    from scheduling.tenancy import visible_tenant_ids

    client = Client()
    client.force_login(user)
    url = reverse("admin:scheduling_dashboard")
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)  # warm-up: caches, template compilation
    assert response.status_code == 200, response.status_code
    # Count now: the next requests clear the log that ``queries`` reads lazily.
    query_count = len(queries)
    times = []
    for _i in range(RUNS):
        started = time.perf_counter()
        response = client.get(url)
        times.append(time.perf_counter() - started)
        assert response.status_code == 200
    executions = Execution.objects.all()
    ids = visible_tenant_ids(user)
    if ids is not None:
        executions = executions.filter(tenant_id__in=sorted(ids))
    started = time.perf_counter()
    _start, hours = hourly_outcomes(executions, now=datetime.now(UTC))
    hourly = time.perf_counter() - started
    return {
        "median": statistics.median(times),
        "max": max(times),
        "queries": query_count,
        "hourly": hourly,
        "counted": sum(h.total for h in hours),
        "bytes": len(response.content),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="1,000 schedules and 100,000 executions"
    )
    args = parser.parse_args()
    n_schedules, n_executions = (1_000, 100_000) if args.quick else (10_000, 1_000_000)
    began = time.perf_counter()
    path = _setup.setup()
    try:
        from django.test.utils import setup_test_environment

        from scheduling.models import Schedule
        from tests.factories import make_user

        setup_test_environment()  # the test client's host name, as under the test runner
        now = datetime.now(UTC)
        started = time.perf_counter()
        tenants = _setup.make_tenants(TENANTS)
        pks = make_schedules(n_schedules, tenants, now)
        schedules = list(
            Schedule.objects.filter(pk__in=pks)
            .order_by("pk")
            .values_list("pk", "tenant_id", "name")
        )
        fixture_schedules = time.perf_counter() - started
        started = time.perf_counter()
        make_executions(n_executions, schedules, now)
        fixture_executions = time.perf_counter() - started
        print(
            f"fixtures: {n_schedules:,} schedules over {TENANTS} tenants in "
            f"{fixture_schedules:.1f} s; {n_executions:,} executions "
            f"({RECENT_SHARE:.0%} in the last 24 h) in {fixture_executions:.1f} s"
        )
        users = [
            ("superuser (all tenants)", make_user(is_staff=True, is_superuser=True)),
            ("staff of 1 tenant", make_staff(tenants[:1])),
            ("staff of 10 tenants", make_staff(tenants[:10])),
        ]
        print(f"\ndashboard server time, median of {RUNS} requests after a warm-up:")
        ok = True
        for label, user in users:
            f = time_dashboard(user)
            passed = f["median"] < TARGET_S
            ok = ok and passed
            print(
                f"  {label:<24} median {f['median'] * 1000:7.1f} ms  max {f['max'] * 1000:7.1f} ms"
                f"  {f['queries']:2d} queries  hourly aggregate {f['hourly'] * 1000:6.1f} ms"
                f" ({f['counted']:,} executions)  {f['bytes'] / 1024:.0f} KiB"
                f"  {_setup.verdict(passed)} (< {TARGET_S:.0f} s)"
            )
        scale = "10,000 schedules / 1,000,000 executions" if not args.quick else "--quick sizes"
        print(f"\noverall: {_setup.verdict(ok)} at {scale}")
        if args.quick:
            print("(--quick: the target is judged at 10,000 / 1,000,000; run without --quick)")
    finally:
        _setup.close_db()
        _setup.remove_db(path)
    print(
        f"\nbench/dashboard.py finished in {time.perf_counter() - began:.0f} s; "
        f"load average {_setup.load_text()} (other processes on this machine skew the figures)"
    )


if __name__ == "__main__":
    main()
