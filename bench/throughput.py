"""Benchmark: executions per second of trivial jobs, per executor.

``python bench/throughput.py [--executions 1000] [--workers 1 2 4] [--concurrency 1]
[--executors thread celery django_tasks] [--quick] [--thread-only]``

- thread executor on SQLite: the scheduler's ``ThreadExecutor`` (``SCHEDULING_MAX_WORKERS``,
  8, threads of one process) runs a backlog of ``--executions`` queued executions of the
  no-op ``test_echo`` scan type, handed over loaded as the scheduler's dispatch hands them
  over, their starts and outcomes batched by the scheduler's ``Recorder``; the same backlog
  again on a bare pool whose threads write each start and outcome on their own
  (``runner.DIRECT``, what running executions outside the scheduler costs), for the ratio;
- celery executor on PostgreSQL: the backlog is published to a Redis broker by the executor's
  own ``publish_many`` (as the scheduler's publisher thread publishes it), then 1, 2 and 4
  Celery worker nodes (``--concurrency`` processes each) run it;
- django_tasks executor on PostgreSQL: the backlog is enqueued on django-tasks-db's
  ``DatabaseBackend`` by the executor's own ``publish_many`` (``tests.settings_tasks``: queue
  ``scheduling``), then 1, 2 and 4 ``manage.py db_worker`` processes run it.

Every execution does the real work of one: load, ``running``, the handler, the outcome, the
schedule's state, the alert and dependency look-ups. Rates come from the database's own
timestamps (first ``started_at`` to last ``finished_at``), so worker start-up is not counted.
The backlog is due in the past, so a queue worker starts each execution at once (it would wait
for an execution claimed ahead of its time). The ratios show how each queue executor scales
with workers (N workers / 1 worker), and how it compares with the single process.

Before the workers of a queue executor run, the cost of one execution in the database is
counted in-process on the same database (``cost``): statements, and transactions with
writes (each one a commit the database must flush), on the worker's side and for enqueueing,
and the time one execution takes run one by one in one process (wall clock and CPU: what is
not CPU is waiting for the database); and during each worker run, the database's own count
of committed transactions (``pg_stat_database.xact_commit``, workers' heartbeats and this
bench's polling included).

``--quick`` (a CI-sized run): 200 executions, 1 and 2 workers. PostgreSQL and Redis are
throwaway servers on loopback (``tests.servers``); without their binaries, without Celery or
without django-tasks-db, those figures are skipped with the reason.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SCHEDULES = 50  # executions are spread over this many schedules (their state rows)
TIMEOUT = 600.0
QUICK_EXECUTIONS = 200
QUICK_WORKERS = [1, 2]
# Executions counted one by one in-process for the cost per execution (after one warm-up).
COST_EXECUTIONS = 20
# The scheduler's publisher thread hands over at most this many at once.
PUBLISH_BATCH = 500
QUEUE_EXECUTORS = ("celery", "django_tasks")
SETTINGS = {"celery": "tests.settings", "django_tasks": "tests.settings_tasks"}


def _django(database_url: str | None, db_path: str | None) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    os.environ["DJANGO_DEBUG"] = "0"
    if database_url:
        os.environ["DATABASE_URL"] = database_url
    if db_path:
        os.environ["SCHEDULING_DB_PATH"] = db_path
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def make_backlog(n: int) -> list[int]:
    """Create ``n`` queued executions of no-op scans, due in the past; return their ids."""
    from datetime import timedelta

    from django.utils import timezone

    from scheduling.models import Execution, Status, TriggerKind
    from tests.factories import make_scan, make_tenant

    tag = uuid.uuid4().hex[:8]  # each configuration adds its own tenant
    tenant = make_tenant(name=f"Throughput {tag}", slug=f"throughput-{tag}")
    scans = [
        make_scan(tenant=tenant, scan_type="test_echo", target="x", enabled=False)
        for _ in range(SCHEDULES)
    ]
    now = timezone.now()
    # Due before now: a queue worker waits for the time of an execution claimed ahead of it
    # (``SCHEDULING_CLAIM_AHEAD`` at most), which is not what is measured here.
    first = now - timedelta(seconds=n + 60)
    rows = [
        Execution(
            schedule=scan,
            schedule_name=scan.name,
            schedule_kind=scan.kind,
            tenant=tenant,
            scheduled_for=first + timedelta(seconds=i),
            trigger=TriggerKind.SCHEDULE,
            status=Status.QUEUED,
            queued_at=now,
            claimed_by="bench",
        )
        for i in range(n)
        for scan in [scans[i % SCHEDULES]]
    ]
    return [row.pk for row in Execution.objects.bulk_create(rows)]


def rate(ids: list[int]) -> dict[str, float]:
    """Executions per second between the first start and the last finish of ``ids``."""
    from django.db.models import Avg, Count, Max, Min

    from scheduling.models import Execution

    figures = Execution.objects.filter(pk__in=ids, status="succeeded").aggregate(
        n=Count("pk"), first=Min("started_at"), last=Max("finished_at"), ms=Avg("duration_ms")
    )
    seconds = (figures["last"] - figures["first"]).total_seconds()
    return {
        "executions": figures["n"],
        "seconds": seconds,
        "per_second": figures["n"] / seconds,
        # running -> outcome only; the rest of the time per execution is the executor's
        "mean_duration_ms": figures["ms"],
    }


def wait_done(ids: list[int], timeout: float = TIMEOUT) -> None:
    from scheduling.models import ACTIVE_STATUSES, Execution

    deadline = time.monotonic() + timeout
    # The backlog's ids are one range (one bulk insert): a long IN list, compiled every
    # 0.2 s, would take a share of the CPU the measured executions need.
    backlog = Execution.objects.filter(pk__gte=min(ids), pk__lte=max(ids))
    while backlog.filter(status__in=ACTIVE_STATUSES).exists():
        if time.monotonic() > deadline:
            raise RuntimeError("the backlog did not finish in time")
        time.sleep(0.2)


# -- counting what one execution costs the database --------------------------------------------


class StatementCounter:
    """Count the statements of the default connection, and its transactions with writes.

    A statement outside ``atomic`` is a transaction of its own (autocommit); inside, the
    commit of the outermost block ends one (counted by wrapping the connection's commit).
    """

    WRITES = ("INSERT", "UPDATE", "DELETE")

    def __init__(self) -> None:
        self.statements = 0
        self.writes = 0
        self.locks = 0  # statements that lock rows (FOR UPDATE)
        self.write_transactions = 0
        self._wrote_in_block = False

    def __call__(
        self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        from django.db import connection

        words = sql.upper().split()
        self.statements += 1
        # A WITH statement writes if its body does (the execution counters lock their rows in
        # a WITH and update them in the statement's body).
        write = words[0] in self.WRITES or (
            words[0] == "WITH"
            and any(
                word in self.WRITES and before != "FOR"
                for before, word in zip(words, words[1:], strict=False)
            )
        )
        self.writes += write
        self.locks += "FOR UPDATE" in sql.upper()
        if write:
            if connection.in_atomic_block:
                self._wrote_in_block = True
            else:
                self.write_transactions += 1
        return execute(sql, params, many, context)

    def committed(self) -> None:
        self.write_transactions += self._wrote_in_block
        self._wrote_in_block = False

    def rolled_back(self) -> None:
        self._wrote_in_block = False

    def per(self, n: int) -> dict[str, float]:
        return {
            "statements": self.statements / n,
            "writes": self.writes / n,
            "locks": self.locks / n,
            "write_transactions": self.write_transactions / n,
        }


@contextmanager
def counting() -> Iterator[StatementCounter]:
    """Count the statements and write transactions of this thread's default connection."""
    from django.db import DEFAULT_DB_ALIAS, connections

    counter = StatementCounter()
    db = connections[DEFAULT_DB_ALIAS]
    commit, rollback = db._commit, db._rollback

    def counted_commit() -> Any:
        counter.committed()
        return commit()

    def counted_rollback() -> Any:
        counter.rolled_back()
        return rollback()

    db._commit, db._rollback = counted_commit, counted_rollback
    try:
        with db.execute_wrapper(counter):
            yield counter
    finally:
        del db._commit, db._rollback  # back to the class's methods


@contextmanager
def timing() -> Iterator[dict[str, float]]:
    """Wall-clock and CPU milliseconds of this process spent in the block."""
    took: dict[str, float] = {}
    wall, cpu = time.perf_counter(), time.process_time()
    yield took
    took["wall_ms"] = (time.perf_counter() - wall) * 1000
    took["cpu_ms"] = (time.process_time() - cpu) * 1000


def xact_commits() -> int:
    """Committed transactions of this database so far (``pg_stat_database``), fresh."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        )
        return int(cursor.fetchone()[0])


# -- children: each measures one configuration and prints a JSON line ------------------------


def child_thread(n: int) -> dict[str, float]:
    """The scheduler's own path: its ``ThreadExecutor``, outcomes batched by its ``Recorder``.

    Executions are loaded with their schedule and kind before they are handed over, as the
    scheduler's dispatch hands them over.
    """
    from scheduling import runner
    from scheduling.conf import conf
    from scheduling.executors.base import ExecutorContext
    from scheduling.executors.thread import ThreadExecutor
    from scheduling.scheduler.recorder import Recorder

    ids = make_backlog(n)
    loaded = [runner.load(execution_id) for execution_id in ids]
    # As the scheduler wires it: a batch waits while the executor has work queued.
    recorder = Recorder(busy=lambda: executor.backlog() > 0)
    recorder.begin()
    executor = ThreadExecutor(
        ExecutorContext(
            identity="bench",
            worker="bench:1",
            writer=recorder,
            on_done=lambda execution_id: None,
            lease_valid=lambda: True,
            max_workers=conf.MAX_WORKERS,
        )
    )
    executor.start()
    try:
        for execution in loaded:
            assert execution is not None
            executor.submit(execution, priority=0, timeout=30.0)
        wait_done(ids)
    finally:
        executor.shutdown(grace=5)
        recorder.stop(timeout=10)
    return rate(ids)


def child_direct(n: int) -> dict[str, float]:
    """Outside the scheduler: a pool of threads, each write its own (``runner.DIRECT``)."""
    from scheduling import runner
    from scheduling.conf import conf
    from scheduling.executors.thread import WorkerPool

    ids = make_backlog(n)
    executor = WorkerPool(
        max_workers=conf.MAX_WORKERS, run=runner.execute, on_timeout=runner.time_out
    )
    executor.start()
    try:
        for execution_id in ids:
            executor.submit(execution_id)
        wait_done(ids)
    finally:
        executor.shutdown(grace=5)
    return rate(ids)


def queue_executor(name: str) -> Any:
    """The scheduler's executor ``name``, built as the scheduler builds it (not started)."""
    from scheduling import runner
    from scheduling.executors.base import ExecutorContext

    if name == "celery":
        from scheduling.executors.celery import CeleryExecutor as executor_class
    else:
        from scheduling.executors.django_tasks import DjangoTasksExecutor as executor_class
    return executor_class(
        ExecutorContext(
            identity="bench",
            worker="bench:1",
            writer=runner.DIRECT,
            on_done=lambda execution_id: None,
            lease_valid=lambda: True,
        )
    )


def publish(executor: Any, ids: list[int]) -> None:
    """Hand ``ids`` over as the scheduler's publisher thread does: in batches, by
    ``publish_many``, each with the timeout, priority and start time of its schedule."""
    from scheduling import runner
    from scheduling.executors.queueing import item_of

    for start in range(0, len(ids), PUBLISH_BATCH):
        items = [item_of(runner.load(pk)) for pk in ids[start : start + PUBLISH_BATCH]]
        if executor.publish_many(items) < len(items):
            raise RuntimeError(f"{executor.name}: publishing the backlog failed")


def worker_commands(name: str, workers: int, concurrency: int) -> list[list[str]]:
    from scheduling.conf import conf

    if name == "celery":
        return [
            [
                sys.executable,
                *("-m", "celery", "-A", "project", "worker"),
                *("-Q", conf.CELERY_QUEUE, "-n", f"bench{index}@%h"),
                *("-c", str(concurrency), "-P", "prefork"),
                *("--without-gossip", "--without-mingle", "-l", "error"),
            ]
            for index in range(workers)
        ]
    # django-tasks-db's worker runs one task at a time: ``concurrency`` processes per worker.
    return [
        [
            sys.executable,
            *("manage.py", "db_worker", "--queue-name", conf.TASKS_QUEUE),
            *("--backend", conf.TASKS_BACKEND, "--worker-id", f"bench{index}"),
            *("--interval", "0.1", "--no-startup-delay", "--no-reload", "-v", "0"),
        ]
        for index in range(workers * concurrency)
    ]


def child_queue(name: str, n: int, workers: int, concurrency: int) -> dict[str, float]:
    """Publish a backlog with executor ``name``, then let real worker processes run it."""
    ids = make_backlog(n)
    publish(queue_executor(name), ids)
    log = Path(tempfile.mkdtemp(prefix="throughput-")) / "workers.log"
    processes: list[subprocess.Popen[bytes]] = []
    commits = xact_commits()
    try:
        with log.open("ab") as handle:
            for command in worker_commands(name, workers, concurrency):
                processes.append(
                    subprocess.Popen(
                        command,
                        cwd=ROOT,
                        stdout=handle,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        start_new_session=True,
                    )
                )
            wait_done(ids)
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
    figures = rate(ids)
    if figures["executions"] < n:
        raise RuntimeError(f"{n - figures['executions']} executions did not succeed; see {log}")
    time.sleep(0.5)  # the workers' server processes report their counts as they exit
    figures["xact_commits"] = (xact_commits() - commits) / n
    return figures


def child_cost(name: str) -> dict[str, float]:
    """Count what one execution costs the database: enqueueing it, and running it in a worker.

    Run in this process on the same database, one at a time, after one warm-up execution
    (connections opened, the worker's heartbeat row written).
    """
    from django.core.management import call_command

    from scheduling.conf import conf
    from scheduling.executors.celery import run_in_worker

    executor = queue_executor(name)
    ids = make_backlog(COST_EXECUTIONS + 1)
    # Celery's broker holds what is published (no SQL): only the django_tasks side enqueues
    # rows. Celery executions are run here by the body of its task, not from the broker.
    if name == "celery":
        with counting() as enqueued:
            pass
        run_in_worker(ids[0])
        with counting() as ran, timing() as took:
            for execution_id in ids[1:]:
                run_in_worker(execution_id)
    else:
        publish(executor, ids[:1])
        with counting() as enqueued:
            publish(executor, ids[1:])

        def db_worker(tasks: int) -> None:
            call_command(
                "db_worker",
                *("--queue-name", conf.TASKS_QUEUE, "--backend", conf.TASKS_BACKEND),
                *("--max-tasks", str(tasks), "--interval", "0"),
                *("--no-startup-delay", "--no-reload", "-v", "0"),
            )

        db_worker(1)
        with counting() as ran, timing() as took:
            db_worker(COST_EXECUTIONS)
    figures = rate(ids[1:])
    if figures["executions"] != COST_EXECUTIONS:
        raise RuntimeError(f"{name}: the counted executions did not all succeed")
    return {
        **{f"enqueue_{key}": value for key, value in enqueued.per(COST_EXECUTIONS).items()},
        **{f"worker_{key}": value for key, value in ran.per(COST_EXECUTIONS).items()},
        **{f"worker_{key}": value / COST_EXECUTIONS for key, value in took.items()},
    }


def run_child(args: list[str], env: dict[str, str]) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, __file__, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT + 60,
    )
    if result.returncode:
        raise RuntimeError(f"{' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _manage(env: dict[str, str], *args: str) -> None:
    subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )


def skip_reason(name: str) -> str | None:
    """Why the figures of queue executor ``name`` cannot be measured here, or None."""
    from tests.servers import postgres_available, redis_available

    reason = postgres_available()
    if name == "celery":
        reason = reason or redis_available()
        try:
            import celery  # noqa: F401
        except ImportError:
            reason = reason or "Celery is not installed (the `celery` extra)"
    else:
        # The framework: django.tasks (Django 6.0+) or the django_tasks backport.
        for module in ("django_tasks_db", "django.tasks|django_tasks"):
            if not any(_installed(candidate) for candidate in module.split("|")):
                reason = reason or f"{module.replace('|', ' or ')} is not installed"
    return reason


def _installed(module: str) -> bool:
    from importlib.util import find_spec

    try:
        return find_spec(module) is not None
    except ModuleNotFoundError:  # its parent package is missing
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--executions", type=int, default=None, help="default 1000")
    parser.add_argument("--workers", type=int, nargs="+", default=None, help="default 1 2 4")
    parser.add_argument("--concurrency", type=int, default=1, help="processes per worker")
    parser.add_argument(
        "--executors",
        nargs="+",
        choices=["thread", *QUEUE_EXECUTORS],
        default=["thread", *QUEUE_EXECUTORS],
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a CI-sized run: {QUICK_EXECUTIONS} executions, workers {QUICK_WORKERS}",
    )
    parser.add_argument(
        "--thread-only", action="store_true", help="only the figures of the scheduler's process"
    )
    parser.add_argument(
        "--child", choices=["thread", "direct", "queue", "cost"], help=argparse.SUPPRESS
    )
    parser.add_argument("--executor", choices=QUEUE_EXECUTORS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.executions is None:
        args.executions = QUICK_EXECUTIONS if args.quick else 1000
    if args.workers is None:
        args.workers = QUICK_WORKERS if args.quick else [1, 2, 4]
    if args.thread_only:
        args.executors = ["thread"]

    if args.child in ("thread", "direct"):
        _django(None, os.environ["SCHEDULING_DB_PATH"])
        child = child_thread if args.child == "thread" else child_direct
        print(json.dumps(child(args.executions)))
        return 0
    if args.child == "queue":
        _django(os.environ["DATABASE_URL"], None)
        result = child_queue(args.executor, args.executions, args.workers[0], args.concurrency)
        print(json.dumps(result))
        return 0
    if args.child == "cost":
        _django(os.environ["DATABASE_URL"], None)
        print(json.dumps(child_cost(args.executor)))
        return 0

    sys.path.insert(0, str(ROOT))
    from tests.servers import PostgresServer, RedisServer

    base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SCHEDULING_DB_PATH")}
    base.update(DJANGO_SETTINGS_MODULE="tests.settings", DJANGO_DEBUG="0")
    print(f"load average at the start: {_load()}; cores: {os.cpu_count()}", flush=True)
    thread: float | None = None
    if "thread" in args.executors:
        directory = Path(tempfile.mkdtemp(prefix="throughput-sqlite-"))
        sqlite_env = {**base, "SCHEDULING_DB_PATH": str(directory / "db.sqlite3")}
        _manage(sqlite_env, "migrate", "--no-input", "-v", "0")
        figures = run_child(["--child", "thread", *_n(args)], sqlite_env)
        print(_line("thread, SQLite", figures), flush=True)
        direct = run_child(["--child", "direct", *_n(args)], sqlite_env)
        print(_line("pool, direct writes, SQLite", direct), flush=True)
        thread = figures["per_second"]
        print(
            f"  the scheduler's recorder: {thread / direct['per_second']:.2f}x the rate of "
            "writing each outcome on its own"
        )

    queues = [name for name in args.executors if name in QUEUE_EXECUTORS]
    reasons = {name: skip_reason(name) for name in queues}
    for name, reason in reasons.items():
        if reason:
            print(f"{name} figures skipped: {reason}")
    queues = [name for name in queues if not reasons[name]]
    if not queues:
        return 0
    rates: dict[str, dict[int, dict[str, float]]] = {}
    costs: dict[str, dict[str, float]] = {}
    with PostgresServer() as postgres, RedisServer() as redis:
        for name in queues:
            env = {
                **base,
                "DJANGO_SETTINGS_MODULE": SETTINGS[name],
                "DATABASE_URL": postgres.create_database(f"throughput_{name}"),
                "DATABASE_CONN_MAX_AGE": "600",
                "CELERY_BROKER_URL": redis.url,
                "SCHEDULING_EXECUTOR": name,
                # tests.settings_tasks shortens the heartbeat for its tests; the default here
                "TASKS_HEARTBEAT_TTL": "30",
            }
            _manage(env, "migrate", "--no-input", "-v", "0")
            costs[name] = run_child(["--child", "cost", "--executor", name], env)
            print(_cost_line(name, costs[name]), flush=True)
            rates[name] = {}
            for workers in args.workers:
                label = f"{name}, PostgreSQL, {workers} worker(s) x {args.concurrency}"
                figures = run_child(
                    ["--child", "queue", "--executor", name, *_n(args), "--workers", str(workers)],
                    env,
                )
                rates[name][workers] = figures
                print(
                    f"{_line(label, figures)}; {figures['xact_commits']:.1f} commits/execution"
                    f" in the database; load {_load()}",
                    flush=True,
                )

    one = args.workers[0]
    print(f"\nper worker, and scaling against {one} worker(s) ({os.cpu_count()} cores here)")
    for name in queues:
        for workers, figures in rates[name].items():
            per_second = figures["per_second"]
            versus = f", 1/{thread / per_second:.0f} of the thread executor" if thread else ""
            print(
                f"  {name:<13} {workers} worker(s): {per_second:7.1f}/s, "
                f"{per_second / (workers * args.concurrency):6.1f}/s per worker process, "
                f"{per_second / rates[name][one]['per_second']:.2f}x of {one}{versus}"
            )
    if len(queues) == 2:
        print("django_tasks against celery, same workers")
        for workers in args.workers:
            ratio = (
                rates["django_tasks"][workers]["per_second"]
                / rates["celery"][workers]["per_second"]
            )
            print(f"  {workers} worker(s): {ratio:.2f}x")
    print(f"load average at the end: {_load()}")
    return 0


def _n(args: argparse.Namespace) -> list[str]:
    return ["--executions", str(args.executions), "--concurrency", str(args.concurrency)]


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def _line(label: str, figures: dict[str, float]) -> str:
    return (
        f"{label:<40} {figures['per_second']:8.1f} executions/s "
        f"({figures['executions']} in {figures['seconds']:.1f} s; "
        f"mean run {figures['mean_duration_ms']:.1f} ms)"
    )


def _cost_line(name: str, cost: dict[str, float]) -> str:
    return (
        f"{name}: one execution costs the database {cost['worker_statements']:.1f} statements "
        f"({cost['worker_writes']:.1f} writes, {cost['worker_locks']:.1f} row locks) in "
        f"{cost['worker_write_transactions']:.1f} write transactions in the worker, and "
        f"{cost['enqueue_statements']:.1f} statements in "
        f"{cost['enqueue_write_transactions']:.1f} write transactions to enqueue; "
        f"run one by one in one process: {cost['worker_wall_ms']:.1f} ms each, "
        f"{cost['worker_cpu_ms']:.1f} ms of it on this process's CPU (the rest waits for "
        "the database)"
    )


if __name__ == "__main__":
    sys.exit(main())
