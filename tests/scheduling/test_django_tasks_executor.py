"""The ``django_tasks`` executor: Django's task framework (django.tasks, or the backport).

Unit tests run the scheduler's side (enqueueing, requeueing, takeover, lost workers, checks)
and the task body in this process, against a recording backend or the framework's own
ImmediateBackend. The end-to-end tests start a real ``runscheduler`` and real django-tasks-db
``db_worker`` processes on the test database (a SQLite file, or PostgreSQL when the suite runs
under ``python -m tests.servers postgres``), bound them in time and kill them by pid in
``finally``.

Without the framework or django-tasks-db these tests skip, except under ``CI=true``, where a
missing component fails them.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import pytest
import time_machine
from django.db import OperationalError, connection, transaction
from django.test import override_settings
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from scheduling import checks, runner
from scheduling.conf import conf
from scheduling.executors import get_executor_class, queueing
from scheduling.executors.base import ExecutorContext
from scheduling.executors.django_tasks import (
    ENQUEUED_PREFIX,
    TASK_PATH,
    DjangoTasksExecutor,
    run_in_worker,
    tasks_kinds,
)
from scheduling.executors.django_tasks.compat import framework
from scheduling.executors.heartbeats import heartbeat, worker_lease_name
from scheduling.executors.queueing import Item
from scheduling.models import Execution, Kind, SchedulerLease, Status, TriggerKind
from tests.factories import make_report, make_scan, make_tenant

ROOT = Path(__file__).resolve().parents[2]


def missing(reason: str) -> None:
    """Skip for a missing component; under CI=true, fail instead."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: a missing component is a failure)", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


try:
    TASKS = framework()
except ImportError as exc:
    missing(f"Django's task framework is not installed: {exc}")
BACKENDS = importlib.import_module(f"{TASKS.name}.backends.base")


class RecordingBackend(BACKENDS.BaseTaskBackend):
    """Records what is enqueued. OPTIONS ``priority``/``defer`` say what it supports."""

    enqueued: ClassVar[list[tuple]] = []

    def __init__(self, alias, params):
        super().__init__(alias, params)
        self.supports_priority = self.options.get("priority", True)
        self.supports_defer = self.options.get("defer", True)

    def enqueue(self, task, args, kwargs):
        self.validate_task(task)  # a task the backend does not support raises here
        type(self).enqueued.append((task, list(args), dict(kwargs)))


RECORDING = f"{__name__}.RecordingBackend"
IMMEDIATE = f"{TASKS.name}.backends.immediate.ImmediateBackend"
DUMMY = f"{TASKS.name}.backends.dummy.DummyBackend"


def recording(**options) -> dict:
    return {"default": {"BACKEND": RECORDING, "QUEUES": [], "OPTIONS": options}}


@pytest.fixture
def recorded():
    RecordingBackend.enqueued = []
    with override_settings(TASKS=recording(), SCHEDULING_EXECUTOR="django_tasks"):
        yield RecordingBackend.enqueued


@pytest.fixture
def _stop_heartbeat():
    # This test process plays a worker process; it must not keep beating afterwards.
    yield
    heartbeat.stop()


def wait_for(predicate, timeout: float, interval: float = 0.1):
    """Poll ``predicate`` until it returns something truthy; return that (or the last value)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def context(identity: str = "leader:1:x") -> ExecutorContext:
    return ExecutorContext(
        identity=identity,
        worker="scheduler:1",
        writer=runner.DIRECT,
        on_done=lambda execution_id: None,
        lease_valid=lambda: True,
    )


def queued_execution(tmp_path, *, claimed_by: str = "leader:1:x", **fields) -> Execution:
    fields.setdefault("scan_type", "test_sleep")
    fields.setdefault("target", "x")
    fields.setdefault("options", {"record": str(tmp_path / "runs.txt")})
    scan = make_scan(tenant=make_tenant(), **fields)
    execution = runner.claim(scan, timezone.now().replace(microsecond=0), claimed_by=claimed_by)
    assert execution is not None
    return execution


def runs(tmp_path) -> list[str]:
    path = tmp_path / "runs.txt"
    return path.read_text().splitlines() if path.exists() else []


# -- the table, the checks, the framework ----------------------------------------------------


def test_the_executor_is_in_the_table_and_durable():
    executor = get_executor_class("django_tasks")
    assert executor is DjangoTasksExecutor
    assert executor.durable and executor.tend_interval


NO_FRAMEWORK = """
import sys
sys.modules["django.tasks"] = None  # neither Django 6's framework nor the backport
sys.modules["django_tasks"] = None
import django
django.setup()
from django.test import override_settings
from scheduling import checks
from scheduling.executors import get_executor_class
executor = get_executor_class("django_tasks")
with override_settings(SCHEDULING_EXECUTOR="django_tasks"):
    print(sorted({m.id for m in checks.check_executors()}))
with override_settings(SCHEDULING_EXECUTOR="thread"):
    print(sorted({m.id for m in checks.check_executors()}))
"""


@pytest.mark.process
def test_the_app_imports_without_the_framework_and_the_check_says_what_is_missing(tmp_path):
    # The demo project's settings: the test app has django.tasks tasks of its own.
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "project.settings"}
    env.pop("DATABASE_URL", None)
    env["SCHEDULING_DB_PATH"] = str(tmp_path / "unused.sqlite3")
    result = subprocess.run(
        [sys.executable, "-c", NO_FRAMEWORK],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    selected, not_selected = result.stdout.strip().splitlines()[-2:]
    assert selected == "['scheduling.E039']"
    assert not_selected == "[]"


def test_without_the_framework_the_check_is_an_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "django.tasks", None)
    monkeypatch.setitem(sys.modules, "django_tasks", None)
    with override_settings(SCHEDULING_EXECUTOR="django_tasks"):
        messages = checks.check_executors()
    assert [m.id for m in messages] == ["scheduling.E039"]
    assert "pip install" in messages[0].hint


def check_ids(**settings) -> set[str]:
    settings.setdefault("SCHEDULING_EXECUTOR", "django_tasks")
    with override_settings(**settings):
        return {m.id for m in checks.check_settings() + checks.check_executors()}


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"TASKS": recording()}, set()),
        ({"TASKS": recording(), "SCHEDULING_EXECUTOR": "thread"}, set()),
        (
            {
                "TASKS": {"default": {"BACKEND": DUMMY}},
                "SCHEDULING_EXECUTOR": "thread",
                "SCHEDULING_EXECUTOR_OVERRIDES": {"report": "django_tasks"},
            },
            {"scheduling.E041"},
        ),
        ({"TASKS": recording(), "SCHEDULING_TASKS_BACKEND": "elsewhere"}, {"scheduling.E040"}),
        ({"TASKS": recording(), "SCHEDULING_TASKS_BACKEND": ""}, {"scheduling.E040"}),
        ({"TASKS": {"default": {"BACKEND": "no.such.Backend"}}}, {"scheduling.E040"}),
        ({"TASKS": {"default": {"BACKEND": DUMMY}}}, {"scheduling.E041"}),
        ({"TASKS": {"default": {"BACKEND": IMMEDIATE}}}, {"scheduling.W005"}),
        (
            {
                "TASKS": {"default": {"BACKEND": RECORDING, "QUEUES": ["default"]}},
                "SCHEDULING_TASKS_QUEUE": "scheduling",
            },
            {"scheduling.E042"},
        ),
        ({"TASKS": recording(), "SCHEDULING_TASKS_QUEUE": "scheduling"}, set()),  # any queue
        ({"TASKS": recording(), "SCHEDULING_TASKS_QUEUE": None}, {"scheduling.E042"}),
        ({"TASKS": recording(), "SCHEDULING_TASKS_REQUEUE_AFTER": 0}, {"scheduling.E043"}),
    ],
)
def test_checks(settings, expected):
    assert check_ids(**settings) == expected


def test_the_kinds_follow_the_executor_and_its_overrides():
    with override_settings(
        SCHEDULING_EXECUTOR="django_tasks", SCHEDULING_EXECUTOR_OVERRIDES={"cleanup": "thread"}
    ):
        assert set(tasks_kinds()) == set(Kind.values) - {"cleanup"}
    with override_settings(
        SCHEDULING_EXECUTOR="thread", SCHEDULING_EXECUTOR_OVERRIDES={"scan": "django_tasks"}
    ):
        assert tasks_kinds() == ["scan"]


def test_the_task_is_the_apps_one_at_a_path_workers_import():
    from scheduling.executors.django_tasks.tasks import execute

    assert execute.module_path == TASK_PATH
    assert execute.name == "execute"


# -- the scheduler's side ------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("options", "priority", "expected_priority", "deferred"),
    [
        ({}, 500, TASKS.max_priority, True),  # clamped into the framework's range
        ({}, -500, TASKS.min_priority, True),
        ({}, 7, 7, True),
        ({"priority": False, "defer": False}, 500, TASKS.default_priority, False),
    ],
)
def test_the_leader_enqueues_one_task_after_the_claim_commits(
    tmp_path, recorded, options, priority, expected_priority, deferred
):
    executor = DjangoTasksExecutor(context())
    executor.start()
    try:
        with override_settings(TASKS=recording(**options)):
            with transaction.atomic():
                execution = queued_execution(tmp_path, priority=priority, timeout_seconds=30)
                not_before = execution.scheduled_for.timestamp()
                executor.submit(execution, priority=priority, timeout=30.0, not_before=not_before)
                # Nothing is handed to the publisher before the claim commits.
                assert executor.pending_ids() == [] and recorded == []
            assert wait_for(lambda: recorded, 10)
            assert wait_for(
                lambda: Execution.objects.get(pk=execution.pk).claimed_by.startswith(
                    ENQUEUED_PREFIX
                ),
                10,
            )
    finally:
        assert executor.shutdown(grace=5).never_started == []
    ((task, args, kwargs),) = recorded
    assert task.module_path == TASK_PATH
    assert (args, kwargs) == ([execution.pk], {"timeout": 30.0})
    assert (task.backend, task.queue_name) == ("default", "default")
    assert task.priority == expected_priority
    assert task.run_after == (execution.scheduled_for if deferred else None)
    assert Execution.objects.get(pk=execution.pk).claimed_by == f"{ENQUEUED_PREFIX}leader:1:x"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("outcome", ["running", "succeeded"])
def test_a_worker_faster_than_the_mark_still_leaves_the_row_marked_handed_over(
    tmp_path, recorded, monkeypatch, outcome
):
    # A worker may start (or finish) the execution between the enqueue and the leader's mark.
    # The mark must land all the same: it is how a handed-over run is told from the leader's
    # own (Celery revokes cancelled runs by it; a successor adopts by it).
    executor = DjangoTasksExecutor(context())
    publish = executor.publish_many

    def publish_then_a_worker_takes_it(items):
        done = publish(items)
        for item in items[:done]:
            execution = Execution.objects.get(pk=item.execution_id)
            assert execution.mark_started(worker="worker:2")
            if outcome == "succeeded":
                assert execution.mark_succeeded({"ok": True})
        return done

    monkeypatch.setattr(executor, "publish_many", publish_then_a_worker_takes_it)
    executor.start()
    try:
        with transaction.atomic():
            execution = queued_execution(tmp_path)
            executor.submit(execution, priority=0, timeout=30.0)
        assert wait_for(lambda: recorded, 10)
        assert wait_for(lambda: executor.pending_ids() == [], 10)
    finally:
        executor.shutdown(grace=5)
    row = Execution.objects.get(pk=execution.pk)
    assert (row.status, row.claimed_by) == (outcome, f"{ENQUEUED_PREFIX}leader:1:x")


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_claim_enqueues_nothing(tmp_path, recorded):
    executor = DjangoTasksExecutor(context())
    executor.start()
    try:
        with transaction.atomic():
            execution = queued_execution(tmp_path)
            executor.submit(execution, priority=0, timeout=30.0)
            transaction.set_rollback(True)
        assert executor.pending_ids() == []
    finally:
        executor.shutdown(grace=1)
    assert recorded == []


@pytest.mark.django_db
def test_the_backend_and_queue_come_from_the_settings(tmp_path, recorded):
    executor = DjangoTasksExecutor(context())
    execution = queued_execution(tmp_path)
    tasks = {"other": {"BACKEND": RECORDING, "QUEUES": ["scans"]}}
    with override_settings(
        TASKS=tasks, SCHEDULING_TASKS_BACKEND="other", SCHEDULING_TASKS_QUEUE="scans"
    ):
        assert executor.publish_many([Item(execution.pk, 30.0, 0, None)]) == 1
    ((task, _args, _kwargs),) = recorded
    assert (task.backend, task.queue_name) == ("other", "scans")


@pytest.mark.django_db
def test_a_backend_that_fails_keeps_the_rest_for_later(tmp_path, recorded):
    executor = DjangoTasksExecutor(context())
    first, second = queued_execution(tmp_path), queued_execution(tmp_path)
    items = [Item(first.pk, 30.0, 0, None), Item(second.pk, 30.0, 0, None)]
    with override_settings(TASKS={"default": {"BACKEND": RECORDING, "QUEUES": ["x"]}}):
        assert executor.publish_many(items) == 0  # the queue is not the backend's
    assert recorded == []
    assert executor.publish_many(items) == 2


@pytest.mark.django_db
def test_executions_still_queued_are_enqueued_again_and_only_those(tmp_path, recorded):
    executor = DjangoTasksExecutor(context())
    waiting, started = queued_execution(tmp_path), queued_execution(tmp_path)
    items = [Item(e.pk, 30.0, 0, None) for e in (waiting, started)]
    assert executor.publish_many(items) == 2
    Execution.objects.filter(pk=started.pk).update(status=Status.RUNNING)

    assert executor.requeue_stale() == 0  # not yet
    later = time.monotonic() + conf.TASKS_REQUEUE_AFTER + 1
    assert executor.requeue_stale(now=later) == 1
    assert executor.pending_ids() == [waiting.pk]
    assert executor.requeue_stale(now=later) == 0  # not again before another period


@pytest.mark.django_db
def test_a_backlog_is_not_enqueued_again_until_the_workers_get_past_it(
    tmp_path, recorded, monkeypatch
):
    clock = [1000.0]
    monkeypatch.setattr(queueing, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    executor = DjangoTasksExecutor(context())
    stale, later = queued_execution(tmp_path), queued_execution(tmp_path)
    assert executor.publish_many([Item(stale.pk, 30.0, 0, None)]) == 1
    clock[0] += 60
    assert executor.publish_many([Item(later.pk, 30.0, 0, None)]) == 1
    clock[0] += conf.TASKS_REQUEUE_AFTER - 30  # the first is stale, the second not yet

    # Neither was taken: the workers are behind, the queue still holds both. No copies.
    assert executor.requeue_stale() == 0
    clock[0] += queueing.RECHECK_BEHIND
    assert executor.requeue_stale() == 0
    assert executor.pending_ids() == []

    # A worker took the one handed over after it: that one was lost on the way.
    Execution.objects.filter(pk=later.pk).update(status=Status.RUNNING)
    assert executor.requeue_stale() == 0  # looked at again a few seconds later
    clock[0] += queueing.RECHECK_BEHIND
    assert executor.requeue_stale() == 1
    assert executor.pending_ids() == [stale.pk]


@pytest.mark.django_db
def test_shutdown_returns_what_never_reached_the_backend(tmp_path, recorded):
    executor = DjangoTasksExecutor(context())  # not started: nothing goes out
    execution = queued_execution(tmp_path)
    executor._put([Item(execution.pk, 30.0, 0, None)])
    assert executor.shutdown(grace=0).never_started == [execution.pk]


@pytest.mark.django_db
def test_a_takeover_enqueues_what_the_old_leader_had_not_and_leaves_live_workers_alone(
    tmp_path, recorded
):
    old = "leader:9:old"
    unenqueued = queued_execution(tmp_path, claimed_by=old)
    enqueued = queued_execution(tmp_path, claimed_by=f"{ENQUEUED_PREFIX}{old}")
    on_live_worker = queued_execution(tmp_path, claimed_by=f"{ENQUEUED_PREFIX}{old}")
    on_old_leader = queued_execution(tmp_path, claimed_by=old)
    Execution.objects.filter(pk=on_live_worker.pk).update(
        status=Status.RUNNING, worker="worker-a:101"
    )
    Execution.objects.filter(pk=on_old_leader.pk).update(status=Status.RUNNING, worker="old:9")
    SchedulerLease.objects.create(
        name=worker_lease_name("worker-a:101"),
        holder="worker-a:101",
        expires_at=timezone.now() + timedelta(seconds=30),
    )
    report = make_report(tenant=make_tenant())
    thread_run = runner.claim(report, timezone.now(), claimed_by=old)
    orphans = list(Execution.objects.select_related("schedule").order_by("pk"))

    executor = DjangoTasksExecutor(context("leader:2:new"))
    with override_settings(SCHEDULING_EXECUTOR_OVERRIDES={"report": "thread"}):
        left = executor.recover(orphans)

    # Interrupted by the service: the other executor's, and what ran in the old leader.
    assert {e.pk for e in left} == {on_old_leader.pk, thread_run.pk}
    assert executor.pending_ids() == [unenqueued.pk]  # goes out now
    claimed = dict(Execution.objects.values_list("pk", "claimed_by"))
    assert claimed[unenqueued.pk] == "leader:2:new"
    assert claimed[enqueued.pk] == f"{ENQUEUED_PREFIX}leader:2:new"
    # The one on the backend already goes again only if it is still queued a period later.
    later = time.monotonic() + conf.TASKS_REQUEUE_AFTER + 1
    assert executor.requeue_stale(now=later) == 1
    assert executor.pending_ids() == [unenqueued.pk, enqueued.pk]


@pytest.mark.django_db
def test_tend_interrupts_the_executions_of_a_worker_whose_heartbeat_expired(tmp_path):
    lost = queued_execution(tmp_path, max_retries=1, retry_backoff_seconds=1)
    local = queued_execution(tmp_path)
    started = timezone.now()
    with time_machine.travel(started, tick=True) as clock:
        Execution.objects.filter(pk=lost.pk).update(
            status=Status.RUNNING, worker="worker-a:101", started_at=started
        )
        # A thread executor's execution: no heartbeat row, never a task worker's to reap.
        Execution.objects.filter(pk=local.pk).update(
            status=Status.RUNNING, worker="scheduler:303", started_at=started
        )
        SchedulerLease.objects.create(  # as the worker's last beat left it
            name=worker_lease_name("worker-a:101"),
            holder="worker-a:101",
            expires_at=started + timedelta(seconds=conf.CELERY_HEARTBEAT_TTL),
        )
        executor = DjangoTasksExecutor(context())
        executor.tend()
        assert Execution.objects.get(pk=lost.pk).status == Status.RUNNING  # still beating

        clock.shift(timedelta(seconds=conf.CELERY_HEARTBEAT_TTL + 1))  # no beat since
        executor.tend()

    lost.refresh_from_db()
    assert lost.status == Status.INTERRUPTED
    assert "heartbeat expired" in lost.error
    retry = Execution.objects.get(schedule=lost.schedule, attempt=2)
    assert retry.status == Status.QUEUED and retry.trigger == TriggerKind.RETRY
    assert Execution.objects.get(pk=local.pk).status == Status.RUNNING


@pytest.mark.django_db(transaction=True)
def test_tracked_executions_are_reported_done(tmp_path, recorded):
    done: list[int] = []
    executor = DjangoTasksExecutor(
        ExecutorContext(
            identity="leader:1:x",
            worker="scheduler:1",
            writer=runner.DIRECT,
            on_done=done.append,
            lease_valid=lambda: True,
        )
    )
    execution = queued_execution(tmp_path)
    executor.submit(execution, priority=0, timeout=30.0, track=True)
    executor.tend()
    assert done == []
    Execution.objects.filter(pk=execution.pk).update(status=Status.SUCCEEDED)
    executor.tend()
    assert done == [execution.pk]


# -- the worker's side -----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("_stop_heartbeat")
def test_the_task_runs_the_execution_once_however_often_it_is_delivered(tmp_path):
    execution = queued_execution(tmp_path)

    run_in_worker(execution.pk, timeout=30)
    run_in_worker(execution.pk, timeout=30)  # a second delivery

    execution.refresh_from_db()
    assert execution.status == Status.SUCCEEDED
    assert execution.worker == heartbeat.worker == runner.worker_id()
    assert len(runs(tmp_path)) == 1
    beat = SchedulerLease.objects.get(name=worker_lease_name(execution.worker))
    assert beat.expires_at > timezone.now()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("_stop_heartbeat")
def test_the_framework_runs_the_task_with_what_the_leader_enqueued(tmp_path):
    """Through the framework's own ImmediateBackend: the arguments survive its JSON round."""
    from scheduling.executors.django_tasks.tasks import execute

    execution = queued_execution(tmp_path)
    with override_settings(TASKS={"default": {"BACKEND": IMMEDIATE}}):
        for _delivery in range(2):
            result = execute.using(backend="default", queue_name="default").enqueue(
                execution.pk, timeout=30.0
            )
            assert result.status == "SUCCESSFUL", result.errors
    assert Execution.objects.get(pk=execution.pk).status == Status.SUCCEEDED
    assert len(runs(tmp_path)) == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("_stop_heartbeat")
def test_the_watchdog_records_timed_out_and_the_late_result_is_discarded(tmp_path):
    execution = queued_execution(
        tmp_path, options={"seconds": 1.5}, timeout_seconds=1, max_retries=0
    )

    run_in_worker(execution.pk, timeout=0.3)

    execution.refresh_from_db()
    assert execution.status == Status.TIMED_OUT
    assert "Timed out" in execution.error and "discarded" in execution.error
    assert execution.result is None  # the handler's late return was not recorded


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("_stop_heartbeat")
def test_an_outcome_the_database_dropped_is_written_when_it_is_back(tmp_path, monkeypatch):
    """The connection dies while the outcome is written (a terminated backend): the handler
    did run, so its outcome is kept and written on the next try, not recorded interrupted."""
    execution = queued_execution(tmp_path)
    real = Execution.mark_finished
    failures = []

    def dropped_once(self, status, **outcome):
        if not failures:
            failures.append(status)
            raise OperationalError("terminating connection due to administrator command")
        return real(self, status, **outcome)

    monkeypatch.setattr(Execution, "mark_finished", dropped_once)
    with pytest.raises(runner.OutcomeNotRecorded):
        run_in_worker(execution.pk, timeout=30)

    execution.refresh_from_db()
    assert failures == [Status.SUCCEEDED]
    assert execution.status == Status.SUCCEEDED  # not interrupted
    assert execution.result is not None
    assert len(runs(tmp_path)) == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("_stop_heartbeat")
def test_a_deleted_execution_runs_nothing():
    assert run_in_worker(987654321, timeout=30) is None


# -- end to end: runscheduler and db_worker processes -----------------------------------------

TASK_TABLE = "django_tasks_database_dbtaskresult"  # app label django_tasks_database


def process_env(**extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings_tasks",
        "SCHEDULING_DB_PATH": connection.settings_dict["NAME"],
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


@pytest.fixture(scope="module")
def task_table(django_db_setup):
    """django-tasks-db's table in the test database (this process has no such app)."""
    try:
        importlib.import_module("django_tasks_db")
    except ImportError:
        missing("django-tasks-db is not installed (pip install -e '.[test]')")
    env = process_env()
    result = subprocess.run(
        [sys.executable, "manage.py", "migrate", "django_tasks_database", "-v", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return TASK_TABLE


@pytest.fixture
def cluster(task_table, transactional_db, tmp_path):
    """Start processes with ``start(name, *command, **env)``; each is killed by pid at the end."""
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {task_table}")  # noqa: S608 (a constant)
    processes: dict[str, subprocess.Popen] = {}
    logs = []

    def start(name: str, *command: str, **env: str) -> subprocess.Popen:
        log = (tmp_path / f"{name}.log").open("ab")
        logs.append(log)
        process = subprocess.Popen(
            [sys.executable, "manage.py", *command],
            cwd=ROOT,
            env=process_env(**env),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        processes[name] = process
        return process

    def log(name: str | None = None) -> str:
        names = [name] if name else list(processes)
        return "\n".join(
            f"--- {n}\n{(tmp_path / f'{n}.log').read_text(errors='replace')[-3000:]}" for n in names
        )

    start.processes = processes  # type: ignore[attr-defined]
    start.log = log  # type: ignore[attr-defined]
    try:
        yield start
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()  # by pid
                process.wait(timeout=10)
        for handle in logs:
            handle.close()


def scheduler(cluster, **env: str) -> subprocess.Popen:
    return cluster("scheduler", "runscheduler", "--max-seconds", "90", **env)


def db_worker(cluster, name: str) -> subprocess.Popen:
    return cluster(
        name,
        "db_worker",
        "--queue-name",
        "scheduling",
        "--interval",
        "0.1",
        "--no-startup-delay",
        "--no-reload",
        "--worker-id",
        name,
    )


def task_rows(execution_id: int | None = None) -> list[dict]:
    """django-tasks-db's rows (of one execution's tasks), read with SQL."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT status, args_kwargs, priority, queue_name, run_after FROM {TASK_TABLE}"  # noqa: S608
        )
        rows = []
        for status, args_kwargs, priority, queue_name, run_after in cursor.fetchall():
            if isinstance(args_kwargs, str):
                args_kwargs = json.loads(args_kwargs)
            if isinstance(run_after, str):
                run_after = parse_datetime(run_after)
            if run_after is not None and timezone.is_naive(run_after):
                run_after = run_after.replace(tzinfo=UTC)
            row = {
                "status": status,
                "execution": args_kwargs["args"][0],
                "kwargs": args_kwargs["kwargs"],
                "priority": priority,
                "queue_name": queue_name,
                "run_after": run_after,
            }
            if execution_id is None or row["execution"] == execution_id:
                rows.append(row)
        return rows


def once(tenant, **fields):
    fields.setdefault("target", "x")
    return make_scan(
        tenant=tenant,
        trigger_type="once",
        run_at=timezone.now() + timedelta(seconds=1),
        interval_seconds=None,
        **fields,
    )


def worker_of(execution: Execution) -> str:
    return execution.worker.rpartition(":")[2]


@pytest.mark.process
@pytest.mark.django_db(transaction=True)
def test_e2e_a_schedule_fires_and_a_db_worker_records_it_succeeded(cluster):
    tenant = make_tenant()
    scan = make_scan(
        tenant=tenant, scan_type="test_echo", target="x", interval_seconds=1, priority=500
    )
    scheduler(cluster)
    worker = db_worker(cluster, "worker-1")
    assert wait_for(
        lambda: Execution.objects.filter(schedule=scan, status=Status.SUCCEEDED).count() >= 2,
        40,
        0.2,
    ), cluster.log()
    succeeded = list(Execution.objects.filter(schedule=scan, status=Status.SUCCEEDED))
    for execution in succeeded:
        assert worker_of(execution) == str(worker.pid)
        assert execution.worker.startswith(f"{socket.gethostname()}:")
        assert execution.claimed_by.startswith(ENQUEUED_PREFIX)
        assert execution.result == {"name": scan.name, "attempt": 1}
        (task,) = task_rows(execution.pk)  # enqueued once
        assert task["queue_name"] == "scheduling"
        assert task["priority"] == TASKS.max_priority  # 500, clamped
        assert task["run_after"] == execution.scheduled_for  # the backend defers
        assert task["kwargs"] == {"timeout": float(scan.effective_timeout)}
        assert wait_for(lambda e=execution: task_rows(e.pk)[0]["status"] == "SUCCESSFUL", 10)


@pytest.mark.process
@pytest.mark.django_db(transaction=True)
def test_e2e_an_execution_enqueued_again_runs_its_handler_once(cluster, tmp_path):
    record = tmp_path / "runs.txt"
    scan = once(make_tenant(), scan_type="test_sleep", options={"record": str(record)})
    # No worker yet: the leader enqueues the still-queued execution again every second.
    scheduler(cluster, TASKS_REQUEUE_AFTER="1")
    execution = wait_for(lambda: Execution.objects.filter(schedule=scan).first(), 30)
    assert execution is not None, cluster.log()
    assert len(wait_for(lambda: task_rows(execution.pk)[1:], 30)) >= 1, cluster.log()
    assert Execution.objects.get(pk=execution.pk).status == Status.QUEUED

    db_worker(cluster, "worker-1")

    def settled():
        rows = task_rows(execution.pk)
        done = Execution.objects.get(pk=execution.pk).status == Status.SUCCEEDED
        return done and all(row["status"] == "SUCCESSFUL" for row in rows) and rows

    rows = wait_for(settled, 30, 0.2)
    assert rows and len(rows) >= 2, cluster.log()
    assert len(record.read_text().splitlines()) == 1  # every copy ran, the handler once


@pytest.mark.process
@pytest.mark.django_db(transaction=True)
def test_e2e_an_overrun_is_recorded_timed_out_and_its_late_result_discarded(cluster):
    scan = once(
        make_tenant(),
        scan_type="test_sleep",
        options={"seconds": 4},
        timeout_seconds=1,
        max_retries=0,
    )
    scheduler(cluster)
    db_worker(cluster, "worker-1")
    timed_out = wait_for(
        lambda: Execution.objects.filter(schedule=scan, status=Status.TIMED_OUT).first(), 40
    )
    assert timed_out is not None, cluster.log()
    assert "Timed out after 1 s" in timed_out.error
    # The handler returns later: its result is discarded, the record stays as it was.
    assert wait_for(lambda: "result is discarded" in cluster.log("worker-1"), 20), cluster.log()
    after = Execution.objects.get(pk=timed_out.pk)
    assert (after.status, after.finished_at, after.result) == (
        Status.TIMED_OUT,
        timed_out.finished_at,
        None,
    )
    assert Execution.objects.filter(schedule=scan).count() == 1  # max_retries=0


@pytest.mark.process
@pytest.mark.django_db(transaction=True)
def test_e2e_kill_9_of_the_worker_mid_run_interrupts_the_execution_and_retries_it(cluster):
    scan = once(
        make_tenant(),
        scan_type="test_slow_first_attempt",
        options={"seconds": 120},
        max_retries=1,
        retry_backoff_seconds=1,
    )
    scheduler(cluster)
    workers = {str(db_worker(cluster, name).pid): name for name in ("worker-1", "worker-2")}
    running = wait_for(
        lambda: Execution.objects.filter(schedule=scan, status=Status.RUNNING).first(), 40
    )
    assert running is not None, cluster.log()
    victim = worker_of(running)
    assert victim in workers, f"{running.worker} is none of {workers}"

    os.kill(int(victim), signal.SIGKILL)
    cluster.processes[workers[victim]].wait(timeout=10)

    interrupted = wait_for(
        lambda: Execution.objects.filter(pk=running.pk, status=Status.INTERRUPTED).first(), 30
    )
    assert interrupted is not None, cluster.log()
    assert "heartbeat expired" in interrupted.error
    retry = wait_for(
        lambda: Execution.objects.filter(schedule=scan, attempt=2, status=Status.SUCCEEDED).first(),
        30,
    )
    assert retry is not None, cluster.log()
    assert retry.trigger == TriggerKind.RETRY
    assert retry.result == {"attempt": 2}
    assert worker_of(retry) in workers and worker_of(retry) != victim
    assert Execution.objects.filter(schedule=scan).count() == 2
