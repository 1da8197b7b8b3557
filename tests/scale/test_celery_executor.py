"""The celery executor's task body, heartbeats and lost-worker recovery, in this process.

The Celery task body runs here as a worker process would run it (no broker needed); the
real workers, brokers and replicas are in ``test_cluster.py``.
"""

from __future__ import annotations

import contextlib
import time
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone

from scheduling import checks, runner
from scheduling.conf import conf
from scheduling.executors import celery as celery_executor
from scheduling.executors.base import ExecutorContext
from scheduling.models import Execution, SchedulerLease, Status
from tests.factories import make_scan, make_tenant
from tests.scale.harness import wait_for

pytest.importorskip("celery", reason="Celery is not installed (the `celery` extra)")

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _stop_heartbeat():
    # This test process plays a worker process; it must not keep beating afterwards.
    yield
    celery_executor.heartbeat.stop()


def queued_execution(tmp_path, **fields):
    fields.setdefault("scan_type", "test_sleep")
    fields.setdefault("target", "x")
    fields.setdefault("options", {"record": str(tmp_path / "runs.txt")})
    scan = make_scan(tenant=make_tenant(), **fields)
    from scheduling import runner

    return runner.claim(scan, timezone.now().replace(microsecond=0), claimed_by="leader:1:x")


def runs(tmp_path) -> list[str]:
    path = tmp_path / "runs.txt"
    return path.read_text().splitlines() if path.exists() else []


def test_the_task_runs_the_execution_once_and_records_its_worker(tmp_path):
    execution = queued_execution(tmp_path)

    celery_executor.run_in_worker(execution.pk, timeout=30)
    celery_executor.run_in_worker(execution.pk, timeout=30)  # a second delivery

    execution.refresh_from_db()
    assert execution.status == Status.SUCCEEDED
    assert execution.worker == celery_executor.heartbeat.worker
    assert len(runs(tmp_path)) == 1
    beat = SchedulerLease.objects.get(name=celery_executor.worker_lease_name(execution.worker))
    assert beat.expires_at > timezone.now()


def test_the_watchdog_records_timed_out_at_the_schedules_timeout(tmp_path):
    execution = queued_execution(
        tmp_path, options={"seconds": 1.5}, timeout_seconds=1, max_retries=0
    )

    celery_executor.run_in_worker(execution.pk, timeout=0.3)

    execution.refresh_from_db()
    assert execution.status == Status.TIMED_OUT
    assert "Timed out" in execution.error


def running_on(execution, worker: str, *, expires_in: float | None) -> None:
    Execution.objects.filter(pk=execution.pk).update(
        status=Status.RUNNING, worker=worker, started_at=timezone.now()
    )
    if expires_in is not None:
        SchedulerLease.objects.create(
            name=celery_executor.worker_lease_name(worker),
            holder=worker,
            expires_at=timezone.now() + timedelta(seconds=expires_in),
        )


def test_running_executions_of_a_lost_worker_are_interrupted_and_retried(tmp_path):
    lost = queued_execution(tmp_path, max_retries=1, retry_backoff_seconds=1)
    alive = queued_execution(tmp_path)
    local = queued_execution(tmp_path)
    running_on(lost, "worker-a:101", expires_in=-1)
    running_on(alive, "worker-b:202", expires_in=30)
    running_on(local, "scheduler:303", expires_in=None)  # a thread executor's: no heartbeat

    assert celery_executor.reap_lost_workers() == 1

    lost.refresh_from_db()
    assert lost.status == Status.INTERRUPTED
    assert "heartbeat expired" in lost.error
    retry = Execution.objects.get(schedule=lost.schedule, attempt=2)
    assert retry.status == Status.QUEUED and retry.run_after is not None
    assert Execution.objects.get(pk=alive.pk).status == Status.RUNNING
    assert Execution.objects.get(pk=local.pk).status == Status.RUNNING


def test_long_names_of_workers_fit_the_heartbeat_row():
    name = celery_executor.worker_lease_name("h" * 300 + ":42")
    assert name.startswith("worker:") and len(name) <= 64
    assert name == celery_executor.worker_lease_name("h" * 300 + ":42")


def test_heartbeat_rows_of_long_dead_workers_are_forgotten(tmp_path):
    old = timezone.now() - timedelta(days=2)
    SchedulerLease.objects.create(name="worker:gone:1", holder="gone:1", expires_at=old)
    SchedulerLease.objects.create(name="worker:busy:2", holder="busy:2", expires_at=old)
    execution = queued_execution(tmp_path)
    Execution.objects.filter(pk=execution.pk).update(worker="busy:2")

    assert celery_executor.forget_dead_workers() == 1
    assert set(SchedulerLease.objects.values_list("name", flat=True)) == {"worker:busy:2"}


def test_time_limits_follow_the_schedules_timeout():
    with override_settings(SCHEDULING_CELERY_HARD_TIMEOUT_GRACE=10):
        assert celery_executor.time_limits(60) == (61, 70)


def test_celery_kinds_follow_the_executor_and_its_overrides():
    with override_settings(SCHEDULING_EXECUTOR="thread", SCHEDULING_EXECUTOR_OVERRIDES={}):
        assert celery_executor.celery_kinds() == []
    with override_settings(
        SCHEDULING_EXECUTOR="celery", SCHEDULING_EXECUTOR_OVERRIDES={"cleanup": "thread"}
    ):
        assert celery_executor.celery_kinds() == ["scan", "report", "task"]


def check_ids(**settings) -> set[str]:
    with override_settings(**settings):
        return {error.id for error in checks.check_settings() + checks.check_executors()}


def test_the_celery_executor_is_a_valid_choice_with_a_broker():
    assert check_ids(SCHEDULING_EXECUTOR="celery") == set()
    assert check_ids(SCHEDULING_EXECUTOR_OVERRIDES={"scan": "celery"}) == set()


def test_celery_settings_are_checked():
    assert "scheduling.E032" in check_ids(SCHEDULING_EXECUTOR="celery", SCHEDULING_CELERY_QUEUE="")
    assert "scheduling.E029" in check_ids(SCHEDULING_CELERY_HEARTBEAT_TTL=0)
    assert "scheduling.E030" in check_ids(SCHEDULING_CELERY_HARD_TIMEOUT_GRACE=1)
    assert "scheduling.E031" in check_ids(SCHEDULING_CELERY_REQUEUE_AFTER="soon")


def test_the_celery_executor_without_a_broker_is_an_error():
    from celery import current_app

    configured = current_app.conf.broker_url
    current_app.conf.broker_url = None
    try:
        assert "scheduling.E034" in check_ids(SCHEDULING_EXECUTOR="celery")
        assert "scheduling.E034" not in check_ids(SCHEDULING_EXECUTOR="thread")
    finally:
        current_app.conf.broker_url = configured


def test_the_check_command_passes_with_the_celery_executor():
    with override_settings(SCHEDULING_EXECUTOR="celery"):
        call_command("check")


def test_metrics_count_the_celery_workers_with_a_current_heartbeat(client):
    now = timezone.now()
    SchedulerLease.objects.create(name="worker:a:1", holder="a:1", expires_at=now + timedelta(1))
    SchedulerLease.objects.create(name="worker:b:2", holder="b:2", expires_at=now + timedelta(1))
    SchedulerLease.objects.create(name="worker:c:3", holder="c:3", expires_at=now)

    text = client.get("/metrics").content.decode()

    assert "\nscheduling_celery_workers 2.0\n" in text


@contextlib.contextmanager
def broker(url: str):
    """Point the project's Celery app at ``url`` (a throwaway Redis) for a while."""
    from celery import current_app

    configured = current_app.conf.broker_url
    current_app.close()  # drop pooled connections to the configured broker
    current_app.conf.broker_url = url
    try:
        yield
    finally:
        current_app.close()
        current_app.conf.broker_url = configured


def test_a_takeover_publishes_what_the_old_leader_had_not_and_the_rest_if_still_queued(
    tmp_path,
):
    from tests.servers import RedisServer, redis_available

    if redis_available():
        pytest.skip(redis_available())
    in_broker, unpublished = queued_execution(tmp_path), queued_execution(tmp_path)
    Execution.objects.filter(pk=in_broker.pk).update(claimed_by="celery:leader:1:x")
    executions = list(
        Execution.objects.select_related("schedule").filter(pk__in=[in_broker.pk, unpublished.pk])
    )

    with RedisServer() as redis, broker(redis.url):
        executor = celery_executor.CeleryExecutor(
            ExecutorContext(
                identity="me",
                worker="test:1",
                writer=runner.DIRECT,
                on_done=lambda execution_id: None,
                lease_valid=lambda: True,
            )
        )
        executor.start()
        try:
            assert executor.adopt(executions) == 1
            # Only the execution the old leader had not published goes out now.
            assert wait_for(lambda: redis._ask(b"LLEN scheduling") == b":1\r\n", 10)
            assert wait_for(lambda: not executor.pending_ids(), 10)
            claimed = dict(Execution.objects.values_list("pk", "claimed_by"))
            assert claimed == {in_broker.pk: "celery:me", unpublished.pk: "celery:me"}

            Execution.objects.filter(pk=unpublished.pk).update(status=Status.SUCCEEDED)
            later = time.monotonic() + conf.CELERY_REQUEUE_AFTER + 1
            # The other one is in the queue; if it is still queued by then, it goes again.
            assert executor.requeue_stale(now=later) == 1
            assert wait_for(lambda: redis._ask(b"LLEN scheduling") == b":2\r\n", 10)
            assert executor.requeue_stale() == 0  # not again before another period
        finally:
            assert executor.shutdown(grace=5).never_started == []


def test_a_cancel_stamped_before_the_last_look_is_still_revoked_once(tmp_path, monkeypatch):
    """A cancel commits after the leader looked, or its clock runs behind: still revoked."""
    from celery import current_app

    revoked: list[list[str]] = []
    monkeypatch.setattr(
        current_app.control, "revoke", lambda ids, **kwargs: revoked.append(list(ids))
    )
    executor = celery_executor.CeleryExecutor(
        ExecutorContext(
            identity="me",
            worker="test:1",
            writer=runner.DIRECT,
            on_done=lambda execution_id: None,
            lease_valid=lambda: True,
        )
    )
    execution = queued_execution(tmp_path)
    Execution.objects.filter(pk=execution.pk).update(
        claimed_by="celery:me", status=Status.RUNNING, started_at=timezone.now()
    )
    assert executor.revoke_cancelled() == 0
    # Cancelled with a timestamp from before that look (a late commit, a clock behind).
    Execution.objects.filter(pk=execution.pk).update(
        status=Status.CANCELLED, finished_at=timezone.now() - timedelta(seconds=5)
    )
    assert executor.revoke_cancelled() == 1
    assert executor.revoke_cancelled() == 0  # once
    assert revoked == [[celery_executor.publisher.task_id_of(execution.pk)]]
