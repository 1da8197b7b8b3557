"""Benchmark: syncing schedule rows into the job store (``scheduling.scheduler.sync.JobSync``).

``python bench/sync.py [--quick]`` measures, for 1,000 and 10,000 interval schedules
(``--quick``: 1,000 and 2,000; about 40 s and 30 s on a 2-CPU machine):

- cold full sync: ``JobSync.full()`` into an empty ``SignedDjangoJobStore`` on a
  ``FencedScheduler`` configured as ``SchedulerService._start_scheduler`` does (not started),
  with the time of its phases; against the baseline from django-apscheduler's docs:
  ``scheduler.add_job(func, trigger, id=..., replace_existing=True)`` per schedule into a plain
  ``DjangoJobStore`` on a started, paused ``BackgroundScheduler`` (both include reading the
  schedule rows). Both sides run twice: on Django's default SQLite settings (rollback journal,
  an fsync per commit) and on the project's (WAL, ``synchronous=NORMAL``);
- warm full sync (every job unchanged: the periodic reconcile, and a restart);
- incremental pass with no change and with one change (a trigger edited through ``save()``),
  with its query count and its share of the cold full sync. The fixture rows share one
  ``updated_at``, like the rows of one bulk import: the passes right after the import and
  the steady passes (after edits have moved the high-water mark) are reported apart;
- change latency: from the commit of one change to the job row carrying the new trigger,
  (a) in-process, commit -> ``JobSync.incremental()`` returned, and (b) against a real
  ``manage.py runscheduler`` (sync interval 1 s) polled from outside, at random phases;
  plus that process's idle CPU;
- peak RSS of a process holding the schedules after a full sync: the bench child right after
  ``JobSync.full()``, and the real ``runscheduler`` after its cold start (``VmHWM``).

Every measurement runs in a child process on its own copy of one prepared database, so the
baseline neither warms caches for nor adds memory to ours. Schedules are back-dated by an hour
and fire once a day, so nothing fires while the sync is measured.

Targets (10,000 schedules): cold full sync >= 20x faster than the baseline; one change in the
job store within 1 s; its incremental pass < 1% of a cold full sync; RSS < 150 MiB.

The speed-up is judged on Django's default SQLite settings, where the target's baseline comes
from (django-apscheduler's documented path, "about 4 ms per job"): ``add_job`` commits once per
job, so it pays an fsync per job, which is what a Django project gets out of the box. On the
project's WAL settings a commit costs little and ``add_job`` is about five times faster; that
ratio is printed beside it, for reference.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import statistics
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import _setup

INTERVAL = 86_400
CHANGES = 5
SERVICE_CHANGES = 8
TARGET_SPEEDUP = 20.0
TARGET_LATENCY_S = 1.0
TARGET_INCREMENTAL_SHARE = 0.01
TARGET_RSS_MIB = 150.0


# -- children (each runs in its own process) ------------------------------------------------


def child_prepare(db: str, n: int) -> dict[str, Any]:
    """Migrate a fresh database and fill it with ``n`` schedules over ``n // 100`` tenants."""
    from django.utils import timezone

    _setup.setup(db)
    started = time.perf_counter()
    tenants = _setup.make_tenants(max(10, n // 100))
    _setup.make_scans(
        n,
        tenants=tenants,
        interval_seconds=INTERVAL,
        stamped_at=timezone.now() - timedelta(hours=1),
    )
    return {"fixture_s": time.perf_counter() - started}


def _our_scheduler() -> tuple[Any, Any, Any]:
    from scheduling.scheduler.jobstore import SignedDjangoJobStore
    from scheduling.scheduler.loop import DispatchExecutor, FencedScheduler
    from scheduling.scheduler.sync import JobSync

    scheduler = FencedScheduler(fence=lambda: True, timezone="UTC")
    store = SignedDjangoJobStore(rebuild=None, keep_trying=lambda: True)
    scheduler.add_jobstore(store, "default")
    scheduler.add_executor(DispatchExecutor(None), "default")
    return scheduler, store, JobSync(scheduler, store)


def _change_one(pk: int, seconds: int) -> Any:
    """Edit one schedule's trigger the way the admin does (``save()``); return it."""
    from scheduling.models import PeriodicScan

    scan = PeriodicScan.objects.get(pk=pk)
    scan.interval_seconds = seconds
    scan.save()
    return scan


def _stored_fingerprint(job_id: str) -> bytes | None:
    from django_apscheduler.models import DjangoJob

    from scheduling.scheduler.jobstore import verify_state

    blob = DjangoJob.objects.filter(id=job_id).values_list("job_state", flat=True).first()
    return verify_state(blob)[0] if blob is not None else None


class PhaseTimer:
    """Accumulate the wall time spent inside wrapped callables, by label."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = {}

    def wrap(self, label: str, func: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                self.spent[label] = self.spent.get(label, 0.0) + time.perf_counter() - started

        return timed


def _timed_full(sync: Any, store: Any) -> tuple[Any, float, dict[str, float]]:
    """Run ``sync.full()`` with its phases timed (wrappers on this process's objects only).

    The phases are internal names of ``scheduling.scheduler``'s ``jobs``, ``sync`` and
    ``jobstore``; one that no longer exists is skipped and its time shows up in "rest".
    """
    from scheduling.scheduler import jobs

    timer = PhaseTimer()
    saved = []
    for obj, name, label in (
        (jobs.ScheduleRow, "load", "load schedule rows"),
        (sync, "_plan", "plan: fingerprints + make_job"),
        (store, "read_headers", "read job headers"),
        (store, "replace_jobs", "replace_jobs: sign, upsert, next_run_at"),
    ):
        if hasattr(obj, name):
            saved.append((obj, name, vars(obj).get(name)))
            # staticmethod: a class attribute must not become a method of the class.
            setattr(obj, name, staticmethod(timer.wrap(label, getattr(obj, name))))
    try:
        started = time.perf_counter()
        result = sync.full()
        elapsed = time.perf_counter() - started
    finally:
        for obj, name, original in reversed(saved):
            if original is None:
                delattr(obj, name)  # an instance attribute: the class's method shows again
            else:
                setattr(obj, name, original)
    phases = dict(timer.spent)
    phases["bookkeeping (rest)"] = elapsed - sum(phases.values())
    return result, elapsed, phases


def _incremental(sync: Any) -> tuple[Any, float, int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        result = sync.incremental()
        elapsed = time.perf_counter() - started
    return result, elapsed, len(queries)


def child_ours(db: str, n: int) -> dict[str, Any]:
    """Time JobSync.full()/incremental() and the peak RSS right after the cold full sync."""
    _setup.setup(db, migrate=False)
    from scheduling.models import Schedule

    _scheduler, store, sync = _our_scheduler()
    rss_before = _setup.peak_rss_mib()
    result, cold, phases = _timed_full(sync, store)
    assert result.written == n, result
    out: dict[str, Any] = {
        "cold_full_s": cold,
        "cold_phases": phases,
        "rss_before_mib": rss_before,
        "rss_peak_mib": _setup.peak_rss_mib(),
    }
    started = time.perf_counter()
    result = sync.full()
    out["warm_full_s"] = time.perf_counter() - started
    assert result.unchanged == n and not result.changed, result

    # Every fixture row is within MARGIN of the newest updated_at, as after a bulk import.
    idle = [_incremental(sync) for _i in range(3)]
    assert not any(r.changed for r, _t, _q in idle)
    out["incr_import_s"] = statistics.median(t for _r, t, _q in idle)

    pks = list(Schedule.objects.order_by("?").values_list("pk", flat=True)[: CHANGES + 1])
    one = []
    for k, pk in enumerate(pks):
        scan = _change_one(pk, INTERVAL + k + 1)
        result, elapsed, queries = _incremental(sync)
        assert result.written == 1, result
        assert _stored_fingerprint(scan.job_id) == scan.trigger_fingerprint()
        one.append((elapsed, queries))
    out["incr_first_change_s"] = one[0][0]
    steady = one[1:]
    out["incr_one_s"] = statistics.median(t for t, _q in steady)
    out["incr_one_max_s"] = max(t for t, _q in steady)
    out["incr_one_queries"] = steady[-1][1]

    idle = [_incremental(sync) for _i in range(5)]
    assert not any(r.changed for r, _t, _q in idle)
    out["incr_idle_s"] = statistics.median(t for _r, t, _q in idle)
    out["incr_idle_queries"] = idle[-1][2]
    return out


def child_ours_default(db: str, n: int) -> dict[str, Any]:
    """Time the cold ``JobSync.full()`` on Django's default SQLite settings (as the baseline)."""
    _setup.setup(db, migrate=False, django_defaults=True)
    _scheduler, _store, sync = _our_scheduler()
    started = time.perf_counter()
    result = sync.full()
    elapsed = time.perf_counter() - started
    assert result.written == n, result
    return {"cold_full_default_s": elapsed}


def child_baseline(db: str, n: int, *, django_defaults: bool = False) -> dict[str, Any]:
    """Time django-apscheduler's documented path: add_job(replace_existing=True) per job."""
    _setup.setup(db, migrate=False, django_defaults=django_defaults)
    from apscheduler.schedulers.background import BackgroundScheduler
    from django_apscheduler.jobstores import DjangoJobStore
    from django_apscheduler.models import DjangoJob

    from scheduling.models import Schedule
    from scheduling.scheduler.jobs import JOB_FUNC
    from scheduling.triggers import build_trigger

    scheduler = BackgroundScheduler(timezone="UTC")
    scheduler.add_jobstore(DjangoJobStore(), "default")
    scheduler.start(paused=True)
    try:
        started = time.perf_counter()
        for schedule in Schedule.objects.select_related("tenant"):
            scheduler.add_job(
                JOB_FUNC,
                trigger=build_trigger(schedule),
                args=(schedule.pk,),
                id=schedule.job_id,
                name=schedule.name,
                replace_existing=True,
            )
        elapsed = time.perf_counter() - started
    finally:
        scheduler.shutdown(wait=False)
    assert DjangoJob.objects.count() == n
    key = "baseline_default_s" if django_defaults else "baseline_s"
    return {key: elapsed}


def child_baseline_default(db: str, n: int) -> dict[str, Any]:
    """The same baseline on Django's default SQLite settings (how the design measured it)."""
    return child_baseline(db, n, django_defaults=True)


def child_service(db: str, n: int) -> dict[str, Any]:
    """Start a real runscheduler on ``db`` (no jobs yet), then time changes reaching the store."""
    _setup.setup(db, migrate=False)
    from scheduling.models import Schedule, SchedulerLease

    log = open(f"{db}.runscheduler.log", "w")  # noqa: SIM115 - closed in finally
    started = time.monotonic()
    proc = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "runscheduler",
            "--max-seconds",
            "120",
            "--sync-interval",
            "1",
            "--grace",
            "2",
        ],
        cwd=_setup.ROOT,
        env=_setup.bench_env(db),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    hwm = 0.0
    try:

        def sample() -> None:
            nonlocal hwm
            hwm = max(hwm, _setup.proc_status_mib(proc.pid).get("VmHWM", 0.0))
            if proc.poll() is not None:
                log.flush()
                tail = "\n".join(Path(log.name).read_text().splitlines()[-20:])
                raise RuntimeError(f"runscheduler exited with {proc.returncode}:\n{tail}")

        while True:
            sample()
            lease = SchedulerLease.objects.filter(job_count__gte=n).exclude(holder="").first()
            if lease is not None:
                break
            if time.monotonic() - started > 90:
                raise RuntimeError("runscheduler did not finish its first full sync in 90 s")
            time.sleep(0.05)
        ready = time.monotonic() - started

        def idle_cpu(seconds: float = 3.0) -> float:
            """Share of one core the scheduler burns while nothing changes and nothing fires."""
            before, at = _setup.cpu_seconds(proc.pid), time.monotonic()
            time.sleep(seconds)
            sample()
            return (_setup.cpu_seconds(proc.pid) - before) / (time.monotonic() - at)

        cpu_after_import = idle_cpu()
        latencies = []
        pks = Schedule.objects.order_by("?").values_list("pk", flat=True)[: SERVICE_CHANGES + 1]
        for k, pk in enumerate(pks):
            time.sleep(random.uniform(0.1, 1.1))  # a random phase against the sync loop
            scan = _change_one(pk, INTERVAL + 100 + k)
            committed = time.monotonic()
            want = scan.trigger_fingerprint()
            while _stored_fingerprint(scan.job_id) != want:
                if time.monotonic() - committed > 10:
                    raise RuntimeError(f"change of {scan.job_id} not in the store after 10 s")
                time.sleep(0.002)
            latencies.append(time.monotonic() - committed)
            sample()
        cpu_steady = idle_cpu()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
    return {
        "service_ready_s": ready,
        "service_first_change_s": latencies[0],
        "service_latency_p50_s": statistics.median(latencies),
        "service_latency_max_s": max(latencies),
        "service_latency_steady_max_s": max(latencies[1:]),
        "service_hwm_mib": hwm,
        "service_idle_cpu_import": cpu_after_import,
        "service_idle_cpu_steady": cpu_steady,
        "service_exit": proc.returncode,
    }


CHILDREN = {
    "prepare": child_prepare,
    "ours": child_ours,
    "ours-default": child_ours_default,
    "baseline": child_baseline,
    "baseline-default": child_baseline_default,
    "service": child_service,
}


# -- orchestration ----------------------------------------------------------------------------


def run_child(mode: str, db: str, n: int, timeout: float = 240) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--db", db, "-n", str(n)],
        env=_setup.bench_env(db),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode:
        raise RuntimeError(f"{mode} child failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(n: int, *, with_service: bool) -> dict[str, Any]:
    prepared = _setup.new_db_path(f"sync-{n}")
    copies: list[str] = []
    try:
        figures = run_child("prepare", prepared, n)
        modes = ["ours", "ours-default", "baseline", "baseline-default"]
        modes += ["service"] if with_service else []
        for mode in modes:
            copy = _setup.copy_db(prepared, f"sync-{n}-{mode}")
            copies.append(copy)
            print(f"  {n:>6,} schedules: {mode} ...", flush=True)
            figures.update(run_child(mode, copy, n))
        return figures
    finally:
        for path in [prepared, *copies]:
            _setup.remove_db(path)


def _target(ok: bool, headline: bool, text: str) -> str:
    return f"target {text} " + (_setup.verdict(ok) if headline else "(judged at 10k)")


def report(n: int, f: dict[str, Any], *, headline: bool) -> None:
    speedup = f["baseline_s"] / f["cold_full_s"]
    speedup_default = f["baseline_default_s"] / f["cold_full_default_s"]
    share = f["incr_one_s"] / f["cold_full_s"]
    print(f"\n{n:,} schedules (fixtures inserted in {f['fixture_s']:.2f} s)")
    rows = [
        ("cold full sync, JobSync.full()", f"{f['cold_full_s']:.3f} s", ""),
        *(
            (f"  {label}", f"{spent:.3f} s", f"{spent / f['cold_full_s']:.0%}")
            for label, spent in sorted(f["cold_phases"].items(), key=lambda kv: -kv[1])
        ),
        (
            "cold full sync, Django SQLite defaults",
            f"{f['cold_full_default_s']:.3f} s",
            "(rollback journal, fsync/commit)",
        ),
        (
            "baseline add_job x N, Django SQLite defaults",
            f"{f['baseline_default_s']:.3f} s",
            f"{f['baseline_default_s'] / n * 1000:.2f} ms/job",
        ),
        (
            "  speed-up baseline/ours, Django defaults",
            f"{speedup_default:.1f}x",
            _target(speedup_default >= TARGET_SPEEDUP, headline, f">= {TARGET_SPEEDUP:.0f}x"),
        ),
        (
            "baseline add_job x N, project DB settings",
            f"{f['baseline_s']:.3f} s",
            f"{f['baseline_s'] / n * 1000:.2f} ms/job (WAL, synchronous=NORMAL)",
        ),
        (
            "  speed-up baseline/ours, project settings",
            f"{speedup:.1f}x",
            "(for reference: commits cost little with WAL)",
        ),
        ("warm full sync (all unchanged)", f"{f['warm_full_s']:.3f} s", ""),
        (
            "incremental, no change, after an import",
            f"{f['incr_import_s'] * 1000:.2f} ms",
            "every row within 5 s of the newest updated_at",
        ),
        (
            "incremental, first change after import",
            f"{f['incr_first_change_s'] * 1000:.2f} ms",
            "",
        ),
        (
            "incremental, one change (steady)",
            f"{f['incr_one_s'] * 1000:.2f} ms",
            f"median of {CHANGES}, max {f['incr_one_max_s'] * 1000:.2f} ms; "
            f"{f['incr_one_queries']} queries",
        ),
        (
            "  share of a cold full sync",
            f"{share:.2%}",
            _target(share < TARGET_INCREMENTAL_SHARE, headline, "< 1%"),
        ),
        (
            "incremental, no change (steady)",
            f"{f['incr_idle_s'] * 1000:.2f} ms",
            f"{f['incr_idle_queries']} queries",
        ),
        (
            "change -> store, commit to incremental()",
            f"{f['incr_one_max_s'] * 1000:.2f} ms",
            f"max of {CHANGES}: the pass above, called right after the commit",
        ),
        (
            "peak RSS after JobSync.full() (bench child)",
            f"{f['rss_peak_mib']:.0f} MiB",
            f"{f['rss_before_mib']:.0f} MiB before; "
            + _target(f["rss_peak_mib"] < TARGET_RSS_MIB, headline, "< 150 MiB"),
        ),
    ]
    if "service_latency_max_s" in f:
        rows += [
            ("runscheduler start + cold full sync", f"{f['service_ready_s']:.2f} s", ""),
            (
                "change -> store, runscheduler (sync 1 s)",
                f"{f['service_latency_max_s'] * 1000:.0f} ms",
                f"max of {SERVICE_CHANGES + 1}, p50 {f['service_latency_p50_s'] * 1000:.0f} ms; "
                + _target(f["service_latency_max_s"] <= TARGET_LATENCY_S, headline, "<= 1 s"),
            ),
            (
                "  first change after the import",
                f"{f['service_first_change_s'] * 1000:.0f} ms",
                "its pass re-reads every imported row",
            ),
            (
                "  the other changes",
                f"{f['service_latency_steady_max_s'] * 1000:.0f} ms",
                f"max of {SERVICE_CHANGES}",
            ),
            (
                "runscheduler idle CPU, after the import",
                f"{f['service_idle_cpu_import']:.0%}",
                "of one core; nothing changes, nothing fires",
            ),
            (
                "runscheduler idle CPU, steady",
                f"{f['service_idle_cpu_steady']:.0%}",
                "of one core; after the changes moved the high-water mark",
            ),
            (
                "peak RSS of runscheduler (VmHWM)",
                f"{f['service_hwm_mib']:.0f} MiB",
                _target(f["service_hwm_mib"] < TARGET_RSS_MIB, headline, "< 150 MiB"),
            ),
        ]
    for label, value, note in rows:
        print(f"  {label:<44} {value:>10}  {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 and 2,000 schedules only")
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("-n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(CHILDREN[args.child](args.db, args.n)))
        return
    sizes = [1_000, 2_000] if args.quick else [1_000, 10_000]
    started = time.perf_counter()
    results = {}
    for n in sizes:
        results[n] = measure(n, with_service=n == sizes[-1])
    for n in sizes:
        report(n, results[n], headline=n == 10_000)
    if args.quick:
        print("\n(--quick: targets are judged at 10,000 schedules; run without --quick)")
    print(
        f"\nbench/sync.py finished in {time.perf_counter() - started:.0f} s; "
        f"load average {_setup.load_text()} (other processes on this machine skew the figures)"
    )


if __name__ == "__main__":
    main()
