"""Reconcile schedule rows into the job store: a full pass and an incremental one.

A job's state carries a fingerprint of the schedule fields that shape it. A job whose
fingerprint still matches is left alone, so its stored ``next_run_time`` survives restarts and
the occurrences missed while the scheduler was down are still offered (and recorded per the
misfire policy). Everything else is written in bulk and the scheduler is woken once.

The incremental pass reads the rows whose ``updated_at`` moved past a high-water mark (minus a
margin that covers transactions committing out of order) and the deletion tombstones, so it
runs a constant number of queries whatever the number of schedules.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.job import Job
from django.db import connection, transaction
from django.db.models import Exists, Max, OuterRef
from django.utils import timezone

from .exceptions import InvalidTrigger
from .jobstore import JOB_PREFIX, BoundedJob, SignedDjangoJobStore
from .models import Schedule, ScheduleDeletion
from .triggers import build_trigger

logger = logging.getLogger("scheduling.sync")

JOB_FUNC = "scheduling.runner:fire"
# Transactions may commit a little after the updated_at they stamped; re-read that window.
MARGIN = timedelta(seconds=5)


@dataclass
class SyncResult:
    written: int = 0
    removed: int = 0
    unchanged: int = 0
    errors: dict[int, str] = field(default_factory=dict)

    @property
    def changed(self) -> int:
        return self.written + self.removed


def make_job(
    scheduler: Any,
    schedule: Schedule,
    now: datetime | None = None,
    next_run_time: datetime | None = None,
) -> Job | None:
    """Return the APScheduler job for ``schedule``, or None when it will not fire again."""
    now = now or timezone.now()
    trigger = build_trigger(schedule)
    if next_run_time is None:
        start = schedule.paused_until if schedule.is_paused(now) else now
        next_run_time = trigger.get_next_fire_time(None, start)
    if next_run_time is None:
        return None
    # Built directly rather than through Job(...): its argument checks cost a third of a
    # full sync, and every value here is known to be valid.
    job = BoundedJob.__new__(BoundedJob)
    job._scheduler = scheduler
    job._jobstore_alias = None
    job.id = schedule.job_id
    job.func_ref = JOB_FUNC
    job.func = _job_func()
    job.trigger = trigger
    job.executor = "default"
    job.args = (schedule.pk,)
    # The fingerprint travels in the job (Job has __slots__) into the signed header.
    job.kwargs = {"fingerprint": schedule.trigger_fingerprint().hex()}
    job.name = f"{schedule.kind}:{schedule.name}"[:200]
    job.misfire_grace_time = schedule.effective_misfire_grace
    job.coalesce = schedule.coalesce
    job.max_instances = max(1, schedule.max_instances)
    job.next_run_time = next_run_time.astimezone(UTC)
    return job


def store_next_run_times(values: list[tuple[int, datetime | None]]) -> None:
    """Write ``next_run_at`` of many schedules in one statement (bulk_update's CASE is slow)."""
    ops = connection.ops
    # Identifiers come from the model, quoted; values are parameters.
    sql = "UPDATE {} SET {} = %s WHERE {} = %s".format(  # noqa: S608
        ops.quote_name(Schedule._meta.db_table),
        ops.quote_name(Schedule._meta.get_field("next_run_at").column),
        ops.quote_name(Schedule._meta.pk.column),
    )
    params = [(ops.adapt_datetimefield_value(when), pk) for pk, when in values]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(sql, params)


def _job_func() -> Any:
    from .runner import fire

    return fire


class JobSync:
    """Keeps the job store in step with the schedule rows (used by the scheduler process)."""

    def __init__(self, scheduler: Any, store: SignedDjangoJobStore) -> None:
        self.scheduler = scheduler
        self.store = store
        self.high_water: datetime | None = None
        self.deletions_high_water: datetime | None = None
        # pk -> updated_at already applied, so rows re-read inside the margin are no-ops.
        self.applied: dict[int, datetime] = {}
        self._lock = threading.RLock()

    def _jobstore_lock(self) -> Any:
        # Writes must not interleave with APScheduler's read-modify-write of a due job.
        return getattr(self.scheduler, "_jobstores_lock", self._lock)

    def _queryset(self) -> Any:
        # A schedule with upstreams is driven by them (trigger=dependency), not by a job.
        upstreams = Schedule.depends_on.through.objects.filter(from_schedule=OuterRef("pk"))
        # No ordering: it would make SQLite scan the name index instead of using updated_at's.
        return (
            Schedule.objects.select_related("tenant")
            .annotate(has_upstreams=Exists(upstreams))
            .order_by()
        )

    def _plan(
        self, schedules: list[Schedule], headers: dict[str, bytes | None], now: datetime
    ) -> tuple[list[Job], list[str], list[Schedule], SyncResult]:
        result = SyncResult()
        jobs: list[Job] = []
        remove: list[str] = []
        touched: list[Schedule] = []
        for schedule in schedules:
            job_id = schedule.job_id
            if not schedule.enabled or getattr(schedule, "has_upstreams", False):
                if job_id in headers:
                    remove.append(job_id)
                schedule.next_run_at = None
                touched.append(schedule)
                continue
            fingerprint = schedule.trigger_fingerprint()
            if headers.get(job_id) == fingerprint:
                result.unchanged += 1
                continue
            try:
                job = make_job(self.scheduler, schedule, now)
            except (InvalidTrigger, ValueError) as exc:
                result.errors[schedule.pk] = str(exc)
                logger.error("Schedule %s has an unusable trigger: %s", schedule.pk, exc)
                job = None
            if job is None:
                if job_id in headers:
                    remove.append(job_id)
                schedule.next_run_at = None
            else:
                jobs.append(job)
                schedule.next_run_at = job.next_run_time
            touched.append(schedule)
        return jobs, remove, touched, result

    def _apply(
        self, jobs: list[Job], remove: list[str], touched: list[Schedule], result: SyncResult
    ) -> SyncResult:
        if not (jobs or remove or touched):
            return result
        with self._jobstore_lock():
            result.written = self.store.write_jobs(jobs)
            result.removed = self.store.delete_jobs(remove)
            if touched:
                store_next_run_times([(s.pk, s.next_run_at) for s in touched])
        if (jobs or remove) and self.scheduler.running:
            self.scheduler.wakeup()
        return result

    def full(self, now: datetime | None = None) -> SyncResult:
        """Reconcile every schedule row with the job store."""
        now = now or timezone.now()
        with self._lock:
            started = timezone.now()
            schedules = list(self._queryset())
            headers = self.store.read_headers()
            jobs, remove, touched, result = self._plan(schedules, headers, now)
            known = {s.job_id for s in schedules}
            remove.extend(job_id for job_id in headers if job_id not in known)
            self._apply(jobs, remove, touched, result)
            self.applied = {s.pk: s.updated_at for s in schedules}
            newest = max((s.updated_at for s in schedules), default=None)
            self.high_water = max(filter(None, [self.high_water, newest]), default=started)
            self.deletions_high_water = (
                ScheduleDeletion.objects.aggregate(m=Max("deleted_at"))["m"] or started
            )
            # Tombstones are only needed until every scheduler has seen them.
            ScheduleDeletion.objects.filter(deleted_at__lt=started - timedelta(days=1)).delete()
        if result.changed:
            logger.info(
                "Full sync: %d written, %d removed, %d unchanged.",
                result.written,
                result.removed,
                result.unchanged,
            )
        return result

    def incremental(self, now: datetime | None = None) -> SyncResult:
        """Apply the schedule changes and deletions since the last pass."""
        if self.high_water is None:
            return self.full(now)
        now = now or timezone.now()
        with self._lock:
            started = timezone.now()
            rows = list(self._queryset().filter(updated_at__gt=self.high_water - MARGIN))
            changed = [s for s in rows if self.applied.get(s.pk) != s.updated_at]
            tombstones = list(
                ScheduleDeletion.objects.filter(
                    deleted_at__gt=self.deletions_high_water - MARGIN
                ).values_list("schedule_id", "deleted_at")
            )
            deleted_ids = [f"{JOB_PREFIX}{pk}" for pk, _at in tombstones]
            result = SyncResult()
            if changed or deleted_ids:
                headers = self.store.read_headers([s.job_id for s in changed] + deleted_ids)
                jobs, remove, touched, result = self._plan(changed, headers, now)
                live = {s.job_id for s in rows}
                remove.extend(j for j in deleted_ids if j in headers and j not in live)
                self._apply(jobs, remove, touched, result)
                for schedule in changed:
                    self.applied[schedule.pk] = schedule.updated_at
                for pk, _at in tombstones:
                    self.applied.pop(pk, None)
            # Everything stamped before this pass started has been read (up to the margin):
            # moving on keeps a burst of old changes from being re-read every pass.
            newest = max((s.updated_at for s in rows), default=self.high_water)
            self.high_water = max(self.high_water, newest, started)
            self.deletions_high_water = max(
                self.deletions_high_water, started, *(at for _pk, at in tombstones)
            )
        if result.changed:
            logger.info("Sync: %d written, %d removed.", result.written, result.removed)
        return result

    def rebuild(self, pk: int, next_run_time: datetime | None = None) -> Job | None:
        """Rebuild and store the job of schedule ``pk`` (its stored state was unusable)."""
        schedule = self._queryset().filter(pk=pk, enabled=True).first()
        if schedule is None:
            self.store.delete_jobs([f"{JOB_PREFIX}{pk}"])
            return None
        job = make_job(self.scheduler, schedule, next_run_time=next_run_time)
        if job is None:
            self.store.delete_jobs([schedule.job_id])
            return None
        self.store.write_jobs([job])
        job._scheduler = self.scheduler
        job._jobstore_alias = "default"
        return job
