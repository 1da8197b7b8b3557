"""Run executions on Celery workers (Redis broker): the ``celery`` executor.

The leader claims an occurrence as always (the ``Execution`` insert) and, once the claim is
committed, publishes the execution id to Celery from a publisher thread (the leader's loop
never waits for the broker), then marks the row ``claimed_by = celery:<leader>``. A worker's
task runs it through ``runner.execute``, the code path of the thread executor: ``running``,
then the outcome, retries, alerts and dependents.

Nothing here is a second source of truth: the execution row is. That makes delivery simple:

- The task is idempotent. ``mark_started`` only moves a ``queued`` row to ``running``, so a
  message delivered twice (a re-publish, a redelivery after a lost worker) runs the handler
  once; later copies find the row taken and do nothing.
- Timeouts: a watchdog in the worker records ``timed_out`` at the schedule's timeout (as the
  thread executor's does); Celery's soft time limit, a second later, interrupts the handler;
  its hard time limit, ``SCHEDULING_CELERY_HARD_TIMEOUT_GRACE`` later, kills the worker child.
- Lost workers: every worker process renews a heartbeat (a ``SchedulerLease`` row named
  ``worker:<host>:<pid>``) while it lives. The leader interrupts ``running`` executions whose
  worker's heartbeat expired, so a ``kill -9`` never leaves one ``running`` forever, and the
  retry policy applies. Executions of live workers are never touched.
- A leader that dies: its successor publishes again the queued executions it had claimed but
  not marked as published; the marked ones are in the queue already.
- Lost messages (a worker killed with prefetched messages, a broker restarted without
  persistence): the leader re-publishes executions still ``queued`` after
  ``SCHEDULING_CELERY_REQUEUE_AFTER`` seconds; idempotence makes that safe.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections import deque
from datetime import datetime, timedelta

from django.db import DatabaseError, close_old_connections, connection, transaction
from django.utils import timezone

from ... import runner
from ...conf import conf
from ...models import ACTIVE_STATUSES, Execution, Kind, SchedulerLease, Status
from ...scheduler.outage import OutageLog

logger = logging.getLogger("scheduling.executors.celery")

TASK_NAME = "scheduling.execute"
WORKER_LEASE_PREFIX = "worker:"
# Celery's soft time limit comes this long after the watchdog recorded ``timed_out``, so the
# handler is interrupted only once the outcome is settled.
SOFT_LIMIT_DELAY = 1.0
# ``claimed_by`` of executions that a leader published to the broker: celery:<leader>.
PUBLISHED_PREFIX = "celery:"

publish_outage = OutageLog(logger)


def celery_kinds() -> list[str]:
    """Return the schedule kinds that run on Celery under the current settings."""
    overrides, default = conf.EXECUTOR_OVERRIDES, conf.EXECUTOR
    return [kind for kind in Kind.values if overrides.get(kind, default) == "celery"]


def worker_lease_name(worker: str) -> str:
    """Return the name of the heartbeat row of ``worker`` (``host:pid``)."""
    name = f"{WORKER_LEASE_PREFIX}{worker}"
    max_length = SchedulerLease._meta.get_field("name").max_length
    if len(name) > max_length:
        digest = hashlib.sha256(worker.encode()).hexdigest()
        name = f"{WORKER_LEASE_PREFIX}{digest}"[:max_length]
    return name


def time_limits(timeout: float) -> tuple[float, float]:
    """Return Celery's ``(soft_time_limit, time_limit)`` for a schedule's timeout."""
    return timeout + SOFT_LIMIT_DELAY, timeout + max(conf.CELERY_HARD_TIMEOUT_GRACE, 2.0)


# -- the scheduler's side ----------------------------------------------------------------------


class CeleryExecutor:
    """Publishes claimed executions to Celery and keeps an eye on what the workers do.

    Publishing happens on a thread of its own, so neither APScheduler's loop nor the leader's
    lease renewals ever wait for the broker. Once a batch is in the broker, its rows'
    ``claimed_by`` becomes ``celery:<leader>``: a successor then knows which executions of a
    dead leader are in the queue already and which it must publish again.
    """

    name = "celery"

    def __init__(self, *, claimed_by: str) -> None:
        self.claimed_by = claimed_by
        self.published_mark = f"{PUBLISHED_PREFIX}{claimed_by}"
        self._lock = threading.Lock()
        self._queue: deque[tuple[int, float]] = deque()  # (execution id, timeout) to publish
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Execution id -> (monotonic publish time, timeout); pruned by ``requeue_stale``.
        self._published: dict[int, tuple[float, float]] = {}

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name="scheduling-celery-publisher", daemon=True
        )
        self._thread.start()

    def shutdown(self, *, grace: float) -> list[int]:
        """Publish what is waiting for up to ``grace`` s; return the ids left unpublished."""
        deadline = time.monotonic() + grace
        while self.pending_ids() and time.monotonic() < deadline:
            time.sleep(0.05)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)
        return self.pending_ids()

    def submit(self, execution_id: int, *, timeout: float) -> None:
        """Publish ``execution_id`` once the transaction that claimed it commits."""
        transaction.on_commit(lambda: self._enqueue([(execution_id, timeout)]))

    def _enqueue(self, items: list[tuple[int, float]]) -> None:
        with self._lock:
            self._queue.extend(items)
        self._wake.set()

    def pending_ids(self) -> list[int]:
        """Ids that were claimed for Celery but have not reached the broker yet."""
        with self._lock:
            return [execution_id for execution_id, _timeout in self._queue]

    def _run(self) -> None:
        delay = 0.1
        while not self._stop.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            while not self._stop.is_set():
                with self._lock:
                    batch = [self._queue.popleft() for _ in range(min(len(self._queue), 500))]
                if not batch:
                    break
                published = self._publish_many(batch)
                self._mark_published([pk for pk, _timeout in batch[:published]])
                if published < len(batch):
                    with self._lock:
                        self._queue.extendleft(reversed(batch[published:]))
                    self._stop.wait(delay)  # the broker is down: back off
                    delay = min(delay * 2, 5.0)
                    break
                delay = 0.1

    def _publish_many(self, items: list[tuple[int, float]]) -> int:
        """Publish ``(execution id, timeout)`` pairs over one broker connection.

        Stops at the first failure; returns how many were published.
        """
        from ...tasks import execute

        published = 0
        try:
            with execute.app.producer_or_acquire() as producer:
                for execution_id, timeout in items:
                    soft, hard = time_limits(timeout)
                    execute.apply_async(
                        args=[execution_id],
                        kwargs={"timeout": timeout},
                        queue=conf.CELERY_QUEUE,
                        soft_time_limit=soft,
                        time_limit=hard,
                        producer=producer,
                        retry=True,
                        retry_policy={
                            "max_retries": 2,
                            "interval_start": 0.1,
                            "interval_step": 0.2,
                        },
                    )
                    now = time.monotonic()
                    with self._lock:
                        self._published[execution_id] = (now, timeout)
                    published += 1
        except Exception as exc:  # kombu raises its own and the transport's errors
            publish_outage.failed("publishing to the Celery broker", exc)
            return published
        publish_outage.ok()
        return published

    def _mark_published(self, ids: list[int]) -> None:
        if not ids:
            return
        try:
            Execution.objects.filter(
                pk__in=ids, status=Status.QUEUED, claimed_by=self.claimed_by
            ).update(claimed_by=self.published_mark)
        except DatabaseError as exc:
            # Unmarked, a successor would publish them again: harmless, a copy runs nothing.
            logger.warning("Could not mark %d published execution(s): %s", len(ids), exc)
            connection.close()

    def adopt(self, executions: list[Execution]) -> int:
        """Take over the queued Celery executions of a leader that stopped.

        Those it had published (marked ``celery:<leader>``) are in the queue: like our own,
        they are published again only if still queued ``CELERY_REQUEUE_AFTER`` s from now.
        The others may never have reached the broker: they are published now (a copy runs
        nothing twice). Returns how many go out now.
        """
        published = [e for e in executions if e.claimed_by.startswith(PUBLISHED_PREFIX)]
        unpublished = [e for e in executions if not e.claimed_by.startswith(PUBLISHED_PREFIX)]
        for rows, mark in ((published, self.published_mark), (unpublished, self.claimed_by)):
            ids = [e.pk for e in rows]
            for start in range(0, len(ids), 1000):
                Execution.objects.filter(
                    pk__in=ids[start : start + 1000], status=Status.QUEUED
                ).update(claimed_by=mark)
        now = time.monotonic()
        with self._lock:
            for execution in published:
                self._published[execution.pk] = (now, _timeout_of(execution))
        self._enqueue([(e.pk, _timeout_of(e)) for e in unpublished])
        return len(unpublished)

    def requeue_stale(self, *, now: float | None = None) -> int:
        """Publish again executions still ``queued`` ``CELERY_REQUEUE_AFTER`` s after publishing."""
        now = time.monotonic() if now is None else now
        cutoff = now - conf.CELERY_REQUEUE_AFTER
        with self._lock:
            old = {pk: v for pk, v in self._published.items() if v[0] <= cutoff}
            for pk in old:
                del self._published[pk]
        if not old:
            return 0
        ids = list(old)
        waiting: list[int] = []
        for start in range(0, len(ids), 1000):
            waiting += Execution.objects.filter(
                pk__in=ids[start : start + 1000], status=Status.QUEUED
            ).values_list("pk", flat=True)
        self._enqueue([(pk, old[pk][1]) for pk in waiting])
        if waiting:
            logger.warning(
                "Publishing again %d execution(s) still queued after %s s.",
                len(waiting),
                conf.CELERY_REQUEUE_AFTER,
            )
        return len(waiting)


def _timeout_of(execution: Execution) -> float:
    schedule = execution.schedule
    return schedule.effective_timeout if schedule else conf.DEFAULT_TIMEOUT


def live_workers(now: datetime | None = None) -> dict[str, datetime]:
    """Return ``{heartbeat row name: expiry}`` of the workers whose heartbeat is current."""
    now = now or timezone.now()
    return dict(
        SchedulerLease.objects.filter(
            name__startswith=WORKER_LEASE_PREFIX, expires_at__gt=now
        ).values_list("name", "expires_at")
    )


def reap_lost_workers(now: datetime | None = None) -> int:
    """Interrupt ``running`` executions whose Celery worker's heartbeat expired.

    Executions without a heartbeat row are not Celery's (the thread and process executors'
    own watchdogs look after them); those of live workers are left to finish.
    """
    now = now or timezone.now()
    running = dict(
        Execution.objects.filter(status=Status.RUNNING)
        .exclude(worker="")
        .values_list("pk", "worker")
    )
    if not running:
        return 0
    names = {pk: worker_lease_name(worker) for pk, worker in running.items()}
    expired = dict(
        SchedulerLease.objects.filter(
            name__in=set(names.values()), expires_at__lte=now
        ).values_list("name", "expires_at")
    )
    lost = [pk for pk, name in names.items() if name in expired]
    if not lost:
        return 0
    executions = Execution.objects.select_related("schedule").filter(
        pk__in=lost, status=Status.RUNNING
    )
    count = runner.interrupt(
        executions,
        "The Celery worker running this execution stopped (its heartbeat expired).",
    )
    if count:
        logger.warning("Interrupted %d execution(s) of lost Celery workers.", count)
    return count


def forget_dead_workers(now: datetime | None = None) -> int:
    """Delete heartbeat rows expired for a day that no active execution refers to."""
    now = now or timezone.now()
    dead = set(
        SchedulerLease.objects.filter(
            name__startswith=WORKER_LEASE_PREFIX, expires_at__lt=now - timedelta(days=1)
        ).values_list("name", flat=True)
    )
    if not dead:
        return 0
    busy = {
        worker_lease_name(w)
        for w in Execution.objects.filter(status__in=ACTIVE_STATUSES)
        .exclude(worker="")
        .values_list("worker", flat=True)
    }
    deleted, _ = SchedulerLease.objects.filter(name__in=dead - busy).delete()
    return deleted


# -- the worker's side -------------------------------------------------------------------------


class WorkerHeartbeat:
    """Keep this worker process's heartbeat row current from a daemon thread.

    Started lazily by the first task a process runs, and again after a fork (Celery's prefork
    pool forks its children from the main process), so each pool process beats for itself.
    """

    def __init__(self) -> None:
        self.pid: int | None = None
        self.worker = ""
        self.last_beat = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Executions this process ran but could not record (database down): execution id ->
        # reason. While they wait here the heartbeat goes on, so the leader leaves them alone.
        self._unsettled: dict[int, str] = {}

    def ensure(self) -> None:
        """Make sure this process beats and its row is current before it starts work."""
        with self._lock:
            if self.pid != os.getpid():
                self.pid = os.getpid()
                self.worker = runner.worker_id()
                self.last_beat = 0.0
                self._stop = threading.Event()
                self._unsettled = {}
                self._thread = threading.Thread(
                    target=self._run, args=(self._stop,), name="scheduling-heartbeat", daemon=True
                )
                self._thread.start()
        if time.monotonic() - self.last_beat > conf.CELERY_HEARTBEAT_TTL / 3:
            self.beat()

    def beat(self) -> None:
        """Renew this process's heartbeat row (create it on the first beat)."""
        started = time.monotonic()
        now = timezone.now()
        values = {
            "holder": self.worker,
            "renewed_at": now,
            "expires_at": now + timedelta(seconds=conf.CELERY_HEARTBEAT_TTL),
        }
        name = worker_lease_name(self.worker)
        if not SchedulerLease.objects.filter(name=name).update(**values):
            SchedulerLease.objects.update_or_create(
                name=name, defaults={**values, "acquired_at": now}
            )
        self.last_beat = started

    def settle_later(self, execution_id: int, reason: str) -> None:
        """Mark an execution of this process ``interrupted`` as soon as the database lets us."""
        with self._lock:
            self._unsettled[execution_id] = reason
        self._settle()

    def _settle(self) -> None:
        with self._lock:
            waiting = list(self._unsettled.items())
        for execution_id, reason in waiting:
            try:
                rows = Execution.objects.select_related("schedule").filter(
                    pk=execution_id, status=Status.RUNNING, worker=self.worker
                )
                runner.interrupt(rows, reason)
            except DatabaseError:
                connection.close()
                return
            with self._lock:
                self._unsettled.pop(execution_id, None)

    def _run(self, stop: threading.Event) -> None:
        while not stop.wait(conf.CELERY_HEARTBEAT_TTL / 3):
            try:
                self.beat()
            except DatabaseError as exc:
                # The row expires if this lasts; the leader then treats our work as lost.
                logger.warning("Worker heartbeat failed: %s", exc)
                connection.close()
                continue
            if self._unsettled:
                self._settle()

    def stop(self) -> None:
        """Stop beating and let the row expire now (a clean worker shutdown)."""
        self._stop.set()
        if self.pid != os.getpid():
            return
        self.pid = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        if self.worker:
            SchedulerLease.objects.filter(name=worker_lease_name(self.worker)).update(
                expires_at=timezone.now()
            )


heartbeat = WorkerHeartbeat()


def run_in_worker(execution_id: int, *, timeout: float | None = None) -> Execution | None:
    """Run one execution in this worker process (the body of the Celery task).

    A database error propagates (the task retries it) once an execution this process had
    started is handed to the heartbeat thread to be marked ``interrupted``.
    """
    close_old_connections()
    heartbeat.ensure()
    execution = runner.load(execution_id)
    if execution is not None:
        # The scheduler claims occurrences a moment ahead (CLAIM_AHEAD): start each at its time.
        early = (execution.scheduled_for - timezone.now()).total_seconds()
        time.sleep(max(0.0, min(early, conf.CLAIM_AHEAD)))
    watchdog = None
    if timeout:
        watchdog = threading.Timer(timeout, _time_out, args=(execution_id,))
        watchdog.daemon = True
        watchdog.start()
    try:
        return runner.execute(execution_id, worker=heartbeat.worker, execution=execution)
    except DatabaseError as exc:
        logger.error("Database error while running execution %s: %s", execution_id, exc)
        connection.close()
        heartbeat.settle_later(
            execution_id, f"The database was unavailable while recording the outcome: {exc}"
        )
        raise  # the task tries again; it runs the execution only if it is still queued
    finally:
        if watchdog is not None:
            watchdog.cancel()
        close_old_connections()


def _time_out(execution_id: int) -> None:
    try:
        runner.time_out(execution_id, detail="the Celery soft time limit interrupts the handler")
    except DatabaseError as exc:
        logger.error("Could not mark execution %s timed out: %s", execution_id, exc)
    finally:
        connection.close()
