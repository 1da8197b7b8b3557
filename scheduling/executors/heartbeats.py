"""Worker heartbeats: each worker process of a queue (a Celery worker, a task framework worker)
renews a ``SchedulerLease`` row while it lives.

The leader reads them to tell lost workers from busy ones: ``running`` executions whose
worker's heartbeat expired are interrupted (and retried per policy); those of live workers
are left alone.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import logging
import os
import threading
import time
from datetime import datetime, timedelta
from typing import Any

from django.db import DatabaseError, close_old_connections, connection
from django.utils import timezone

from .. import runner
from ..conf import conf
from ..models import ACTIVE_STATUSES, Execution, SchedulerLease, Status

# A finished handler's final status and outcome values (result, error, traceback).
Outcome = tuple[str, dict[str, Any]]

logger = logging.getLogger("scheduling.executors")


WORKER_LEASE_PREFIX = "worker:"


def worker_lease_name(worker: str) -> str:
    """Return the name of the heartbeat row of ``worker`` (``host:pid``)."""
    name = f"{WORKER_LEASE_PREFIX}{worker}"
    max_length = SchedulerLease._meta.get_field("name").max_length or len(name)
    if len(name) > max_length:
        digest = hashlib.sha256(worker.encode()).hexdigest()
        name = f"{WORKER_LEASE_PREFIX}{digest}"[:max_length]
    return name


def live_workers(now: datetime | None = None) -> dict[str, datetime | None]:
    """Return ``{heartbeat row name: expiry}`` of the workers whose heartbeat is current."""
    now = now or timezone.now()
    return dict(
        SchedulerLease.objects.filter(
            name__startswith=WORKER_LEASE_PREFIX, expires_at__gt=now
        ).values_list("name", "expires_at")
    )


# What an execution of a lost worker records, unless the executor says otherwise.
LOST_WORKER = "The Celery worker running this execution stopped (its heartbeat expired)."


def reap_lost_workers(now: datetime | None = None, *, reason: str = LOST_WORKER) -> int:
    """Interrupt ``running`` executions whose worker's heartbeat expired, with ``reason``.

    Executions without a heartbeat row are not a queue worker's (the thread and process
    executors' own watchdogs look after them); those of live workers are left to finish.
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
    count = runner.interrupt(executions, reason)
    if count:
        logger.warning("Interrupted %d execution(s) of lost workers: %s", count, reason)
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
        # (reason, the outcome if the handler finished). While they wait here the heartbeat
        # goes on, so the leader leaves them alone.
        self._unsettled: dict[int, tuple[str, Outcome | None]] = {}

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

    def settle_later(self, execution_id: int, reason: str, outcome: Outcome | None = None) -> None:
        """Record an execution of this process as soon as the database lets us: with its
        ``outcome`` (status, values) when the handler finished, else ``interrupted``."""
        with self._lock:
            self._unsettled[execution_id] = (reason, outcome)
        self._settle()

    def _settle(self) -> None:
        with self._lock:
            waiting = list(self._unsettled.items())
        for execution_id, (reason, outcome) in waiting:
            try:
                rows = Execution.objects.select_related("schedule").filter(
                    pk=execution_id, status=Status.RUNNING, worker=self.worker
                )
                if outcome is None:
                    runner.interrupt(rows, reason)
                elif (execution := rows.first()) is not None:
                    status, values = outcome
                    runner.DIRECT.finish(execution, status, **values)
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


def run_in_worker(
    execution_id: int, *, timeout: float | None, timeout_detail: str
) -> Execution | None:
    """Run one execution in this queue worker process and record its outcome.

    The body of the ``celery`` and ``django_tasks`` executors' tasks. Idempotent:
    ``runner.execute`` starts the execution only if it is still ``queued``, so a second
    delivery runs nothing. The process keeps a heartbeat row while it lives: if it dies
    mid-run, the leader marks the execution ``interrupted``. A watchdog records ``timed_out``
    at ``timeout`` (``timeout_detail`` says what happens to the handler). A database error
    propagates once the execution is handed to the heartbeat thread to be marked
    ``interrupted`` when the database is back.
    """
    close_old_connections()
    heartbeat.ensure()
    _stop_heartbeat_at_exit()
    execution = runner.load(execution_id)
    if execution is not None:
        # The scheduler claims occurrences a moment ahead (CLAIM_AHEAD): start each at its
        # time (a queue that cannot defer may hand it over that early).
        early = (execution.scheduled_for - timezone.now()).total_seconds()
        if early > 0:  # a due one starts at once: sleep(0) would yield the CPU under load
            time.sleep(min(early, conf.CLAIM_AHEAD))
    watchdog = None
    if timeout:
        watchdog = threading.Timer(timeout, _time_out, args=(execution_id, timeout_detail))
        watchdog.daemon = True
        watchdog.start()
    try:
        return runner.execute(execution_id, worker=heartbeat.worker, execution=execution)
    except DatabaseError as exc:
        logger.error("Database error while running execution %s: %s", execution_id, exc)
        connection.close()
        # The handler's outcome, if it finished, is written when the database is back.
        outcome = (exc.status, exc.outcome) if isinstance(exc, runner.OutcomeNotRecorded) else None
        heartbeat.settle_later(
            execution_id,
            f"The database was unavailable while recording the outcome: {exc}",
            outcome,
        )
        raise  # the task fails; a copy of it runs the execution only if it is still queued
    finally:
        if watchdog is not None:
            watchdog.cancel()
        close_old_connections()


def _time_out(execution_id: int, detail: str) -> None:
    try:
        runner.time_out(execution_id, detail=detail)
    except DatabaseError as exc:
        logger.error("Could not mark execution %s timed out: %s", execution_id, exc)
    finally:
        connection.close()


_exit_hook = threading.Lock()
_exit_hook_pids: set[int] = set()


def _stop_heartbeat_at_exit() -> None:
    """Let this process's heartbeat row expire when it exits cleanly (a SIGTERM'd worker)."""
    with _exit_hook:
        if os.getpid() in _exit_hook_pids:
            return
        _exit_hook_pids.add(os.getpid())
    atexit.register(_stop_heartbeat)


def _stop_heartbeat() -> None:
    with contextlib.suppress(DatabaseError):  # the row expires by itself
        heartbeat.stop()
