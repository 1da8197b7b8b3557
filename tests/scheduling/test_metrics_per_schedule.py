"""Per-schedule series of /metrics (``SCHEDULING_METRICS_PER_SCHEDULE``): each enabled
schedule's last success and next run by ids, read from the schedule row so that the last
success outlives the history's retention; and ``Schedule.last_success_at`` behind them, kept by
the runner, filled by migration 0010, shown by the admin and the API."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from scheduling import runner, services
from scheduling.checks import check_settings
from scheduling.models import Execution, PeriodicScan, Schedule, Status
from tests.factories import (
    make_membership,
    make_scan,
    make_task,
    make_tenant,
    make_token,
    make_user,
)
from tests.factories import run_once as run_now
from tests.scheduling.loops import claimed

LAST_SUCCESS = "scheduling_schedule_last_success_timestamp_seconds"
NEXT_RUN = "scheduling_schedule_next_run_timestamp_seconds"
PER_SCHEDULE = {LAST_SUCCESS, NEXT_RUN}
# A succeeded run at T, then one day after the default retention of 90 days.
T = datetime(2026, 3, 2, 9, 30, 5, tzinfo=UTC)
AFTER_RETENTION = T + timedelta(days=91)

on = override_settings(SCHEDULING_METRICS_PER_SCHEDULE=True)


def scrape(client) -> dict[str, dict[tuple[str, str, str], float]]:
    """The per-schedule families of a real /metrics answer: name -> (schedule_id, tenant_id,
    kind) -> value, parsed by prometheus_client's own text parser."""
    response = client.get("/metrics")
    assert response.status_code == 200
    found: dict[str, dict[tuple[str, str, str], float]] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        if family.name in PER_SCHEDULE:
            assert family.type == "gauge"
            series = found.setdefault(family.name, {})
            for sample in family.samples:
                assert set(sample.labels) == {"schedule_id", "tenant_id", "kind"}
                key = (
                    sample.labels["schedule_id"],
                    sample.labels["tenant_id"],
                    sample.labels["kind"],
                )
                series[key] = sample.value
    return found


def key(schedule: Schedule) -> tuple[str, str, str]:
    return (str(schedule.pk), str(schedule.tenant_id or ""), schedule.kind)


def echo(tenant, **overrides) -> PeriodicScan:
    return make_scan(tenant=tenant, scan_type="test_echo", target="x", **overrides)


def run_once(schedule: Schedule, *, fail: bool = False) -> Execution:
    """Claim and run one occurrence of ``schedule`` as the scheduler would."""
    execution = run_now(schedule)
    assert execution.status == (Status.FAILED if fail else Status.SUCCEEDED)
    return execution


# -- off by default -------------------------------------------------------------------------


@pytest.mark.django_db
def test_off_by_default_no_series_names_a_schedule(client):
    scan = echo(make_tenant())
    run_once(scan)
    body = client.get("/metrics").content.decode()
    assert scrape(client) == {}
    assert "schedule_id" not in body
    assert f'"{scan.pk}"' not in body


# -- values ---------------------------------------------------------------------------------


@pytest.mark.django_db
@on
def test_a_succeeded_run_is_the_last_success_and_the_next_run_is_the_stored_one(client):
    tenant = make_tenant(name="Acme Secret Name")
    scan = echo(tenant, name="secret scan name")
    with time_machine.travel(T):
        execution = run_once(scan)
    scan.refresh_from_db()
    assert scan.last_success_at == execution.finished_at
    services.refresh_next_run(scan)
    assert scan.next_run_at is not None

    found = scrape(client)

    assert found[LAST_SUCCESS] == {key(scan): execution.finished_at.timestamp()}
    assert found[NEXT_RUN] == {key(scan): scan.next_run_at.timestamp()}
    assert key(scan) == (str(scan.pk), str(tenant.pk), "scan")
    body = client.get("/metrics").content.decode()
    assert "secret" not in body.lower()  # ids only: no tenant or schedule names


@pytest.mark.django_db
@on
def test_a_failure_keeps_the_last_success_and_the_next_success_moves_it(client):
    scan = make_scan(tenant=make_tenant(), scan_type="test_sleep", target="x", options={})
    with time_machine.travel(T):
        first = run_once(scan)
    PeriodicScan.objects.filter(pk=scan.pk).update(options={"fail": True})
    with time_machine.travel(T + timedelta(hours=1)):
        run_once(Schedule.objects.get(pk=scan.pk), fail=True)
    assert scrape(client)[LAST_SUCCESS][key(scan)] == first.finished_at.timestamp()

    PeriodicScan.objects.filter(pk=scan.pk).update(options={})
    with time_machine.travel(T + timedelta(hours=2)):
        second = run_once(Schedule.objects.get(pk=scan.pk))
    assert second.finished_at > first.finished_at
    assert scrape(client)[LAST_SUCCESS][key(scan)] == second.finished_at.timestamp()


@pytest.mark.django_db
@on
def test_the_last_success_survives_the_retention_of_its_execution(client):
    scan = echo(make_tenant())
    with time_machine.travel(T):
        execution = run_once(scan)
    with time_machine.travel(AFTER_RETENTION):
        call_command("scheduling", "purge", stdout=io.StringIO())
    assert not Execution.objects.filter(pk=execution.pk).exists()  # the history is gone

    assert scrape(client)[LAST_SUCCESS] == {key(scan): execution.finished_at.timestamp()}


@pytest.mark.django_db
@on
def test_only_enabled_schedules_have_series_and_a_next_run_only_where_known(client):
    tenant = make_tenant()
    never_ran = echo(tenant)
    services.refresh_next_run(never_ran)
    disabled = echo(tenant)
    run_once(disabled)
    services.refresh_next_run(disabled)
    Schedule.objects.filter(pk=disabled.pk).update(enabled=False)
    paused = echo(tenant)
    services.pause_schedule(schedule=paused)  # until resumed: no next run
    paused.refresh_from_db()
    assert paused.next_run_at is None

    found = scrape(client)

    # A schedule that never succeeded reads 0 (alert rules see it); a disabled one is absent.
    assert found[LAST_SUCCESS] == {key(never_ran): 0, key(paused): 0}
    assert found[NEXT_RUN] == {key(never_ran): never_ran.next_run_at.timestamp()}


@pytest.mark.django_db
@on
def test_a_system_schedule_has_an_empty_tenant_id(client):
    task = make_task(tenant=None, task_type="test_add", options={"a": 1})
    execution = run_once(task)
    assert scrape(client)[LAST_SUCCESS] == {
        (str(task.pk), "", "task"): execution.finished_at.timestamp()
    }


@pytest.mark.django_db(transaction=True)
def test_the_recorders_batched_outcome_sets_the_last_success(recorder):
    # The scheduler's thread executor writes outcomes through the recorder, in batches.
    rec = recorder()
    scans = [echo(make_tenant()) for _ in range(3)]
    for execution in claimed(scans, timezone.now()):
        runner.execute(execution.pk, worker="w1", execution=execution, writer=rec)
    assert rec.flush(timeout=10)
    for scan in scans:
        scan.refresh_from_db()
        finished = Execution.objects.get(schedule=scan).finished_at
        assert scan.last_success_at == finished is not None


# -- cost -----------------------------------------------------------------------------------


@pytest.mark.django_db
@on
def test_a_scrape_costs_the_same_queries_at_5_and_at_200_schedules(
    client, django_assert_max_num_queries
):
    tenant = make_tenant()

    def add(count: int) -> None:
        for _ in range(count):
            scan = echo(tenant)
            services.refresh_next_run(scan)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/metrics").status_code == 200
        return len(captured)

    add(5)
    Schedule.objects.filter(pk__in=[s.pk for s in Schedule.objects.all()[:3]]).update(
        last_success_at=T
    )
    with django_assert_max_num_queries(6):
        small = scrape(client)
    few = queries()
    add(195)
    with django_assert_max_num_queries(6):
        large = scrape(client)
    assert queries() == few
    assert (len(small[LAST_SUCCESS]), len(small[NEXT_RUN])) == (5, 5)
    assert (len(large[LAST_SUCCESS]), len(large[NEXT_RUN])) == (200, 200)
    assert sum(1 for v in large[LAST_SUCCESS].values() if v) == 3


# -- the setting's check --------------------------------------------------------------------


@pytest.mark.parametrize("value", ["yes", 1, None, "True"])
def test_a_setting_that_is_not_a_bool_is_e059_with_a_hint(value):
    with override_settings(SCHEDULING_METRICS_PER_SCHEDULE=value):
        errors = [e for e in check_settings() if e.id == "scheduling.E059"]
    assert len(errors) == 1
    assert "SCHEDULING_METRICS_PER_SCHEDULE" in errors[0].msg
    assert repr(value) in errors[0].msg
    assert errors[0].hint


@pytest.mark.parametrize("value", [True, False])
def test_a_bool_setting_passes(value):
    with override_settings(SCHEDULING_METRICS_PER_SCHEDULE=value):
        assert "scheduling.E059" not in {e.id for e in check_settings()}


@pytest.mark.django_db
def test_the_check_command_reports_e059():
    with (
        override_settings(SCHEDULING_METRICS_PER_SCHEDULE="on"),
        pytest.raises(SystemCheckError, match=r"scheduling\.E059"),
    ):
        call_command("check", stdout=io.StringIO(), stderr=io.StringIO())


# -- last_success_at in the admin and the API -----------------------------------------------


@pytest.mark.django_db
def test_the_admin_shows_the_last_success_in_the_schedules_zone(client):
    client.force_login(make_user(is_staff=True, is_superuser=True))
    scan = echo(make_tenant(), timezone="Europe/Berlin")
    with time_machine.travel(T, tick=False):
        run_once(scan)
    page = client.get(reverse("admin:scheduling_periodicscan_change", args=[scan.pk]))
    html = page.content.decode()
    shown = re.search(
        r'fieldBox field-last_success_at_time">\s*<label[^>]*>(.*?)</label>\s*'
        r'<div class="readonly">(.*?)</div>',
        html,
    )
    assert shown is not None
    assert shown.groups() == ("Last success at:", "2026-03-02 10:30:05 CET")


@pytest.mark.django_db
def test_the_api_shows_the_last_success_read_only(client):
    tenant = make_tenant()
    user = make_user()
    make_membership(user=user, tenant=tenant, role="admin")
    headers = {"Authorization": f"Token {make_token(user=user)}"}
    scan = echo(tenant)
    with time_machine.travel(T, tick=False):
        execution = run_once(scan)

    data = client.get(f"/api/scans/{scan.pk}/", headers=headers).json()
    assert data["last_success_at"] == "2026-03-02T09:30:05Z"
    assert execution.finished_at == T

    response = client.patch(
        f"/api/scans/{scan.pk}/",
        {"last_success_at": "2030-01-01T00:00:00Z"},
        content_type="application/json",
        headers=headers,
    )
    assert response.status_code == 400
    assert "last_success_at" in response.json()
    assert Schedule.objects.get(pk=scan.pk).last_success_at == T


# -- migration 0010 -------------------------------------------------------------------------

BEFORE = ("scheduling", "0009_operator_help_texts")
AFTER = ("scheduling", "0010_schedule_last_success_at")


@pytest.mark.django_db(transaction=True)
def test_migration_0010_fills_the_last_success_from_the_latest_succeeded_execution():
    tenant = make_tenant()
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    try:
        executor.migrate([BEFORE])
        executor.loader.build_graph()
        old = executor.loader.project_state([BEFORE]).apps
        OldSchedule = old.get_model("scheduling", "Schedule")
        OldExecution = old.get_model("scheduling", "Execution")

        def schedule(name: str) -> int:
            return OldSchedule.objects.create(
                tenant_id=tenant.pk, kind="scan", name=name, timezone="UTC", interval_seconds=60
            ).pk

        def ran(pk: int, status: str, finished: datetime | None, n: int) -> None:
            OldExecution.objects.create(
                schedule_id=pk,
                schedule_name="x",
                schedule_kind="scan",
                tenant_id=tenant.pk,
                scheduled_for=T + timedelta(minutes=n),
                status=status,
                started_at=finished,
                finished_at=finished,
            )

        mixed, failing, idle = schedule("mixed"), schedule("failing"), schedule("idle")
        # Out of order: the latest finish wins, not the latest row; later failures don't count.
        ran(mixed, "succeeded", T + timedelta(hours=3), 1)
        ran(mixed, "succeeded", T + timedelta(hours=5), 2)
        ran(mixed, "succeeded", T + timedelta(hours=4), 3)
        ran(mixed, "failed", T + timedelta(hours=9), 4)
        ran(mixed, "running", None, 5)
        ran(failing, "failed", T, 1)
        updated = dict(OldSchedule.objects.values_list("pk", "updated_at"))

        executor = MigrationExecutor(connection)
        executor.migrate([AFTER])
        filled = dict(Schedule.objects.values_list("pk", "last_success_at"))
        after = dict(Schedule.objects.values_list("pk", "updated_at"))

        executor = MigrationExecutor(connection)
        executor.migrate([BEFORE])  # backwards: nothing to undo but the column
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(latest)
    assert filled == {mixed: T + timedelta(hours=5), failing: None, idle: None}
    assert after == updated  # not a change the scheduler would sync
