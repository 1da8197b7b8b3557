"""/healthz and /metrics: who may ask, what a 503 logs, and the execution counters behind
/metrics (``ExecutionCounter``) on every path where an execution finishes."""

from __future__ import annotations

import io
import logging
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from scheduling import runner
from scheduling.checks import check_monitoring_access, check_settings
from scheduling.exceptions import StateConflict
from scheduling.models import (
    CounterSeries,
    Execution,
    ExecutionCounter,
    Status,
    TriggerKind,
    counter_observations,
)
from tests.factories import make_scan, make_tenant
from tests.scheduling.loops import claimed
from tests.scheduling.test_health import lease, samples, value

TOKEN = "s3cret-monitoring-token"


def counted(series: str = CounterSeries.EXECUTIONS) -> dict[tuple[str, str, str], int]:
    """The counters of ``series``: (kind, status, bucket) -> value."""
    return {
        (c.kind, c.status, c.bucket): c.value
        for c in ExecutionCounter.objects.filter(series=series)
    }


def finished_total(status: str, kind: str = "scan") -> int:
    return counted().get((kind, status, ""), 0)


def echo(tenant=None, **overrides):
    return make_scan(tenant=tenant or make_tenant(), scan_type="test_echo", target="x", **overrides)


# -- access ---------------------------------------------------------------------------------


@pytest.mark.django_db
class TestAccess:
    @override_settings(SCHEDULING_MONITORING_TOKEN=TOKEN)
    @pytest.mark.parametrize("url", ["/healthz", "/metrics"])
    def test_a_token_is_required_when_set(self, client, url):
        lease()
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            response = client.get(url, headers=headers)
            assert response.status_code == 401
            assert response.content == b""  # nothing about the scheduler, nor why
            assert response["WWW-Authenticate"].startswith("Bearer")
        assert client.get(url, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        assert client.get(url, headers={"Authorization": f"bearer {TOKEN}"}).status_code == 200

    @override_settings(SCHEDULING_MONITORING_ALLOW_NETWORKS=["10.0.0.0/8", "2001:db8::/32"])
    @pytest.mark.parametrize("url", ["/healthz", "/metrics"])
    def test_only_allowed_networks_are_answered(self, client, url):
        lease()
        for outside in ("127.0.0.1", "192.168.1.10", "::1", "not-an-address"):
            response = client.get(url, REMOTE_ADDR=outside)
            assert (response.status_code, response.content) == (403, b"")
        for inside in ("10.1.2.3", "::ffff:10.1.2.3", "2001:db8::5"):
            assert client.get(url, REMOTE_ADDR=inside).status_code == 200

    @override_settings(
        SCHEDULING_MONITORING_ALLOW_NETWORKS=["127.0.0.0/8"], SCHEDULING_MONITORING_TOKEN=TOKEN
    )
    def test_both_restrictions_apply_together(self, client):
        lease()
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", REMOTE_ADDR="10.0.0.1").status_code == 403
        ok = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200

    def test_without_settings_everyone_is_answered(self, client):
        assert client.get("/metrics", REMOTE_ADDR="203.0.113.9").status_code == 200


@pytest.mark.django_db
class TestUnhealthyIsNotAServerError:
    def test_a_503_probe_logs_no_error(self, client, caplog):
        caplog.set_level(logging.DEBUG, logger="django.request")
        for _ in range(3):
            assert client.get("/healthz").status_code == 503  # no scheduler ever
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]

    def test_an_unreadable_database_logs_no_error_either(self, client, caplog, monkeypatch):
        def broken():
            from django.db import DatabaseError

            raise DatabaseError("gone")

        monkeypatch.setattr("scheduling.monitoring.get_lease", broken)
        caplog.set_level(logging.DEBUG, logger="django.request")
        assert client.get("/healthz").status_code == 503
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]

    def test_other_server_errors_are_still_logged(self, client, caplog):
        # The control: the 503 above is quiet because of the view, not of the test setup.
        from django.http import HttpResponse
        from django.utils.log import log_response

        caplog.set_level(logging.DEBUG, logger="django.request")
        log_response("Service Unavailable: %s", "/x", response=HttpResponse(status=503))
        assert [r.levelno for r in caplog.records] == [logging.ERROR]


# -- checks ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "value", "check_id"),
    [
        ("SCHEDULING_MONITORING_TOKEN", "", "scheduling.E047"),
        ("SCHEDULING_MONITORING_TOKEN", 1234, "scheduling.E047"),
        ("SCHEDULING_MONITORING_TOKEN", " padded ", "scheduling.E047"),
        ("SCHEDULING_MONITORING_ALLOW_NETWORKS", ["10.0.0.0/33"], "scheduling.E048"),
        ("SCHEDULING_MONITORING_ALLOW_NETWORKS", "10.0.0.0/8", "scheduling.E048"),
    ],
)
def test_bad_monitoring_setting_is_reported_with_a_hint(setting, value, check_id):
    with override_settings(**{setting: value}):
        errors = check_settings()
    assert check_id in {e.id for e in errors}
    assert all(e.hint for e in errors)


def test_deploy_check_warns_while_the_endpoints_are_open():
    [warning] = check_monitoring_access()
    assert warning.id == "scheduling.W009"
    with override_settings(SCHEDULING_MONITORING_TOKEN=TOKEN):
        assert check_monitoring_access() == []
    with override_settings(SCHEDULING_MONITORING_ALLOW_NETWORKS=["10.0.0.0/8"]):
        assert check_monitoring_access() == []
    err = io.StringIO()
    call_command("check", "--deploy", "--tag", "security", stderr=err, stdout=io.StringIO())
    assert "scheduling.W009" in err.getvalue()


# -- the counters ---------------------------------------------------------------------------


@pytest.mark.django_db
class TestCountersDirectPath:
    def test_an_execution_is_counted_once_when_it_finishes(self):
        scan = echo()
        execution = runner.claim(scan, timezone.now() - timedelta(seconds=2))
        assert ExecutionCounter.objects.count() == 0  # queued: nothing counted yet
        runner.execute(execution.pk)
        execution.refresh_from_db()
        assert finished_total(Status.SUCCEEDED) == 1
        duration = counted(CounterSeries.DURATION)
        assert sum(v for (_k, _s, b), v in duration.items() if b != "sum_ms") == 1
        assert duration[("scan", "succeeded", "sum_ms")] == execution.duration_ms
        lateness = counted(CounterSeries.LATENESS)
        assert lateness[("scan", "succeeded", "2.5")] == 1  # started ~2 s late
        # A late outcome of the same execution is discarded and not counted again.
        assert execution.mark_finished(Status.FAILED, error="late") is False
        assert finished_total(Status.SUCCEEDED) == 1
        assert finished_total(Status.FAILED) == 0

    def test_retries_count_each_attempt_by_its_final_status(self):
        scan = make_scan(
            tenant=make_tenant(),
            scan_type="test_sleep",
            target="x",
            options={"fail": True},
            max_retries=1,
            retry_backoff_seconds=1,
        )
        first = runner.claim(scan, timezone.now())
        runner.execute(first.pk)
        retry = Execution.objects.get(attempt=2)
        assert retry.status == Status.QUEUED
        assert finished_total(Status.FAILED) == 1
        runner.execute(retry.pk)
        assert finished_total(Status.FAILED) == 2
        # Only first attempts of scheduled occurrences feed the lateness histogram.
        late = counted(CounterSeries.LATENESS)
        assert sum(v for (_k, _s, b), v in late.items() if b != "sum_ms") == 1

    def test_cancel_timeout_interrupt_and_skips_count_as_their_final_status(self):
        tenant = make_tenant()
        now = timezone.now()
        queued = runner.claim(echo(tenant), now)
        runner.cancel(queued)
        with pytest.raises(StateConflict):
            runner.cancel(queued)
        running = runner.claim(echo(tenant), now)
        running.mark_started(worker="w")
        runner.time_out(running.pk)
        runner.time_out(running.pk)  # already final: nothing more
        lost = runner.claim(echo(tenant), now)
        runner.interrupt(Execution.objects.filter(pk=lost.pk), "lost")
        runner.claim(echo(tenant), now, trigger=TriggerKind.DEPENDENCY, status=Status.SKIPPED)
        assert {status: n for (_k, status, _b), n in counted().items()} == {
            Status.CANCELLED: 1,
            Status.TIMED_OUT: 1,
            Status.INTERRUPTED: 1,
            Status.SKIPPED: 1,
        }

    def test_missed_claims_of_the_dispatch_are_counted_with_their_insert(self):
        at = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
        scans = [echo(misfire_grace_seconds=1) for _ in range(3)]
        from scheduling.scheduler import dispatch

        dispatch.dispatch_many(
            [(scan.pk, [at], None) for scan in scans],
            claimed_by="test",
            submit=lambda execution, priority: None,
            now=at + timedelta(minutes=5),
        )
        assert Execution.objects.filter(status=Status.MISSED).count() == 3
        assert finished_total(Status.MISSED) == 3

    def test_deleting_history_leaves_the_counters_alone(self):
        scan = echo()
        runner.execute(runner.claim(scan, timezone.now()).pk)
        Execution.objects.all().delete()  # what retention and purge do
        assert finished_total(Status.SUCCEEDED) == 1


@pytest.mark.django_db(transaction=True)
def test_the_recorder_counts_a_batch_once_in_one_update(recorder):
    rec = recorder(busy=lambda: True, max_delay=5)  # held back until flush(): one batch
    tenant = make_tenant()
    at = timezone.now().replace(microsecond=0)
    executions = claimed([echo(tenant) for _ in range(6)], at)
    for execution in executions[:4]:
        runner.execute(execution.pk, worker="w1", execution=execution, writer=rec)
    for execution in executions[4:]:
        assert rec.start(execution, worker="w1")
        rec.finish(execution, Status.FAILED, error="boom")
    with CaptureQueriesContext(connection) as queries:
        assert rec.flush(timeout=10)
    assert finished_total(Status.SUCCEEDED) == 4
    assert finished_total(Status.FAILED) == 2
    # The recorder's thread has its own connection; the counters are written by it. So
    # count the writes by re-running a batch here: one UPDATE covers every key of it.
    assert not queries  # (nothing ran on this thread's connection)
    rows = list(Execution.objects.filter(pk__in=[e.pk for e in executions]))
    with CaptureQueriesContext(connection) as queries:
        ExecutionCounter.objects.count_finished(rows)
    assert len(queries) == 1
    assert finished_total(Status.SUCCEEDED) == 8
    # A late outcome handed over after a timeout is discarded, not counted.
    late = claimed([echo(tenant)], at + timedelta(seconds=1))[0]
    assert rec.start(late, worker="w1")
    assert rec.flush(timeout=10)
    runner.time_out(late.pk)
    rec.finish(late, Status.SUCCEEDED)
    assert rec.flush(timeout=10)
    assert finished_total(Status.TIMED_OUT) == 1
    assert finished_total(Status.SUCCEEDED) == 8


# -- the scrape -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_scrape_costs_the_same_queries_whatever_the_history(client):
    tenant = make_tenant()
    scan = echo(tenant)
    lease()

    def scrape() -> list[str]:
        with CaptureQueriesContext(connection) as queries:
            assert client.get("/metrics").status_code == 200
        return [q["sql"] for q in queries]

    runner.execute(runner.claim(scan, timezone.now() - timedelta(seconds=1)).pk)
    small = scrape()
    now = timezone.now()
    for n in range(30):
        runner.execute(runner.claim(scan, now - timedelta(minutes=n + 1)).pk)
    large = scrape()
    assert len(small) == len(large) <= 5
    # The history is read only for active rows: never a scan of finished executions.
    on_history = [sql for sql in large if '"scheduling_execution"' in sql]
    assert on_history and all("'queued'" in sql and "'running'" in sql for sql in on_history)
    found = samples(client.get("/metrics").content.decode())
    assert value(found, "scheduling_executions_total", kind="scan", status="succeeded") == 31


# -- the data migration ---------------------------------------------------------------------

BEFORE = ("scheduling", "0006_cron_rule_calendar")
AFTER = ("scheduling", "0007_execution_counters")


@pytest.mark.django_db(transaction=True)
def test_the_migration_counts_the_existing_history_as_the_scheduler_would():
    tenant = make_tenant()
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    base = datetime(2026, 5, 1, tzinfo=UTC)
    try:
        executor.migrate([BEFORE])
        executor.loader.build_graph()
        old = executor.loader.project_state([BEFORE]).apps
        schedule = old.get_model("scheduling", "Schedule").objects.create(
            tenant_id=tenant.pk, kind="scan", name="old", timezone="UTC", interval_seconds=60
        )
        rows = []
        # Durations and delays on and around the bucket bounds, every status and trigger.
        statuses = ["succeeded", "failed", "timed_out", "skipped", "missed", "interrupted"]
        triggers = ["schedule", "manual", "retry"]
        for i in range(60):
            status = statuses[i % len(statuses)]
            started = base + timedelta(
                minutes=i, milliseconds=[0, 50, 51, 250, 2500, 400_000][i % 6]
            )
            rows.append(
                old.get_model("scheduling", "Execution")(
                    schedule_id=schedule.pk,
                    schedule_name="old",
                    schedule_kind="scan",
                    tenant_id=tenant.pk,
                    scheduled_for=base + timedelta(minutes=i),
                    attempt=1 + (i % 7 == 0),
                    trigger=triggers[i % len(triggers)],
                    status=status,
                    started_at=None if status == "missed" else started,
                    finished_at=started,
                    duration_ms=[10, 11, 100, 5000, 3_600_001, 0][(i // 6) % 6],
                )
            )
        old.get_model("scheduling", "Execution").objects.bulk_create(rows)
        old.get_model("scheduling", "Execution").objects.create(
            schedule_id=schedule.pk,
            schedule_name="old",
            schedule_kind="scan",
            tenant_id=tenant.pk,
            scheduled_for=base,
            attempt=9,
            status="running",
            started_at=base,
        )
        executor = MigrationExecutor(connection)
        executor.migrate([AFTER])
        migrated = {
            (c.kind, c.status, c.series, c.bucket): c.value for c in ExecutionCounter.objects.all()
        }
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(latest)
    expected: dict[tuple[str, str, str, str], int] = {}
    for execution in Execution.objects.exclude(status="running"):
        for series, bucket, amount in counter_observations(execution):
            key = (execution.schedule_kind, execution.status, series, bucket)
            expected[key] = expected.get(key, 0) + amount
    assert migrated == {key: amount for key, amount in expected.items() if amount}
    assert sum(v for (_k, _s, series, _b), v in migrated.items() if series == "executions") == 60


@pytest.mark.django_db
def test_counting_costs_one_update_and_three_queries_on_first_use():
    scan = echo()
    first = runner.claim(scan, timezone.now())
    first.mark_started(worker="w")
    with CaptureQueriesContext(connection) as queries:
        assert first.mark_finished(Status.SUCCEEDED)
    # The outcome, then the counters: update (rows missing, the found ones returned), insert,
    # update; without UPDATE ... RETURNING, a select of the rows present as well.
    returning = connection.features.can_return_rows_from_bulk_insert
    assert len(queries) == 1 + (3 if returning else 4)
    second = runner.claim(scan, timezone.now() + timedelta(seconds=1))
    second.mark_started(worker="w")
    with CaptureQueriesContext(connection) as queries:
        assert second.mark_finished(Status.SUCCEEDED)
    assert len(queries) == 1 + 1
    assert finished_total(Status.SUCCEEDED) == 2
