"""A thousand fires a second: what the scheduler does in batches gives what one at a time gave.

A pass claims, records and hands over its occurrences together (``dispatch_many``), the
recorder writes a batch of outcomes together (``runner.record_outcomes``), and a pass that only
moves a job's next run time writes that column alone. Each test compares the batch with the
one-at-a-time result, or checks the state a user sees afterwards.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_apscheduler.models import DjangoJob

from scheduling import runner, sql
from scheduling.models import Execution, PeriodicScan, Schedule, Status
from scheduling.scheduler import dispatch
from scheduling.scheduler.dispatch import ScheduleCache
from scheduling.scheduler.jobs import make_job
from scheduling.scheduler.recorder import Recorder
from tests.factories import make_scan, make_tenant

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
STATE = ["last_status", "last_run_at", "run_count", "consecutive_failures", "last_success_at"]


def echo_scans(count: int, **fields) -> list[PeriodicScan]:
    tenant = fields.pop("tenant", None) or make_tenant()
    return [
        make_scan(tenant=tenant, scan_type="test_echo", target="x", **fields) for _ in range(count)
    ]


def ended(schedule: Schedule, status: str, at: datetime) -> Execution:
    """A finished execution of ``schedule`` at ``at`` (saved, as the recorder sees it)."""
    execution = Execution.for_occurrence(schedule, at, claimed_by="test")
    execution.save()
    execution.started_at = at
    for key, value in execution.outcome_values(status).items():
        setattr(execution, key, value)
    execution.finished_at = at + timedelta(seconds=1)
    return execution


def handed_over(due: list, *, now: datetime, **options) -> list[Execution]:
    """Run one pass over ``due`` at ``now``; return the executions handed to the executor."""
    submitted: list[Execution] = []
    dispatch.dispatch_many(
        due,
        claimed_by="test",
        submit=lambda execution, priority: submitted.append(execution),
        now=now,
        **options,
    )
    return submitted


def state_of(schedules: list[Schedule]) -> list[tuple]:
    rows = Schedule.objects.in_bulk([s.pk for s in schedules])
    return [tuple(getattr(rows[s.pk], name) for name in STATE) for s in schedules]


class TestRecordOutcomes:
    def test_a_batch_leaves_each_schedule_as_the_outcomes_one_by_one_did(self):
        # Two identical sets of schedules get the same outcomes in the same order: one set
        # one at a time, the other as one batch. A schedule may come up several times.
        rng = random.Random(20)
        one_by_one, batch = echo_scans(4), echo_scans(4)
        statuses = [Status.SUCCEEDED, Status.FAILED, Status.MISSED, Status.SKIPPED]
        plan = [(rng.randrange(4), rng.choice(statuses)) for _ in range(40)]
        singles, batched = [], []
        for n, (index, status) in enumerate(plan):
            at = NOW + timedelta(minutes=n)
            singles.append(ended(one_by_one[index], status, at))
            batched.append(ended(batch[index], status, at))
        for execution in singles:
            runner.record_outcome(execution)
        assert runner.record_outcomes(batched) == set()
        assert state_of(batch) == state_of(one_by_one)
        assert sum(row[2] for row in state_of(batch)) > 0  # runs were counted

    def test_a_failure_after_a_success_in_one_batch_counts_one_failure(self):
        (scan,) = echo_scans(1)
        runner.record_outcomes(
            [
                ended(scan, Status.SUCCEEDED, NOW),
                ended(scan, Status.FAILED, NOW + timedelta(minutes=1)),
            ]
        )
        scan.refresh_from_db()
        assert (scan.last_status, scan.consecutive_failures, scan.run_count) == (
            Status.FAILED,
            1,
            2,
        )
        assert scan.last_success_at == NOW + timedelta(seconds=1)

    def test_retries_are_queued_and_reported(self):
        (scan,) = echo_scans(1, max_retries=1)
        failed = ended(scan, Status.FAILED, NOW)
        assert runner.record_outcomes([failed]) == {failed.pk}
        retry = Execution.objects.get(schedule=scan, attempt=2)
        assert retry.status == Status.QUEUED and retry.scheduled_for == NOW
        scan.refresh_from_db()
        assert scan.consecutive_failures == 0  # not final yet: the retry decides

    def test_a_batch_costs_a_few_statements_whatever_its_size(self, django_assert_max_num_queries):
        scans = echo_scans(60)
        executions = [ended(scan, Status.SUCCEEDED, NOW) for scan in scans]
        executions += [ended(scan, Status.MISSED, NOW + timedelta(seconds=1)) for scan in scans]
        with django_assert_max_num_queries(2):  # one executemany per round and set of columns
            runner.record_outcomes(executions)
        assert {row[0] for row in state_of(scans)} == {Status.MISSED}


class TestAPassOfManyMissedOccurrences:
    def test_each_is_recorded_missed_with_its_schedule_state_in_constant_queries(self):
        tenant = make_tenant()

        def coalesced_pass(count: int) -> tuple[int, list[PeriodicScan]]:
            scans = echo_scans(count, misfire_grace_seconds=1, tenant=tenant)
            due = [(s.pk, [NOW], NOW - timedelta(minutes=5)) for s in scans]
            with CaptureQueriesContext(connection) as queries:
                submitted = handed_over(due, now=NOW)
            assert len(submitted) == count  # the coalesced run of each is handed over
            return len(queries), scans

        coalesced_pass(1)  # the first missed execution ever creates its /metrics counter rows
        few, _scans = coalesced_pass(3)
        # 20 schedules: 40 rows, still one INSERT statement (SQLite takes 49 rows of 20 values).
        many, scans = coalesced_pass(20)
        assert many == few
        missed = Execution.objects.filter(schedule__in=scans, status=Status.MISSED)
        assert missed.count() == 20
        assert all("were missed and coalesced" in e.error for e in missed)
        assert {row[0] for row in state_of(scans)} == {Status.MISSED}


class TestScheduleCache:
    def test_unchanged_schedules_are_not_loaded_again(self, django_assert_num_queries):
        scans = echo_scans(3)
        clock = [0.0]
        cache = ScheduleCache(max_age=5.0, clock=lambda: clock[0])
        first = cache.load({s.pk for s in scans})
        with django_assert_num_queries(1):  # their updated_at only
            again = cache.load({s.pk for s in scans})
        assert all(again[s.pk] is first[s.pk] for s in scans)

    def test_a_changed_schedule_is_loaded_again_and_a_deleted_one_dropped(self):
        changed, deleted, kept = echo_scans(3)
        pks = {changed.pk, deleted.pk, kept.pk}
        cache = ScheduleCache(max_age=5.0, clock=lambda: 0.0)
        first = cache.load(pks)
        changed.description = "edited"
        changed.save()
        deleted.delete()
        again = cache.load(pks)
        assert set(again) == {changed.pk, kept.pk}
        assert again[changed.pk] is not first[changed.pk]
        assert again[changed.pk].description == "edited"
        assert again[kept.pk] is first[kept.pk]

    def test_entries_older_than_max_age_are_loaded_again(self):
        (scan,) = echo_scans(1)
        clock = [0.0]
        cache = ScheduleCache(max_age=5.0, clock=lambda: clock[0])
        first = cache.load({scan.pk})
        # A tenant's change leaves the schedule's updated_at alone: the age bounds it.
        type(scan.tenant).objects.filter(pk=scan.tenant_id).update(name="Renamed")
        clock[0] = 6.0
        again = cache.load({scan.pk})
        assert again[scan.pk] is not first[scan.pk]
        assert again[scan.pk].tenant.name == "Renamed"

    def test_schedules_loaded_together_do_not_all_expire_together(self):
        # One pass loads the schedules due at one second together; were they all to expire
        # at once, one pass every max_age seconds would load them all again (a stall of the
        # fire path at a thousand schedules a second).
        scans = echo_scans(200)
        pks = {s.pk for s in scans}
        clock = [0.0]
        cache = ScheduleCache(max_age=5.0, clock=lambda: clock[0])
        held = cache.load(pks)
        reloaded_per_pass = []
        for step in range(1, 41):  # passes 0.25 s apart for 10 s
            clock[0] = step * 0.25
            now = cache.load(pks)
            reloaded_per_pass.append(sum(now[pk] is not held[pk] for pk in pks))
            held = now
        # Every entry is reloaded within max_age of its load, and no pass reloads most of them.
        assert sum(reloaded_per_pass[:20]) >= len(pks)
        assert max(reloaded_per_pass) <= len(pks) // 4, reloaded_per_pass

    def test_the_pass_sees_a_pause_made_between_two_passes(self):
        (scan,) = echo_scans(1)
        cache = ScheduleCache()
        first = handed_over([(scan.pk, [NOW], None)], now=NOW, schedules=cache)
        scan.paused_until = NOW + timedelta(days=1)
        scan.save()
        later = NOW + timedelta(minutes=1)
        second = handed_over([(scan.pk, [later], None)], now=later, schedules=cache)
        assert ([e.scheduled_for for e in first], second) == ([NOW], [])


@pytest.mark.django_db(transaction=True)
class TestOverlapWithUnwrittenOutcomes:
    def test_an_execution_the_recorder_holds_as_finished_is_not_active(self):
        (scan,) = echo_scans(1, overlap="skip")
        previous = runner.claim(scan, NOW - timedelta(seconds=1), claimed_by="test")
        recorder = Recorder()  # not started: what it is handed stays unwritten
        assert recorder.start(previous, worker="w")
        recorder.finish(previous, Status.SUCCEEDED)
        assert Execution.objects.get(pk=previous.pk).status == Status.QUEUED  # not written
        submitted = handed_over(
            [(scan.pk, [NOW], None)], now=NOW, finished=recorder.finished_unwritten
        )
        assert [e.scheduled_for for e in submitted] == [NOW]  # not skipped for overlap

    def test_without_it_the_unwritten_execution_still_counts(self):
        (scan,) = echo_scans(1, overlap="skip")
        runner.claim(scan, NOW - timedelta(seconds=1), claimed_by="test")
        assert handed_over([(scan.pk, [NOW], None)], now=NOW) == []
        assert Execution.objects.get(schedule=scan, scheduled_for=NOW).status == Status.SKIPPED

    def test_a_recheck_at_its_time_reads_the_unwritten_outcomes_without_waiting(self):
        (scan,) = echo_scans(1, overlap="skip")
        previous = runner.claim(scan, NOW - timedelta(seconds=1), claimed_by="test")
        recorder = Recorder()
        recorder.start(previous, worker="w")
        recorder.finish(previous, Status.SUCCEEDED)
        row = runner.claim(scan, NOW, claimed_by="test")
        row.recheck_overlap = True
        # The writer thread never runs: the previous row still says queued.
        assert Execution.objects.get(pk=previous.pk).status == Status.QUEUED
        assert runner.skipped_for_overlap(row, recorder) is False


class TestInsertRows:
    def test_rows_get_their_keys_and_the_values_bulk_create_would_write(self):
        a, b = echo_scans(2)
        rows = [
            Execution.for_occurrence(a, NOW, claimed_by="x"),
            Execution.for_occurrence(b, NOW, status=Status.MISSED, error="late", now=NOW),
        ]
        runner.insert_rows(rows)
        reference = Execution.objects.bulk_create(
            [
                Execution.for_occurrence(a, NOW + timedelta(days=1), claimed_by="x"),
                Execution.for_occurrence(
                    b, NOW + timedelta(days=1), status=Status.MISSED, error="late", now=NOW
                ),
            ]
        )
        fields = [
            f.attname
            for f in Execution._meta.concrete_fields
            if f.name not in ("id", "scheduled_for")
        ]
        for row, ref in zip(rows, reference, strict=True):
            stored = Execution.objects.get(pk=row.pk)
            assert stored.schedule_id == row.schedule_id and stored.scheduled_for == NOW
            stored_ref = Execution.objects.get(pk=ref.pk)
            assert [getattr(stored, f) for f in fields if f != "queued_at"] == [
                getattr(stored_ref, f) for f in fields if f != "queued_at"
            ]
            assert not row._state.adding

    def test_more_rows_than_one_statement_holds(self):
        scans = echo_scans(3)
        rows = [
            Execution.for_occurrence(scans[n % 3], NOW + timedelta(seconds=n), claimed_by="x")
            for n in range(runner.INSERT_BATCH * 2 + 7)
        ]
        rows.reverse()  # each key must come back to its own row, in any order of time
        with CaptureQueriesContext(connection) as queries:
            runner.insert_rows(rows)
        # On PostgreSQL (psycopg 3) one INSERT of arrays; elsewhere a statement per batch.
        arrays = sql.copies()
        assert (len(queries) == 1) is arrays
        assert all(("unnest(" in query["sql"]) is arrays for query in queries)
        stored = dict(Execution.objects.values_list("pk", "scheduled_for"))
        assert len(stored) == len(rows)
        assert all(stored[row.pk] == row.scheduled_for for row in rows)

    def test_a_row_built_for_an_occurrence_carries_its_schedule(self, django_assert_num_queries):
        (scan,) = echo_scans(1)
        row = Execution.for_occurrence(scan, NOW, claimed_by="x")
        with django_assert_num_queries(0):
            assert row.schedule is scan


class TestMovedJobs:
    def test_a_moved_job_writes_its_next_run_time_alone_and_reads_it_back(self, job_store):
        (scan,) = echo_scans(1, interval_seconds=60)
        job = make_job(job_store._scheduler, scan, NOW)
        job_store.write_jobs([job])
        state = bytes(DjangoJob.objects.get(id=job.id).job_state)
        later = job.next_run_time + timedelta(minutes=5)
        job.next_run_time = later
        job_store.move_job(job)
        job_store.flush()
        row = DjangoJob.objects.get(id=job.id)
        assert bytes(row.job_state) == state  # not pickled, signed and written again
        assert row.next_run_time == later
        assert job_store.lookup_job(job.id).next_run_time == later
        assert [j.next_run_time for j in job_store.get_due_jobs(later)] == [later]
        scan.refresh_from_db()
        assert scan.next_run_at == later

    def test_a_job_updated_whole_in_the_same_pass_is_written_whole(self, job_store):
        (scan,) = echo_scans(1, interval_seconds=60)
        job = make_job(job_store._scheduler, scan, NOW)
        job_store.write_jobs([job])
        state = bytes(DjangoJob.objects.get(id=job.id).job_state)
        job_store.move_job(job)
        job.name = "renamed"
        job_store.update_job(job)
        job_store.flush()
        assert bytes(DjangoJob.objects.get(id=job.id).job_state) != state
        assert job_store.lookup_job(job.id).name == "renamed"
