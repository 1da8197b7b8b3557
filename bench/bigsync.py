"""Benchmark: the full sync (``JobSync.full()``) at large schedule counts, SQLite and PostgreSQL.

``python bench/bigsync.py [--schedules N] [--postgres] [--quick]``

- SQLite (default): 100,000 interval schedules over ``N // 100`` tenants;
- ``--postgres``: a throwaway PostgreSQL on loopback (``tests.servers.PostgresServer``, started
  and removed by this script), 1,000,000 schedules over 10,000 tenants by default;
- ``--quick``: 5,000 schedules (a CI-sized run); ``--schedules`` sets any other count.

The schedules fire once a day and are back-dated by an hour (``created_at``/``updated_at``,
which anchor the interval), so nothing fires while the sync is measured. They are seeded once
into a prepared database: on SQLite by ``_setup.make_scans`` (one prototype row prepared by
Django, copied into ``executemany`` INSERTs, in chunks); on PostgreSQL the same prototype rows
are streamed through ``COPY ... FROM STDIN`` (parents, then the ``PeriodicScan`` children),
followed by ``VACUUM ANALYZE`` (what autovacuum would have done by the time a scheduler runs
against a table of that size). The seeding time is printed.

Each measurement then runs in a child process of its own, so its memory figures are its own,
on its own copy of the prepared database: a file copy on SQLite, ``CREATE DATABASE ...
TEMPLATE`` (``STRATEGY FILE_COPY`` where the server has it) on PostgreSQL, dropped afterwards.

1. ``sync`` child: the scheduler and ``SignedDjangoJobStore`` are configured as
   ``SchedulerService._start_scheduler`` does, and not started (the service runs its first full
   sync before it starts the scheduler).

   - cold full sync: ``JobSync.full()`` into the empty job store; its seconds and the time of
     its phases: those of the sync's own thread (reading, planning, signing; their rest is
     bookkeeping and waiting for the writer), then, on PostgreSQL, those of the writer
     thread, which overlap them (the upsert and ``next_run_at``; on SQLite they are written
     in line, and listed as such); the child's RSS right before it (after
     Django setup) and its peak (``VmHWM``) right after it;
   - warm full sync right after it, every job unchanged (the periodic reconcile);
   - one edit: one schedule's interval changed through the ORM (``save()``), then
     ``JobSync.incremental()`` until the job row carries the new trigger: seconds from the
     commit to that, passes and queries. The fixture rows share one ``updated_at`` (a bulk
     import): the first edit after the full sync is reported apart from a second one
     (steady), since a high-water mark left at the import's stamp would make the first
     incremental pass read every row again.

2. ``restart`` child, on the database the ``sync`` child left: a fresh process whose first
   full sync finds every job stored and unchanged (a scheduler restart): seconds and peak RSS.

3. ``baseline`` child: ``N`` plain rows (``id``, ``next_run_time``, ``job_state`` = one small
   pickled blob) inserted into the job table with one ``executemany`` in one transaction: the
   floor for writing ``N`` jobs. The cold full sync is printed as a ratio of it.

Targets (from the issue): at 1,000,000 schedules on PostgreSQL, cold full sync under 60 s and
peak RSS under 512 MiB; at 100,000 on SQLite, full sync within 3 s and RSS under 200 MiB; on
both, one edit in the job store within 1 s. PASS/MISS is printed at any size; a run at another
size says so beside the verdict.

The RSS figures are the Python process's; the PostgreSQL server's memory is not in them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pickle
import platform
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import _setup

INTERVAL = 86_400
QUICK_SCHEDULES = 5_000
SQLITE_SCHEDULES = 100_000
POSTGRES_SCHEDULES = 1_000_000
SQLITE_CHUNK = 100_000  # make_scans keeps its rows in memory: seed in slices of this size
CHILD_TIMEOUT = 7_200.0
EDIT_TIMEOUT = 600.0
TARGET_EDIT_S = 1.0
# backend -> (schedule count the targets are set for, cold full sync seconds, peak RSS MiB)
TARGETS = {
    "sqlite": (SQLITE_SCHEDULES, 3.0, 200.0),
    "postgresql": (POSTGRES_SCHEDULES, 60.0, 512.0),
}


def _vendor() -> str:
    from django.db import connection

    return connection.vendor


def _memory() -> dict[str, float]:
    """Current (``VmRSS``) and peak (``VmHWM``) resident set size of this process, in MiB."""
    figures = _setup.proc_status_mib()
    if "VmHWM" not in figures:  # no /proc: getrusage has the peak only
        peak = _setup.peak_rss_mib()
        figures = {"VmRSS": peak, "VmHWM": peak}
    return figures


# -- seeding (the "prepare" child) --------------------------------------------------------------


def _prototype_rows(tenant: Any, stamped_at: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Column -> database value of one interval scan: its ``Schedule`` row and its child row."""
    from django.db import connection

    from scheduling.models import Kind, PeriodicScan, Schedule

    prototype = PeriodicScan(
        tenant=tenant,
        kind=Kind.SCAN,
        name="prototype",
        trigger_type="interval",
        interval_seconds=INTERVAL,
        timezone="UTC",
        scan_type="test_echo",
        target="bench",
        options={},
    )
    parent = _setup._row_template(
        Schedule(
            **{f.attname: getattr(prototype, f.attname) for f in Schedule._meta.concrete_fields}
        )
    )
    for column in ("created_at", "updated_at"):
        field = Schedule._meta.get_field(column)
        parent[column] = field.get_db_prep_save(stamped_at, connection)
    return parent, _setup._row_template(prototype)


def seed_postgres(n: int, tenants: list[Any], stamped_at: Any) -> None:
    """Insert ``n`` interval scans spread over ``tenants`` with ``COPY ... FROM STDIN``.

    The rows are streamed, not built in a list first: memory stays flat at any ``n``.
    """
    from django.db import connection, transaction

    from scheduling.models import PeriodicScan, Schedule

    parent, child = _prototype_rows(tenants[0], stamped_at)
    quote = connection.ops.quote_name
    prefix = f"bigsync {uuid.uuid4().hex[:12]} "  # no LIKE wildcards in it
    columns = list(parent)
    row = [parent[c] for c in columns]
    at_tenant, at_name = columns.index("tenant_id"), columns.index("name")
    tenant_ids = [t.pk for t in tenants]
    ptr = PeriodicScan._meta.get_field("schedule_ptr").column
    child_columns = list(child)
    child_row = [child[c] for c in child_columns]
    at_ptr = child_columns.index(ptr)

    def copy_sql(model: Any, names: list[str]) -> str:
        # Identifiers come from model metadata; the values travel in the COPY stream.
        return "COPY {} ({}) FROM STDIN".format(
            quote(model._meta.db_table), ", ".join(quote(c) for c in names)
        )

    with transaction.atomic(), connection.cursor() as cursor:
        raw = cursor.cursor  # psycopg's own cursor: Django's wrapper has no copy()
        with raw.copy(copy_sql(Schedule, columns)) as copy:
            for i in range(n):
                row[at_tenant] = tenant_ids[i % len(tenant_ids)]
                row[at_name] = f"{prefix}{i}"
                copy.write_row(row)
        cursor.execute(
            "SELECT {} FROM {} WHERE {} LIKE %s ORDER BY 1".format(  # noqa: S608
                quote(Schedule._meta.pk.column),
                quote(Schedule._meta.db_table),
                quote("name"),
            ),
            [f"{prefix}%"],
        )
        pks = [pk for (pk,) in cursor.fetchall()]
        assert len(pks) == n, (len(pks), n)
        with raw.copy(copy_sql(PeriodicScan, child_columns)) as copy:
            for pk in pks:
                child_row[at_ptr] = pk
                copy.write_row(child_row)


def seed_sqlite(n: int, tenants: list[Any], stamped_at: Any) -> None:
    """Insert ``n`` interval scans with ``_setup.make_scans``, in slices of ``SQLITE_CHUNK``."""
    for start in range(0, n, SQLITE_CHUNK):
        _setup.make_scans(
            min(SQLITE_CHUNK, n - start),
            tenants=tenants,
            interval_seconds=INTERVAL,
            stamped_at=stamped_at,
        )


def child_prepare(db: str, n: int, tenants: int) -> dict[str, Any]:
    """Migrate a fresh database and seed it with ``n`` schedules over ``tenants`` tenants."""
    from django.db import connection
    from django.utils import timezone

    _setup.setup(db)
    stamped_at = timezone.now() - timedelta(hours=1)
    started = time.perf_counter()
    made = _setup.make_tenants(tenants)
    tenants_s = time.perf_counter() - started
    postgres = connection.vendor == "postgresql"
    (seed_postgres if postgres else seed_sqlite)(n, made, stamped_at)
    seed_s = time.perf_counter() - started
    out: dict[str, Any] = {"tenants_s": tenants_s, "seed_s": seed_s, "analyze_s": 0.0}
    if postgres:
        started = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
            out["analyze_s"] = time.perf_counter() - started
            cursor.execute("SELECT pg_database_size(current_database()), version()")
            size, version = cursor.fetchone()
        out["db_mib"] = size / 2**20
        out["server"] = " ".join(version.split()[:2])
    else:
        _setup.close_db()  # checkpoints the WAL into the file that is copied
        out["db_mib"] = Path(db).stat().st_size / 2**20
        import sqlite3

        out["server"] = f"SQLite {sqlite3.sqlite_version}"
    return out


# -- the sync ("sync" and "restart" children) ---------------------------------------------------


def _scheduler() -> tuple[Any, Any, Any]:
    """A scheduler, job store and JobSync as ``SchedulerService._start_scheduler`` sets them up."""
    from scheduling.conf import conf
    from scheduling.scheduler.jobstore import SignedDjangoJobStore
    from scheduling.scheduler.loop import DispatchExecutor, FencedScheduler
    from scheduling.scheduler.sync import JobSync

    scheduler = FencedScheduler(fence=lambda: True, claim_ahead=conf.CLAIM_AHEAD, timezone="UTC")
    sync: Any = None
    store = SignedDjangoJobStore(
        rebuild=lambda pk, when: sync.rebuild(pk, when), keep_trying=lambda: True
    )
    scheduler.add_jobstore(store, "default")
    scheduler.add_executor(DispatchExecutor(None), "default")
    sync = JobSync(scheduler, store)
    return scheduler, store, sync


class Probe:
    """Time (and count the rows of) calls to a few functions, patched in for a block."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.rows: dict[str, int] = {}

    def _wrap(self, label: str, func: Callable[..., Any]) -> Callable[..., Any]:
        def probed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                result = func(*args, **kwargs)
            finally:
                self.seconds[label] = self.seconds.get(label, 0.0) + time.perf_counter() - started
            if isinstance(result, list | dict):
                self.rows[label] = self.rows.get(label, 0) + len(result)
            return result

        return probed

    @contextlib.contextmanager
    def patched(self, targets: list[tuple[Any, str, str]]) -> Iterator[Probe]:
        """Wrap ``getattr(obj, name)`` for each ``(obj, name, label)``; restore on exit."""
        saved = []
        try:
            for obj, name, label in targets:
                saved.append((obj, name, vars(obj).get(name)))
                wrapper = self._wrap(label, getattr(obj, name))
                # On a class, staticmethod: the wrapper must not become one of its methods.
                setattr(obj, name, staticmethod(wrapper) if isinstance(obj, type) else wrapper)
            yield self
        finally:
            for obj, name, original in reversed(saved):
                if original is None:
                    delattr(obj, name)  # it was the class's: the instance's patch goes
                else:
                    setattr(obj, name, original)


LOAD = "load schedule rows (ScheduleRow.load)"
HEADERS = "read job headers"
PLAN = "plan: fingerprints, triggers, jobs"
SIGN = "sign job states (signed_rows)"
REPLACE = "writer thread: upsert, next_run_at, commit"
NEXT_RUN = "  of which schedules' next_run_at"
# Spent on the writer's thread, while the sync's own thread reads and plans the next chunk.
WRITER = (REPLACE, NEXT_RUN)
ORPHANS = "remove jobs of deleted schedules"


def _probe_targets(sync: Any, store: Any) -> list[tuple[Any, str, str]]:
    from scheduling.scheduler import jobs
    from scheduling.scheduler import sync as sync_module

    targets = [
        (jobs.ScheduleRow, "load", LOAD),
        (store, "read_headers", HEADERS),
        (sync, "_plan", PLAN),
        (store, "signed_rows", SIGN),
        (store, "replace_jobs", REPLACE),
        (sync_module, "store_next_run_times", NEXT_RUN),
        (sync, "_remove_orphans", ORPHANS),
    ]
    # Internal names of scheduling.scheduler: one that is gone is skipped (its time is "rest").
    return [(obj, name, label) for obj, name, label in targets if hasattr(obj, name)]


def _pipelined() -> bool:
    """Whether the full sync writes on a thread of its own here (PostgreSQL)."""
    from scheduling.scheduler import sync as sync_module

    can = getattr(sync_module, "_can_pipeline", None)
    return bool(can and can())


def _stored_fingerprint(job_id: str) -> bytes | None:
    from django_apscheduler.models import DjangoJob

    from scheduling.scheduler.jobstore import verify_state

    blob = DjangoJob.objects.filter(id=job_id).values_list("job_state", flat=True).first()
    return verify_state(blob)[0] if blob is not None else None


def _edit(sync: Any, store: Any, pk: int, seconds: int) -> dict[str, Any]:
    """Change schedule ``pk``'s interval with ``save()``; time incremental passes until stored."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from scheduling.models import PeriodicScan

    scan = PeriodicScan.objects.get(pk=pk)
    scan.interval_seconds = seconds
    scan.save()
    committed = time.perf_counter()
    want = scan.trigger_fingerprint()
    passes = queries = 0
    probe = Probe()
    with probe.patched(_probe_targets(sync, store)):
        while True:
            with CaptureQueriesContext(connection) as captured:
                sync.incremental()
            passes += 1
            queries += len(captured)
            if _stored_fingerprint(scan.job_id) == want:
                break
            if time.perf_counter() - committed > EDIT_TIMEOUT:
                raise RuntimeError(f"the edit of {scan.job_id} not in the job store")
    return {
        "s": time.perf_counter() - committed,
        "passes": passes,
        "queries": queries,
        "rows_read": probe.rows.get(LOAD, 0),
        "load_s": probe.seconds.get(LOAD, 0.0),
        "headers_read": probe.rows.get(HEADERS, 0),
        "hwm_mib": _memory()["VmHWM"],
    }


def _random_pk() -> int:
    from django.db.models import Max, Min

    from scheduling.models import PeriodicScan

    bounds = PeriodicScan.objects.aggregate(low=Min("pk"), high=Max("pk"))
    pick = random.randint(bounds["low"], bounds["high"])
    return PeriodicScan.objects.filter(pk__gte=pick).order_by("pk").values_list("pk", flat=True)[0]


def child_sync(db: str, n: int, _tenants: int) -> dict[str, Any]:
    """Cold full sync, warm full sync, then two edits applied by incremental passes."""
    _setup.setup(db, migrate=False)
    from django.db import connection
    from django_apscheduler.models import DjangoJob

    _unused, store, sync = _scheduler()
    connection.ensure_connection()
    pipelined = _pipelined()
    before = _memory()
    probe = Probe()
    with probe.patched(_probe_targets(sync, store)):
        started = time.perf_counter()
        result = sync.full()
        cold = time.perf_counter() - started
    assert result.written == n and not result.errors, result
    after_cold = _memory()
    order = [label for _obj, _name, label in _probe_targets(sync, store)]
    phases = {label: probe.seconds[label] for label in order if label in probe.seconds}
    own = sum(v for k, v in phases.items() if k not in WRITER)
    phases = {k: v for k, v in phases.items() if k not in WRITER}
    writes = {k: probe.seconds[k] for k in WRITER if k in probe.seconds}
    if pipelined:
        # What the sync's own thread did besides: bookkeeping, and waiting for the writer.
        phases["rest: bookkeeping, waiting for the writer"] = cold - own
        phases.update(writes)
    else:
        phases.update({k.replace("writer thread", "in line"): v for k, v in writes.items()})
        phases["rest (bookkeeping)"] = cold - own - writes.get(REPLACE, 0.0)

    started = time.perf_counter()
    result = sync.full()
    warm = time.perf_counter() - started
    assert result.unchanged == n and not result.changed, result
    after_warm = _memory()

    first_pk = _random_pk()
    first = _edit(sync, store, first_pk, INTERVAL + 1)
    second_pk = first_pk
    while second_pk == first_pk and n > 1:
        second_pk = _random_pk()
    steady = _edit(sync, store, second_pk, INTERVAL + 2)

    sample = DjangoJob.objects.values_list("job_state", flat=True)[:1000]
    sizes = [len(bytes(blob)) for blob in sample]
    return {
        "cold_s": cold,
        "phases": phases,
        "rows_loaded": probe.rows.get(LOAD, 0),
        "rss_before_mib": before["VmRSS"],
        "hwm_before_mib": before["VmHWM"],
        "hwm_cold_mib": after_cold["VmHWM"],
        "rss_after_cold_mib": after_cold["VmRSS"],
        "warm_s": warm,
        "hwm_warm_mib": after_warm["VmHWM"],
        "edit_first": first,
        "edit_steady": steady,
        "state_bytes": sum(sizes) / max(1, len(sizes)),
    }


def child_restart(db: str, n: int, _tenants: int) -> dict[str, Any]:
    """A fresh process whose first full sync finds every job stored and unchanged."""
    _setup.setup(db, migrate=False)
    from django.db import connection

    _unused, _store, sync = _scheduler()
    connection.ensure_connection()
    before = _memory()
    started = time.perf_counter()
    result = sync.full()
    elapsed = time.perf_counter() - started
    assert result.unchanged == n and not result.changed, result
    return {
        "restart_s": elapsed,
        "restart_rss_before_mib": before["VmRSS"],
        "restart_hwm_mib": _memory()["VmHWM"],
    }


# -- the floor ("baseline" child) ---------------------------------------------------------------


def child_baseline(db: str, n: int, _tenants: int) -> dict[str, Any]:
    """Insert ``n`` plain job rows with one ``executemany`` in one transaction."""
    _setup.setup(db, migrate=False)
    from django.db import connection, transaction
    from django.utils import timezone
    from django_apscheduler.models import DjangoJob

    from scheduling.scheduler.jobs import JOB_PREFIX

    ops = connection.ops
    blob = pickle.dumps({"bench": "baseline"}, pickle.HIGHEST_PROTOCOL)
    when = ops.adapt_datetimefield_value(timezone.now() + timedelta(days=1))
    rows = [(f"{JOB_PREFIX}{i}", when, blob) for i in range(1, n + 1)]
    # Identifiers come from the model, quoted; values are parameters.
    sql = "INSERT INTO {} ({}) VALUES (%s, %s, %s)".format(  # noqa: S608
        ops.quote_name(DjangoJob._meta.db_table),
        ", ".join(map(ops.quote_name, ["id", "next_run_time", "job_state"])),
    )
    connection.ensure_connection()
    assert not DjangoJob.objects.exists()
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(sql, rows)
    elapsed = time.perf_counter() - started
    assert DjangoJob.objects.count() == n
    return {"baseline_s": elapsed, "baseline_blob_bytes": len(blob)}


CHILDREN = {
    "prepare": child_prepare,
    "sync": child_sync,
    "restart": child_restart,
    "baseline": child_baseline,
}


# -- orchestration ------------------------------------------------------------------------------


def run_child(mode: str, env: dict[str, str], db: str, n: int, tenants: int) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", mode, "--db", db]
    command += ["--schedules", str(n), "--tenants", str(tenants)]
    print(f"  {mode} ...", flush=True)
    proc = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT, check=False
    )
    if proc.returncode:
        raise RuntimeError(f"{mode} child failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure_sqlite(n: int, tenants: int) -> dict[str, Any]:
    """Prepare one SQLite file, then run each child on a copy of it."""

    def env(db: str) -> dict[str, str]:
        env = _setup.bench_env(db)
        env.pop("DATABASE_URL", None)  # SQLite, whatever the caller's environment says
        return env

    prepared = _setup.new_db_path("bigsync")
    paths = [prepared]
    try:
        figures = run_child("prepare", env(prepared), prepared, n, tenants)
        synced = _setup.copy_db(prepared, "bigsync-sync")
        paths.append(synced)
        figures.update(run_child("sync", env(synced), synced, n, tenants))
        # The restart finds the jobs the sync child stored (its connection is closed).
        figures.update(run_child("restart", env(synced), synced, n, tenants))
        floor = _setup.copy_db(prepared, "bigsync-baseline")
        paths.append(floor)
        figures.update(run_child("baseline", env(floor), floor, n, tenants))
        return figures
    finally:
        for path in paths:
            _setup.remove_db(path)


def measure_postgres(n: int, tenants: int) -> dict[str, Any]:
    """Start a throwaway server, prepare one database, run each child on a template copy."""
    import psycopg

    with (
        _setup.postgres_server() as server,
        psycopg.connect(server.url_for("postgres"), autocommit=True) as admin,
    ):
        print(f"  PostgreSQL listening on 127.0.0.1:{server.port}", flush=True)
        file_copy = admin.info.server_version >= 150000
        strategy = " STRATEGY FILE_COPY" if file_copy else ""

        def env(name: str) -> dict[str, str]:
            return {**_setup.bench_env(name), "DATABASE_URL": server.url_for(name)}

        def copy_of(name: str) -> str:
            copy = f"bigsync_{name}"
            started = time.perf_counter()
            admin.execute(f'CREATE DATABASE "{copy}" TEMPLATE "bigsync"{strategy}')
            print(f"  {copy}: copied in {time.perf_counter() - started:.1f} s", flush=True)
            return copy

        def drop(name: str) -> None:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

        admin.execute('CREATE DATABASE "bigsync"')
        figures = run_child("prepare", env("bigsync"), "bigsync", n, tenants)
        synced = copy_of("sync")
        try:
            figures.update(run_child("sync", env(synced), synced, n, tenants))
            figures.update(run_child("restart", env(synced), synced, n, tenants))
        finally:
            drop(synced)
        floor = copy_of("baseline")
        try:
            figures.update(run_child("baseline", env(floor), floor, n, tenants))
        finally:
            drop(floor)
        return figures


def _verdict(ok: bool, n: int, target_n: int) -> str:
    verdict = _setup.verdict(ok)
    return verdict if n == target_n else f"{verdict} (at {n:,}; the target is for {target_n:,})"


def report(backend: str, n: int, tenants: int, f: dict[str, Any]) -> None:
    target_n, target_s, target_mib = TARGETS[backend]
    first, steady = f["edit_first"], f["edit_steady"]
    ratio = f["cold_s"] / f["baseline_s"]
    print(
        f"\n{n:,} schedules over {tenants:,} tenants on {f['server']}: seeded in "
        f"{f['seed_s']:.1f} s (tenants {f['tenants_s']:.1f} s"
        + (f", then VACUUM ANALYZE {f['analyze_s']:.1f} s" if f["analyze_s"] else "")
        + f"); database {f['db_mib']:.0f} MiB"
    )
    rows = [
        (
            "cold full sync, JobSync.full()",
            f"{f['cold_s']:.2f} s",
            f"{f['cold_s'] / n * 1e6:.1f} us/schedule; target < {target_s:.0f} s: "
            + _verdict(f["cold_s"] < target_s, n, target_n),
        ),
        *(
            (f"  {label}", f"{spent:.2f} s", f"{spent / f['cold_s']:.0%}")
            for label, spent in f["phases"].items()
        ),
        (
            "raw inserts (baseline, executemany)",
            f"{f['baseline_s']:.2f} s",
            f"{n:,} job rows of {f['baseline_blob_bytes']} B in one transaction "
            f"(the sync's states: {f['state_bytes']:.0f} B)",
        ),
        ("  cold full sync / raw inserts", f"{ratio:.1f}x", "the floor for writing N jobs"),
        ("warm full sync (all unchanged)", f"{f['warm_s']:.2f} s", "right after the cold one"),
        (
            "restart: full sync, fresh process",
            f"{f['restart_s']:.2f} s",
            "every job stored and unchanged",
        ),
        (
            "one edit -> job store, first after sync",
            f"{first['s'] * 1000:.0f} ms",
            f"{first['passes']} pass(es), {first['queries']} queries, "
            f"{first['rows_read']:,} rows re-read ({first['load_s']:.2f} s), "
            f"{first['headers_read']:,} job headers; "
            f"target <= {TARGET_EDIT_S:.0f} s: "
            + _verdict(first["s"] <= TARGET_EDIT_S, n, target_n),
        ),
        (
            "one edit -> job store, steady",
            f"{steady['s'] * 1000:.0f} ms",
            f"{steady['passes']} pass(es), {steady['queries']} queries, "
            f"{steady['rows_read']:,} rows re-read, {steady['headers_read']:,} job headers; "
            f"target <= {TARGET_EDIT_S:.0f} s: "
            + _verdict(steady["s"] <= TARGET_EDIT_S, n, target_n),
        ),
        (
            "RSS before the sync (after Django setup)",
            f"{f['rss_before_mib']:.0f} MiB",
            f"peak so far {f['hwm_before_mib']:.0f} MiB",
        ),
        (
            "peak RSS after the cold full sync",
            f"{f['hwm_cold_mib']:.0f} MiB",
            f"+{f['hwm_cold_mib'] - f['rss_before_mib']:.0f} MiB for the sync; "
            f"target < {target_mib:.0f} MiB: "
            + _verdict(f["hwm_cold_mib"] < target_mib, n, target_n),
        ),
        (
            "  RSS right after it",
            f"{f['rss_after_cold_mib']:.0f} MiB",
            "what the process keeps (JobSync.applied, the allocator's pools)",
        ),
        (
            "peak RSS after the warm full sync",
            f"{f['hwm_warm_mib']:.0f} MiB",
            f"same process; {f['edit_first']['hwm_mib']:.0f} MiB after the first edit's pass",
        ),
        (
            "peak RSS of the restart process",
            f"{f['restart_hwm_mib']:.0f} MiB",
            f"{f['restart_rss_before_mib']:.0f} MiB before; target < {target_mib:.0f} MiB: "
            + _verdict(f["restart_hwm_mib"] < target_mib, n, target_n),
        ),
    ]
    for label, value, note in rows:
        print(f"  {label:<42} {value:>10}  {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schedules", type=int, help="number of schedules (see the defaults)")
    parser.add_argument("--postgres", action="store_true", help="on a throwaway PostgreSQL")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_SCHEDULES:,} schedules")
    parser.add_argument("--tenants", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(CHILDREN[args.child](args.db, args.schedules, args.tenants)))
        return
    n = args.schedules or (
        QUICK_SCHEDULES if args.quick else POSTGRES_SCHEDULES if args.postgres else SQLITE_SCHEDULES
    )
    if n < 1:
        parser.error("--schedules must be at least 1")
    tenants = args.tenants or max(10, n // 100)
    backend = "postgresql" if args.postgres else "sqlite"
    print(
        f"bench/bigsync.py: {n:,} schedules on {backend} "
        f"(Python {platform.python_version()}, {os.cpu_count()} CPUs; "
        f"load average {_setup.load_text()})",
        flush=True,
    )
    started = time.perf_counter()
    measure = measure_postgres if args.postgres else measure_sqlite
    figures = measure(n, tenants)
    report(backend, n, tenants, figures)
    print(
        f"\nbench/bigsync.py finished in {time.perf_counter() - started:.0f} s; "
        f"load average {_setup.load_text()} (other processes on this machine skew the figures)"
    )


if __name__ == "__main__":
    main()
