"""The recorder: the thread executor's starts and outcomes, committed in batches by one thread.

Each test runs real executions through ``runner.execute`` with a real ``Recorder`` (its own
writer thread and database connection) and reads the rows back from the database.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from datetime import UTC, datetime

import pytest
from django.db import OperationalError
from django.db.backends.signals import connection_created

from scheduling import runner
from scheduling.models import AlertState, Execution, Status
from scheduling.scheduler.recorder import MAX_DELAY
from tests.factories import make_alert_rule, make_scan, make_tenant
from tests.scheduling.loops import claimed

pytestmark = pytest.mark.django_db(transaction=True)

NOW = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)


def echo_scans(count: int, **overrides):
    tenant = overrides.pop("tenant", None) or make_tenant()
    return [
        make_scan(tenant=tenant, scan_type="test_echo", target="x", **overrides)
        for _ in range(count)
    ]


def test_a_batch_of_executions_is_started_run_and_recorded(recorder, caplog):
    rec = recorder()
    scans = echo_scans(5)
    caplog.set_level(logging.INFO, logger="scheduling.runner")
    for execution in claimed(scans, NOW):
        runner.execute(execution.pk, worker="w1", execution=execution, writer=rec)
    assert rec.flush(timeout=10)
    rows = list(Execution.objects.order_by("pk"))
    assert [r.status for r in rows] == [Status.SUCCEEDED] * 5
    for row, scan in zip(rows, scans, strict=True):
        assert row.worker == "w1"
        assert row.started_at is not None and row.finished_at >= row.started_at
        assert row.result == {"name": scan.name, "attempt": 1}
        scan.refresh_from_db()
        assert (scan.last_status, scan.run_count, scan.last_run_at) == (
            Status.SUCCEEDED,
            1,
            row.started_at,
        )
    # One outcome line per execution, each with its own fields (scheduling.logs).
    logged = [r for r in caplog.records if r.name == "scheduling.runner"]
    assert sorted(r.execution_id for r in logged) == [r.pk for r in rows]
    assert {r.status for r in logged} == {Status.SUCCEEDED}
    assert rec.backlog == 0


def test_the_start_is_written_before_the_outcome_is_known(recorder):
    rec = recorder()
    (execution,) = claimed(echo_scans(1), NOW)
    assert rec.start(execution, worker="w1")
    assert rec.flush(timeout=10)
    row = Execution.objects.get(pk=execution.pk)
    assert (row.status, row.started_at, row.worker) == (
        Status.RUNNING,
        execution.started_at,
        "w1",
    )
    rec.finish(execution, Status.FAILED, error="RuntimeError: boom", traceback="tb")
    assert rec.flush(timeout=10)
    row.refresh_from_db()
    assert (row.status, row.error, row.traceback) == (Status.FAILED, "RuntimeError: boom", "tb")
    assert row.duration_ms is not None and row.duration_ms >= 0


def test_starts_come_first_the_batch_waits_while_work_waits_for_a_worker(recorder):
    # By default the writer holds its batch while the executor has work waiting to start
    # (up to MAX_DELAY), and writes it as soon as the queue is empty.
    waiting = threading.Event()
    waiting.set()
    rec = recorder(busy=waiting.is_set)
    (execution,) = claimed(echo_scans(1), NOW)
    handed = time.monotonic()
    runner.execute(execution.pk, worker="w1", execution=execution, writer=rec)
    time.sleep(0.2)  # four times the writer's former 50 ms
    status = Execution.objects.values_list("status", flat=True).get(pk=execution.pk)
    if time.monotonic() - handed < MAX_DELAY:  # a stalled machine may pass the bound
        assert status == Status.QUEUED
    assert execution.pk in rec.finished_unwritten()  # the dispatcher knows it ended
    waiting.clear()
    deadline = time.monotonic() + 10
    while status != Status.SUCCEEDED and time.monotonic() < deadline:
        time.sleep(0.02)
        status = Execution.objects.values_list("status", flat=True).get(pk=execution.pk)
    assert status == Status.SUCCEEDED


def test_a_late_outcome_loses_to_a_timeout_that_came_first(recorder, caplog):
    rec = recorder()
    (execution,) = claimed(echo_scans(1), NOW)
    rec.start(execution, worker="w1")
    assert rec.flush(timeout=10)
    runner.time_out(execution.pk)  # the watchdog, from its own thread in the service
    rec.finish(execution, Status.SUCCEEDED, result={"late": True})
    assert rec.flush(timeout=10)
    row = Execution.objects.get(pk=execution.pk)
    assert (row.status, row.result) == (Status.TIMED_OUT, None)
    assert "its result is discarded" in caplog.text
    row.schedule.refresh_from_db()
    assert row.schedule.last_status == Status.TIMED_OUT


def test_nothing_starts_without_the_lease(recorder):
    rec = recorder(may_start=lambda: False)
    (execution,) = claimed(echo_scans(1), NOW)
    runner.execute(execution.pk, worker="w1", execution=execution, writer=rec)
    assert rec.flush(timeout=10)
    row = Execution.objects.get(pk=execution.pk)
    assert (row.status, row.started_at, row.result) == (Status.QUEUED, None, None)


def test_a_database_error_keeps_the_batch_until_the_database_is_back(recorder):
    failures = {"left": 2}  # the first retry is on a new connection, the next after a wait

    def fail_once(execute, sql, params, many, context):
        if sql.startswith('UPDATE "scheduling_execution"') and failures["left"]:
            failures["left"] -= 1
            raise OperationalError("database is locked (injected)")
        return execute(sql, params, many, context)

    def install(sender, connection, **kwargs):
        connection.execute_wrappers.append(fail_once)

    # The writer opens its own connection in its own thread: wrap that one.
    connection_created.connect(install)
    try:
        rec = recorder()
        executions = claimed(echo_scans(3), NOW)
        for execution in executions:
            runner.execute(execution.pk, worker="w1", execution=execution, writer=rec)
        assert rec.flush(timeout=10)  # the retry comes after RETRY_AFTER (1 s)
    finally:
        connection_created.disconnect(install)
    assert failures["left"] == 0
    assert set(Execution.objects.values_list("status", flat=True)) == {Status.SUCCEEDED}
    assert sorted(Execution.objects.values_list("schedule__run_count", flat=True)) == [1, 1, 1]


def test_stop_writes_what_is_pending_and_later_outcomes_are_written_inline(recorder):
    rec = recorder(busy=lambda: True, max_delay=60)  # holds batches back: only stop writes
    first, second = claimed(echo_scans(2), NOW)
    runner.execute(first.pk, worker="w1", execution=first, writer=rec)
    rec.start(second, worker="w1")
    assert rec.stop(timeout=10) == 0
    assert Execution.objects.get(pk=first.pk).status == Status.SUCCEEDED
    assert Execution.objects.get(pk=second.pk).status == Status.RUNNING
    # A thread that outlived the shutdown grace records its outcome itself.
    rec.finish(second, Status.SUCCEEDED, result={"ok": 1})
    assert Execution.objects.get(pk=second.pk).status == Status.SUCCEEDED


def test_follow_ups_queue_dependents_and_apply_alert_rules(recorder):
    tenant = make_tenant()
    upstream, dependent = echo_scans(2, tenant=tenant)
    dependent.depends_on.set([upstream])
    failing = make_scan(tenant=tenant, scan_type="test_sleep", options={"fail": True})
    make_alert_rule(tenant=tenant, consecutive_failures=1, email_admins=True)
    rec = recorder()
    for execution in claimed([upstream, failing], NOW):
        runner.execute(execution.pk, worker="w1", execution=execution, writer=rec)
    assert rec.flush(timeout=10)
    assert rec.stop(timeout=10) == 0  # also waits for the follow-up thread
    queued = Execution.objects.get(schedule=dependent)
    assert (queued.trigger, queued.status, queued.scheduled_for) == (
        "dependency",
        Status.QUEUED,
        NOW,
    )
    assert Execution.objects.get(schedule=failing).status == Status.FAILED
    assert AlertState.objects.filter(schedule=failing, firing=True).exists()


def test_an_outcome_written_after_stop_still_queues_its_dependents(recorder):
    tenant = make_tenant()
    upstream, dependent = echo_scans(2, tenant=tenant)
    dependent.depends_on.set([upstream])
    rec = recorder()
    (execution,) = claimed([upstream], NOW)
    rec.start(execution, worker="w1")
    assert rec.stop(timeout=10) == 0
    rec.finish(execution, Status.SUCCEEDED, result={})  # a thread that outlived the grace
    queued = Execution.objects.get(schedule=dependent)
    assert (queued.trigger, queued.status) == ("dependency", Status.QUEUED)


def _hand_over_from_threads(rec, executions, workers: int, during=None):
    """Run ``executions`` through ``rec`` from ``workers`` threads at once (as the pool does)."""
    from django.db import connection

    barrier = threading.Barrier(workers + 1)
    parts = [executions[index::workers] for index in range(workers)]

    def work(part):
        barrier.wait()
        try:
            for execution in part:
                runner.execute(execution.pk, worker="w", execution=execution, writer=rec)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(part,)) for part in parts]
    for thread in threads:
        thread.start()
    barrier.wait()
    result = during() if during is not None else None
    for thread in threads:
        thread.join(30)
    return result


def test_hand_overs_from_many_workers_at_once_are_each_written_once(recorder):
    # Workers hand over without a lock; the writer takes batches while they do, and a flush
    # covers every hand-over made before it.
    rec = recorder(max_delay=0.01)
    scans = echo_scans(40)
    executions = claimed(scans, NOW)

    def flush_while_they_run():
        flushed = 0
        while flushed < 20:
            assert rec.flush(timeout=10)
            flushed += 1
        return flushed

    _hand_over_from_threads(rec, executions, 8, during=flush_while_they_run)
    assert rec.flush(timeout=10)
    assert rec.backlog == 0 and rec.finished_unwritten() == set()
    statuses = dict(Execution.objects.values_list("pk", "status"))
    assert statuses == {execution.pk: Status.SUCCEEDED for execution in executions}
    assert sorted(Execution.objects.values_list("schedule__run_count", flat=True)) == [1] * 40


class _StopsOnAppend(deque):
    """An inbox whose first append meets ``stop()``: before the entry lands, or after."""

    def __init__(self, rec, before: bool):
        super().__init__()
        self.rec, self.before, self.lost = rec, before, None

    def append(self, item):
        if self.before and self.lost is None:
            self.lost = self.rec.stop(timeout=10)
        super().append(item)
        if not self.before and self.lost is None:
            self.lost = self.rec.stop(timeout=10)


@pytest.mark.parametrize("before", [True, False], ids=["stop-then-append", "append-then-stop"])
def test_a_hand_over_racing_stop_is_written_by_its_worker_or_counted_as_given_up(recorder, before):
    # stop() can come between a worker's check of it and its hand-over.
    rec = recorder(busy=lambda: True, max_delay=60)  # batches held back: stop() decides
    (execution,) = claimed(echo_scans(1), NOW)
    rec._inbox = inbox = _StopsOnAppend(rec, before)
    assert rec.start(execution, worker="w1")
    # Before: stop() found nothing, and the worker, seeing it had stopped, wrote the start
    # itself. After: stop() had the writer write what was handed over.
    row = Execution.objects.get(pk=execution.pk)
    assert (inbox.lost, row.status, row.worker) == (0, Status.RUNNING, "w1")
    assert not inbox


def test_hand_overs_racing_stop_from_many_workers_are_written_or_counted(recorder):
    rec = recorder(busy=lambda: True, max_delay=60)
    executions = claimed(echo_scans(40), NOW)
    lost = _hand_over_from_threads(rec, executions, 8, during=lambda: rec.stop(timeout=10))
    rows = dict(Execution.objects.values_list("pk", "status"))
    unwritten = [pk for pk, status in rows.items() if status in (Status.QUEUED, Status.RUNNING)]
    # A given-up entry leaves its row queued or running (the shutdown marks it interrupted);
    # a later outcome of the same execution may still have been written by its worker.
    assert len(unwritten) <= lost
    assert set(rows.values()) <= {Status.SUCCEEDED, Status.QUEUED, Status.RUNNING}
