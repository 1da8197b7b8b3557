"""Benchmark: executions per second of trivial jobs, per executor.

``python bench/throughput.py [--executions 600] [--workers 1 2 4] [--concurrency 1]
[--thread-only]``

- thread executor on SQLite: the scheduler's ``ThreadExecutor`` (``SCHEDULING_MAX_WORKERS``,
  8, threads of one process) runs a backlog of ``--executions`` queued executions of the
  no-op ``test_echo`` scan type, handed over loaded as the scheduler's dispatch hands them
  over, their starts and outcomes batched by the scheduler's ``Recorder``; the same backlog
  again on a bare pool whose threads write each start and outcome on their own
  (``runner.DIRECT``, what running executions outside the scheduler costs), for the ratio;
- celery executor on PostgreSQL: the same backlog is published to a Redis broker, then 1, 2
  and 4 Celery worker nodes (``--concurrency`` processes each) run it.

Every execution does the real work of one: load, ``running``, the handler, the outcome, the
schedule's state, the alert and dependency look-ups. Rates come from the database's own
timestamps (first ``started_at`` to last ``finished_at``), so worker start-up is not counted.
The ratios show how the Celery rate scales with workers, and how it compares with the single
process. PostgreSQL and Redis are throwaway servers on loopback (``tests.servers``); without
their binaries, or without Celery, only the thread figure is printed.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCHEDULES = 50  # executions are spread over this many schedules (their state rows)
TIMEOUT = 600.0


def _django(database_url: str | None, db_path: str | None) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    os.environ["DJANGO_DEBUG"] = "0"
    if database_url:
        os.environ["DATABASE_URL"] = database_url
    if db_path:
        os.environ["SCHEDULING_DB_PATH"] = db_path
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def make_backlog(n: int) -> list[int]:
    """Create ``n`` queued executions of no-op scans; return their ids."""
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
    rows = [
        Execution(
            schedule=scan,
            schedule_name=scan.name,
            schedule_kind=scan.kind,
            tenant=tenant,
            scheduled_for=now + timedelta(seconds=i),
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


def child_celery(n: int, workers: int, concurrency: int) -> dict[str, float]:
    from scheduling.conf import conf
    from scheduling.tasks import execute

    ids = make_backlog(n)
    for execution_id in ids:
        execute.apply_async(args=[execution_id], queue=conf.CELERY_QUEUE)
    log = Path(tempfile.mkdtemp(prefix="throughput-")) / "workers.log"
    processes = []
    try:
        with log.open("ab") as handle:
            for index in range(workers):
                processes.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            *("-m", "celery", "-A", "project", "worker"),
                            *("-Q", conf.CELERY_QUEUE, "-n", f"bench{index}@%h"),
                            *("-c", str(concurrency), "-P", "prefork"),
                            *("--without-gossip", "--without-mingle", "-l", "error"),
                        ],
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
    return rate(ids)


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--executions", type=int, default=600)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--concurrency", type=int, default=1, help="processes per worker")
    parser.add_argument("--child", choices=["thread", "direct", "celery"], help=argparse.SUPPRESS)
    parser.add_argument(
        "--thread-only", action="store_true", help="only the figures of the scheduler's process"
    )
    args = parser.parse_args()

    if args.child in ("thread", "direct"):
        _django(None, os.environ["SCHEDULING_DB_PATH"])
        child = child_thread if args.child == "thread" else child_direct
        print(json.dumps(child(args.executions)))
        return 0
    if args.child == "celery":
        _django(os.environ["DATABASE_URL"], None)
        result = child_celery(args.executions, args.workers[0], args.concurrency)
        print(json.dumps(result))
        return 0

    sys.path.insert(0, str(ROOT))
    from tests.servers import PostgresServer, RedisServer, postgres_available, redis_available

    base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SCHEDULING_DB_PATH")}
    base.update(DJANGO_SETTINGS_MODULE="tests.settings", DJANGO_DEBUG="0")
    results: dict[str, dict[str, float]] = {}

    directory = Path(tempfile.mkdtemp(prefix="throughput-sqlite-"))
    sqlite_env = {**base, "SCHEDULING_DB_PATH": str(directory / "db.sqlite3")}
    _manage(sqlite_env, "migrate", "--no-input", "-v", "0")
    results["thread, SQLite"] = run_child(["--child", "thread", *_n(args)], sqlite_env)
    print(_line("thread, SQLite", results["thread, SQLite"]), flush=True)
    direct = run_child(["--child", "direct", *_n(args)], sqlite_env)
    print(_line("pool, direct writes, SQLite", direct), flush=True)
    ratio = results["thread, SQLite"]["per_second"] / direct["per_second"]
    print(f"  the scheduler's recorder: {ratio:.2f}x the rate of writing each outcome on its own")
    if args.thread_only:
        return 0

    reason = postgres_available() or redis_available()
    try:
        import celery  # noqa: F401
    except ImportError:
        reason = reason or "Celery is not installed (the `celery` extra)"
    if reason:
        print(f"celery figures skipped: {reason}")
        return 0
    with PostgresServer() as postgres, RedisServer() as redis:
        url = postgres.create_database("throughput")
        pg_env = {
            **base,
            "DATABASE_URL": url,
            "DATABASE_CONN_MAX_AGE": "600",
            "CELERY_BROKER_URL": redis.url,
            "SCHEDULING_EXECUTOR": "celery",
        }
        _manage(pg_env, "migrate", "--no-input", "-v", "0")
        for workers in args.workers:
            label = f"celery, PostgreSQL, {workers} worker(s) x {args.concurrency}"
            results[label] = run_child(
                ["--child", "celery", *_n(args), "--workers", str(workers)], pg_env
            )
            print(_line(label, results[label]), flush=True)

    thread = results["thread, SQLite"]["per_second"]
    celery_rates = {
        w: results[f"celery, PostgreSQL, {w} worker(s) x {args.concurrency}"] for w in args.workers
    }
    one = celery_rates[args.workers[0]]["per_second"]
    print("\nratios")
    for workers, figures in celery_rates.items():
        print(
            f"  {workers} worker(s): {figures['per_second'] / one:.2f}x of "
            f"{args.workers[0]} worker(s), {figures['per_second'] / thread:.2f}x of the thread "
            "executor"
        )
    print(f"  cores on this machine: {os.cpu_count()}")
    return 0


def _n(args: argparse.Namespace) -> list[str]:
    return ["--executions", str(args.executions), "--concurrency", str(args.concurrency)]


def _line(label: str, figures: dict[str, float]) -> str:
    return (
        f"{label:<40} {figures['per_second']:8.1f} executions/s "
        f"({figures['executions']} in {figures['seconds']:.1f} s; "
        f"mean run {figures['mean_duration_ms']:.1f} ms)"
    )


if __name__ == "__main__":
    sys.exit(main())
