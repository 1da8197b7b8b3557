"""Claim ahead: occurrences are claimed ``SCHEDULING_CLAIM_AHEAD`` before they are due and start
at their time; the overlap policy is still decided at that time."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from scheduling import runner
from scheduling.executors.thread import WorkerPool
from scheduling.models import Execution, Status
from scheduling.scheduler import dispatch
from scheduling.scheduler.loop import FencedScheduler
from scheduling.scheduler.recorder import Recorder
from scheduling.scheduler.service import SchedulerService
from tests.factories import make_scan, make_tenant
from tests.scheduling.loops import hand_driven_loop

NOW = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)


def wait_for(predicate, timeout: float = 60.0) -> None:
    """Wait until ``predicate()`` holds; the timeout only bounds a test that would hang."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


# How long an idle worker of the pool waits for work before it looks again (seconds).
POLL = 0.5


def record_waits(pool: WorkerPool) -> list[float]:
    """Record how long each idle worker of ``pool`` means to wait (call before ``start``)."""
    waits: list[float] = []

    class Recording(threading.Condition):
        def wait(self, timeout=None):
            if timeout is not None:
                waits.append(timeout)
            return super().wait(timeout)

    pool._cond = Recording()
    return waits


class TestWorkerPoolHoldsWork:
    def test_an_item_is_held_until_its_time_while_due_ones_run(self):
        started: dict[int, float] = {}
        lock = threading.Lock()

        def run(execution_id: int) -> None:
            with lock:
                started[execution_id] = time.time()

        executor = WorkerPool(max_workers=2, run=run, on_timeout=lambda pk: None)
        waits = record_waits(executor)
        executor.start()
        try:
            at = time.time() + 0.4
            executor.submit(1, not_before=at)
            executor.submit(2, not_before=time.time() - 1)  # already due
            executor.submit(3)
            wait_for(lambda: 2 in started and 3 in started)
            assert 1 not in started or started[1] >= at
            assert executor.queued == 0  # held work is not a queue the recorder waits for
            wait_for(lambda: 1 in started)
        finally:
            executor.shutdown(grace=1)
        assert started[1] >= at
        # A worker wakes for it, not at its next poll: with nothing held, an idle worker
        # waits the whole poll interval; only a held item's time makes it wait less.
        assert any(timeout < POLL for timeout in waits), waits

    def test_a_held_burst_runs_on_every_worker_at_once(self):
        # Items of one burst are held until the same time; the workers sleep until the
        # earliest, and each one released wakes another: the burst runs in parallel.
        running, most = [0], [0]
        lock = threading.Lock()
        release = threading.Event()

        def run(execution_id: int) -> None:
            with lock:
                running[0] += 1
                most[0] = max(most[0], running[0])
            release.wait(5)
            with lock:
                running[0] -= 1

        executor = WorkerPool(max_workers=4, run=run, on_timeout=lambda pk: None)
        executor.start()
        try:
            at = time.time() + 0.3
            for execution_id in range(8):
                executor.submit(execution_id, not_before=at)
            wait_for(lambda: most[0] == 4)
        finally:
            release.set()
            executor.shutdown(grace=2)
        assert most[0] == 4

    def test_shutdown_starts_held_items_due_within_the_grace_and_hands_back_the_rest(self):
        ran: list[int] = []
        executor = WorkerPool(max_workers=1, run=ran.append, on_timeout=lambda pk: None)
        executor.start()
        executor.submit(7, not_before=time.time() + 60)
        executor.submit(8, not_before=time.time() + 0.2)
        never_started, still_running = executor.shutdown(grace=1)
        assert (never_started, still_running, ran) == ([7], [], [8])


@pytest.mark.django_db(transaction=True)
class TestSchedulerPass:
    def make_loop(self, claim_ahead: float) -> tuple[SchedulerService, FencedScheduler, list]:
        service = SchedulerService(install_signal_handlers=False)
        held: list[tuple[int, float | None]] = []

        class Hold:
            def submit(self, execution, **kwargs):
                held.append((execution.pk, kwargs.get("not_before")))

        scheduler = hand_driven_loop(service, Hold(), claim_ahead=claim_ahead)
        return service, scheduler, held

    def test_an_occurrence_is_claimed_ahead_and_handed_over_for_its_time(self):
        service, scheduler, held = self.make_loop(claim_ahead=0.25)
        with time_machine.travel(NOW, tick=False) as clock:
            scan = make_scan(
                tenant=make_tenant(), scan_type="test_echo", target="x", interval_seconds=60
            )
            service.sync.full()
            due = NOW + timedelta(seconds=60)
            clock.move_to(due - timedelta(seconds=0.3))
            wait = scheduler._process_jobs()
            assert not Execution.objects.exists()  # not within 0.25 s of its time yet
            assert wait == pytest.approx(0.05, abs=0.01)  # wakes 0.25 s before it is due
            clock.move_to(due - timedelta(seconds=0.2))
            scheduler._process_jobs()
            row = Execution.objects.get(schedule=scan)
            assert (row.scheduled_for, row.status) == (due, Status.QUEUED)
            assert row.queued_at == due - timedelta(seconds=0.2)
            assert held == [(row.pk, due.timestamp())]
            clock.move_to(due)
            scheduler._process_jobs()  # the job already moved on: nothing claimed twice
            assert Execution.objects.filter(schedule=scan).count() == 1

    def test_without_claim_ahead_nothing_is_claimed_before_its_time(self):
        service, scheduler, held = self.make_loop(claim_ahead=0)
        with time_machine.travel(NOW, tick=False) as clock:
            make_scan(tenant=make_tenant(), scan_type="test_echo", target="x", interval_seconds=60)
            service.sync.full()
            clock.move_to(NOW + timedelta(seconds=59.9))
            scheduler._process_jobs()
            assert not Execution.objects.exists()
            clock.move_to(NOW + timedelta(seconds=60))
            scheduler._process_jobs()
            assert Execution.objects.count() == 1


def run(row: Execution, with_recorder: bool) -> None:
    """Run ``row`` as a worker does, through a recorder or writing itself."""
    recorder = Recorder() if with_recorder else None
    if recorder:
        recorder.begin()
    try:
        runner.execute(row.pk, worker="w", execution=row, writer=recorder)
    finally:
        if recorder:
            recorder.stop(timeout=5)


@pytest.mark.django_db(transaction=True)
class TestOverlapIsDecidedAtItsTime:
    def claim_ahead_of(self, scan) -> Execution:
        rows: list[Execution] = []
        dispatch.dispatch_many(
            [(scan.pk, [NOW + timedelta(seconds=0.2)], None)],
            claimed_by="test",
            submit=lambda execution, priority: rows.append(execution),
            now=NOW,
        )
        (row,) = rows
        return row

    def scan_with_a_running_execution(self, overlap: str = "skip", **fields):
        scan = make_scan(
            tenant=make_tenant(), scan_type="test_echo", target="x", overlap=overlap, **fields
        )
        previous = runner.claim(scan, NOW - timedelta(seconds=60), claimed_by="test")
        previous.mark_started(worker="w")
        return scan, previous

    @pytest.mark.parametrize("with_recorder", [False, True])
    def test_the_next_runs_when_the_previous_finished_by_its_time(self, with_recorder):
        scan, previous = self.scan_with_a_running_execution()
        row = self.claim_ahead_of(scan)
        assert row.status == Status.QUEUED and row.recheck_overlap
        previous.mark_succeeded({"done": True})  # finishes before the next is due
        run(row, with_recorder)
        assert Execution.objects.get(pk=row.pk).status == Status.SUCCEEDED

    @pytest.mark.parametrize("with_recorder", [False, True])
    def test_the_next_is_skipped_when_the_previous_still_runs(self, with_recorder):
        scan, _previous = self.scan_with_a_running_execution()
        row = self.claim_ahead_of(scan)
        run(row, with_recorder)
        row = Execution.objects.get(pk=row.pk)
        assert (row.status, row.started_at) == (Status.SKIPPED, None)
        assert row.error == "The previous execution is still running (overlap=skip)."
        scan.refresh_from_db()
        assert scan.last_status == Status.SKIPPED

    def test_max_instances_is_applied_at_its_time_too(self):
        scan, _previous = self.scan_with_a_running_execution(overlap="allow", max_instances=1)
        row = self.claim_ahead_of(scan)
        runner.execute(row.pk, worker="w", execution=row)
        row = Execution.objects.get(pk=row.pk)
        assert row.status == Status.SKIPPED
        assert "max_instances is 1" in row.error

    def test_a_due_occurrence_is_still_skipped_at_once(self):
        scan, _previous = self.scan_with_a_running_execution()
        rows: list[Execution] = []
        dispatch.dispatch_many(
            [(scan.pk, [NOW], None)],
            claimed_by="test",
            submit=lambda execution, priority: rows.append(execution),
            now=NOW,
        )
        assert rows == []  # recorded skipped by the pass, never handed to the executor
        skipped = Execution.objects.get(schedule=scan, scheduled_for=NOW)
        assert skipped.status == Status.SKIPPED
