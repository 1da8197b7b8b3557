"""The scheduler process behind ``runscheduler``.

1. Take the leader lease (``SchedulerLease``); standbys wait. A leader that cannot renew stops
   firing at once: every pass of APScheduler's loop checks the lease first (fencing).
2. Recover executions left active by a previous holder: they become ``interrupted``.
3. Full sync, then an incremental sync every ``SCHEDULING_SYNC_INTERVAL`` and a full one every
   ``SCHEDULING_FULL_SYNC_INTERVAL``; queued manual runs and due retries are picked up too.
4. On fire, ``dispatch.dispatch_many`` claims each occurrence and hands it to the executor.
5. SIGTERM/SIGINT: stop firing, let running executions finish within the grace period, mark
   the rest ``interrupted``, release the lease, exit 0.
6. Database errors never end the process: the connection is dropped, the step retried with
   back-off, and the outage logged once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections import defaultdict, deque
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.executors.base import BaseExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_PAUSED
from django.db import DatabaseError, IntegrityError, close_old_connections, connection
from django.db.models import Q
from django.utils import timezone

from .. import alerts, runner, signals
from ..conf import conf
from ..models import ACTIVE_STATUSES, Execution, Kind, Overlap, SchedulerLease, Status
from .dispatch import Due, dispatch_many
from .jobs import schedule_pk
from .jobstore import SignedDjangoJobStore
from .notify import ChangeListener, CommitWatch
from .outage import outage
from .recorder import Recorder
from .sync import JobSync

logger = logging.getLogger("scheduling.service")

# APScheduler's loop wakes at least this often, so its liveness is visible.
MAX_WAIT = 5.0
# How often the leader looks for schedules that did not run (alert rules).
ALERT_CHECK_INTERVAL = 30.0
# How often the leader looks after Celery: lost workers, unpublished and stale messages.
CELERY_CHECK_INTERVAL = 1.0


class Lease:
    """The leader lease of one scheduler group, held in a ``SchedulerLease`` row."""

    def __init__(self, *, name: str, holder: str, ttl: float) -> None:
        self.name = name
        self.holder = holder
        self.ttl = ttl
        # Monotonic deadline until which this process may act as leader. It is set from the
        # local clock *before* the renewal query, so it never outlives the row's expiry.
        self.valid_until = 0.0

    def valid(self) -> bool:
        return time.monotonic() < self.valid_until

    def acquire(self) -> bool:
        """Take the lease if it is free, expired or ours; return whether we hold it."""
        started = time.monotonic()
        now = timezone.now()
        with contextlib.suppress(IntegrityError):  # another replica created it just now
            SchedulerLease.objects.get_or_create(name=self.name)
        taken = (
            SchedulerLease.objects.filter(name=self.name)
            .filter(
                Q(holder=self.holder)
                | Q(holder="")
                | Q(expires_at__isnull=True)
                | Q(expires_at__lt=now)
            )
            .update(
                holder=self.holder,
                acquired_at=now,
                renewed_at=now,
                expires_at=now + timedelta(seconds=self.ttl),
            )
        )
        self.valid_until = started + self.ttl if taken else 0.0
        return bool(taken)

    def renew(self) -> bool:
        started = time.monotonic()
        now = timezone.now()
        renewed = SchedulerLease.objects.filter(name=self.name, holder=self.holder).update(
            renewed_at=now, expires_at=now + timedelta(seconds=self.ttl)
        )
        self.valid_until = started + self.ttl if renewed else 0.0
        return bool(renewed)

    def release(self) -> None:
        self.valid_until = 0.0
        SchedulerLease.objects.filter(name=self.name, holder=self.holder).update(
            holder="", expires_at=timezone.now()
        )


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
                        store.update_job(job)
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


class SchedulerService:
    """Run the scheduler: lease, sync loop, dispatch, graceful stop, recovery."""

    def __init__(
        self,
        *,
        max_seconds: float | None = None,
        sync_interval: float | None = None,
        full_sync_interval: float | None = None,
        lease_ttl: float | None = None,
        renew_interval: float | None = None,
        shutdown_grace: float | None = None,
        max_workers: int | None = None,
        lease_name: str | None = None,
        install_signal_handlers: bool = True,
    ) -> None:
        self.max_seconds = max_seconds
        self.sync_interval = sync_interval if sync_interval is not None else conf.SYNC_INTERVAL
        self.full_sync_interval = (
            full_sync_interval if full_sync_interval is not None else conf.FULL_SYNC_INTERVAL
        )
        ttl = lease_ttl if lease_ttl is not None else conf.LEASE_TTL
        self.renew_interval = (
            renew_interval
            if renew_interval is not None
            else min(conf.LEASE_RENEW_INTERVAL, ttl / 3)
        )
        self.shutdown_grace = shutdown_grace if shutdown_grace is not None else conf.SHUTDOWN_GRACE
        self.max_workers = max_workers or conf.MAX_WORKERS
        self.install_signal_handlers = install_signal_handlers
        self.identity = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.worker = runner.worker_id()
        self.lease = Lease(name=lease_name or conf.LEASE_NAME, holder=self.identity, ttl=ttl)
        self.stopping = threading.Event()
        # Set by stop() and, on PostgreSQL, by the change listener: the loop syncs at once.
        self.changed = threading.Event()
        self.listener: ChangeListener | None = None
        self.watch: CommitWatch | None = None
        self.exit_code = 0
        self.leader = False
        self.scheduler: FencedScheduler | None = None
        self.store: SignedDjangoJobStore | None = None
        self.sync: JobSync | None = None
        self.executor: Any = None
        self.celery: Any = None  # executors.celery.CeleryExecutor when a kind runs on Celery
        self.recorder: Recorder | None = None  # group commit of the thread executor's writes
        self._on_celery: set[int] = set()  # overlap=queue executions handed to Celery
        self._last_db_error = 0.0
        self._deferred: dict[int, deque[int]] = defaultdict(deque)
        self._by_execution: dict[int, int] = {}
        self._modes: dict[int, tuple[str, float | None, Execution | None]] = {}
        self._due: list[Due] = []
        self._deferred_lock = threading.Lock()
        self._restarts = 0

    # -- process lifecycle ------------------------------------------------------------------

    def stop(self, *_args: Any) -> None:
        """Ask the service to stop (signal-handler safe)."""
        self.stopping.set()
        self.changed.set()

    def _install_signals(self) -> None:
        if self.install_signal_handlers and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.stop)
            signal.signal(signal.SIGINT, self.stop)

    def run(self) -> int:
        """Run until stopped (or ``max_seconds``); return the process exit code."""
        self._install_signals()
        started = time.monotonic()
        logger.info("Scheduler %s starting.", self.identity)
        next_renew = next_sync = next_full = next_alerts = next_celery = 0.0
        backoff = 0.1
        if ChangeListener.available():
            self.listener = ChangeListener(self.changed, stopping=self.stopping)
            self.listener.start()
        elif CommitWatch.available():
            self.watch = CommitWatch()
        poll = self.watch.POLL if self.watch is not None else 0.5
        try:
            while not self.stopping.is_set():
                if self.max_seconds is not None and time.monotonic() - started >= self.max_seconds:
                    break
                now = time.monotonic()
                try:
                    if not self.leader:
                        if self.lease.acquire():
                            self._become_leader()
                            next_renew = now + self.renew_interval
                            next_sync = now + self.sync_interval
                            next_full = now + self.full_sync_interval
                        else:
                            outage.ok()
                            self.stopping.wait(min(1.0, self.renew_interval))
                            continue
                    if now >= next_renew:
                        if not self.lease.renew():
                            self._lose_leadership("the lease was taken over")
                            continue
                        next_renew = now + self.renew_interval
                    if now >= next_alerts:
                        alerts.check_did_not_run()
                        next_alerts = now + ALERT_CHECK_INTERVAL
                    if self.celery is not None and now >= next_celery:
                        self._tend_celery()
                        next_celery = now + CELERY_CHECK_INTERVAL
                    if now >= next_full:
                        self._full_sync()
                        next_full = now + self.full_sync_interval
                        next_sync = now + self.sync_interval
                    elif now >= next_sync:
                        self._incremental_sync()
                        next_sync = now + self.sync_interval
                    elif self.watch is not None and self.watch.committed():
                        # Between polls: cheap, and often about execution rows; the regular
                        # pass keeps recording the sync's health.
                        self._incremental_sync(record=False)
                    self._check_scheduler_alive()
                    outage.ok()
                    backoff = 0.1
                except DatabaseError as exc:
                    outage.failed("scheduler loop", exc)
                    self._last_db_error = time.monotonic()
                    connection.close()
                    if self.leader and not self.lease.valid():
                        self._lose_leadership("the lease expired during a database outage")
                    self.stopping.wait(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                wake = min(next_renew, next_sync, next_full) - time.monotonic()
                if self.changed.wait(max(0.01, min(wake, poll))):
                    # A change was notified: sync now instead of at the next interval.
                    self.changed.clear()
                    next_sync = time.monotonic()
        finally:
            self._shutdown()
        logger.info("Scheduler %s stopped (exit code %d).", self.identity, self.exit_code)
        return self.exit_code

    # -- leadership -------------------------------------------------------------------------

    def _become_leader(self) -> None:
        logger.info("Scheduler %s is the leader (lease %r).", self.identity, self.lease.name)
        self.leader = True
        self.celery = None
        if any(
            conf.EXECUTOR_OVERRIDES.get(kind, conf.EXECUTOR) == "celery" for kind in Kind.values
        ):
            from ..executors.celery import CeleryExecutor

            self.celery = CeleryExecutor(claimed_by=self.identity)
            self.celery.start()
        self._recover()
        self._start_scheduler()
        signals.leadership_changed.send(sender=type(self), holder=self.identity, leader=True)

    def _lose_leadership(self, reason: str) -> None:
        logger.error("Scheduler %s lost the lease (%s); it stops firing.", self.identity, reason)
        self.leader = False
        self.lease.valid_until = 0.0
        self._stop_scheduler()
        celery, self.celery = self.celery, None
        if celery is not None:
            celery.shutdown(grace=0)  # what it did not publish, the next leader does
        executor, self.executor = self.executor, None
        if executor is not None:
            # Queued work is the new leader's to recover; running threads finish on their own
            # and their conditional outcome writes lose to the new leader's interruption.
            executor.shutdown(grace=0)
        self._stop_recorder(timeout=1.0)
        signals.leadership_changed.send(sender=type(self), holder=self.identity, leader=False)

    def _recover(self) -> None:
        """Interrupt what a previous holder left active; it cannot finish it any more.

        Celery's share is not the previous holder's to lose: its queued executions are
        published again (a worker runs each once), and its running ones are left to their
        workers, whose heartbeats decide (``executors.celery.reap_lost_workers``).
        """
        orphans = list(
            Execution.objects.select_related("schedule")
            .filter(status__in=ACTIVE_STATUSES)
            .exclude(claimed_by="")
            .exclude(claimed_by=self.identity)
        )
        if orphans and self.celery is not None:
            orphans = self._recover_celery(orphans)
        if orphans:
            count = runner.interrupt(
                orphans, "The scheduler that owned this execution stopped before it finished."
            )
            logger.warning("Recovered %d execution(s) left active by a previous scheduler.", count)

    def _recover_celery(self, orphans: list[Execution]) -> list[Execution]:
        """Take over the Celery executions among ``orphans``; return the others."""
        from ..executors.celery import WORKER_LEASE_PREFIX, celery_kinds, worker_lease_name

        kinds = set(celery_kinds())
        beating = set(
            SchedulerLease.objects.filter(name__startswith=WORKER_LEASE_PREFIX).values_list(
                "name", flat=True
            )
        )
        queued = [e for e in orphans if e.status == Status.QUEUED and e.schedule_kind in kinds]
        taken = set(
            Execution.objects.filter(
                pk__in=[e.pk for e in queued], status=Status.QUEUED
            ).values_list("pk", flat=True)
        )
        if taken:
            republished = self.celery.adopt([e for e in queued if e.pk in taken])
            logger.warning(
                "Took over %d queued Celery execution(s); %d of them are published again.",
                len(taken),
                republished,
            )
        return [
            e
            for e in orphans
            if e not in queued
            and not (e.status == Status.RUNNING and worker_lease_name(e.worker) in beating)
        ]

    def _tend_celery(self) -> None:
        """Interrupt lost workers' executions; publish what the broker missed; free queues."""
        from ..executors import celery as celery_executor

        self.celery.requeue_stale()
        # Right after a database outage, workers' heartbeats are stale because they could
        # not write either: give them one heartbeat period to catch up before judging them.
        if time.monotonic() - self._last_db_error > conf.CELERY_HEARTBEAT_TTL:
            celery_executor.reap_lost_workers()
        if self._on_celery:
            done = set(
                Execution.objects.filter(pk__in=list(self._on_celery))
                .exclude(status__in=ACTIVE_STATUSES)
                .values_list("pk", flat=True)
            )
            for execution_id in done:
                self._on_celery.discard(execution_id)
                self._release_deferred(execution_id)

    def _start_scheduler(self) -> None:
        from ..executors.thread import ThreadExecutor

        self.executor = ThreadExecutor(
            max_workers=self.max_workers,
            run=self._execute,
            on_timeout=runner.time_out,
            on_done=self._release_deferred,
        )
        self.executor.start()
        if self.recorder is None:
            self.recorder = Recorder(may_start=self.lease.valid, busy=self._executor_busy)
            self.recorder.begin()
        self.scheduler = FencedScheduler(
            fence=self.lease.valid, claim_ahead=conf.CLAIM_AHEAD, timezone="UTC"
        )
        self.store = SignedDjangoJobStore(
            rebuild=self._rebuild, keep_trying=lambda: not self.stopping.is_set()
        )
        self.store.before_flush = self._flush_due
        self._due = []
        self.scheduler.add_jobstore(self.store, "default")
        self.scheduler.add_executor(DispatchExecutor(self), "default")
        self.sync = JobSync(self.scheduler, self.store)
        self._full_sync()
        self.scheduler.start()

    def _executor_busy(self) -> bool:
        executor = self.executor
        return executor is not None and executor.queued > 0

    def _stop_recorder(self, timeout: float) -> None:
        recorder, self.recorder = self.recorder, None
        if recorder is not None:
            recorder.stop(timeout=timeout)

    def _rebuild(self, pk: int, next_run_time: Any) -> Any:
        return self.sync.rebuild(pk, next_run_time) if self.sync else None

    def _stop_scheduler(self) -> None:
        if self.scheduler is not None and self.scheduler.running:
            try:
                self.scheduler.shutdown(wait=False)
            except Exception:
                logger.exception("Error while stopping the scheduler loop.")
        self.scheduler = None

    def _check_scheduler_alive(self) -> None:
        thread = getattr(self.scheduler, "_thread", None)
        if self.scheduler is None or thread is None or thread.is_alive():
            return
        self._restarts += 1
        logger.error("The scheduler loop thread died; restarting it (%d).", self._restarts)
        if self._restarts > 3:
            self.exit_code = 1
            self.stopping.set()
            return
        self.scheduler = None
        executor, self.executor = self.executor, None
        if executor is not None:
            executor.shutdown(grace=0)
        self._start_scheduler()

    # -- sync -------------------------------------------------------------------------------

    def _full_sync(self) -> None:
        if self.sync is None:
            return
        started = time.monotonic()
        self.sync.full()
        self._pick_up_queued()
        self._record_sync(started, full=True)

    def _incremental_sync(self, *, record: bool = True) -> None:
        if self.sync is None:
            return
        started = time.monotonic()
        self.sync.incremental()
        self._pick_up_queued()
        if record:
            self._record_sync(started, full=False)

    def _record_sync(self, started: float, *, full: bool) -> None:
        from django_apscheduler.models import DjangoJob

        values: dict[str, Any] = {
            "last_sync_at": timezone.now(),
            "sync_lag_ms": int((time.monotonic() - started) * 1000),
        }
        if full:
            values["job_count"] = DjangoJob.objects.filter(id__startswith="schedule:").count()
        SchedulerLease.objects.filter(name=self.lease.name, holder=self.identity).update(**values)

    def _pick_up_queued(self) -> None:
        """Claim queued manual runs and due retries that no scheduler owns yet."""
        if not self.lease.valid():
            return
        for execution in Execution.objects.unclaimed().select_related("schedule__tenant")[:500]:
            claimed = Execution.objects.filter(pk=execution.pk, claimed_by="").update(
                claimed_by=self.identity
            )
            if claimed:
                priority = execution.schedule.priority if execution.schedule else 0
                self._submit(execution, priority)

    # -- dispatch ---------------------------------------------------------------------------

    def on_due(self, job: Any, run_times: list) -> None:
        """Called by APScheduler's loop (through DispatchExecutor) for each due job of a pass.

        The pass's occurrences are claimed together in ``_flush_due``, which the job store
        runs before it writes the jobs' next run times.
        """
        pk = schedule_pk(job.id)
        if pk is not None:
            self._due.append((pk, list(run_times), job.next_run_time))

    def _flush_due(self) -> bool:
        """Claim and submit the pass's occurrences; False: the pass must not count."""
        due, self._due = self._due, []
        if not self.lease.valid():
            return False  # fenced: leave the jobs as they are for the next leader
        if due:
            if self.recorder is not None:
                # Finished executions must not count as active in the overlap checks.
                self.recorder.flush(timeout=1.0)
            dispatch_many(due, claimed_by=self.identity, submit=self._submit)
        return True

    def _submit(self, execution: Execution, priority: int) -> None:
        schedule = execution.schedule
        if schedule is not None and schedule.overlap == Overlap.QUEUE:
            with self._deferred_lock:
                waiting = self._deferred[schedule.pk]
                busy = any(s == schedule.pk for s in self._by_execution.values())
                if busy or waiting:
                    waiting.append(execution.pk)
                    return
                self._by_execution[execution.pk] = schedule.pk
        self._hand_over(execution, priority)

    def _hand_over(self, execution: Execution, priority: int) -> None:
        schedule = execution.schedule
        mode = conf.EXECUTOR_OVERRIDES.get(execution.schedule_kind, conf.EXECUTOR)
        timeout = schedule.effective_timeout if schedule else conf.DEFAULT_TIMEOUT
        tenant = schedule.tenant if schedule else None
        limit = getattr(tenant, "max_concurrent_executions", None)
        if mode == "celery" and self.celery is not None:
            if runner.skipped_for_overlap(execution, self.recorder):
                return  # decided a moment (CLAIM_AHEAD at most) before its time
            with self._deferred_lock:
                if execution.pk in self._by_execution:
                    self._on_celery.add(execution.pk)  # overlap=queue: released when done
            self.celery.submit(execution.pk, timeout=timeout)
            return
        with self._deferred_lock:
            self._modes[execution.pk] = (mode, timeout, execution)
        self.executor.submit(
            execution.pk,
            priority=priority,
            # Claimed ahead (CLAIM_AHEAD): held until its time.
            not_before=execution.scheduled_for.timestamp(),
            # The process mode enforces its own timeout by killing the child.
            timeout=None if mode == "process" else timeout,
            tenant_id=execution.tenant_id,
            tenant_limit=conf.TENANT_CONCURRENCY if limit is None else limit,
        )

    def _release_deferred(self, execution_id: int) -> None:
        with self._deferred_lock:
            schedule_id = self._by_execution.pop(execution_id, None)
            if schedule_id is None or not self._deferred.get(schedule_id):
                return
            next_id = self._deferred[schedule_id].popleft()
            self._by_execution[next_id] = schedule_id
        execution = Execution.objects.select_related("schedule__tenant").get(pk=next_id)
        self._hand_over(execution, execution.schedule.priority if execution.schedule else 0)

    def _execute(self, execution_id: int) -> None:
        with self._deferred_lock:
            mode, timeout, loaded = self._modes.pop(execution_id, ("thread", None, None))
        if mode == "process":
            from ..executors.process import run_in_child

            if loaded is None or not runner.skipped_for_overlap(loaded, self.recorder):
                run_in_child(execution_id, timeout=timeout)
        else:
            runner.execute(
                execution_id, worker=self.worker, execution=loaded, recorder=self.recorder
            )

    # -- shutdown ---------------------------------------------------------------------------

    def _shutdown(self) -> None:
        if self.listener is not None:
            self.listener.stop()
        self._stop_scheduler()
        executor = self.executor
        self.executor = None
        celery, self.celery = self.celery, None
        try:
            close_old_connections()
            unpublished = celery.shutdown(grace=min(5.0, self.shutdown_grace)) if celery else []
            if executor is not None:
                never_started, still_running = executor.shutdown(grace=self.shutdown_grace)
                # What finished must be written before the leftovers are told apart.
                self._stop_recorder(timeout=min(10.0, self.shutdown_grace + 1.0))
                with self._deferred_lock:
                    for ids in self._deferred.values():
                        never_started.extend(ids)
                    self._deferred.clear()
                leftover = list(
                    Execution.objects.select_related("schedule").filter(
                        pk__in=never_started + still_running, status__in=ACTIVE_STATUSES
                    )
                )
                if leftover:
                    runner.interrupt(leftover, "The scheduler stopped before this finished.")
            self._stop_recorder(timeout=1.0)
            if self.leader:
                # Anything we claimed but did not hand to a worker yet. What went to Celery
                # stays queued there: a worker runs it whether or not a scheduler is up.
                claimed = Execution.objects.filter(claimed_by=self.identity, status=Status.QUEUED)
                if celery is not None:
                    from ..executors.celery import celery_kinds

                    claimed = claimed.exclude(
                        Q(schedule_kind__in=celery_kinds()) & ~Q(pk__in=unpublished)
                    )
                leftover = list(claimed.select_related("schedule"))
                if leftover:
                    runner.interrupt(leftover, "The scheduler stopped before this started.")
                self.lease.release()
        except DatabaseError as exc:
            logger.error("Database unavailable during shutdown (%s); the lease will expire.", exc)
        finally:
            self.leader = False
            connection.close()
