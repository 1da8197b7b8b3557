"""Reconcile schedule rows into the job store: a full pass and an incremental one.

A job's state carries a fingerprint of the schedule fields that shape it. A job whose
fingerprint still matches is left alone, so its stored ``next_run_time`` survives restarts and
the occurrences missed while the scheduler was down are still offered (and recorded per the
misfire policy). Everything else is written in bulk, in one transaction with the schedules'
``next_run_at``, and the scheduler is woken. Rows are read as plain values (``ScheduleRow``),
not model instances. The full pass walks the table in chunks of primary keys, each read,
compared and written on its own: its memory does not grow with the number of schedules, and
the scheduler's loop fires between chunks.

The incremental pass reads the rows whose ``updated_at`` moved past a high-water mark (minus a
margin that covers transactions committing out of order) and the deletion tombstones, so it
runs a constant number of queries whatever the number of schedules.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from apscheduler.job import Job
from django.db import connection
from django.db.models import Field, Max, Model, Q
from django.utils import timezone

from .. import sql
from ..exceptions import InvalidTrigger
from ..models import Schedule, ScheduleDeletion
from ..runner import datetime_reader
from .jobs import JOB_PREFIX, ScheduleRow, make_job, schedule_pk
from .jobstore import HEADER_SLICE, SignedDjangoJobStore, store_next_run_times

logger = logging.getLogger("scheduling.sync")

# Transactions may commit a little after the updated_at they stamped; re-read that window.
MARGIN = timedelta(seconds=5)
# Schedules per chunk of the full sync: read, compared and written together.
FULL_SYNC_CHUNK = 5000


@dataclass
class SyncResult:
    written: int = 0
    removed: int = 0
    unchanged: int = 0
    errors: dict[int, str] = field(default_factory=dict)

    @property
    def changed(self) -> int:
        return self.written + self.removed

    def merge(self, other: SyncResult) -> None:
        self.written += other.written
        self.removed += other.removed
        self.unchanged += other.unchanged
        self.errors.update(other.errors)


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for a bounded bulk step.

    A full sync allocates some ten objects per schedule and keeps all of them until it ends:
    the collector would walk them several times over for nothing (a tenth of a full sync of
    10,000 schedules). It runs as usual once the step is over.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _can_pipeline() -> bool:
    """Whether a full sync writes its chunks on a thread and connection of their own.

    On PostgreSQL (through psycopg 3), where a chunk is a few statements (``COPY`` and one
    statement each for the jobs and ``next_run_at``), during which the writer's thread does
    not hold the interpreter's lock. Not on SQLite: a statement per row takes the lock back
    for every row, and the two threads then took turns (a cold sync of 100,000 schedules
    took 9.9 s instead of 8.0 s). Not inside a transaction either: its rows would be
    invisible to another connection (tests, or a caller that syncs in its own transaction).
    """
    return sql.copies() and not connection.in_atomic_block


class ChunkWriter:
    """Writes a full sync's chunks one at a time on a thread (and connection) of its own.

    While the database writes one chunk (psycopg releases the interpreter's lock meanwhile),
    the sync reads and plans the next one: with two cores, the sync lasts about
    as long as the longer of the two rather than their sum. At most one chunk is in flight;
    a chunk's error is raised by the next ``write`` or when the block ends, and the sync
    stops there, as it would writing in line. Every write is over when the block ends, and
    the thread's connection is closed.

    Not ``pipelined``: each chunk is written in line, on the caller's connection.
    """

    def __init__(self, apply: Callable[..., SyncResult], *, pipelined: bool) -> None:
        self.apply = apply
        self.results: list[SyncResult] = []
        self._pool = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="scheduling-sync-writer")
            if pipelined
            else None
        )
        self._pending: Future[SyncResult] | None = None

    def write(self, *args: Any) -> None:
        self._wait()
        if self._pool is None:
            self.results.append(self.apply(*args))
        else:
            self._pending = self._pool.submit(self.apply, *args)

    def _wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            self.results.append(pending.result())

    def __enter__(self) -> ChunkWriter:
        return self

    def __exit__(self, exc_type: Any, *exc_info: Any) -> None:
        if self._pool is None:
            return
        try:
            if exc_type is None:
                self._wait()
            else:
                # Already failing: the write in flight ends (or fails) before the sync does.
                with contextlib.suppress(Exception):
                    self._wait()
        finally:
            # Looked up on the writer's thread: that thread's connection is closed.
            self._pool.submit(lambda: connection.close()).result()
            self._pool.shutdown()


class JobSync:
    """Keeps the job store in step with the schedule rows (used by the scheduler process)."""

    def __init__(
        self,
        scheduler: Any,
        store: SignedDjangoJobStore,
        between_chunks: Callable[[], None] | None = None,
    ) -> None:
        self.scheduler = scheduler
        self.store = store
        # Called after each chunk of a full sync: a full sync of a million schedules lasts
        # minutes, longer than the scheduler's lease (the service renews it there, and an
        # exception it raises ends the sync).
        self.between_chunks = between_chunks
        self.high_water: datetime | None = None
        self.deletions_high_water: datetime | None = None
        # pk -> updated_at already applied, so rows re-read inside the margin are no-ops.
        self.applied: dict[int, datetime] = {}
        self._lock = threading.RLock()

    def _jobstore_lock(self) -> Any:
        # Writes must not interleave with APScheduler's read-modify-write of a due job.
        return getattr(self.scheduler, "_jobstores_lock", self._lock)

    def _plan(
        self, schedules: list[ScheduleRow], headers: dict[str, bytes | None], now: datetime
    ) -> tuple[list[Job], list[str], list[tuple[int, datetime | None]], SyncResult]:
        """Return the jobs to write, the job ids to remove, the schedules' new next_run_at."""
        result = SyncResult()
        jobs: list[Job] = []
        remove: list[str] = []
        next_runs: list[tuple[int, datetime | None]] = []
        for schedule in schedules:
            job_id = schedule.job_id
            if not schedule.enabled or schedule.has_upstreams:
                if job_id in headers:
                    remove.append(job_id)
                next_runs.append((schedule.pk, None))
                continue
            fingerprint = schedule.trigger_fingerprint()
            if headers.get(job_id) == fingerprint:
                result.unchanged += 1
                continue
            try:
                job = make_job(self.scheduler, schedule, now, fingerprint=fingerprint)
            except (InvalidTrigger, ValueError) as exc:
                result.errors[schedule.pk] = str(exc)
                logger.error("Schedule %s has an unusable trigger: %s", schedule.pk, exc)
                job = None
            if job is None:
                if job_id in headers:
                    remove.append(job_id)
                next_runs.append((schedule.pk, None))
            else:
                jobs.append(job)
                next_runs.append((schedule.pk, job.next_run_time))
        return jobs, remove, next_runs, result

    def _apply(
        self,
        jobs: list[Job],
        remove: list[str],
        next_runs: list[tuple[int, datetime | None]],
        result: SyncResult,
        signed: list[tuple[str, Any, bytes]] | None = None,
    ) -> SyncResult:
        if not (jobs or remove or next_runs):
            return result
        with self._jobstore_lock():
            # The jobs and their schedules' next_run_at change together or not at all.
            result.written, result.removed = self.store.replace_jobs(
                jobs,
                remove,
                then=lambda: store_next_run_times(next_runs, bulk=True) if next_runs else None,
                signed=signed,
            )
        if (jobs or remove) and self.scheduler.running:
            self.scheduler.wakeup()
        return result

    def full(self, now: datetime | None = None) -> SyncResult:
        """Reconcile every schedule row with the job store, ``FULL_SYNC_CHUNK`` rows at a time.

        Each chunk (a page of primary keys) is read, compared with its jobs and written in a
        transaction of its own, so memory does not grow with the table and the scheduler's
        loop fires between chunks. Then the jobs whose schedule is gone are removed.
        """
        now = now or timezone.now()
        result = SyncResult()
        with self._lock:
            started = timezone.now()
            newest: datetime | None = None
            # Only rows the next incremental pass may read again (inside its margin) matter.
            recent: dict[int, datetime] = {}
            after = 0
            kept = 0  # jobs of the schedules read so far, after their chunk was written
            with ChunkWriter(self._apply, pipelined=_can_pipeline()) as writer:
                while True:
                    with collector_paused():
                        schedules = ScheduleRow.load(after_pk=after, limit=FULL_SYNC_CHUNK)
                        if not schedules:
                            break
                        headers = self._chunk_headers(after, schedules)
                        jobs, remove, next_runs, part = self._plan(schedules, headers, now)
                        # Signed here: the writer's thread only waits for the database.
                        signed = self.store.signed_rows(jobs)
                        writer.write(jobs, remove, next_runs, part, signed)
                    if self.between_chunks is not None:
                        self.between_chunks()
                    kept += len(headers) - len(remove)
                    kept += len([j for j in jobs if j.id not in headers])
                    after = schedules[-1].pk
                    for schedule in schedules:
                        if newest is None or schedule.updated_at > newest:
                            newest = schedule.updated_at
                        if schedule.updated_at > started - MARGIN:
                            recent[schedule.pk] = schedule.updated_at
                    if len(schedules) < FULL_SYNC_CHUNK:
                        break
            for part in writer.results:
                result.merge(part)
            if self.store.count_schedule_jobs() > kept:
                # Jobs whose schedule is gone (no tombstone told us): find them.
                result.removed += self._remove_orphans()
            self.applied = recent
            # Everything stamped before the pass started has been read (up to the margin):
            # rows of one bulk import, sharing one old stamp, are not read again.
            self.high_water = max(filter(None, [self.high_water, newest, started]))
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

    def _chunk_headers(self, after: int, schedules: list[ScheduleRow]) -> dict[str, bytes | None]:
        """The job headers of a chunk of schedules: those with ``after < pk <= last``."""
        headers = self.store.read_headers(pks=(after, schedules[-1].pk))
        # Not a job of a schedule committed inside the range since the chunk was read: its
        # row was not planned (it counts as kept, or not, with its own chunk's next pass).
        ids = {schedule.job_id for schedule in schedules}
        return {job_id: value for job_id, value in headers.items() if job_id in ids}

    def _remove_orphans(self) -> int:
        """Remove the jobs whose schedule no longer exists, a page of job ids at a time."""
        removed = 0
        after = ""
        while True:
            job_ids = self.store.schedule_job_ids(after=after, limit=FULL_SYNC_CHUNK)
            if not job_ids:
                return removed
            after = job_ids[-1]
            pks = {job_id: schedule_pk(job_id) for job_id in job_ids}
            existing = set(
                Schedule.objects.filter(
                    pk__in=[pk for pk in pks.values() if pk is not None]
                ).values_list("pk", flat=True)
            )
            orphans = [job_id for job_id, pk in pks.items() if pk not in existing]
            if orphans:
                with self._jobstore_lock():
                    removed += self.store.delete_jobs(orphans)
            if self.between_chunks is not None:
                self.between_chunks()
            if len(job_ids) < FULL_SYNC_CHUNK:
                return removed

    def incremental(self, now: datetime | None = None) -> SyncResult:
        """Apply the schedule changes and deletions since the last pass."""
        high_water, deletions_high_water = self.high_water, self.deletions_high_water
        if high_water is None or deletions_high_water is None:
            return self.full(now)
        now = now or timezone.now()
        with self._lock:
            started = timezone.now()
            # Plain SQL first: most passes (on SQLite one per commit, mostly of executions)
            # find nothing new, and compiling the ORM's queries was nine tenths of them.
            stamps = _select_stamps(Schedule, "updated_at", high_water - MARGIN)
            tombstones = _select_stamps(
                ScheduleDeletion, "deleted_at", deletions_high_water - MARGIN, key="schedule_id"
            )
            changed_pks = [pk for pk, at in stamps if self.applied.get(pk) != at]
            changed: list[ScheduleRow] = []
            if len(changed_pks) > HEADER_SLICE:
                window = ScheduleRow.load(Q(updated_at__gt=high_water - MARGIN))
                changed = [s for s in window if self.applied.get(s.pk) != s.updated_at]
            elif changed_pks:
                changed = ScheduleRow.load(Q(pk__in=changed_pks))
            deleted_ids = [f"{JOB_PREFIX}{pk}" for pk, _at in tombstones]
            result = SyncResult()
            if changed or deleted_ids:
                headers = self.store.read_headers([s.job_id for s in changed] + deleted_ids)
                jobs, remove, next_runs, result = self._plan(changed, headers, now)
                live = {f"{JOB_PREFIX}{pk}" for pk, _at in stamps} | {s.job_id for s in changed}
                remove.extend(j for j in deleted_ids if j in headers and j not in live)
                self._apply(jobs, remove, next_runs, result)
                for schedule in changed:
                    self.applied[schedule.pk] = schedule.updated_at
                for pk, _at in tombstones:
                    self.applied.pop(pk, None)
            # Everything stamped before this pass started has been read (up to the margin):
            # moving on keeps a burst of old changes from being re-read every pass.
            newest = max(
                [at for _pk, at in stamps] + [s.updated_at for s in changed], default=high_water
            )
            self.high_water = max(high_water, newest, started)
            self.deletions_high_water = max(
                deletions_high_water, started, *(at for _pk, at in tombstones)
            )
            if self.applied and self.high_water > high_water:
                # Rows stamped before the margin are not read again: forget them.
                oldest = self.high_water - MARGIN
                self.applied = {pk: at for pk, at in self.applied.items() if at > oldest}
        if result.changed:
            logger.info("Sync: %d written, %d removed.", result.written, result.removed)
        return result

    def rebuild(self, pk: int, next_run_time: datetime | None = None) -> Job | None:
        """Rebuild and store the job of schedule ``pk`` (its stored state was unusable)."""
        schedule = next(iter(ScheduleRow.load(Q(pk=pk, enabled=True))), None)
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


def _select_stamps(
    model: type[Model], column: str, after: datetime, *, key: str = "id"
) -> list[tuple[int, datetime]]:
    """Return ``(key, stamp)`` of the rows of ``model`` whose ``column`` is after ``after``.

    Plain SQL on the model's quoted identifiers; the stamps are converted as the ORM would
    (SQLite returns text).
    """
    meta = model._meta
    quote = connection.ops.quote_name
    key_column, stamp_column = (
        quote(cast("str", cast("Field[Any, Any]", meta.get_field(name)).column))
        for name in (key, column)
    )
    table = quote(meta.db_table)
    sql = f"SELECT {key_column}, {stamp_column} FROM {table} WHERE {stamp_column} > %s"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, [connection.ops.adapt_datetimefield_value(after)])
        read = datetime_reader()
        return [(pk, read(at)) for pk, at in cursor.fetchall()]
