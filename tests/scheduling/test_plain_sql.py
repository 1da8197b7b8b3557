"""The scheduler's plain-SQL reads and writes give what the ORM gives."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime, time, timedelta

import pytest
from django.db import connection, transaction
from django.db.models import Exists, OuterRef
from django_apscheduler.models import DjangoJob

from scheduling import sql
from scheduling.models import Execution, Schedule
from scheduling.runner import Prepared, datetime_reader, datetime_writer, values_rows
from scheduling.scheduler import jobs as jobs_module
from scheduling.scheduler.jobs import ScheduleRow, make_job
from scheduling.scheduler.jobstore import store_next_run_times
from tests.factories import make_scan, make_tenant

PARIS = zoneinfo.ZoneInfo("Europe/Paris")
MOMENTS = [
    datetime(2026, 6, 1, 12, 0, tzinfo=UTC),
    datetime(2026, 6, 1, 12, 0, 0, 1, tzinfo=UTC),
    datetime(2026, 10, 25, 2, 30, 15, 999_999, tzinfo=PARIS),  # the fold
    datetime(2026, 10, 25, 2, 30, tzinfo=PARIS).replace(fold=1),
    datetime(1999, 12, 31, 23, 59, 59, tzinfo=zoneinfo.ZoneInfo("Asia/Kolkata")),
]


@pytest.mark.parametrize("value", [*MOMENTS, None])
def test_datetimes_are_written_as_the_backend_writes_them(value):
    assert datetime_writer()(value) == connection.ops.adapt_datetimefield_value(value)


def test_a_naive_datetime_is_left_to_the_backend():
    naive = datetime(2026, 6, 1, 12, 0)
    assert datetime_writer()(naive) == connection.ops.adapt_datetimefield_value(naive)


@pytest.mark.parametrize("value", [*MOMENTS, None])
@pytest.mark.parametrize("name", ["started_at", "finished_at", "scheduled_for"])
def test_the_recorders_prepared_datetimes_are_the_fields_own(name, value):
    field = Execution._meta.get_field(name)
    prepare = Prepared(connection)
    expected = field.get_db_prep_save(value, connection)
    assert prepare(field, value) == expected
    assert prepare(field, value) == expected  # and again, when it may come from its cache


@pytest.mark.parametrize("order", [1, -1])
def test_one_batch_prepares_each_instant_as_the_field_does(order):
    # One Prepared for all: equal instants share a cached value, but the fold's two wall
    # times (equal as datetimes of one zone) are an hour apart and must not.
    field = Execution._meta.get_field("started_at")
    prepare = Prepared(connection)
    first = datetime(2026, 10, 25, 2, 30, tzinfo=PARIS)
    second = first.replace(fold=1)
    assert first == second  # one zone: compared by wall time
    moments = [*MOMENTS, MOMENTS[0].astimezone(PARIS), first, second][::order]
    for value in moments * 2:
        prepared, own = prepare(field, value), field.get_db_prep_save(value, connection)
        # Text on SQLite; on PostgreSQL the datetime itself, equal in one zone across a
        # fold: compared as instants too.
        assert (prepared, _instant(prepared)) == (own, _instant(own)), value
    assert _instant(prepare(field, first)) != _instant(prepare(field, second))


def _instant(value):
    return value.timestamp() if isinstance(value, datetime) else value


@pytest.mark.django_db
@pytest.mark.parametrize("value", [*MOMENTS, None])
def test_datetimes_written_and_read_by_plain_sql_are_the_orms(value):
    scan = make_scan(tenant=make_tenant())
    table = connection.ops.quote_name(Schedule._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET next_run_at = %s WHERE id = %s",  # noqa: S608 - the model's
            [datetime_writer()(value), scan.pk],
        )
        cursor.execute(f"SELECT next_run_at FROM {table} WHERE id = %s", [scan.pk])  # noqa: S608
        raw = cursor.fetchone()[0]
    read = datetime_reader()(raw)
    orm = Schedule.objects.values_list("next_run_at", flat=True).get(pk=scan.pk)
    convert = getattr(connection.ops, "convert_datetimefield_value", None)
    backends = raw if convert is None else convert(raw, None, connection)
    assert read == backends == orm
    if value is None:
        assert read is None
    else:
        # The same instant (equality across zones is never true in a fold).
        assert read.timestamp() == value.timestamp()


@pytest.mark.django_db
def test_values_rows_are_the_orms_rows():
    tenant = make_tenant(timezone="Asia/Tokyo")
    upstream = make_scan(tenant=tenant, name="up", interval_seconds=60)
    scan = make_scan(
        tenant=tenant,
        name="calendar",
        trigger_type="calendar",
        calendar_every=2,
        calendar_unit="week",
        calendar_time=time(9, 30),
        calendar_weekdays="mon,thu",
        start_at=MOMENTS[2],
        paused_until=MOMENTS[1],
        enabled=False,
    )
    scan.depends_on.add(upstream)
    upstreams = Schedule.depends_on.through.objects.filter(from_schedule=OuterRef("pk"))
    fields = ("pk", "enabled", "start_at", "end_at", "calendar_time", "paused_until", "name")
    rows = (
        Schedule.objects.annotate(has_upstreams=Exists(upstreams))
        .values_list(*fields, "has_upstreams")
        .order_by("pk")
    )

    assert values_rows(rows) == list(rows)
    # Down to the time zone object: a datetime's repr (in a job's fingerprint) names it.
    zones = [[repr(getattr(value, "tzinfo", None)) for value in row] for row in rows]
    assert [[repr(getattr(v, "tzinfo", None)) for v in row] for row in values_rows(rows)] == zones
    assert [row[-1] for row in values_rows(rows)] == [False, True]
    # Columns the ORM reorders (an annotation before a field) take its own path.
    reordered = rows.values_list("has_upstreams", "pk", "start_at")
    assert values_rows(reordered) == list(reordered)
    assert values_rows(rows.none()) == []


@pytest.mark.django_db
def test_schedule_rows_hold_the_models_values():
    tenant = make_tenant(timezone="Asia/Tokyo")
    scan = make_scan(tenant=tenant, interval_seconds=90, end_at=MOMENTS[4], timezone="")
    row = ScheduleRow.load(after_pk=0, limit=10)[0]
    scan.refresh_from_db()
    for name in ("pk", "enabled", "updated_at", "created_at", "end_at", "paused_until"):
        assert getattr(row, name) == getattr(scan, name), name
    assert row.effective_timezone == "Asia/Tokyo"
    assert row.trigger_fingerprint() == scan.trigger_fingerprint()


@pytest.mark.django_db
@pytest.mark.parametrize("joined", [True, False])
def test_schedule_rows_take_their_tenants_time_zone_joined_or_read(monkeypatch, joined):
    # The zone is joined in where the tenant model has a column for it, else the tenants are
    # read; either way each row's zone is its model instance's.
    if not joined:
        monkeypatch.setattr(jobs_module, "_tenant_zone_column", lambda: None)
    scans = [
        make_scan(tenant=make_tenant(timezone="Asia/Tokyo"), timezone=""),
        make_scan(tenant=make_tenant(timezone=""), timezone=""),
        make_scan(tenant=make_tenant(timezone="Asia/Tokyo"), timezone="Europe/Paris"),
    ]
    rows = {row.pk: row for row in ScheduleRow.load(after_pk=0, limit=10)}
    zones = [rows[scan.pk].effective_timezone for scan in scans]
    assert zones == [scan.effective_timezone for scan in scans]
    assert zones == ["Asia/Tokyo", "UTC", "Europe/Paris"]


@pytest.mark.django_db
@pytest.mark.parametrize("copy_from", [2, 1_000_000])
def test_bulk_job_writes_keep_the_last_job_given_and_mirror_next_run_at(
    job_store, monkeypatch, copy_from
):
    # From ``COPY_FROM`` rows on, PostgreSQL streams them into a temporary table and applies
    # them with one statement: the rows stored are those a statement per row stores, twice in
    # one transaction too, and the last of two jobs (or run times) with one id wins.
    monkeypatch.setattr(sql, "COPY_FROM", copy_from)
    staged = copy_from == 2 and connection.vendor == "postgresql"
    assert sql.copies() is (connection.vendor == "postgresql")
    calls = []
    original = sql.staged
    monkeypatch.setattr(sql, "staged", lambda *args: calls.append(args[0]) or original(*args))
    tenant = make_tenant()
    scans = [make_scan(tenant=tenant, name=f"s{n}", interval_seconds=60 + n) for n in range(5)]
    now = datetime(2026, 6, 1, tzinfo=UTC)
    jobs = [make_job(job_store._scheduler, scan, now) for scan in scans]
    later = now + timedelta(hours=5)
    moved = make_job(job_store._scheduler, scans[0], now, next_run_time=later)
    with transaction.atomic():
        assert job_store.replace_jobs([*jobs, moved]) == (6, 0)
        job_store.replace_jobs(jobs[1:3])
        values = [(scan.pk, now + timedelta(minutes=scan.pk)) for scan in scans]
        store_next_run_times(values, bulk=True)
        store_next_run_times(values[2:])  # a pass's: never staged
        store_next_run_times(
            [(scans[0].pk, now), (scans[1].pk, None), (scans[0].pk, later)], bulk=True
        )

    assert calls == (["scheduling_job_stage"] * 2 + ["scheduling_next_run"] * 2 if staged else [])
    stored = dict(DjangoJob.objects.values_list("id", "next_run_time"))
    assert stored == {job.id: job.next_run_time for job in [moved, *jobs[1:]]}
    for job in jobs:
        restored = job_store.lookup_job(job.id)
        assert (restored.id, restored.args, restored.name) == (job.id, job.args, job.name)
    assert job_store.read_headers() == {
        job.id: bytes.fromhex(job.kwargs["fingerprint"]) for job in jobs
    }
    next_runs = dict(Schedule.objects.values_list("pk", "next_run_at"))
    assert next_runs == {
        scans[0].pk: later,
        scans[1].pk: None,
        **{scan.pk: now + timedelta(minutes=scan.pk) for scan in scans[2:]},
    }


@pytest.mark.django_db
def test_a_chunks_job_headers_joined_by_key_range_are_those_listed_by_id(job_store):
    tenant = make_tenant()
    scans = [make_scan(tenant=tenant, name=f"s{n}", interval_seconds=60 + n) for n in range(6)]
    now = datetime(2026, 6, 1, tzinfo=UTC)
    job_store.write_jobs([make_job(job_store._scheduler, scan, now) for scan in scans[:5]])
    DjangoJob.objects.create(id="someone-elses", job_state=b"opaque")
    DjangoJob.objects.create(id=f"schedule:{scans[-1].pk + 1000}", job_state=b"no schedule")
    DjangoJob.objects.filter(id=scans[3].job_id).update(job_state=b"tampered")
    after, last = scans[0].pk, scans[4].pk
    listed = job_store.read_headers([s.job_id for s in scans if after < s.pk <= last])
    assert job_store.read_headers(pks=(after, last)) == listed
    assert set(listed) == {s.job_id for s in scans[1:5]}
    assert listed[scans[3].job_id] is None  # does not verify
    assert job_store.read_headers(pks=(scans[-1].pk, scans[-1].pk + 2000)) == {}


ODD_TEXTS = ['say "hi", {a, b}', "back\\slash\\", "NULL", "", "tab\tnew\nline", "ünï 'q' €", "{}"]


@pytest.mark.django_db
def test_updates_by_key_write_each_rows_values_as_the_orm_would():
    from django.test.utils import CaptureQueriesContext

    from scheduling.models import Status

    tenant = make_tenant()
    scans = [make_scan(tenant=tenant, name=f"odd {index}") for index in range(len(ODD_TEXTS))]
    executions = [
        Execution.objects.create(
            schedule=scan,
            tenant=tenant,
            scheduled_for=datetime(2026, 6, 1, 12, tzinfo=UTC),
            status=Status.QUEUED,
        )
        for scan in scans
    ]
    prepare = Prepared(connection)
    names = ("error", "finished_at", "result", "status", "traceback")
    wanted = {}
    rows = []
    for index, (execution, text) in enumerate(zip(executions, ODD_TEXTS, strict=True)):
        values = {
            "error": text,
            "finished_at": datetime(2026, 6, 1, 12, index, tzinfo=zoneinfo.ZoneInfo("Asia/Tokyo")),
            "result": None if index == 3 else {"text": text, "list": [1, None, "x"], "n": index},
            "status": Status.SUCCEEDED,
            "traceback": text * 2,
        }
        wanted[execution.pk] = values
        field = Execution._meta.get_field
        rows.append([prepare(field(name), values[name]) for name in names] + [execution.pk])
    rows.reverse()  # any order: written in key order
    with CaptureQueriesContext(connection) as queries:
        sql.update_by_key(connection, Execution, names, rows)
    # On PostgreSQL (psycopg 3) one statement; elsewhere one executemany.
    assert len(queries) == 1
    assert ("unnest(" in queries[0]["sql"]) is sql.copies()
    for execution in Execution.objects.filter(pk__in=wanted):
        assert {name: getattr(execution, name) for name in names} == wanted[execution.pk]
    # Increments, and a key given twice is refused rather than written by either row.
    before = dict(Schedule.objects.values_list("pk", "run_count"))
    sql.update_by_key(
        connection, Schedule, ["last_status"], [["failed", s.pk] for s in scans], ["run_count"]
    )
    after = Schedule.objects.filter(pk__in=before).values_list("pk", "run_count", "last_status")
    assert {pk: (count, status) for pk, count, status in after} == {
        pk: (count + 1, "failed") for pk, count in before.items()
    }
    if sql.copies():
        with pytest.raises(ValueError, match="twice"):
            sql.update_by_key(connection, Schedule, ["last_status"], [["x", 1], ["y", 1]])
