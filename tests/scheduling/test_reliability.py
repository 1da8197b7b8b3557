"""Reliability paths of the scheduler, each driven through the code that runs in production.

- ``overlap="queue"``: the service holds a due execution while the previous one of its schedule
  runs, and releases it when the executor reports that one done; what it holds is dropped
  when it loses the lease.
- The thread executor's watchdog records ``timed_out`` (a thread cannot be killed).
- The ``process`` executor under a real ``runscheduler`` kills a hung handler at its timeout.
- The claim race: concurrent inserts of one occurrence yield exactly one row, and a bulk claim
  that hits the unique constraint falls back to one-by-one claims.
- The retry ``run_after`` gate and the ``SCHEDULING_MAX_RETRY_BACKOFF`` cap.
- A schedule-scoped blackout window on the real dispatch path (a loop pass).
- ``check_did_not_run`` called by the service's own loop.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from django.db import connection, connections
from django.test import override_settings
from django.utils import timezone

from scheduling import runner
from scheduling.executors import EXECUTORS
from scheduling.models import (
    AlertDelivery,
    BlackoutWindow,
    Execution,
    Schedule,
    Status,
    TriggerKind,
)
from scheduling.scheduler import dispatch
from scheduling.scheduler.service import SchedulerService
from tests.factories import (
    make_alert_rule,
    make_membership,
    make_scan,
    make_task,
    make_tenant,
    make_user,
)
from tests.scheduling.loops import hand_driven_loop
from tests.scheduling.processes import start_scheduler, stop, wait_for

NOW = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


def echo_scan(tenant, **fields):
    fields.setdefault("scan_type", "test_echo")
    fields.setdefault("target", "x")
    return make_scan(tenant=tenant, **fields)


class Collect:
    """An executor that only records what the service hands over."""

    def __init__(self) -> None:
        self.submitted: list[int] = []

    def submit(self, execution, **kwargs):
        self.submitted.append(execution.pk)


def status_of(execution: Execution) -> str:
    return Execution.objects.values_list("status", flat=True).get(pk=execution.pk)


def in_threads(count: int, target) -> list:
    """Run ``target(index)`` in ``count`` threads released together, each with its own
    database connection; return their results in order."""
    barrier = threading.Barrier(count)
    results: list = [None] * count
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[index] = target(index)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert not errors, errors
    return results


@pytest.fixture(autouse=True)
def _drop_dead_threads_connections():
    """Close the connections of the executor threads a test started, once they have ended.

    A worker thread ends without closing its connection; it is closed when collected, and on
    PostgreSQL an open one would keep the test database from being dropped.
    """
    yield
    gc.collect()


# -- overlap="queue" ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)  # the executor's threads read what the test wrote
def test_overlap_queue_holds_the_next_occurrence_until_the_running_one_ends():
    service = SchedulerService(install_signal_handlers=False, max_workers=4)
    service._start_executors(runner.DIRECT)
    executor = service.executors["thread"]
    try:
        with time_machine.travel(NOW, tick=True) as clock:
            scheduler = hand_driven_loop(service, executor)
            scan = echo_scan(
                make_tenant(),
                scan_type="test_sleep",
                options={"seconds": 3},
                interval_seconds=1,
                overlap="queue",
                misfire_grace_seconds=60,
            )
            service.sync.full()
            clock.move_to(NOW + timedelta(seconds=1))
            scheduler._process_jobs()
            [first] = Execution.objects.filter(schedule=scan)
            assert wait_for(lambda: status_of(first) == Status.RUNNING, 10)

            clock.move_to(NOW + timedelta(seconds=2))
            scheduler._process_jobs()
            second = Execution.objects.filter(schedule=scan).exclude(pk=first.pk).get()
            # Claimed, but held by the service: the executor never saw it.
            assert status_of(second) == Status.QUEUED
            assert status_of(first) == Status.RUNNING
            assert second.pk in service._deferred[scan.pk]
            assert executor.backlog() == 0

            assert wait_for(lambda: status_of(second) == Status.SUCCEEDED, 15)
    finally:
        executor.shutdown(grace=5)
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.status == Status.SUCCEEDED
    assert second.started_at >= first.finished_at, "the queued occurrence overlapped"
    assert not service._deferred[scan.pk]
    assert not service._by_execution


# -- the thread executor's watchdog ------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_thread_watchdog_records_timed_out_and_discards_the_late_result():
    service = SchedulerService(install_signal_handlers=False)
    service.lease.valid_until = time.monotonic() + 3600
    service._start_executors(runner.DIRECT)
    executor = service.executors["thread"]
    scan = echo_scan(
        make_tenant(),
        scan_type="test_sleep",
        options={"seconds": 6},
        timeout_seconds=1,
        max_retries=0,
    )
    execution = runner.claim(scan, timezone.now(), claimed_by=service.identity)
    try:
        service._submit(execution, 0)
        # Recorded by the watchdog while the handler still sleeps (it cannot be stopped).
        assert wait_for(lambda: status_of(execution) == Status.TIMED_OUT, 5)
        assert execution.pk in executor.pool.running_ids()
        # The handler returns later; its result is discarded.
        assert wait_for(lambda: execution.pk not in executor.pool.running_ids(), 10)
    finally:
        executor.shutdown(grace=5)
    execution.refresh_from_db()
    assert execution.status == Status.TIMED_OUT
    assert execution.result is None
    assert execution.finished_at is not None
    scan.refresh_from_db()
    assert scan.last_status == Status.TIMED_OUT


# -- the process executor under a real runscheduler --------------------------------------------


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has ended too: it only waits to be reaped.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ")[-1].startswith("Z"))


@pytest.mark.process
@pytest.mark.django_db(transaction=True)
def test_process_executor_in_runscheduler_kills_a_hung_handler_at_its_timeout(tmp_path):
    started, finished = tmp_path / "started", tmp_path / "finished"
    task = make_task(
        tenant=make_tenant(),
        task_type="test_block",
        options={"seconds": 60, "started": str(started), "finished": str(finished)},
        trigger_type="once",
        run_at=timezone.now() + timedelta(seconds=2),
        # The timeout counts from the child's start, Django's setup included: on a loaded
        # machine that alone may take seconds, and the child must get to its handler first.
        timeout_seconds=8,
        max_retries=0,
        misfire_grace_seconds=60,
    )
    log = tmp_path / "scheduler.log"
    process = start_scheduler("--lease-ttl", "5", log=log, SCHEDULING_EXECUTOR="process")
    try:
        assert wait_for(started.exists, 30, 0.2), log.read_text()[-3000:]
        child = int(started.read_text())
        assert child != process.pid
        assert wait_for(
            lambda: Execution.objects.filter(schedule=task, status=Status.TIMED_OUT).exists(),
            20,
            0.2,
        ), log.read_text()[-3000:]
        assert wait_for(lambda: not alive(child), 10, 0.2), "the hung child was not killed"
        assert process.poll() is None, "the scheduler died with its child"
    finally:
        stop(process)
    [execution] = Execution.objects.filter(schedule=task)
    assert execution.status == Status.TIMED_OUT
    assert "killed at the timeout" in execution.error
    assert execution.result is None
    assert not finished.exists()


# -- the claim race ----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_concurrent_claims_of_one_occurrence_insert_exactly_one_row():
    scan = echo_scan(make_tenant())
    occurrences = [NOW + timedelta(minutes=i) for i in range(10)]

    def contend(index: int) -> list[int]:
        won = []
        for at in occurrences:
            if runner.claim(scan, at, claimed_by=f"replica-{index}") is not None:
                won.append(at)
        return won

    results = in_threads(4, contend)
    rows = list(Execution.objects.filter(schedule=scan).values_list("scheduled_for", "claimed_by"))
    assert Counter(at for at, _who in rows) == dict.fromkeys(occurrences, 1)
    # Each process was told the truth: it won exactly the rows that carry its name.
    for index, won in enumerate(results):
        assert sorted(won) == sorted(at for at, who in rows if who == f"replica-{index}")


@pytest.mark.django_db(transaction=True)
def test_concurrent_bulk_dispatches_hand_each_occurrence_over_once():
    tenant = make_tenant()
    scans = [echo_scan(tenant, overlap="allow", max_instances=50) for _ in range(5)]
    times = [NOW + timedelta(seconds=i) for i in range(5)]
    due = [(scan.pk, times, None) for scan in scans]

    def contend(index: int) -> list[int]:
        submitted: list[int] = []
        dispatch.dispatch_many(
            due,
            claimed_by=f"replica-{index}",
            submit=lambda execution, priority: submitted.append(execution.pk),
            now=times[-1],
        )
        return submitted

    results = in_threads(3, contend)
    rows = list(Execution.objects.filter(schedule__in=scans).values_list("pk", "schedule_id"))
    assert len(rows) == len(scans) * len(times)
    assert Counter(pk for pk, _s in rows) == Counter(pk for handed in results for pk in handed)


# Run in each contending process: wait for the start file, then claim the due occurrences
# the way a scheduler pass does and write down what this process was handed.
CONTENDER = """
import json, sys, time
from datetime import datetime
from pathlib import Path
import django
django.setup()
from scheduling.scheduler.dispatch import dispatch_many

go, out, due, now = Path(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4]
due = [(pk, [datetime.fromisoformat(t) for t in times], None) for pk, times in due]
Path(f"{out}.ready").touch()
deadline = time.monotonic() + 30
while not go.exists() and time.monotonic() < deadline:
    time.sleep(0.005)
handed = []
for chunk in range(0, len(due), 2):  # several passes, so the processes interleave
    dispatch_many(
        due[chunk : chunk + 2],
        claimed_by=out.name,
        submit=lambda execution, priority: handed.append(execution.pk),
        now=datetime.fromisoformat(now),
    )
out.write_text(json.dumps(handed))
"""


@pytest.mark.process
@pytest.mark.django_db(transaction=True)
def test_two_processes_claiming_the_same_occurrences_get_each_exactly_once(tmp_path):
    tenant = make_tenant()
    scans = [echo_scan(tenant, overlap="allow", max_instances=50) for _ in range(8)]
    times = [NOW + timedelta(seconds=i) for i in range(10)]
    due = json.dumps([(scan.pk, [t.isoformat() for t in times]) for scan in scans])
    go = tmp_path / "go"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "SCHEDULING_DB_PATH": connection.settings_dict["NAME"],
    }
    outs = [tmp_path / f"replica-{i}" for i in range(2)]
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", CONTENDER, str(go), str(out), due, times[-1].isoformat()],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
        )
        for out in outs
    ]
    try:
        assert wait_for(lambda: all(Path(f"{out}.ready").exists() for out in outs), 30, 0.05)
        go.touch()
        for process in processes:
            assert process.wait(timeout=60) == 0
    finally:
        for process in processes:
            stop(process)
    handed = [json.loads(out.read_text()) for out in outs]
    rows = list(
        Execution.objects.filter(schedule__in=scans).values_list(
            "pk", "schedule_id", "scheduled_for", "claimed_by"
        )
    )
    assert Counter((pk, at) for _id, pk, at, _who in rows) == {
        (scan.pk, t): 1 for scan in scans for t in times
    }
    # Every row was handed over once, by the process whose name it carries.
    assert sorted(handed[0] + handed[1]) == sorted(row[0] for row in rows)
    for out, ids in zip(outs, handed, strict=True):
        assert set(ids) == {pk for pk, *_rest, who in rows if who == out.name}


@pytest.mark.django_db(transaction=True)
def test_bulk_claim_hitting_the_unique_constraint_falls_back_to_one_by_one(monkeypatch):
    scan = echo_scan(make_tenant(), overlap="allow", max_instances=10)
    times = [NOW, NOW + timedelta(seconds=1), NOW + timedelta(seconds=2)]
    insert_claims = dispatch._insert_claims
    rival: list[Execution] = []

    def rival_claims_first(rows):
        # Another replica inserts the middle occurrence after this pass looked for taken
        # ones and before its bulk insert.
        rival.extend(in_threads(1, lambda _i: runner.claim(scan, times[1], claimed_by="rival")))
        return insert_claims(rows)

    monkeypatch.setattr(dispatch, "_insert_claims", rival_claims_first)
    submitted: list[int] = []
    claimed = dispatch.dispatch_many(
        [(scan.pk, times, None)],
        claimed_by="me",
        submit=lambda execution, priority: submitted.append(execution.pk),
        now=times[-1],
    )

    rows = {
        at: (pk, who)
        for pk, at, who in Execution.objects.filter(schedule=scan).values_list(
            "pk", "scheduled_for", "claimed_by"
        )
    }
    assert rival[0] is not None
    assert {at: who for at, (_pk, who) in rows.items()} == {
        times[0]: "me",
        times[1]: "rival",
        times[2]: "me",
    }
    assert sorted(e.pk for e in claimed) == sorted(submitted)
    assert sorted(submitted) == sorted([rows[times[0]][0], rows[times[2]][0]])


# -- retries: the run_after gate and the back-off cap ------------------------------------------


@pytest.mark.django_db
@override_settings(SCHEDULING_MAX_RETRY_BACKOFF=90)
def test_retry_is_picked_up_only_from_run_after_and_backoff_is_capped():
    service = SchedulerService(install_signal_handlers=False)
    collect = Collect()
    with time_machine.travel(NOW, tick=False) as clock:
        hand_driven_loop(service, collect)
        scan = echo_scan(
            make_tenant(),
            scan_type="test_sleep",
            options={"fail": True},
            max_retries=3,
            retry_backoff_seconds=60,
        )
        first = runner.claim(scan, NOW, claimed_by=service.identity)
        runner.execute(first.pk, worker="w")
        assert status_of(first) == Status.FAILED
        second = Execution.objects.get(schedule=scan, attempt=2)
        assert (second.trigger, second.status) == (TriggerKind.RETRY, Status.QUEUED)
        assert second.run_after == NOW + timedelta(seconds=60)  # the base back-off

        clock.shift(59)
        service._incremental_sync()
        assert collect.submitted == []  # gated by run_after
        clock.shift(1)
        service._incremental_sync()
        assert collect.submitted == [second.pk]
        second.refresh_from_db()
        assert second.claimed_by == service.identity

        failed_at = timezone.now()
        runner.execute(second.pk, worker="w")
        third = Execution.objects.get(schedule=scan, attempt=3)
        # 60 * 2 = 120 s, capped by SCHEDULING_MAX_RETRY_BACKOFF.
        assert third.run_after == failed_at + timedelta(seconds=90)
        clock.shift(89)
        service._incremental_sync()
        assert collect.submitted == [second.pk]
        clock.shift(1)
        service._incremental_sync()
        assert collect.submitted == [second.pk, third.pk]


# -- blackout windows on the real dispatch path ------------------------------------------------


@pytest.mark.django_db
def test_schedule_scoped_blackout_skips_its_occurrences_in_a_loop_pass_only():
    service = SchedulerService(install_signal_handlers=False)
    collect = Collect()
    with time_machine.travel(NOW, tick=False) as clock:
        scheduler = hand_driven_loop(service, collect)
        tenant = make_tenant()
        # overlap=allow: the collected (never run) executions stay active.
        policy = {"interval_seconds": 60, "overlap": "allow", "max_instances": 5}
        blacked = echo_scan(tenant, name="blacked", **policy)
        other = echo_scan(tenant, name="other", **policy)
        BlackoutWindow.objects.create(
            tenant=tenant,
            schedule=blacked,
            name="Migration",
            kind="dates",
            starts_at=NOW,
            ends_at=NOW + timedelta(seconds=90),
        )
        service.sync.full()
        clock.shift(60)
        scheduler._process_jobs()
        clock.shift(60)  # past the window
        scheduler._process_jobs()

    rows = {
        (e.schedule_id, e.scheduled_for): e
        for e in Execution.objects.filter(schedule__in=[blacked, other])
    }
    at_1, at_2 = NOW + timedelta(seconds=60), NOW + timedelta(seconds=120)
    assert set(rows) == {(blacked.pk, at_1), (blacked.pk, at_2), (other.pk, at_1), (other.pk, at_2)}
    skipped = rows[(blacked.pk, at_1)]
    assert skipped.status == Status.SKIPPED
    assert "Migration" in skipped.error
    assert rows[(other.pk, at_1)].status == Status.QUEUED
    assert rows[(blacked.pk, at_2)].status == Status.QUEUED
    assert sorted(collect.submitted) == sorted(
        [rows[(other.pk, at_1)].pk, rows[(blacked.pk, at_2)].pk, rows[(other.pk, at_2)].pk]
    )


# -- did-not-run alerts from the service loop --------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_service_loop_checks_for_schedules_that_did_not_run(mailoutbox):
    tenant = make_tenant()
    make_membership(user=make_user(email="owner@acme.test"), tenant=tenant, role="owner")
    # Enabled, but never fired: e.g. its job was lost. It is due again only in an hour.
    stale = echo_scan(tenant, name="Stale", interval_seconds=3600)
    Schedule.objects.filter(pk=stale.pk).update(created_at=timezone.now() - timedelta(hours=5))
    rule = make_alert_rule(tenant=tenant, consecutive_failures=None, not_succeeded_multiple=3)

    service = SchedulerService(
        install_signal_handlers=False, max_seconds=1.5, lease_ttl=5, sync_interval=0.2
    )
    assert service.run() == 0

    [delivery] = AlertDelivery.objects.filter(rule=rule, event="did_not_run")
    assert delivery.schedule_id == stale.pk
    assert [m.subject for m in mailoutbox] == [f"[{tenant.name}] Stale did not run"]


@pytest.mark.django_db
def test_overlap_queue_state_is_dropped_when_leadership_is_lost():
    """What a leader held back is the next leader's to recover; if this process leads again
    later, the schedule must not stay stuck behind executions it no longer runs."""

    class Shut(Collect):
        def shutdown(self, *, grace):
            return None

    service = SchedulerService(install_signal_handlers=False)
    service.lease.valid_until = time.monotonic() + 3600
    before = Shut()
    service.executors = dict.fromkeys(EXECUTORS, before)
    scan = echo_scan(make_tenant(), overlap="queue")
    first, second = (
        runner.claim(scan, NOW + timedelta(minutes=i), claimed_by=service.identity)
        for i in range(2)
    )
    service._submit(first, 0)
    service._submit(second, 0)
    assert before.submitted == [first.pk]  # the second waits for the first

    service._lose_leadership("test")
    service._release_deferred(first.pk)  # its thread ends after the executors were stopped

    # Leader again (another replica interrupted first and second meanwhile).
    service.lease.valid_until = time.monotonic() + 3600
    after = Shut()
    service.executors = dict.fromkeys(EXECUTORS, after)
    third = runner.claim(scan, NOW + timedelta(minutes=2), claimed_by=service.identity)
    service._submit(third, 0)
    assert after.submitted == [third.pk]
    assert before.submitted == [first.pk]
