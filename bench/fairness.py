"""Benchmark: how soon a small tenant's runs start behind a big tenant's backlog (thread executor).

``python bench/fairness.py [--workers 4] [--handler 0.05] [--big 500] [--small 5]``

Tenant A has ``--big`` due executions of priority 32767, tenant B ``--small`` of priority 0;
every one runs the ``test_sleep`` scan type for ``--handler`` seconds. They go through the real
``ThreadExecutor`` (its ``WorkerPool`` of ``--workers`` threads) and ``runner.execute`` on a
fresh SQLite file (``tests.settings``, DEBUG off), exactly as the scheduler hands them over.
Two scenarios:

- ``together``: all are due at the same instant and handed over in one pass (A's first), held
  until then as the scheduler's claim-ahead does;
- ``later``: A's are due and running; B's become due ``--later`` seconds afterwards.

Figures come from the database (``Execution.started_at``): how long after its due time B's
first and last run started, and when A's last run started. Each scenario runs with the default
``SCHEDULING_TENANT_CONCURRENCY`` and with ``0`` (no per-tenant limit).

Target (the bound the README states, for a per-tenant limit, the default): B's first run
starts within one handler duration of its due time, and all ``--small`` within
``ceil(small / (workers - limit)) + 1`` handler durations (``limit``: A's concurrency limit,
half the workers by default; the ``+ 1`` is room for recording each run). Without a limit
(``0``) the figures are shown for comparison only: B's first run then waits for one of A's to
end, and B gets every other start until its runs are done.
"""

from __future__ import annotations

import argparse
import math
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import _setup

PRIORITY_A = 32767
PRIORITY_B = 0


def scenario(
    name: str,
    *,
    workers: int,
    handler: float,
    big: int,
    small: int,
    later: float,
    limit: int | None,
) -> dict[str, Any]:
    from django.test import override_settings

    from scheduling import kinds, runner
    from scheduling.conf import conf
    from scheduling.executors import thread
    from scheduling.executors.base import ExecutorContext
    from scheduling.executors.thread import ThreadExecutor
    from scheduling.models import Execution, Overlap, Status
    from tests.factories import make_scan

    tenant_a, tenant_b = _setup.make_tenants(2)
    options = {"seconds": handler}

    def scans(tenant: Any, count: int, priority: int) -> list[Any]:
        return [
            make_scan(
                tenant=tenant,
                scan_type="test_sleep",
                options=options,
                priority=priority,
                overlap=Overlap.ALLOW,
            )
            for _ in range(count)
        ]

    a_scans = scans(tenant_a, 10, PRIORITY_A)
    b_scans = scans(tenant_b, small, PRIORITY_B)

    done = threading.Semaphore(0)
    context = ExecutorContext(
        identity="bench",
        worker="bench:0",
        writer=runner.DIRECT,
        on_done=lambda execution_id: done.release(),
        lease_valid=lambda: True,
        max_workers=workers,
    )
    settings = {} if limit is None else {"SCHEDULING_TENANT_CONCURRENCY": limit}
    with override_settings(**settings):
        executor = ThreadExecutor(context)
        executor.start()
        try:
            lead = 1.0  # claimed ahead, like CLAIM_AHEAD (with room for 500 claims)
            due_a = datetime.fromtimestamp(math.ceil(time.time() + lead), UTC)
            due_b = due_a + timedelta(seconds=later) if name == "later" else due_a
            claims = [
                Execution.for_occurrence(
                    a_scans[i % len(a_scans)], due_a + timedelta(microseconds=i), claimed_by="b"
                )
                for i in range(big)
            ] + [Execution.for_occurrence(scan, due_b, claimed_by="b") for scan in b_scans]
            pks = [row.pk for row in Execution.objects.bulk_create(claims)]
            loaded = {
                row.pk: row
                for row in Execution.objects.select_related(
                    "tenant", "schedule", "schedule__tenant", *kinds.relations("schedule__")
                ).filter(pk__in=pks)
            }
            a_rows = [loaded[pk] for pk in pks[:big]]
            b_rows = [loaded[pk] for pk in pks[big:]]
            if time.time() > due_a.timestamp():
                raise RuntimeError("claiming took longer than the lead; raise it")
            for row in a_rows:
                executor.submit(row, priority=PRIORITY_A, timeout=600, not_before=due_a.timestamp())
            for row in b_rows:
                executor.submit(row, priority=PRIORITY_B, timeout=600, not_before=due_b.timestamp())
            # None before fair selection had a default (the limit was then 0, no limit).
            default = getattr(thread, "default_tenant_limit", None)
            effective = default(workers) if default else conf.TENANT_CONCURRENCY
            deadline = time.monotonic() + 60 + (big + small) * handler
            for _ in range(big + small):
                if not done.acquire(timeout=max(0.0, deadline - time.monotonic())):
                    raise RuntimeError("the executions did not finish in time")
        finally:
            executor.shutdown(grace=5)
    rows = dict(
        Execution.objects.filter(
            tenant__in=[tenant_a, tenant_b], status=Status.SUCCEEDED
        ).values_list("pk", "started_at")
    )
    a_starts = sorted(rows[r.pk] for r in a_rows if r.pk in rows)
    b_starts = sorted(rows[r.pk] for r in b_rows if r.pk in rows)
    if len(a_starts) + len(b_starts) != big + small:
        raise RuntimeError("some executions did not succeed")
    return {
        "b_first": (b_starts[0] - due_b).total_seconds(),
        "b_last": (b_starts[-1] - due_b).total_seconds(),
        "a_last": (a_starts[-1] - due_a).total_seconds(),
        "limit": effective,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--handler", type=float, default=0.05, help="seconds per run")
    parser.add_argument("--big", type=int, default=500, help="tenant A's executions")
    parser.add_argument("--small", type=int, default=5, help="tenant B's executions")
    parser.add_argument("--later", type=float, default=0.2, help="B's delay in 'later'")
    args = parser.parse_args()

    path = _setup.setup()
    try:
        print(
            f"{args.workers} workers, {args.handler * 1000:.0f} ms handlers; "
            f"A: {args.big} x priority {PRIORITY_A}, B: {args.small} x priority {PRIORITY_B}; "
            f"load {_setup.load_text()}"
        )
        for limit_label, limit in (("default", None), ("0 (none)", 0)):
            for name in ("together", "later"):
                result = scenario(
                    name,
                    workers=args.workers,
                    handler=args.handler,
                    big=args.big,
                    small=args.small,
                    later=args.later,
                    limit=limit,
                )
                effective = limit if limit is not None else result["limit"]
                if effective:
                    rounds = math.ceil(args.small / max(1, args.workers - effective)) + 1
                    bound = rounds * args.handler
                    ok = result["b_first"] <= args.handler and result["b_last"] <= bound
                    judged = f"(bound {bound * 1000:.0f} ms) {_setup.verdict(ok)}"
                else:
                    judged = "(no bound: for comparison)"
                print(
                    f"TENANT_CONCURRENCY {limit_label:<9} (A limited to {effective}) "
                    f"{name:<8}: B first start +{result['b_first'] * 1000:6.0f} ms, "
                    f"B last start +{result['b_last'] * 1000:6.0f} ms {judged}, "
                    f"A last start +{result['a_last']:.2f} s"
                )
    finally:
        _setup.close_db()
        _setup.remove_db(path)


if __name__ == "__main__":
    main()
