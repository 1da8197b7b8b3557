"""APScheduler's loop, made to never die and never fire without the lease."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from apscheduler.executors.base import BaseExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_PAUSED
from django.db import connection

if TYPE_CHECKING:
    from .service import SchedulerService

logger = logging.getLogger("scheduling.service")


# APScheduler's loop wakes at least this often, so its liveness is visible.
MAX_WAIT = 5.0


class FencedScheduler(BackgroundScheduler):
    """A BackgroundScheduler whose loop never dies and never fires without the lease.

    Its pass looks ``claim_ahead`` seconds into the future: occurrences due by then are
    claimed and handed to the executor now, which holds each until its time. The bookkeeping
    of a burst (loading the jobs, the claims, the overlap checks) so happens before the burst
    is due instead of delaying its starts.
    """

    def __init__(self, *, fence: Any, claim_ahead: float = 0.0, **kwargs: Any) -> None:
        self.fence = fence
        self.claim_ahead = timedelta(seconds=claim_ahead)
        self.heartbeat = time.monotonic()
        super().__init__(**kwargs)

    def _process_jobs(self) -> float:
        self.heartbeat = time.monotonic()
        if not self.fence():
            return 0.5
        try:
            wait = self._pass()
        except Exception:
            # Anything escaping here would end APScheduler's thread while it still reports
            # running; log it and try again shortly instead.
            logger.exception("Error in the scheduler loop; retrying.")
            connection.close()
            return 1.0
        return MAX_WAIT if wait is None else min(wait, MAX_WAIT)

    def _pass(self) -> float | None:
        """Offer every job due by now + ``claim_ahead`` to its executor; return the wait."""
        if self.state == STATE_PAUSED:
            return None
        horizon = datetime.now(UTC) + self.claim_ahead
        upcoming = None
        with self._jobstores_lock:
            for alias, store in self._jobstores.items():
                try:
                    jobs = store.get_due_jobs(horizon)
                except Exception as exc:
                    logger.warning("Could not read the due jobs (%s); trying again.", exc)
                    return self.jobstore_retry_interval
                for job in jobs:
                    run_times = job._get_run_times(horizon)
                    if run_times and job.coalesce:
                        run_times = run_times[-1:]
                    if not run_times:
                        continue
                    self._lookup_executor(job.executor).submit_job(job, run_times)
                    following = job.trigger.get_next_fire_time(run_times[-1], horizon)
                    if following:
                        job._modify(next_run_time=following)
                        # Only the run time moved: our store writes just that column.
                        getattr(store, "move_job", store.update_job)(job)
                    else:
                        self.remove_job(job.id, alias)
                # Writes the pass: its claims first, then the jobs' next run times.
                next_run = store.get_next_run_time()
                if next_run is not None and (upcoming is None or next_run < upcoming):
                    upcoming = next_run
        if upcoming is None:
            return None
        wake = upcoming - self.claim_ahead - datetime.now(UTC)
        return max(0.0, wake.total_seconds())


class DispatchExecutor(BaseExecutor):
    """APScheduler executor that hands due occurrences to the service's dispatcher."""

    def __init__(self, service: SchedulerService) -> None:
        super().__init__()
        self.service = service

    def submit_job(self, job: Any, run_times: list) -> None:
        self.service.on_due(job, run_times)

    def _do_submit_job(self, job: Any, run_times: list) -> None:  # pragma: no cover
        self.submit_job(job, run_times)
