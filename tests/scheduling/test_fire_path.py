"""The cost of one fired occurrence: queries per execution, and the worker's connection.

The scheduler runs every due occurrence through ``dispatch_many`` then ``runner.execute`` in a
worker thread; at hundreds of executions a second each extra query or reconnect shows up as
start lateness (``bench/fire.py``). These tests pin the costs so they cannot silently grow.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest
from django.db import connection, transaction

from scheduling import runner
from scheduling.executors.thread import WorkerPool
from scheduling.models import (
    DURATION_BUCKETS,
    LATENESS_BUCKETS,
    Execution,
    ExecutionCounter,
    Status,
)
from tests.factories import make_alert_rule, make_scan, make_tenant
from tests.scheduling.loops import claimed

NOW = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)

# Running, outcome, its counters (/metrics), schedule state, the firing-alert probe and the
# dependents probe.
FIRED_QUERIES = 6


@pytest.fixture
def counter_rows(db):
    """The rows of the /metrics counters, which the first execution ever of a kind and status
    creates (``test_monitoring``): the steady state is pinned here."""
    keys = [("executions", "")] + [
        (series, str(bound))
        for series, bounds in (("duration", DURATION_BUCKETS), ("lateness", LATENESS_BUCKETS))
        for bound in (*bounds, "+Inf", "sum_ms")
    ]
    ExecutionCounter.objects.bulk_create(
        ExecutionCounter(kind="scan", status=Status.SUCCEEDED, series=series, bucket=bucket)
        for series, bucket in keys
    )


def echo_scans(tenant, count: int = 3):
    return [make_scan(tenant=tenant, scan_type="test_echo", target="x") for _ in range(count)]


@pytest.mark.django_db
@pytest.mark.usefixtures("counter_rows")
class TestQueriesPerExecution:
    def test_a_fired_trivial_execution_runs_in_a_fixed_number_of_queries(
        self, django_assert_max_num_queries
    ):
        tenant = make_tenant()
        # An alert rule makes the tenant's successes look for firing alerts; none is firing.
        make_alert_rule(tenant=tenant)
        scans = echo_scans(tenant)
        submitted = claimed(scans, NOW)
        for execution in submitted:
            with django_assert_max_num_queries(FIRED_QUERIES):
                runner.execute(execution.pk, worker="w", execution=execution)
        for scan in scans:
            scan.refresh_from_db()
            assert (scan.last_status, scan.run_count) == (Status.SUCCEEDED, 1)
        assert set(Execution.objects.values_list("status", flat=True)) == {Status.SUCCEEDED}

    def test_an_execution_loaded_by_id_costs_one_query_more(self, django_assert_max_num_queries):
        (scan,) = echo_scans(make_tenant(), 1)
        execution = runner.claim(scan, NOW, claimed_by="test")
        with django_assert_max_num_queries(FIRED_QUERIES + 1):
            runner.execute(execution.pk, worker="w")
        execution.refresh_from_db()
        assert execution.status == Status.SUCCEEDED
        assert execution.result == {"name": scan.name, "attempt": 1}

    def test_a_dependent_is_still_queued_when_its_upstream_succeeds(self):
        upstream, dependent = echo_scans(make_tenant(), 2)
        dependent.depends_on.set([upstream])
        (execution,) = claimed([upstream], NOW)
        runner.execute(execution.pk, worker="w", execution=execution)
        queued = Execution.objects.get(schedule=dependent)
        assert (queued.scheduled_for, queued.trigger, queued.status) == (
            NOW,
            "dependency",
            Status.QUEUED,
        )


def run_items(executor: WorkerPool, seen: list, count: int) -> None:
    deadline = time.monotonic() + 10
    while len(seen) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(seen) == count


@pytest.mark.django_db(transaction=True)
def test_a_worker_keeps_its_connection_for_back_to_back_items_on_sqlite():
    seen: list = []
    lock = threading.Lock()

    def run(execution_id: int) -> None:
        connection.ensure_connection()
        with lock:
            # The objects themselves, not their ids: a freed id can be reused.
            seen.append(connection.connection)

    executor = WorkerPool(max_workers=1, run=run, on_timeout=lambda pk: None)
    for execution_id in (1, 2, 3):
        executor.submit(execution_id)  # queued before the worker starts: back to back
    executor.start()
    try:
        run_items(executor, seen, 3)
    finally:
        executor.shutdown(grace=1)
    distinct = len({id(conn) for conn in seen})
    if connection.vendor == "sqlite":
        assert distinct == 1
    else:
        # A server can drop a connection: each item checks its connection's age as before.
        assert distinct == 3


@pytest.mark.django_db(transaction=True)
def test_an_item_that_leaves_autocommit_off_does_not_leak_it_into_the_next():
    autocommit: list[bool] = []

    def run(execution_id: int) -> None:
        autocommit.append(connection.get_autocommit())
        if execution_id == 1:
            transaction.set_autocommit(False)  # a handler that forgets to restore it

    executor = WorkerPool(max_workers=1, run=run, on_timeout=lambda pk: None)
    for execution_id in (1, 2):
        executor.submit(execution_id)
    executor.start()
    try:
        run_items(executor, autocommit, 2)
    finally:
        executor.shutdown(grace=1)
    assert autocommit == [True, True]


def test_finished_executions_do_not_pile_up_in_the_timeout_watchdog():
    done: list[int] = []
    lock = threading.Lock()

    def run(execution_id: int) -> None:
        with lock:
            done.append(execution_id)

    executor = WorkerPool(max_workers=2, run=run, on_timeout=lambda pk: None)
    executor.start()
    try:
        for execution_id in range(1, 2001):
            executor.submit(execution_id, timeout=3600)  # deadlines an hour away
        run_items(executor, done, 2000)
        # The watchdog (every 0.2 s) drops the deadlines of finished executions: without that
        # the heap would grow with executions per second times the timeout.
        deadline = time.monotonic() + 5
        while len(executor._deadlines) > 64 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(executor._deadlines) <= 64
    finally:
        executor.shutdown(grace=1)
