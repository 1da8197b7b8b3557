from __future__ import annotations

import logging
import os
import pickle
import threading
import zoneinfo
from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
import time_machine
from apscheduler.triggers.interval import IntervalTrigger
from django.db import DatabaseError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils.crypto import salted_hmac
from django_apscheduler.models import DjangoJob

from scheduling.models import PeriodicScan, Schedule, ScheduleDeletion
from scheduling.scheduler import sync as sync_module
from scheduling.scheduler.jobs import ScheduleRow, make_job
from scheduling.scheduler.jobstore import (
    FINGERPRINT_SIZE,
    MAGIC_V1,
    SALT,
    SALT_V1,
    JobStateInvalid,
    _mac,
    sign_state,
    verify_state,
)
from scheduling.scheduler.sync import JobSync
from scheduling.triggers import interval_trigger
from tests.factories import make_scan, make_tenant

NOW = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def frozen():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def sync(job_store):
    return JobSync(job_store._scheduler, job_store)


def job_row(schedule: Schedule) -> DjangoJob | None:
    return DjangoJob.objects.filter(id=f"schedule:{schedule.pk}").first()


def job_trigger(schedule: Schedule):
    _fingerprint, pickled = verify_state(job_row(schedule).job_state)
    return pickle.loads(pickled)["trigger"]  # noqa: S301 - verified above


def sign_state_v1(state: dict, fingerprint: bytes) -> bytes:
    """Sign ``state`` as releases before the signed job id did (format "SJ1")."""
    payload = fingerprint.ljust(FINGERPRINT_SIZE, b"\0")[:FINGERPRINT_SIZE] + pickle.dumps(state)
    return MAGIC_V1 + _mac(payload, salt=SALT_V1) + payload


def echo_scan(tenant, **fields) -> PeriodicScan:
    fields.setdefault("scan_type", "test_echo")
    fields.setdefault("target", "x")
    return make_scan(tenant=tenant, **fields)


def watched_apply(sync: JobSync, threads: list, fail_on: int = 0):
    """Patch ``sync._apply`` to note the thread of each call in ``threads``, and to fail as a
    lost database would on call number ``fail_on``."""
    real_apply = sync._apply

    def apply(*args, **kwargs):
        threads.append(threading.current_thread())
        if len(threads) == fail_on:
            raise DatabaseError("the database went away")
        return real_apply(*args, **kwargs)

    return mock.patch.object(sync, "_apply", apply)


def touch(schedule: Schedule, **fields) -> None:
    for name, value in fields.items():
        setattr(schedule, name, value)
    schedule.save()


@pytest.mark.usefixtures("frozen")
class TestFullSync:
    def test_adds_a_job_per_enabled_schedule(self, sync):
        tenant = make_tenant()
        scan = echo_scan(tenant, interval_seconds=300)
        disabled = echo_scan(tenant, enabled=False)
        result = sync.full()
        assert result.written == 1
        assert job_row(scan).next_run_time == NOW + timedelta(seconds=300)
        assert job_row(disabled) is None
        scan.refresh_from_db()
        assert scan.next_run_at == NOW + timedelta(seconds=300)

    def test_a_time_zone_this_machine_does_not_know_stops_only_its_schedule(self, sync):
        # A name a newer tzdata has and this machine lacks (or one a DBA wrote by hand).
        tenant = make_tenant()
        lost = echo_scan(tenant, trigger_type="cron", cron_expression="0 * * * *")
        Schedule.objects.filter(pk=lost.pk).update(timezone="Mars/Olympus")
        fine = echo_scan(tenant, interval_seconds=300)
        result = sync.full()
        assert "Mars/Olympus" in result.errors[lost.pk]
        assert job_row(lost) is None
        assert job_row(fine) is not None

    def test_is_idempotent_and_keeps_the_stored_next_run_time(self, sync, frozen):
        scan = echo_scan(make_tenant(), interval_seconds=60)
        sync.full()
        first = job_row(scan).next_run_time
        frozen.shift(600)  # the scheduler was down: the stored next run is now in the past
        again = JobSync(sync.scheduler, sync.store).full()
        assert (again.written, again.removed, again.unchanged) == (0, 0, 1)
        assert job_row(scan).next_run_time == first

    def test_schedule_whose_end_is_past_gets_no_job(self, sync):
        scan = echo_scan(
            make_tenant(),
            start_at=NOW - timedelta(days=2),
            end_at=NOW - timedelta(days=1),
        )
        sync.full()
        assert job_row(scan) is None

    def test_removes_jobs_of_rows_deleted_behind_its_back(self, sync):
        scan = echo_scan(make_tenant())
        sync.full()
        with connection.cursor() as cursor:  # a raw delete sends no signal, leaves no tombstone
            cursor.execute(
                "DELETE FROM scheduling_periodicscan WHERE schedule_ptr_id=%s", [scan.pk]
            )
            cursor.execute("DELETE FROM scheduling_schedule WHERE id=%s", [scan.pk])
        assert sync.full().removed == 1
        assert job_row(scan) is None

    @pytest.mark.parametrize(
        "fields",
        [
            {
                "trigger_type": "cron",
                "cron_expression": "30 2 * * 1-5",
                "timezone": "Europe/Berlin",
                "jitter_seconds": 600,
                "stagger": True,
                "dst_gap_policy": "skip",
                "dst_fold_policy": "twice",
            },
            {"trigger_type": "once", "run_at": NOW + timedelta(days=1), "misfire_grace_seconds": 5},
            {
                "interval_seconds": 120,
                "start_at": NOW - timedelta(hours=1),
                "end_at": NOW + timedelta(days=3),
                "paused_until": NOW + timedelta(hours=2),
                "coalesce": False,
                "max_instances": 3,
            },
        ],
        ids=["cron", "once", "interval"],
    )
    def test_stores_the_job_its_model_instance_describes(self, sync, fields):
        # The sync reads plain rows; the job must be the one built from the model instance.
        scan = echo_scan(make_tenant(timezone="America/New_York"), **fields)
        sync.full()
        fingerprint, pickled = verify_state(job_row(scan).job_state)
        stored = pickle.loads(pickled)  # noqa: S301 - verified above
        scan.refresh_from_db()
        expected = make_job(sync.scheduler, scan, NOW).__getstate__()
        assert fingerprint == scan.trigger_fingerprint()
        assert stored.pop("trigger").__getstate__() == expected.pop("trigger").__getstate__()
        # The run time is the row's column, not the state's.
        assert stored.pop("next_run_time") is None
        assert scan.next_run_at == expected.pop("next_run_time") == job_row(scan).next_run_time
        assert stored == expected
        assert sync.store.lookup_job(scan.job_id).next_run_time == scan.next_run_at

    def test_a_schedule_without_a_time_zone_fires_in_its_tenants(self, sync):
        tenant = make_tenant(timezone="Asia/Tokyo")
        scan = echo_scan(tenant, trigger_type="cron", cron_expression="0 9 * * *")
        other = echo_scan(tenant, trigger_type="cron", cron_expression="0 9 * * *", timezone="UTC")
        Schedule.objects.filter(pk=scan.pk).update(timezone="")
        sync.full()
        # 09:00 in Tokyo is midnight UTC; NOW is 21:00 there.
        assert job_row(scan).next_run_time == datetime(2026, 6, 2, 0, 0, tzinfo=UTC)
        assert job_row(other).next_run_time == datetime(2026, 6, 2, 9, 0, tzinfo=UTC)
        scan.refresh_from_db()
        assert verify_state(job_row(scan).job_state)[0] == scan.trigger_fingerprint()

    def test_jobs_and_next_run_at_are_written_together_or_not_at_all(self, sync, monkeypatch):
        scan = echo_scan(make_tenant(), interval_seconds=300)

        def fail(values, **kwargs):
            raise DatabaseError("disk I/O error")

        monkeypatch.setattr("scheduling.scheduler.sync.store_next_run_times", fail)
        sync.store.retry_budget = 0
        with pytest.raises(DatabaseError):
            sync.full()
        assert job_row(scan) is None
        monkeypatch.undo()
        assert sync.full().written == 1
        scan.refresh_from_db()
        assert job_row(scan).next_run_time == scan.next_run_at == NOW + timedelta(seconds=300)

    def test_leaves_jobs_it_does_not_own_alone(self, sync):
        DjangoJob.objects.create(id="someone-elses-job", job_state=b"opaque")
        sync.full()
        assert DjangoJob.objects.filter(id="someone-elses-job").exists()


@pytest.mark.usefixtures("frozen")
class TestIncrementalSync:
    def test_change_of_trigger_reaches_the_job_store(self, sync, frozen):
        scan = echo_scan(make_tenant(), interval_seconds=60)
        sync.full()
        frozen.shift(1)
        touch(scan, trigger_type="cron", cron_expression="0 3 * * *", timezone="UTC")
        assert sync.incremental().written == 1
        assert job_row(scan).next_run_time == datetime(2026, 6, 2, 3, tzinfo=UTC)
        assert job_trigger(scan).expression == "0 3 * * *"

    def test_new_schedule_reaches_the_job_store(self, sync, frozen):
        tenant = make_tenant()
        sync.full()
        frozen.shift(1)
        scan = echo_scan(tenant, interval_seconds=120)
        sync.incremental()
        assert job_row(scan).next_run_time == NOW + timedelta(seconds=121)

    def test_disable_removes_the_job(self, sync, frozen):
        scan = echo_scan(make_tenant())
        sync.full()
        frozen.shift(1)
        touch(scan, enabled=False)
        assert sync.incremental().removed == 1
        assert job_row(scan) is None
        assert Schedule.objects.get(pk=scan.pk).next_run_at is None

    def test_pause_until_moves_the_next_run_past_the_pause(self, sync, frozen):
        scan = echo_scan(make_tenant(), trigger_type="cron", cron_expression="*/10 * * * *")
        sync.full()
        assert job_row(scan).next_run_time == NOW  # 12:00 matches */10
        frozen.shift(1)
        touch(scan, paused_until=NOW + timedelta(hours=2, minutes=5))
        sync.incremental()
        assert job_row(scan).next_run_time == NOW + timedelta(hours=2, minutes=10)

    def test_delete_reaches_the_job_store_without_a_full_sync(self, sync, frozen):
        scan = echo_scan(make_tenant())
        keep = echo_scan(make_tenant())
        sync.full()
        frozen.shift(1)
        PeriodicScan.objects.get(pk=scan.pk).delete()
        assert ScheduleDeletion.objects.filter(schedule_id=scan.pk).exists()
        assert sync.incremental().removed == 1
        assert job_row(scan) is None and job_row(keep) is not None

    def test_bulk_service_update_is_seen(self, sync, frozen):
        from scheduling import services

        scans = [echo_scan(make_tenant()) for _ in range(3)]
        sync.full()
        frozen.shift(1)
        services.set_enabled(queryset=Schedule.objects.all(), enabled=False)
        assert sync.incremental().removed == 3
        assert not any(job_row(s) for s in scans)

    def test_a_pass_without_changes_writes_nothing(self, sync, frozen):
        echo_scan(make_tenant())
        sync.full()
        frozen.shift(30)
        with CaptureQueriesContext(connection) as ctx:
            result = sync.incremental()
        assert result.changed == 0
        assert not [q for q in ctx.captured_queries if not q["sql"].startswith("SELECT")]

    @pytest.mark.parametrize("count", [100, 5000])
    def test_pass_runs_a_constant_number_of_queries(self, sync, frozen, count):
        tenant = make_tenant()
        with transaction.atomic():
            scans = [echo_scan(tenant, interval_seconds=60) for _ in range(count)]
        sync.full()
        frozen.shift(10)
        touch(scans[count // 2], interval_seconds=90)
        PeriodicScan.objects.get(pk=scans[-1].pk).delete()
        with CaptureQueriesContext(connection) as ctx:
            result = sync.incremental()
        assert (result.written, result.removed) == (1, 1)
        # Reads: changed rows, tombstones, job headers; writes: upsert, delete, state update,
        # plus transaction bookkeeping. The same for 100 and 5,000 schedules.
        assert len(ctx.captured_queries) <= 12, [q["sql"][:80] for q in ctx.captured_queries]


@pytest.mark.usefixtures("frozen")
class TestTamperedJobState:
    def test_tampered_state_is_never_unpickled_and_the_job_is_rebuilt(self, sync, tmp_path, caplog):
        scan = echo_scan(make_tenant(), interval_seconds=60)
        sync.full()
        sync.store.rebuild = sync.rebuild
        marker = tmp_path / "pwned"

        class Exploit:
            def __reduce__(self):
                return (open, (str(marker), "w"))

        good = job_row(scan).job_state
        next_run = job_row(scan).next_run_time
        for evil in (pickle.dumps(Exploit()), good[:-1] + b"X"):
            DjangoJob.objects.filter(pk=f"schedule:{scan.pk}").update(job_state=evil)
            with caplog.at_level(logging.WARNING, logger="scheduling.scheduler.jobstore"):
                jobs = sync.store.get_due_jobs(NOW + timedelta(days=1))
            assert not marker.exists(), "tampered bytes were unpickled"
            assert [job.id for job in jobs] == [f"schedule:{scan.pk}"]
            assert "cannot be restored" in caplog.text and "rebuilt" in caplog.text
            verify_state(job_row(scan).job_state)  # the stored state is sound again
            assert job_row(scan).next_run_time == next_run  # its occurrence is not lost
            assert Schedule.objects.filter(pk=scan.pk).exists()
            caplog.clear()

    def test_state_copied_from_another_row_is_never_unpickled_and_the_job_is_rebuilt(
        self, sync, caplog
    ):
        tenant = make_tenant()
        source, target = echo_scan(tenant, interval_seconds=60), echo_scan(tenant, name="b")
        sync.full()
        sync.store.rebuild = sync.rebuild
        copied = job_row(source).job_state
        DjangoJob.objects.filter(pk=f"schedule:{target.pk}").update(job_state=copied)

        with pytest.raises(JobStateInvalid, match="another job"):
            verify_state(copied, job_id=f"schedule:{target.pk}")
        with (
            mock.patch("pickle.loads", side_effect=AssertionError("unpickled")),
            caplog.at_level(logging.WARNING, logger="scheduling.scheduler.jobstore"),
        ):
            assert sync.store.read_headers()[f"schedule:{target.pk}"] is None
            with pytest.raises(JobStateInvalid):
                sync.store._reconstitute_job(copied, f"schedule:{target.pk}")
        job = sync.store.lookup_job(f"schedule:{target.pk}")
        assert (job.id, job.args) == (f"schedule:{target.pk}", (target.pk,))
        assert "signed for another job" in caplog.text and "rebuilt" in caplog.text
        assert job_row(target).job_state != copied
        verify_state(job_row(target).job_state, job_id=f"schedule:{target.pk}")

    def test_old_format_state_loads_on_its_own_row_only(self, sync, caplog):
        tenant = make_tenant()
        source, target = echo_scan(tenant, interval_seconds=60), echo_scan(tenant, name="b")
        sync.full()
        sync.store.rebuild = sync.rebuild
        _fingerprint, pickled = verify_state(job_row(source).job_state)
        state = pickle.loads(pickled)  # noqa: S301 - verified above
        old = sign_state_v1(state, source.trigger_fingerprint())
        DjangoJob.objects.filter(pk__in=[source.job_id, target.job_id]).update(job_state=old)

        assert sync.store.lookup_job(source.job_id).args == (source.pk,)
        assert job_row(source).job_state == old  # loaded as it is
        with caplog.at_level(logging.WARNING, logger="scheduling.scheduler.jobstore"):
            job = sync.store.lookup_job(target.job_id)
        assert (job.id, job.args) == (target.job_id, (target.pk,))
        assert "belongs to another job" in caplog.text and "rebuilt" in caplog.text

    def test_state_signed_with_another_key_does_not_verify(self, sync, settings):
        scan = echo_scan(make_tenant())
        sync.full()
        settings.SECRET_KEY = "another-key-" + os.urandom(8).hex()
        with pytest.raises(Exception, match="does not verify"):
            verify_state(job_row(scan).job_state)


class TestStoredState:
    @pytest.mark.parametrize("salt", [SALT, SALT_V1])
    @pytest.mark.parametrize("secret", ["a str key", b"a bytes key \xff"])
    def test_signatures_are_djangos_salted_hmac(self, salt, secret):
        payload = os.urandom(300)
        expected = salted_hmac(salt, payload, secret=secret, algorithm="sha256").digest()
        assert _mac(payload, secret, salt) == expected

    def test_a_job_written_by_the_previous_release_still_loads(self, sync, frozen):
        # Then, the state held an IntervalTrigger of datetimes and the job's run time.
        scan = echo_scan(make_tenant(), interval_seconds=300)
        sync.full()
        job = make_job(sync.scheduler, scan, NOW)
        trigger = IntervalTrigger(
            seconds=300, start_date=job.trigger.start_date, timezone=UTC, jitter=None
        )
        state = {**job.__getstate__(), "trigger": trigger}
        row = job_row(scan)
        fingerprint, _pickled = verify_state(row.job_state)
        row.job_state = sign_state(state, fingerprint)
        row.save()

        loaded = sync.store.lookup_job(scan.job_id)
        assert type(loaded.trigger) is IntervalTrigger
        assert loaded.next_run_time == row.next_run_time
        assert loaded.trigger.get_next_fire_time(None, NOW) == job.trigger.get_next_fire_time(
            None, NOW
        )
        assert sync.full().unchanged == 1  # the same fingerprint: left as it is

    @pytest.mark.parametrize(
        ("seconds", "start", "end", "jitter"),
        [
            (60, datetime(2026, 6, 1, 11, 59, 30, 250_000, tzinfo=UTC), None, None),
            (86_400, datetime(2020, 2, 29, 23, 0, tzinfo=UTC), None, 30),
            (
                7_200,
                datetime(2026, 3, 29, 0, 30, tzinfo=zoneinfo.ZoneInfo("Europe/Paris")),
                datetime(2026, 11, 1, 1, 30, tzinfo=zoneinfo.ZoneInfo("America/New_York")),
                None,
            ),
        ],
    )
    def test_interval_triggers_pickle_small_and_fire_as_apschedulers(
        self, seconds, start, end, jitter
    ):
        ours = interval_trigger(timedelta(seconds=seconds), start, end, jitter)
        theirs = IntervalTrigger(
            seconds=seconds, start_date=start, end_date=end, timezone=UTC, jitter=jitter
        )
        pickled = pickle.dumps(ours, pickle.HIGHEST_PROTOCOL)
        # One global (the rebuilding function) and numbers: no datetime, zone or timedelta.
        assert b"datetime" not in pickled and b"IntervalTrigger" not in pickled
        restored = pickle.loads(pickled)  # noqa: S301 - the test's own bytes
        assert restored.__getstate__() == ours.__getstate__()
        assert restored.jitter == jitter
        ours.jitter = restored.jitter = theirs.jitter = None  # compare the times themselves
        previous, now = None, start - timedelta(days=1)
        for _ in range(20):
            expected = theirs.get_next_fire_time(previous, now)
            assert ours.get_next_fire_time(previous, now) == expected
            assert restored.get_next_fire_time(previous, now) == expected
            if expected is None:
                break
            previous = now = expected


@pytest.mark.parametrize("count", [3, 501])
def test_tenant_time_zones_take_one_query_however_many_tenants(
    db, count, django_assert_num_queries
):
    from scheduling.scheduler.jobs import tenant_timezones
    from tenants.models import Tenant

    Tenant.objects.bulk_create(
        Tenant(name=f"T{n}", slug=f"t-{n}", timezone="Asia/Tokyo" if n % 2 else "")
        for n in range(count)
    )
    ids = set(Tenant.objects.values_list("pk", flat=True))
    with django_assert_num_queries(1):
        zones = tenant_timezones(ids)
    assert set(zones) == ids
    assert set(zones.values()) == {"Asia/Tokyo", "UTC"}  # a tenant without one: UTC


class TestFullSyncInChunks:
    """The full pass walks the table a chunk of primary keys at a time."""

    @pytest.fixture(autouse=True)
    def small_chunks(self, monkeypatch):
        monkeypatch.setattr(sync_module, "FULL_SYNC_CHUNK", 3)

    def test_every_chunk_is_reconciled_and_orphans_are_removed(self, sync, frozen):
        tenant = make_tenant()
        scans = [echo_scan(tenant, interval_seconds=60 + n) for n in range(10)]
        disabled = scans[4]
        disabled.enabled = False
        disabled.save()
        result = sync.full()
        assert result.written == 9
        assert {job_row(s) is not None for s in scans if s != disabled} == {True}
        assert job_row(disabled) is None

        # A job whose schedule vanished without a tombstone (a raw delete), in the middle.
        gone = scans[5]
        Schedule.objects.filter(pk=gone.pk).delete()
        ScheduleDeletion.objects.all().delete()
        touch(scans[8], interval_seconds=600)
        frozen.shift(timedelta(minutes=1))
        result = sync.full()
        assert (result.written, result.removed, result.unchanged) == (1, 1, 7)
        assert job_row(gone) is None
        assert job_trigger(scans[8]).interval == timedelta(seconds=600)

    def test_each_chunk_commits_on_its_own(self, sync):
        tenant = make_tenant()
        scans = [echo_scan(tenant, interval_seconds=60) for _ in range(7)]
        calls = []
        with watched_apply(sync, calls, fail_on=3), pytest.raises(DatabaseError):
            sync.full()
        # The first two chunks stay written; the next full pass does the rest only.
        assert [job_row(s) is not None for s in scans] == [True] * 6 + [False]
        result = sync.full()
        assert (result.written, result.unchanged) == (1, 6)

    def test_inside_a_transaction_chunks_are_written_in_line(self, sync):
        # The caller's transaction holds rows another connection could not see.
        echo_scan(make_tenant(), interval_seconds=60)
        threads = []
        with watched_apply(sync, threads):
            assert sync.full().written == 1
        assert threads == [threading.main_thread()]

    def test_only_rows_inside_the_incremental_margin_are_remembered(self, sync, frozen):
        tenant = make_tenant()
        old = [echo_scan(tenant, interval_seconds=60) for _ in range(5)]
        frozen.shift(timedelta(minutes=10))
        fresh = echo_scan(tenant, interval_seconds=60)
        sync.full()
        assert set(sync.applied) == {fresh.pk}
        # An edit of an old row is applied by the next incremental pass all the same.
        frozen.shift(timedelta(seconds=1))
        touch(old[2], interval_seconds=900)
        assert sync.incremental().written == 1
        assert job_trigger(old[2]).interval == timedelta(seconds=900)
        # Once the margin has passed, what was remembered is forgotten.
        frozen.shift(timedelta(minutes=1))
        sync.incremental()
        assert sync.applied == {}

    def test_the_rows_of_an_old_bulk_import_are_not_read_again(self, sync, frozen):
        tenant = make_tenant()
        scans = [echo_scan(tenant, interval_seconds=60) for _ in range(8)]
        Schedule.objects.update(updated_at=NOW - timedelta(hours=1))  # one import's stamp
        frozen.shift(timedelta(seconds=30))
        sync.full()
        load = ScheduleRow.load
        rows_read: list[int] = []

        def counting_load(*args, **kwargs):
            rows = load(*args, **kwargs)
            rows_read.append(len(rows))
            return rows

        with (
            mock.patch.object(sync.store, "read_headers", wraps=sync.store.read_headers) as read,
            mock.patch.object(ScheduleRow, "load", side_effect=counting_load),
        ):
            assert sync.incremental().changed == 0
            touch(scans[3], interval_seconds=120)
            assert sync.incremental().written == 1
        # The pass that found nothing loaded no row; then only the edited row was read again,
        # and only its job looked at.
        assert rows_read == [1]
        assert [list(c.args[0]) for c in read.call_args_list] == [[scans[3].job_id]]


@pytest.mark.django_db(transaction=True)
class TestPipelinedFullSync:
    """On PostgreSQL, outside a transaction, a writer thread writes each chunk while the next
    one is read. On SQLite each chunk is written in line; either way the outcome is one."""

    @pytest.fixture(autouse=True)
    def small_chunks(self, monkeypatch):
        monkeypatch.setattr(sync_module, "FULL_SYNC_CHUNK", 3)

    @pytest.fixture
    def scans(self):
        tenant = make_tenant()
        return [echo_scan(tenant, interval_seconds=60 + n) for n in range(10)]

    @staticmethod
    def writer_threads():
        return [t for t in threading.enumerate() if t.name.startswith("scheduling-sync-writer")]

    def test_every_chunk_lands_written_by_the_writer_thread(self, sync, scans):
        threads = []
        with watched_apply(sync, threads):
            result = sync.full()
        assert (result.written, result.removed, result.unchanged) == (10, 0, 0)
        assert len(threads) == 4
        assert len(set(threads)) == 1
        pipelined = connection.vendor == "postgresql"
        assert (threads[0] is not threading.main_thread()) is pipelined
        # Every write is over, and its thread gone, when the sync returns.
        assert self.writer_threads() == []
        stored = dict(DjangoJob.objects.values_list("id", "next_run_time"))
        mirrored = {
            f"schedule:{pk}": at for pk, at in Schedule.objects.values_list("pk", "next_run_at")
        }
        assert stored == {s.job_id: mirrored[s.job_id] for s in scans}
        assert None not in stored.values()
        assert sync.full().unchanged == 10

    def test_a_chunk_that_fails_ends_the_sync_and_the_chunks_before_it_stay(self, sync, scans):
        calls = []
        with watched_apply(sync, calls, fail_on=3), pytest.raises(DatabaseError):
            sync.full()
        # The fourth chunk was read while the third was written, and never written.
        assert len(calls) == 3
        assert [job_row(s) is not None for s in scans] == [True] * 6 + [False] * 4
        assert self.writer_threads() == []
        result = sync.full()
        assert (result.written, result.unchanged) == (4, 6)

    def test_a_lost_lease_between_chunks_ends_the_sync_once_the_write_in_flight_is_over(
        self, sync, scans
    ):
        renewals = []

        def renew():
            renewals.append(1)
            if len(renewals) == 2:
                raise RuntimeError("another scheduler holds the lease")

        sync.between_chunks = renew
        with pytest.raises(RuntimeError, match="lease"):
            sync.full()
        # The second chunk was in flight when the lease was found lost: it was written whole.
        assert [job_row(s) is not None for s in scans] == [True] * 6 + [False] * 4
        assert self.writer_threads() == []
