"""The scheduler's dispatch driven by hand: a loop wired like ``SchedulerService``'s (no loop
thread), and claims of chosen occurrences."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from scheduling.executors import EXECUTORS
from scheduling.models import Execution
from scheduling.scheduler import dispatch
from scheduling.scheduler.jobstore import SignedDjangoJobStore
from scheduling.scheduler.loop import DispatchExecutor, FencedScheduler
from scheduling.scheduler.service import SchedulerService
from scheduling.scheduler.sync import JobSync


def hand_driven_loop(
    service: SchedulerService, executor: Any, *, claim_ahead: float = 0.0
) -> FencedScheduler:
    """Give ``service`` the lease, ``executor`` and a loop whose passes the test runs."""
    service.lease.valid_until = time.monotonic() + 3600
    service.executors = dict.fromkeys(EXECUTORS, executor)
    scheduler = FencedScheduler(fence=service.lease.valid, claim_ahead=claim_ahead, timezone="UTC")
    store = SignedDjangoJobStore(retry_budget=0.2)
    scheduler.add_jobstore(store, "default")
    scheduler.add_executor(DispatchExecutor(service), "default")
    store._scheduler, store._alias = scheduler, "default"
    store.before_flush = service._flush_due
    service.scheduler, service.store, service.sync = scheduler, store, JobSync(scheduler, store)
    return scheduler


def claimed(scans: list[Any], at: datetime) -> list[Execution]:
    """Claim the occurrence at ``at`` of each of ``scans`` as the scheduler's pass does."""
    rows: list[Execution] = []
    dispatch.dispatch_many(
        [(scan.pk, [at], None) for scan in scans],
        claimed_by="test",
        submit=lambda execution, priority: rows.append(execution),
        now=at,
    )
    assert len(rows) == len(scans)
    return rows
