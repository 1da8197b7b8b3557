from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import OperationalError, connection
from django.db.models.functions import Now
from django_apscheduler.models import DjangoJob

from scheduling import runner, signals
from scheduling.models import Execution, Schedule, SchedulerLease, Status, TriggerKind
from scheduling.scheduler import dispatch
from scheduling.scheduler.lease import Lease
from scheduling.scheduler.service import SchedulerService
from tests.factories import make_execution, make_scan, make_tenant
from tests.scheduling.loops import hand_driven_loop

NOW = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)


def echo_scan(tenant, **fields):
    fields.setdefault("scan_type", "test_echo")
    fields.setdefault("target", "x")
    return make_scan(tenant=tenant, **fields)


def run_claimed(schedule, when=NOW, **kwargs) -> Execution:
    execution = runner.claim(schedule, when, claimed_by="test", **kwargs)
    runner.execute(execution.pk)
    execution.refresh_from_db()
    return execution


@pytest.mark.django_db
class TestClaimAndExecute:
    def test_claim_is_exactly_once_per_occurrence_and_attempt(self):
        scan = echo_scan(make_tenant())
        assert runner.claim(scan, NOW, claimed_by="a") is not None
        assert runner.claim(scan, NOW, claimed_by="b") is None
        assert runner.claim(scan, NOW, attempt=2, claimed_by="b") is not None
        assert Execution.objects.filter(schedule=scan, scheduled_for=NOW).count() == 2

    def test_success_records_outcome_and_schedule_state(self):
        scan = echo_scan(make_tenant(), name="echo")
        started, finished = [], []
        signals.execution_started.connect(lambda **kw: started.append(kw), weak=False)
        signals.execution_finished.connect(lambda **kw: finished.append(kw["status"]), weak=False)
        try:
            execution = run_claimed(scan)
        finally:
            signals.execution_started.receivers.clear()
            signals.execution_finished.receivers.clear()
        assert execution.status == Status.SUCCEEDED
        assert execution.result == {"name": "echo", "attempt": 1}
        assert execution.started_at and execution.finished_at and execution.duration_ms >= 0
        assert execution.worker == runner.worker_id()
        scan.refresh_from_db()
        assert (scan.last_status, scan.run_count, scan.consecutive_failures) == ("succeeded", 1, 0)
        assert len(started) == 1 and finished == ["succeeded"]

    def test_failure_records_error_and_traceback(self):
        scan = echo_scan(make_tenant(), scan_type="test_sleep", options={"fail": True})
        execution = run_claimed(scan)
        assert execution.status == Status.FAILED
        assert "failed on purpose" in execution.error
        assert "RuntimeError" in execution.traceback
        scan.refresh_from_db()
        assert scan.consecutive_failures == 1

    def test_stored_unknown_type_key_fails_the_run_readably(self):
        scan = echo_scan(make_tenant())
        Schedule.objects.filter(pk=scan.pk).update(updated_at=NOW)
        scan.__class__.objects.filter(pk=scan.pk).update(scan_type="removed_plugin")
        execution = run_claimed(scan)
        assert execution.status == Status.FAILED
        assert "Unknown scan type 'removed_plugin'" in execution.error
        assert execution.traceback == ""

    def test_retry_chain_is_one_row_per_attempt_and_counts_one_failure(self):
        scan = echo_scan(
            make_tenant(),
            scan_type="test_sleep",
            options={"fail": True},
            max_retries=2,
            retry_backoff_seconds=10,
        )
        first = run_claimed(scan)
        retry = Execution.objects.get(schedule=scan, attempt=2)
        assert (retry.trigger, retry.status, retry.scheduled_for) == (
            TriggerKind.RETRY,
            Status.QUEUED,
            first.scheduled_for,
        )
        assert timedelta(seconds=9) < retry.run_after - first.finished_at <= timedelta(seconds=11)
        runner.execute(retry.pk)
        third = Execution.objects.get(schedule=scan, attempt=3)
        assert third.run_after - Execution.objects.get(pk=retry.pk).finished_at > timedelta(
            seconds=19
        )
        runner.execute(third.pk)
        assert not Execution.objects.filter(schedule=scan, attempt=4).exists()
        scan.refresh_from_db()
        assert scan.consecutive_failures == 1

    def test_inactive_tenant_is_skipped_with_the_reason(self):
        tenant = make_tenant(is_active=False, name="Dormant")
        scan = echo_scan(tenant)
        submitted = []
        rows = dispatch.dispatch(
            scan.pk,
            [NOW],
            first_due=NOW,
            claimed_by="t",
            submit=lambda e, p: submitted.append(e),
            now=NOW,
        )
        assert submitted == []
        assert [(r.status, r.error) for r in rows] == [("skipped", "Tenant Dormant is inactive.")]

    def test_occurrences_past_the_misfire_grace_are_recorded_missed(self):
        scan = echo_scan(make_tenant(), misfire_grace_seconds=30, coalesce=False)
        submitted = []
        times = [NOW - timedelta(minutes=2), NOW - timedelta(minutes=1), NOW - timedelta(seconds=5)]
        dispatch.dispatch(
            scan.pk,
            times,
            first_due=times[0],
            claimed_by="t",
            submit=lambda e, p: submitted.append(e.scheduled_for),
            now=NOW,
        )
        statuses = dict(
            Execution.objects.filter(schedule=scan).values_list("scheduled_for", "status")
        )
        assert statuses == {times[0]: "missed", times[1]: "missed", times[2]: "queued"}
        assert submitted == [times[2]]

    def test_coalesced_run_records_what_it_folded_away(self):
        scan = echo_scan(make_tenant(), coalesce=True)
        submitted = []
        dispatch.dispatch(
            scan.pk,
            [NOW],
            first_due=NOW - timedelta(hours=3),
            claimed_by="t",
            submit=lambda e, p: submitted.append(e),
            now=NOW,
        )
        missed = Execution.objects.get(schedule=scan, status="missed")
        assert missed.scheduled_for == NOW - timedelta(hours=3)
        assert "coalesced" in missed.error
        assert len(submitted) == 1

    def test_overlap_skip_records_a_skipped_row(self):
        scan = echo_scan(make_tenant(), overlap="skip")
        make_execution(schedule=scan, status=Status.RUNNING, scheduled_for=NOW - timedelta(1))
        rows = dispatch.dispatch(
            scan.pk, [NOW], first_due=NOW, claimed_by="t", submit=lambda e, p: None, now=NOW
        )
        assert rows[0].status == Status.SKIPPED and "still running" in rows[0].error

    def test_once_schedule_disables_itself_after_its_run(self):
        scan = echo_scan(make_tenant(), trigger_type="once", run_at=NOW)
        run_claimed(scan)
        scan.refresh_from_db()
        assert scan.enabled is False

    def test_max_executions_disables_after_that_many_successes(self):
        scan = echo_scan(make_tenant(), max_executions=2)
        run_claimed(scan, NOW)
        assert Schedule.objects.get(pk=scan.pk).enabled
        run_claimed(scan, NOW + timedelta(minutes=1))
        assert not Schedule.objects.get(pk=scan.pk).enabled

    def test_timed_out_execution_discards_its_late_result(self):
        scan = echo_scan(make_tenant(), timeout_seconds=1)
        execution = runner.claim(scan, NOW, claimed_by="t")
        Execution.objects.filter(pk=execution.pk).update(status=Status.RUNNING)
        runner.time_out(execution.pk)
        execution.refresh_from_db()
        assert execution.status == Status.TIMED_OUT
        assert "Timed out after 1 s" in execution.error
        # The handler returning now must not turn it into a success.
        assert execution.mark_succeeded({"late": True}) is False
        execution.refresh_from_db()
        assert execution.status == Status.TIMED_OUT and execution.result is None


@pytest.mark.django_db
class TestLease:
    def test_only_one_holder_until_the_lease_expires(self):
        a = Lease(name="g", holder="a", ttl=10)
        b = Lease(name="g", holder="b", ttl=10)
        assert a.acquire() and a.valid()
        assert not b.acquire() and not b.valid()
        assert a.renew()
        # The lease expires by the database's clock (see test_lease_skew.py): age the row.
        SchedulerLease.objects.filter(name="g").update(expires_at=Now() - timedelta(seconds=1))
        assert b.acquire()
        assert not a.renew() and not a.valid()
        assert SchedulerLease.objects.get(name="g").holder == "b"

    def test_release_frees_the_lease_at_once(self):
        a = Lease(name="g", holder="a", ttl=60)
        assert a.acquire()
        a.release()
        assert Lease(name="g", holder="b", ttl=60).acquire()


@pytest.mark.django_db
class TestRecovery:
    def test_becoming_leader_interrupts_executions_of_a_dead_holder_and_retries(self):
        scan = echo_scan(make_tenant(), max_retries=1, retry_backoff_seconds=1)
        orphan = make_execution(
            schedule=scan, status=Status.RUNNING, claimed_by="dead-host:1:abc", finished_at=None
        )
        service = SchedulerService(install_signal_handlers=False)
        service._recover()
        orphan.refresh_from_db()
        assert orphan.status == Status.INTERRUPTED
        assert "stopped before it finished" in orphan.error
        retry = Execution.objects.get(schedule=scan, attempt=2)
        assert retry.trigger == TriggerKind.RETRY and retry.status == Status.QUEUED


@pytest.mark.django_db
class TestSchedulerLoop:
    def make_loop(self, service: SchedulerService):
        class Discard:  # what runs the claims does not matter here
            def submit(self, execution, **kwargs):
                pass

        return hand_driven_loop(service, Discard())

    def test_database_error_after_dispatch_neither_kills_the_loop_nor_redispatches(self):
        service = SchedulerService(install_signal_handlers=False)
        scheduler = self.make_loop(service)
        with time_machine.travel(NOW, tick=False) as clock:
            scan = echo_scan(make_tenant(), interval_seconds=60)
            service.sync.full()
            clock.shift(61)

            def fail_job_updates(execute, sql, params, many, context):
                if sql.startswith('UPDATE "django_apscheduler_djangojob"'):
                    raise OperationalError("database is locked (injected)")
                return execute(sql, params, many, context)

            with connection.execute_wrapper(fail_job_updates):
                wait = scheduler._process_jobs()  # must not raise
            assert wait is not None
            assert Execution.objects.filter(schedule=scan).count() == 1
            stale = DjangoJob.objects.get(pk=f"schedule:{scan.pk}").next_run_time
            assert stale == NOW + timedelta(seconds=60)  # the write after dispatch failed

            scheduler._process_jobs()  # offered again: the claim makes it a no-op
            assert Execution.objects.filter(schedule=scan).count() == 1
            advanced = DjangoJob.objects.get(pk=f"schedule:{scan.pk}").next_run_time
            assert advanced == NOW + timedelta(seconds=120)

    def test_loop_without_the_lease_fires_nothing(self):
        service = SchedulerService(install_signal_handlers=False)
        scheduler = self.make_loop(service)
        with time_machine.travel(NOW, tick=False) as clock:
            echo_scan(make_tenant(), interval_seconds=60)
            service.sync.full()
            clock.shift(61)
            service.lease.valid_until = 0.0  # e.g. frozen past its lease
            scheduler._process_jobs()
        assert not Execution.objects.exists()
