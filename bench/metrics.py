"""Benchmark: ``GET /metrics`` with 10,000 schedules and 10,000, then 100,000 executions.

``python bench/metrics.py`` fills a fresh SQLite database (the project's WAL settings, see
``_setup``) with 100 tenants, 10,000 interval scans and 10,000 finished executions (the
fixtures of ``bench/dashboard.py``), times the scrape through Django's test client (server
side: no network), adds 90,000 executions and times it again. With the counters table
(``ExecutionCounter``) the raw-inserted executions are counted by the data migration's
``count_history``, as for an existing history.

Target: the median scrape under 50 ms at 100,000 executions, and flat: at 100,000 no more
than twice the time at 10,000 plus 5 ms (the scrape must not read the history).
"""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import _setup
import dashboard

RUNS = 7
TARGET_S = 0.050
TENANTS = 100
SCHEDULES = 10_000


def rebuild_counters() -> None:
    """Count the raw-inserted executions into the counters, as the data migration does."""
    import importlib

    from django.apps import apps

    try:
        migration = importlib.import_module("scheduling.migrations.0007_execution_counters")
    except ImportError:  # before the counters existed: /metrics reads the history
        return
    apps.get_model("scheduling", "ExecutionCounter").objects.all().delete()
    migration.count_history(apps, None)


def time_metrics() -> dict[str, Any]:
    """Median/max server time of ``/metrics`` and the query count of one scrape."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/metrics")
    assert response.status_code == 200, response.status_code
    query_count = len(queries)
    slowest = sorted(queries.captured_queries, key=lambda q: -float(q["time"]))[:3]
    times = []
    for _i in range(RUNS):
        started = time.perf_counter()
        response = client.get("/metrics")
        times.append(time.perf_counter() - started)
        assert response.status_code == 200
    return {
        "median": statistics.median(times),
        "max": max(times),
        "queries": query_count,
        "slowest": [(float(q["time"]) * 1000, q["sql"][:70]) for q in slowest],
        "bytes": len(response.content),
    }


def main() -> None:
    began = time.perf_counter()
    path = _setup.setup()
    try:
        from django.test.utils import setup_test_environment

        from scheduling.models import Schedule

        setup_test_environment()
        now = datetime.now(UTC)
        tenants = _setup.make_tenants(TENANTS)
        pks = dashboard.make_schedules(SCHEDULES, tenants, now)
        schedules = list(
            Schedule.objects.filter(pk__in=pks)
            .order_by("pk")
            .values_list("pk", "tenant_id", "name")
        )
        figures = {}
        for total, add in ((10_000, 10_000), (100_000, 90_000)):
            started = time.perf_counter()
            # The rows are seeded alike: another ``now`` per round keeps them unique.
            dashboard.make_executions(add, schedules, now - timedelta(seconds=total // 7))
            rebuild_counters()
            print(f"fixtures: {total:,} executions ({time.perf_counter() - started:.1f} s)")
            f = figures[total] = time_metrics()
            print(
                f"  GET /metrics at {total:>7,} executions: median {f['median'] * 1000:7.1f} ms"
                f"  max {f['max'] * 1000:7.1f} ms  {f['queries']} queries"
                f"  {f['bytes'] / 1024:.0f} KiB"
            )
            for ms, sql in f["slowest"]:
                print(f"    {ms:6.1f} ms  {sql}")
        small, large = figures[10_000]["median"], figures[100_000]["median"]
        fast = large < TARGET_S
        flat = large <= 2 * small + 0.005
        print(
            f"\nmedian at 100,000: {large * 1000:.1f} ms: {_setup.verdict(fast)} "
            f"(< {TARGET_S * 1000:.0f} ms)"
        )
        print(
            f"growth 10,000 -> 100,000: {small * 1000:.1f} -> {large * 1000:.1f} ms: "
            f"{_setup.verdict(flat)} (<= 2x + 5 ms)"
        )
        print(f"overall: {_setup.verdict(fast and flat)}")
    finally:
        _setup.close_db()
        _setup.remove_db(path)
    print(
        f"\nbench/metrics.py finished in {time.perf_counter() - began:.0f} s; "
        f"load average {_setup.load_text()} (other processes on this machine skew the figures)"
    )


if __name__ == "__main__":
    main()
