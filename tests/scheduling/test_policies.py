"""Execution policies: timeouts, overlap, misfires, clock jumps, dependencies, priority,
fairness, blackout windows and stagger."""

from __future__ import annotations

import os
import re
import threading
import time
from datetime import UTC, datetime, timedelta
from datetime import time as dtime

import pytest
import time_machine
from django.db import connection

from scheduling import runner, triggers
from scheduling.executors.base import ExecutorContext
from scheduling.executors.process import run_in_child
from scheduling.executors.thread import (
    ThreadExecutor,
    WorkerPool,
    WorkItem,
    default_tenant_limit,
)
from scheduling.models import BlackoutWindow, Execution, Schedule, Status, TriggerKind
from scheduling.scheduler import dispatch
from scheduling.scheduler.loop import FencedScheduler
from scheduling.scheduler.service import SchedulerService
from tests.factories import make_scan, make_tenant
from tests.scheduling.loops import hand_driven_loop

NOW = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)  # a Monday


def echo_scan(tenant, **fields):
    fields.setdefault("scan_type", "test_echo")
    fields.setdefault("target", "x")
    return make_scan(tenant=tenant, **fields)


def loop(service: SchedulerService) -> FencedScheduler:
    """A scheduler loop wired like the service's, driven by hand (no threads)."""
    submitted: list[int] = []

    class Collect:
        def submit(self, execution, **kwargs):
            submitted.append(execution.pk)

    service.submitted = submitted
    return hand_driven_loop(service, Collect())


@pytest.mark.django_db(transaction=True)
@pytest.mark.process
def test_process_executor_kills_a_job_at_its_timeout(monkeypatch):
    scan = echo_scan(
        make_tenant(), scan_type="test_sleep", options={"seconds": 60}, timeout_seconds=2
    )
    execution = runner.claim(scan, NOW, claimed_by="t")
    monkeypatch.setenv("SCHEDULING_DB_PATH", connection.settings_dict["NAME"])
    started = time.monotonic()
    run_in_child(execution.pk, timeout=2)
    elapsed = time.monotonic() - started
    execution.refresh_from_db()
    assert execution.status == Status.TIMED_OUT
    # The child is named by the parent that killed it, not by the child itself: on a loaded
    # machine a spawned child may not have got as far as recording its pid by the timeout.
    match = re.search(r"the process \(pid (\d+)\) was killed at the timeout", execution.error)
    assert match, execution.error
    with pytest.raises(ProcessLookupError):
        os.kill(int(match[1]), 0)  # killed and reaped: no such process any more
    # Ended by the kill, not by the job: it would have slept for 60 s.
    assert 2 <= elapsed < 60


def outcome_at(schedule, at):
    """Dispatch the occurrence of ``schedule`` at ``at`` (on time); return its status and error."""
    [row] = dispatch.dispatch(
        schedule.pk, [at], first_due=at, claimed_by="t", submit=lambda e, p: None, now=at
    )
    return row.status, row.error


@pytest.mark.django_db
class TestMisfiresAndClockJumps:
    def test_downtime_yields_missed_rows_and_the_next_occurrence_on_time(self):
        service = SchedulerService(install_signal_handlers=False)
        scheduler = loop(service)
        with time_machine.travel(NOW, tick=False) as clock:
            scan = echo_scan(
                make_tenant(),
                interval_seconds=1,
                misfire_grace_seconds=2,
                coalesce=False,
                overlap="allow",
                max_instances=5,
            )
            service.sync.full()
            clock.shift(11.5)  # the scheduler was down for ~10 s
            scheduler._process_jobs()
            rows = list(Execution.objects.filter(schedule=scan).order_by("scheduled_for"))
            missed = [r for r in rows if r.status == Status.MISSED]
            queued = [r for r in rows if r.status == Status.QUEUED]
            assert len(missed) == 9 and len(queued) == 2  # 10 s and 11 s are within grace
            assert all("Missed by" in r.error for r in missed)
            clock.shift(0.5)
            scheduler._process_jobs()
            latest = Execution.objects.filter(schedule=scan).latest("scheduled_for")
            assert latest.scheduled_for == NOW + timedelta(seconds=12)
            assert latest.status == Status.QUEUED

    def test_downtime_with_coalesce_yields_one_missed_row(self):
        service = SchedulerService(install_signal_handlers=False)
        scheduler = loop(service)
        with time_machine.travel(NOW, tick=False) as clock:
            scan = echo_scan(make_tenant(), interval_seconds=1, misfire_grace_seconds=5)
            service.sync.full()
            clock.shift(10.5)
            scheduler._process_jobs()
        statuses = list(Execution.objects.filter(schedule=scan).values_list("status", flat=True))
        assert sorted(statuses) == ["missed", "queued"]

    def test_clock_jumping_a_year_yields_one_coalesced_row_quickly(self):
        service = SchedulerService(install_signal_handlers=False)
        scheduler = loop(service)
        with time_machine.travel(NOW, tick=False) as clock:
            scan = echo_scan(make_tenant(), interval_seconds=1, misfire_grace_seconds=5)
            service.sync.full()
            clock.shift(timedelta(days=365))
            started = time.process_time()
            scheduler._process_jobs()
            cpu = time.process_time() - started
        rows = list(Execution.objects.filter(schedule=scan))
        assert len(rows) == 2, [(r.status, r.scheduled_for) for r in rows]
        assert {r.status for r in rows} == {"missed", "queued"}
        assert cpu < 2, f"{cpu:.1f} s of CPU for one pass after a clock jump"

    def test_clock_jumping_without_coalesce_stays_bounded(self):
        service = SchedulerService(install_signal_handlers=False)
        scheduler = loop(service)
        with time_machine.travel(NOW, tick=False) as clock:
            scan = echo_scan(
                make_tenant(), interval_seconds=60, misfire_grace_seconds=5, coalesce=False
            )
            service.sync.full()
            clock.shift(timedelta(days=365))
            scheduler._process_jobs()
            count = Execution.objects.filter(schedule=scan).count()
            assert count <= 102
            next_run = Schedule.objects.get(pk=scan.pk).next_run_at
            assert next_run > NOW + timedelta(days=365) - timedelta(minutes=1)

    def test_clock_stepped_back_never_reruns_a_recorded_occurrence(self):
        service = SchedulerService(install_signal_handlers=False)
        scheduler = loop(service)
        with time_machine.travel(NOW, tick=False) as clock:
            scan = echo_scan(make_tenant(), interval_seconds=60)
            service.sync.full()
            clock.shift(61)
            scheduler._process_jobs()
            assert Execution.objects.filter(schedule=scan).count() == 1
            from django_apscheduler.models import DjangoJob

            # Step the clock back and make the store offer the same occurrence again.
            clock.shift(-120)
            DjangoJob.objects.filter(pk=scan.job_id).update(
                next_run_time=NOW + timedelta(seconds=60)
            )
            clock.shift(121)
            scheduler._process_jobs()
        assert Execution.objects.filter(schedule=scan, attempt=1).count() == 1


@pytest.mark.django_db
class TestDependencies:
    def test_chain_runs_in_order_each_cycle_and_stops_at_a_failure(self):
        tenant = make_tenant()
        a = echo_scan(tenant, name="A")
        b = echo_scan(tenant, name="B", scan_type="test_sleep", options={"fail": True})
        c = echo_scan(tenant, name="C")
        b.depends_on.set([a])
        c.depends_on.set([b])
        runner.execute(runner.claim(a, NOW, claimed_by="t").pk)
        b_run = Execution.objects.get(schedule=b, scheduled_for=NOW)
        assert (b_run.trigger, b_run.status) == (TriggerKind.DEPENDENCY, Status.QUEUED)
        assert not Execution.objects.filter(schedule=c).exists()  # not before B finished
        runner.execute(b_run.pk)
        c_run = Execution.objects.get(schedule=c, scheduled_for=NOW)
        assert c_run.status == Status.SKIPPED
        assert "Upstream 'B' did not succeed" in c_run.error

    def test_dependent_waits_for_all_upstreams_of_the_same_cycle(self):
        tenant = make_tenant()
        a, b = echo_scan(tenant, name="A"), echo_scan(tenant, name="B")
        d = echo_scan(tenant, name="D")
        d.depends_on.set([a, b])
        runner.execute(runner.claim(a, NOW, claimed_by="t").pk)
        runner.execute(runner.claim(b, NOW - timedelta(hours=1), claimed_by="t").pk)
        assert not Execution.objects.filter(schedule=d).exists()  # B's run is another cycle
        runner.execute(runner.claim(b, NOW, claimed_by="t").pk)
        assert Execution.objects.get(schedule=d).trigger == TriggerKind.DEPENDENCY

    def test_schedules_with_upstreams_get_no_job_of_their_own(self):
        service = SchedulerService(install_signal_handlers=False)
        loop(service)
        tenant = make_tenant()
        a, b = echo_scan(tenant, name="A"), echo_scan(tenant, name="B")
        b.depends_on.set([a])
        service.sync.full()
        from django_apscheduler.models import DjangoJob

        jobs = set(DjangoJob.objects.values_list("id", flat=True))
        assert a.job_id in jobs and b.job_id not in jobs


def wait_for(predicate, timeout: float = 60.0) -> None:
    """Wait until ``predicate()`` holds; the timeout only bounds a test that would hang."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


class TestPriorityAndFairness:
    def run_pool(self, items, *, workers=1):
        order: list[int] = []
        occupied = threading.Event()
        gate = threading.Event()
        done = threading.Event()

        def run(execution_id):
            if execution_id == 0:
                occupied.set()
                gate.wait(60)
            order.append(execution_id)
            if len(order) == len(items) + 1:
                done.set()

        pool = WorkerPool(max_workers=workers, run=run, on_timeout=lambda pk: None)
        pool.start()
        try:
            pool.submit(0)
            # The worker is busy with 0 before the others are queued: they wait together and
            # the pool, not the order of submission, decides which starts first.
            assert occupied.wait(60)
            for execution_id, kwargs in items:
                pool.submit(execution_id, **kwargs)
            gate.set()
            assert done.wait(60)
        finally:
            gate.set()
            pool.shutdown(grace=1)
        return order[1:]

    def test_saturated_pool_runs_higher_priority_first(self):
        order = self.run_pool(
            [
                (1, {"priority": 0}),
                (2, {"priority": 0}),
                (3, {"priority": 10}),
                (4, {"priority": 5}),
            ]
        )
        assert order == [3, 4, 1, 2]

    def test_tenant_at_its_limit_waits_while_another_tenant_proceeds(self):
        started: dict[int, float] = {}
        release = threading.Event()

        def run(execution_id):
            started[execution_id] = time.monotonic()
            if execution_id in (1, 2):
                release.wait(5)

        pool = WorkerPool(max_workers=3, run=run, on_timeout=lambda pk: None)
        pool.start()
        try:
            pool.submit(1, tenant_id="a", tenant_limit=1)
            pool.submit(2, tenant_id="a", tenant_limit=1)
            pool.submit(3, tenant_id="b", tenant_limit=1)
            # 1 and 3 start (each in its own worker, in either order); 2 waits for 1's slot.
            wait_for(lambda: 1 in started and 3 in started)
            assert 2 not in started and pool.queued == 1
            release.set()
            wait_for(lambda: 2 in started)
        finally:
            release.set()
            pool.shutdown(grace=1)


def hand_driven_pool(max_workers: int = 4) -> WorkerPool:
    """A pool whose workers are never started: the test takes and finishes items itself."""
    return WorkerPool(max_workers=max_workers, run=lambda pk: None, on_timeout=lambda pk: None)


def take_item(pool: WorkerPool) -> WorkItem | None:
    """Let one worker take its next item (counted as running until ``finish``)."""
    with pool._cond:
        return pool._take()


def finish(pool: WorkerPool, item: WorkItem) -> None:
    with pool._cond:
        pool._finished(item)


def take(pool: WorkerPool) -> tuple[object, int] | None:
    """Let one worker take its next item and finish it at once; return (tenant, id)."""
    item = take_item(pool)
    if item is None:
        return None
    finish(pool, item)
    return item.tenant_id, item.execution_id


class TestFairnessBetweenTenants:
    """Tenants take turns; priority orders work within a tenant (``FairQueue``)."""

    def test_a_small_tenant_is_served_within_one_turn_behind_a_large_high_priority_backlog(self):
        pool = hand_driven_pool()
        for pk in range(1, 501):
            pool.submit(pk, priority=32767, tenant_id="a")
        for pk in range(1001, 1006):
            pool.submit(pk, priority=0, tenant_id="b")
        picks = [take(pool) for _ in range(20)]
        # Two tenants have work: they alternate until b's is done, whatever a's priority.
        assert [tenant for tenant, _pk in picks] == ["a", "b"] * 5 + ["a"] * 10
        assert [pk for tenant, pk in picks if tenant == "b"] == [1001, 1002, 1003, 1004, 1005]
        assert [pk for tenant, pk in picks if tenant == "a"] == list(range(1, 16))

    def test_every_tenant_with_work_is_served_within_as_many_picks_as_tenants_have_work(self):
        pool = hand_driven_pool()
        for pk in range(1, 301):
            pool.submit(pk, priority=100, tenant_id="big")
        for pk, tenant in enumerate(("t1", "t2", None), start=1001):
            pool.submit(pk, priority=-5, tenant_id=tenant)  # None: system schedules' turn
        picks = [take(pool) for _ in range(4)]
        assert {tenant for tenant, _pk in picks} == {"big", "t1", "t2", None}

    def test_priority_still_orders_work_within_a_tenant(self):
        pool = hand_driven_pool()
        now = time.time()
        pool.submit(1, priority=0, tenant_id="a", not_before=now - 10)
        pool.submit(2, priority=10, tenant_id="a")
        pool.submit(3, priority=5, tenant_id="a", not_before=now - 1)
        pool.submit(4, priority=5, tenant_id="a", not_before=now - 2)  # due earlier: first
        pool.submit(5, priority=0, tenant_id="a", not_before=now - 10)  # a tie: first come
        assert [take(pool) for _ in range(6)] == [
            ("a", 2),
            ("a", 4),
            ("a", 3),
            ("a", 1),
            ("a", 5),
            None,
        ]

    def test_a_tenant_at_its_limit_is_skipped_until_a_slot_frees_then_served_next(self):
        pool = hand_driven_pool()
        for pk in range(1, 11):
            pool.submit(pk, priority=100, tenant_id="a", tenant_limit=2)
        for pk in (101, 102, 103):
            pool.submit(pk, tenant_id="b", tenant_limit=2)
        running = [take_item(pool) for _ in range(4)]
        assert sorted((i.tenant_id, i.execution_id) for i in running if i) == [
            ("a", 1),
            ("a", 2),
            ("b", 101),
            ("b", 102),
        ]
        assert take_item(pool) is None  # both tenants at their limit: nothing may start
        assert pool._per_tenant == {"a": 2, "b": 2}
        finish(pool, next(i for i in running if i and i.execution_id == 1))
        third = take_item(pool)  # a is the only tenant under its limit now
        assert third is not None and (third.tenant_id, third.execution_id) == ("a", 3)
        assert take_item(pool) is None

    def test_the_default_limit_keeps_one_tenant_from_filling_the_pool(self, settings):
        settings.SCHEDULING_TENANT_CONCURRENCY = None  # the default
        assert [default_tenant_limit(workers) for workers in (1, 2, 3, 4, 8)] == [1, 1, 2, 2, 4]
        settings.SCHEDULING_TENANT_CONCURRENCY = 0
        assert default_tenant_limit(8) == 0  # no limit
        settings.SCHEDULING_TENANT_CONCURRENCY = 3
        assert default_tenant_limit(8) == 3

    @pytest.mark.django_db
    def test_the_thread_executor_gives_each_tenant_its_own_limit_or_the_default(self):
        context = ExecutorContext(
            identity="t",
            worker="w",
            writer=runner.DIRECT,
            on_done=lambda pk: None,
            lease_valid=lambda: True,
            max_workers=4,
        )
        executor = ThreadExecutor(context)  # not started: the items stay queued
        tenants = [make_tenant(), make_tenant(max_concurrent_executions=3), make_tenant()]
        tenants[2].max_concurrent_executions = 0  # no limit for this one
        tenants[2].save()
        system = Schedule.objects.get(pk=echo_scan(None).pk)
        for schedule in [echo_scan(t) for t in tenants] + [system]:
            execution = runner.load(runner.claim(schedule, NOW, claimed_by="t").pk)
            executor.submit(execution, priority=0, timeout=30)
        limits = {item.tenant_id: item.tenant_limit for item in executor.pool._pending.clear()}
        # Half of the 4 workers by default; system schedules (no tenant) get it too.
        assert limits == {tenants[0].pk: 2, tenants[1].pk: 3, tenants[2].pk: 0, None: 2}


@pytest.mark.django_db
class TestBlackoutWindows:
    def test_occurrence_inside_a_weekly_window_is_skipped_naming_it(self):
        tenant = make_tenant()
        scan = echo_scan(tenant)
        window = BlackoutWindow(
            tenant=tenant,
            name="Weekend maintenance",
            kind="weekly",
            start_weekday=5,
            start_time=dtime(22, 0),
            end_weekday=6,
            end_time=dtime(6, 0),
            timezone="Europe/Berlin",
        )
        window.full_clean()
        window.save()
        saturday_late = datetime(2026, 6, 6, 21, 30, tzinfo=UTC)  # 23:30 in Berlin
        monday = datetime(2026, 6, 8, 9, 0, tzinfo=UTC)
        rows = dispatch.dispatch(
            scan.pk,
            [saturday_late],
            first_due=saturday_late,
            claimed_by="t",
            submit=lambda e, p: None,
            now=saturday_late,
        )
        assert rows[0].status == Status.SKIPPED
        assert "Weekend maintenance" in rows[0].error
        assert outcome_at(scan, monday) == (Status.QUEUED, "")

    def test_date_window_of_one_schedule_leaves_the_others_alone(self):
        tenant = make_tenant()
        scan, other = echo_scan(tenant), echo_scan(tenant)
        BlackoutWindow.objects.create(
            tenant=tenant,
            schedule=scan,
            name="Migration",
            kind="dates",
            starts_at=NOW - timedelta(hours=1),
            ends_at=NOW + timedelta(hours=1),
        )
        status, error = outcome_at(scan, NOW)
        assert status == Status.SKIPPED
        assert "Migration" in error
        assert outcome_at(other, NOW) == (Status.QUEUED, "")
        assert outcome_at(scan, NOW + timedelta(hours=2)) == (Status.QUEUED, "")

    def test_invalid_window_is_rejected_naming_the_field(self):
        from django.core.exceptions import ValidationError

        tenant = make_tenant()
        window = BlackoutWindow(tenant=tenant, name="x", kind="dates", starts_at=NOW)
        with pytest.raises(ValidationError) as info:
            window.full_clean()
        assert "ends_at" in info.value.message_dict


@pytest.mark.django_db
def test_stagger_spreads_identical_schedules_deterministically():
    tenant = make_tenant()
    scans = [
        echo_scan(
            tenant,
            trigger_type="cron",
            cron_expression="0 2 * * *",
            timezone="UTC",
            jitter_seconds=600,
            stagger=True,
        )
        for _ in range(20)
    ]
    firsts = [triggers.first_fire_time(s, NOW) for s in scans]
    again = [triggers.first_fire_time(s, NOW) for s in scans]
    base = datetime(2026, 6, 2, 2, 0, tzinfo=UTC)
    assert firsts == again  # deterministic, unlike jitter
    assert all(base <= f < base + timedelta(seconds=600) for f in firsts)
    assert len(set(firsts)) > 10
