"""Shared helpers of the benchmarks: a throw-away SQLite database, fast fixtures, memory figures.

Every bench runs against ``tests.settings`` (it registers the ``test_echo``/``test_sleep`` scan
types and allows 1-second intervals) and a fresh SQLite file named by ``SCHEDULING_DB_PATH``,
in the same WAL + IMMEDIATE configuration as the demo project. ``DEBUG`` is off (as in
production): with it on, Django keeps the text of the last 9,000 queries, which inflates both
the timings and the memory figures of bulk writes.

Fixtures are bulk-inserted. Django refuses ``bulk_create`` on a multi-table-inherited model
(``PeriodicScan``), and ``bulk_create`` of the 30-column ``Schedule`` rows alone spends ~0.2 ms
of Python per row; so one prototype row is prepared by Django and copied into two
``executemany`` INSERTs (parent, then child). Measured on this machine: 10,000 scans in
~0.3 s this way, ~2.3 s with ``bulk_create`` for the parents, ~4.4 s with
``PeriodicScan.save()`` in a loop inside one transaction (``python bench/_setup.py`` prints
the first and the last).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import resource
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = "tests.settings"
_seq = itertools.count(1)


def bench_env(db_path: str | os.PathLike[str]) -> dict[str, str]:
    """Return the environment for a child process that uses the database ``db_path``."""
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE=SETTINGS,
        SCHEDULING_DB_PATH=str(db_path),
        DJANGO_DEBUG="0",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")])),
    )
    return env


def new_db_path(tag: str = "bench") -> str:
    """Return the path of a database file that does not exist yet, in a fresh temp dir."""
    return str(Path(tempfile.mkdtemp(prefix=f"scheduling-{tag}-")) / "db.sqlite3")


def remove_db(path: str | os.PathLike[str]) -> None:
    """Delete a database made by ``new_db_path`` with its WAL files and directory."""
    shutil.rmtree(Path(path).parent, ignore_errors=True)


def copy_db(src: str | os.PathLike[str], tag: str) -> str:
    """Copy a closed database (and any WAL left behind) to a new temp path; return it."""
    dst = new_db_path(tag)
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{src}{suffix}").exists():
            shutil.copyfile(f"{src}{suffix}", f"{dst}{suffix}")
    return dst


def setup(
    db_path: str | None = None, *, migrate: bool = True, django_defaults: bool = False
) -> str:
    """Point Django at ``db_path`` (default: a fresh temp file), set it up, migrate; return path.

    ``django_defaults`` drops the project's SQLite options (WAL, ``synchronous=NORMAL``,
    IMMEDIATE transactions, 20 s busy timeout) for Django's defaults: rollback journal,
    ``synchronous=FULL`` (an fsync per commit), deferred transactions.
    """
    db_path = db_path or os.environ.get("SCHEDULING_DB_PATH") or new_db_path()
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    os.environ.update(bench_env(db_path))
    os.chdir(ROOT)

    import django
    from django.conf import settings

    if django_defaults:
        settings.DATABASES["default"]["OPTIONS"] = {}
        if Path(db_path).exists():
            # The journal mode is stored in the file: undo the WAL mode a copy brings along.
            with contextlib.closing(sqlite3.connect(db_path)) as db:
                db.execute("PRAGMA journal_mode=DELETE")
    django.setup()
    if migrate:
        from django.core.management import call_command

        call_command("migrate", verbosity=0, interactive=False)
    return db_path


def close_db() -> None:
    """Close this thread's connection (checkpoints the WAL when it is the last one)."""
    from django.db import connection

    connection.close()


def make_tenants(n: int) -> list[Any]:
    """Create ``n`` tenants in one statement."""
    from tenants.models import Tenant

    base = next(_seq)
    return Tenant.objects.bulk_create(
        Tenant(name=f"Bench tenant {base}-{i}", slug=f"bench-{base}-{i}", timezone="UTC")
        for i in range(n)
    )


def _insert_sql(model: Any, columns: list[str]) -> str:
    from django.db import connection

    quote = connection.ops.quote_name
    names = ", ".join(quote(c) for c in columns)
    marks = ", ".join(["%s"] * len(columns))
    # Identifiers come from model metadata, values are parameters.
    return f"INSERT INTO {quote(model._meta.db_table)} ({names}) VALUES ({marks})"  # noqa: S608


def _row_template(obj: Any) -> dict[str, Any]:
    """Column -> database value of every local concrete field of ``obj`` (as an insert)."""
    from django.db import connection

    values = {}
    for field in obj._meta.local_concrete_fields:
        if field.primary_key and not field.remote_field:
            continue
        values[field.column] = field.get_db_prep_save(field.pre_save(obj, add=True), connection)
    return values


def make_scans(
    n: int,
    *,
    tenants: list[Any],
    interval_seconds: int = 60,
    scan_type: str = "test_echo",
    start_at: datetime | None = None,
    stamped_at: datetime | None = None,
) -> list[int]:
    """Insert ``n`` interval ``PeriodicScan`` rows spread over ``tenants``; return their pks.

    One prototype row is prepared by Django (defaults, ``auto_now`` stamps, database
    conversions) and copied with a different tenant and name per row; ``bulk_create`` would
    spend ~0.2 ms of Python per row preparing the same 30 values again. ``stamped_at`` back-dates
    ``created_at``/``updated_at`` (rows that exist since then; it also anchors the interval).
    """
    from django.db import connection, transaction

    from scheduling.models import Kind, PeriodicScan, Schedule

    base = next(_seq)
    prototype = PeriodicScan(
        tenant=tenants[0],
        kind=Kind.SCAN,
        name="prototype",
        trigger_type="interval",
        interval_seconds=interval_seconds,
        start_at=start_at,
        timezone="UTC",
        scan_type=scan_type,
        target="bench",
        options={},
    )
    parent = _row_template(
        Schedule(
            **{f.attname: getattr(prototype, f.attname) for f in Schedule._meta.concrete_fields}
        )
    )
    if stamped_at is not None:
        for column in ("created_at", "updated_at"):
            field = Schedule._meta.get_field(column)
            parent[column] = field.get_db_prep_save(stamped_at, connection)
    columns = list(parent)
    names = [f"bench {base}-{i}" for i in range(n)]
    rows = []
    for i, name in enumerate(names):
        parent.update(tenant_id=tenants[i % len(tenants)].pk, name=name)
        rows.append(tuple(parent[c] for c in columns))
    child = _row_template(prototype)
    child_columns = list(child)
    ptr = PeriodicScan._meta.get_field("schedule_ptr").column
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(_insert_sql(Schedule, columns), rows)
        pks = list(
            Schedule.objects.filter(name__startswith=f"bench {base}-")
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        child_rows = []
        for pk in pks:
            child[ptr] = pk
            child_rows.append(tuple(child[c] for c in child_columns))
        cursor.executemany(_insert_sql(PeriodicScan, child_columns), child_rows)
    return pks


def make_scans_by_save(n: int, *, tenants: list[Any], interval_seconds: int = 60) -> list[int]:
    """The slow reference: ``PeriodicScan.save()`` per row inside one transaction."""
    from django.db import transaction

    from scheduling.models import PeriodicScan

    base = next(_seq)
    pks = []
    with transaction.atomic():
        for i in range(n):
            scan = PeriodicScan(
                tenant=tenants[i % len(tenants)],
                name=f"bench saved {base}-{i}",
                trigger_type="interval",
                interval_seconds=interval_seconds,
                scan_type="test_echo",
                target="bench",
            )
            scan.save()
            pks.append(scan.pk)
    return pks


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def proc_status_mib(pid: int | str = "self") -> dict[str, float]:
    """``VmRSS`` (current) and ``VmHWM`` (peak) of a process from /proc, in MiB."""
    figures = {}
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return figures
    for line in text.splitlines():
        key, _sep, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            figures[key] = int(value.split()[0]) / 1024
    return figures


def cpu_seconds(pid: int | str = "self") -> float | None:
    """User + system CPU seconds of a live process, from /proc (None once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile of ``values`` (nan when empty)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def load_text() -> str:
    """The 1/5/15-minute load averages, for judging how busy the machine was."""
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


if __name__ == "__main__":
    path = setup()
    try:
        tenants = make_tenants(100)
        for label, func in (("prepared executemany", make_scans), ("save() loop", None)):
            started = time.perf_counter()
            if func is None:
                make_scans_by_save(10_000, tenants=tenants)
            else:
                func(10_000, tenants=tenants)
            print(f"10,000 scans by {label}: {time.perf_counter() - started:.2f} s")
        print(f"peak RSS: {peak_rss_mib():.0f} MiB")
    finally:
        close_db()
        remove_db(path)


@contextlib.contextmanager
def postgres_server() -> Iterator[Any]:
    """A started throwaway PostgreSQL server on loopback (``tests.servers``), closed after.

    Exits with the reason when this machine has no PostgreSQL to start.
    """
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.servers import PostgresServer, postgres_available

    reason = postgres_available()
    if reason:
        raise SystemExit(f"--postgres: {reason}")
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.close()
