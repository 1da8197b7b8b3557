"""A scheduler loop wired like ``SchedulerService``'s, driven by hand (no loop thread)."""

from __future__ import annotations

import time
from typing import Any

from scheduling.jobstore import SignedDjangoJobStore
from scheduling.service import DispatchExecutor, FencedScheduler, SchedulerService
from scheduling.sync import JobSync


def hand_driven_loop(
    service: SchedulerService, executor: Any, *, claim_ahead: float = 0.0
) -> FencedScheduler:
    """Give ``service`` the lease, ``executor`` and a loop whose passes the test runs."""
    service.lease.valid_until = time.monotonic() + 3600
    service.executor = executor
    scheduler = FencedScheduler(fence=service.lease.valid, claim_ahead=claim_ahead, timezone="UTC")
    store = SignedDjangoJobStore(retry_budget=0.2)
    scheduler.add_jobstore(store, "default")
    scheduler.add_executor(DispatchExecutor(service), "default")
    store._scheduler, store._alias = scheduler, "default"
    store.before_flush = service._flush_due
    service.scheduler, service.store, service.sync = scheduler, store, JobSync(scheduler, store)
    return scheduler
