"""Cleanup targets and batched purges: only old rows, only this tenant, never active runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models.signals import post_delete
from django.test.utils import CaptureQueriesContext
from django_apscheduler.models import DjangoJob, DjangoJobExecution

from scheduling.context import ExecutionContext
from scheduling.kinds.cleanup import links_to_clear, purge, run_cleanup_config, target_queryset
from scheduling.models import CleanupConfig, Execution, ReportArtifact, Schedule, Status
from scheduling.registry import cleanup_target, cleanup_targets
from tests.factories import (
    make_artifact,
    make_cleanup,
    make_execution,
    make_report,
    make_scan,
    make_tenant,
)

pytestmark = pytest.mark.django_db

NOW = datetime(2025, 6, 1, 3, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def frozen_time():
    with time_machine.travel(NOW, tick=False):
        yield


def old_execution(schedule, *, days: float, status: str = Status.SUCCEEDED, **fields) -> Execution:
    finished = NOW - timedelta(days=days)
    return make_execution(
        schedule=schedule,
        status=status,
        scheduled_for=finished - timedelta(seconds=1),
        started_at=finished - timedelta(seconds=1),
        finished_at=finished,
        **fields,
    )


def context_for(cleanup: CleanupConfig, *, timeout: float = 60) -> ExecutionContext:
    execution = make_execution(
        schedule=cleanup, status=Status.RUNNING, scheduled_for=NOW, finished_at=None
    )
    return ExecutionContext(
        execution=execution,
        schedule=cleanup,
        tenant=cleanup.tenant,
        scheduled_for=NOW,
        timeout=timeout,
    )


@pytest.fixture
def executions(tenant):
    """Ten finished executions of ``tenant`` past retention, and rows that must survive."""
    scan = make_scan(tenant=tenant)
    doomed = [
        old_execution(scan, days=40 + n, status=[Status.SUCCEEDED, Status.FAILED][n % 2])
        for n in range(10)
    ]
    kept = [
        old_execution(scan, days=10),
        old_execution(scan, days=30),  # exactly at the cutoff: not strictly older
        # Active rows are never purged, however old (even with a stray finished_at).
        make_execution(
            schedule=scan,
            status=Status.RUNNING,
            scheduled_for=NOW - timedelta(days=90),
            finished_at=None,
        ),
        make_execution(
            schedule=scan,
            status=Status.QUEUED,
            scheduled_for=NOW - timedelta(days=91),
            started_at=None,
            finished_at=NOW - timedelta(days=91),
        ),
    ]
    other_scan = make_scan(tenant=make_tenant())
    others = [old_execution(other_scan, days=100 + n) for n in range(5)]
    return {"doomed": doomed, "kept": kept, "others": others}


def test_cleanup_deletes_only_old_finished_executions_of_the_tenant_in_batches(tenant, executions):
    cleanup = make_cleanup(tenant=tenant, cleanup_target="executions", retain_days=30, batch_size=3)
    context = context_for(cleanup)

    result = run_cleanup_config(cleanup, context)

    assert result == {
        "target": "executions",
        "deleted": 10,
        "batches": 4,
        "retain_days": 30,
        "cutoff": (NOW - timedelta(days=30)).isoformat(),
        "complete": True,
    }
    remaining = set(Execution.objects.values_list("pk", flat=True))
    assert not remaining & {e.pk for e in executions["doomed"]}
    assert {e.pk for e in executions["kept"]} <= remaining
    assert {e.pk for e in executions["others"]} <= remaining
    assert context.execution.pk in remaining


def test_batches_stop_without_an_extra_query_when_the_last_batch_is_short(tenant, executions):
    entry = cleanup_targets.get("executions")
    calls = []
    deleted = purge(
        entry,
        tenant=tenant,
        older_than=NOW - timedelta(days=30),
        batch_size=5,
        progress=lambda batch, total: calls.append((batch, total)),
    )
    # 10 rows in batches of 5: the second batch is full, so one more (empty) select ends it.
    assert deleted == 10
    assert calls == [(5, 5), (5, 10)]


def test_purge_stops_when_progress_says_so(tenant, executions):
    entry = cleanup_targets.get("executions")
    deleted = purge(
        entry,
        tenant=tenant,
        older_than=NOW - timedelta(days=30),
        batch_size=3,
        progress=lambda batch, total: False,
    )
    assert deleted == 3
    assert Execution.objects.filter(pk__in=[e.pk for e in executions["doomed"]]).count() == 7


def test_cleanup_out_of_time_stops_between_batches_and_says_so(tenant, executions):
    cleanup = make_cleanup(tenant=tenant, cleanup_target="executions", retain_days=30, batch_size=3)
    result = run_cleanup_config(cleanup, context_for(cleanup, timeout=0))
    assert result["deleted"] == 3
    assert result["batches"] == 1
    assert result["complete"] is False


def test_cleanup_with_nothing_to_delete(tenant):
    cleanup = make_cleanup(tenant=tenant, cleanup_target="executions", retain_days=1)
    result = run_cleanup_config(cleanup, context_for(cleanup))
    assert result["deleted"] == 0
    assert result["batches"] == 0
    assert result["complete"] is True


def test_report_artifacts_cleanup_keeps_recent_and_other_tenants_artifacts(tenant):
    def artifact(owner, days):
        report = make_report(tenant=owner)
        execution = make_execution(schedule=report)
        return ReportArtifact.objects.create(
            tenant=owner,
            report=report,
            execution=execution,
            format="json",
            filename="r.json",
            content_type="application/json",
            content="{}",
            created_at=NOW - timedelta(days=days),
        )

    old = [artifact(tenant, 400), artifact(tenant, 366)]
    recent = artifact(tenant, 364)
    foreign = artifact(make_tenant(), 999)
    cleanup = make_cleanup(tenant=tenant, cleanup_target="report_artifacts", retain_days=365)

    result = run_cleanup_config(cleanup, context_for(cleanup))

    assert result["deleted"] == 2
    assert not ReportArtifact.objects.filter(pk__in=[a.pk for a in old]).exists()
    assert ReportArtifact.objects.filter(pk__in=[recent.pk, foreign.pk]).count() == 2
    # Only the artifacts went: their executions stay.
    assert Execution.objects.filter(pk__in=[a.execution_id for a in old]).count() == 2


def job_execution(job_id: str, days: float) -> DjangoJobExecution:
    job, _created = DjangoJob.objects.get_or_create(id=job_id, defaults={"job_state": b""})
    return DjangoJobExecution.objects.create(
        job=job, status=DjangoJobExecution.SUCCESS, run_time=NOW - timedelta(days=days)
    )


def test_apscheduler_job_executions_cleanup_matches_the_tenants_job_ids(tenant):
    mine = make_scan(tenant=tenant)
    theirs = make_scan(tenant=make_tenant())
    old = [job_execution(mine.job_id, 20), job_execution(mine.job_id, 21)]
    recent = job_execution(mine.job_id, 1)
    foreign = job_execution(theirs.job_id, 50)
    unrelated = job_execution("maintenance", 50)
    cleanup = make_cleanup(
        tenant=tenant, cleanup_target="apscheduler_job_executions", retain_days=7
    )

    result = run_cleanup_config(cleanup, context_for(cleanup))

    assert result["deleted"] == 2
    remaining = set(DjangoJobExecution.objects.values_list("pk", flat=True))
    assert remaining == {recent.pk, foreign.pk, unrelated.pk}
    assert not remaining & {e.pk for e in old}


def test_a_system_apscheduler_cleanup_covers_every_tenants_jobs_and_only_schedule_jobs(tenant):
    old = [
        job_execution(make_scan(tenant=tenant).job_id, 20),
        job_execution(make_scan(tenant=make_tenant()).job_id, 20),
    ]
    recent = job_execution(make_scan(tenant=tenant).job_id, 1)
    unrelated = job_execution("maintenance", 50)
    cleanup = make_cleanup(tenant=None, cleanup_target="apscheduler_job_executions", retain_days=7)

    result = run_cleanup_config(cleanup, context_for(cleanup))

    assert result["deleted"] == 2
    remaining = set(DjangoJobExecution.objects.values_list("pk", flat=True))
    assert remaining == {recent.pk, unrelated.pk}
    assert not remaining & {e.pk for e in old}


def test_apscheduler_target_queryset_is_one_query(tenant, django_assert_num_queries):
    for _ in range(3):
        job_execution(make_scan(tenant=tenant).job_id, 10)
    queryset = target_queryset(cleanup_targets.get("apscheduler_job_executions"), tenant)
    with django_assert_num_queries(1):
        assert len(list(queryset)) == 3


EVERY_TENANTS = "test_every_tenants_executions"


@pytest.fixture
def careless_target():
    """A target whose queryset forgets the tenant: it returns every tenant's finished rows."""
    entry = cleanup_target(
        EVERY_TENANTS,
        label="Every tenant's executions",
        model="scheduling.Execution",
        datetime_field="finished_at",
        tenant_path="tenant",
        queryset=lambda tenant: Execution.objects.finished(),
    )
    yield entry
    cleanup_targets.unregister(EVERY_TENANTS)


def test_a_custom_queryset_that_ignores_the_tenant_is_scoped_by_tenant_path(
    tenant, executions, careless_target
):
    other = executions["others"][0].tenant
    assert set(careless_target.queryset(other).values_list("tenant_id", flat=True)) == {
        tenant.pk,
        other.pk,
    }
    rows = target_queryset(careless_target, other)
    assert set(rows.values_list("pk", flat=True)) == {e.pk for e in executions["others"]}

    cleanup = make_cleanup(tenant=tenant, cleanup_target=EVERY_TENANTS, retain_days=30)
    result = run_cleanup_config(cleanup, context_for(cleanup))

    assert result["deleted"] == 10
    remaining = set(Execution.objects.values_list("pk", flat=True))
    assert not remaining & {e.pk for e in executions["doomed"]}
    assert {e.pk for e in executions["others"]} <= remaining  # another tenant's: untouched


def test_unknown_cleanup_target_is_rejected_on_its_field(tenant):
    cleanup = CleanupConfig(
        tenant=tenant,
        name="c",
        trigger_type="interval",
        interval_seconds=60,
        cleanup_target="everything",
    )
    with pytest.raises(ValidationError) as info:
        cleanup.full_clean()
    assert "everything" in " ".join(info.value.message_dict["cleanup_target"])


def test_cleanup_target_options_are_rejected_when_the_target_takes_none(tenant):
    cleanup = CleanupConfig(
        tenant=tenant,
        name="c",
        trigger_type="interval",
        interval_seconds=60,
        cleanup_target="executions",
        options={"dry_run": True},
    )
    with pytest.raises(ValidationError) as info:
        cleanup.full_clean()
    assert "options" in info.value.message_dict


def test_purge_deletes_by_key_without_loading_the_rows_it_deletes(tenant, executions):
    for execution in executions["doomed"]:
        Execution.objects.filter(pk=execution.pk).update(
            result={"big": "x" * 1000}, traceback="Traceback ..." * 100
        )
    entry = cleanup_targets.get("executions")
    with CaptureQueriesContext(connection) as queries:
        deleted = purge(entry, tenant=tenant, older_than=NOW - timedelta(days=30), batch_size=4)
    assert deleted == 10
    reads = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("SELECT")]
    # Keys only: no result, traceback or error is fetched and decoded to be thrown away.
    assert reads
    assert not any('"scheduling_execution"."traceback"' in sql for sql in reads), reads
    assert not any('"scheduling_execution"."result"' in sql for sql in reads), reads


def test_each_purge_batch_deletes_in_its_own_transaction_after_its_select(tenant, executions):
    entry = cleanup_targets.get("executions")
    with CaptureQueriesContext(connection) as queries:
        purge(entry, tenant=tenant, older_than=NOW - timedelta(days=30), batch_size=4)
    steps = []
    for query in queries.captured_queries:
        sql = query["sql"].upper()
        if sql.startswith("SAVEPOINT"):
            steps.append("begin")
        elif sql.startswith("RELEASE SAVEPOINT"):
            steps.append("commit")
        elif sql.startswith('DELETE FROM "SCHEDULING_EXECUTION"'):
            steps.append("delete")
        elif sql.startswith("SELECT") and "ORDER BY" in sql and "LIMIT 4" in sql:
            steps.append("select")
    # 10 rows in batches of 4: three batches, each selected outside its write transaction.
    assert steps == ["select", "begin", "delete", "commit"] * 3


def test_purge_hands_full_rows_to_delete_signal_receivers(tenant, executions):
    seen = []

    def receiver(sender, instance, **kwargs):
        seen.append((instance.pk, instance.get_deferred_fields(), instance.error))

    post_delete.connect(receiver, sender=Execution, dispatch_uid="test_purge_receiver")
    try:
        purge(
            cleanup_targets.get("executions"),
            tenant=tenant,
            older_than=NOW - timedelta(days=30),
            batch_size=4,
        )
    finally:
        post_delete.disconnect(dispatch_uid="test_purge_receiver", sender=Execution)
    assert sorted(pk for pk, _deferred, _error in seen) == sorted(
        e.pk for e in executions["doomed"]
    )
    assert all(deferred == set() for _pk, deferred, _error in seen)


def test_purged_executions_leave_their_report_artifacts_without_an_execution(tenant):
    report = make_report(tenant=tenant)
    other = make_tenant()
    other_report = make_report(tenant=other)
    # Keys interleaved: the other tenant's old run and this tenant's recent one lie inside
    # the key range of the purged batch, and keep their links.
    doomed_first = old_execution(report, days=40)
    foreign = old_execution(other_report, days=40)
    recent = old_execution(report, days=5)
    doomed_last = old_execution(report, days=41)
    artifacts = {
        execution.pk: make_artifact(
            execution=execution, tenant_id=execution.tenant_id, report_id=execution.schedule_id
        )
        for execution in (doomed_first, foreign, recent, doomed_last)
    }

    deleted = purge(
        cleanup_targets.get("executions"),
        tenant=tenant,
        older_than=NOW - timedelta(days=30),
        batch_size=10,
    )

    assert deleted == 2
    links = dict(
        ReportArtifact.objects.filter(pk__in=[a.pk for a in artifacts.values()]).values_list(
            "pk", "execution_id"
        )
    )
    assert links == {
        artifacts[doomed_first.pk].pk: None,
        artifacts[foreign.pk].pk: foreign.pk,
        artifacts[recent.pk].pk: recent.pk,
        artifacts[doomed_last.pk].pk: None,
    }


def test_a_purge_deletes_executions_with_statements_that_do_not_grow_with_the_batch(tenant):
    # Django's delete() sends each batch's keys back in IN lists, a hundred at a time, and
    # loads the related artifacts to null them: at a thousand rows a batch, building and
    # parsing those lists held the GIL the scheduler's threads need. The purge deletes a
    # batch's key range in one statement, then nulls the links to what it deleted.
    report = make_report(tenant=tenant)
    writes: dict[int, list[str]] = {}
    for size in (3, 30):
        for days in range(40, 40 + 3 * size):
            execution = old_execution(report, days=days)
            make_artifact(execution=execution, tenant_id=tenant.pk, report_id=report.pk)
        with CaptureQueriesContext(connection) as queries:
            deleted = purge(
                cleanup_targets.get("executions"),
                tenant=tenant,
                older_than=NOW - timedelta(days=30),
                batch_size=size,
            )
        assert deleted == 3 * size
        writes[size] = [
            q["sql"] for q in queries.captured_queries if q["sql"].startswith(("DELETE", "UPDATE"))
        ]
    # Three batches each time, of one DELETE and one UPDATE.
    assert [len(sqls) for sqls in writes.values()] == [6, 6]
    longest = {size: max(len(sql) for sql in sqls) for size, sqls in writes.items()}
    assert abs(longest[30] - longest[3]) < 20, writes
    assert not Execution.objects.filter(schedule=report).exists()
    assert not ReportArtifact.objects.filter(execution__isnull=False).exists()


def test_only_targets_without_receivers_cascades_or_parents_skip_djangos_collector():
    using = "default"
    # Executions: artifacts are SET_NULL, nothing cascades, nobody listens.
    assert [f"{f.model._meta.label}.{f.name}" for f in links_to_clear(Execution, using)] == [
        "scheduling.ReportArtifact.execution"
    ]
    assert links_to_clear(ReportArtifact, using) == []
    # A schedule's executions and kind rows cascade from it: Django collects those.
    assert links_to_clear(Schedule, using) is None

    def receiver(sender, instance, **kwargs):
        pass

    post_delete.connect(receiver, sender=ReportArtifact, dispatch_uid="test_links_receiver")
    try:
        assert links_to_clear(ReportArtifact, using) is None
    finally:
        post_delete.disconnect(dispatch_uid="test_links_receiver", sender=ReportArtifact)
