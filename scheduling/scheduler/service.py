"""The scheduler process behind ``runscheduler``.

1. Take the leader lease (``lease.Lease``); standbys wait. A leader that cannot renew stops
   firing at once: every pass of APScheduler's loop checks the lease first (fencing).
2. Start the executors the settings select (``scheduling.executors``) and let each take over
   what a previous holder left; the rest of it becomes ``interrupted``.
3. Full sync, then an incremental sync every ``SCHEDULING_SYNC_INTERVAL`` and a full one every
   ``SCHEDULING_FULL_SYNC_INTERVAL``; queued manual runs and due retries are picked up too.
4. On fire, ``dispatch.dispatch_many`` claims each occurrence and the service hands it to the
   executor of its kind (through the executor interface only).
5. SIGTERM/SIGINT: stop firing, let running executions finish within the grace period, mark
   the rest ``interrupted``, release the lease, exit 0.
6. Database errors never end the process: the connection is dropped, the step retried with
   back-off, and the outage logged once.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections import defaultdict, deque
from typing import Any, cast

from django.db import DatabaseError, close_old_connections, connection
from django.db.models import Q
from django.utils import timezone
from django_apscheduler.models import DjangoJob

from .. import alerts, runner, signals
from ..conf import conf
from ..executors import get_executor_class
from ..executors.base import BaseExecutor, ExecutorContext
from ..executors.choice import executor_name, selected
from ..models import ACTIVE_STATUSES, Execution, Kind, Overlap, SchedulerLease, Status
from .dispatch import Due, ScheduleCache, dispatch_many
from .jobs import JOB_PREFIX, schedule_pk
from .jobstore import SignedDjangoJobStore
from .lease import Lease, LeaseLost
from .loop import DispatchExecutor, FencedScheduler
from .notify import ChangeListener, CommitWatch
from .outage import outage
from .recorder import Recorder
from .sync import JobSync

logger = logging.getLogger("scheduling.service")

# How often the leader looks for schedules that did not run (alert rules).
ALERT_CHECK_INTERVAL = 30.0


# The largest share of the scheduler's time that periodic full syncs may take.
FULL_SYNC_SHARE = 0.1


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
        self._next_renew = 0.0  # when the leader renews its lease next (monotonic)
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
        # The executors the settings select, by name, while this process leads.
        self.executors: dict[str, BaseExecutor] = {}
        self._next_tend: dict[str, float] = {}
        self.recorder: Recorder | None = None  # group commit of in-process executions' writes
        self._last_db_error = 0.0
        # overlap=queue: executions waiting for the active one of their schedule, by schedule.
        self._deferred: dict[int, deque[int]] = defaultdict(deque)
        self._by_execution: dict[int, int] = {}
        self._due: list[Due] = []
        self._schedules = ScheduleCache()
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
        next_sync = next_full = next_alerts = 0.0
        self._next_renew = 0.0
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
                            next_sync = now + self.sync_interval
                            next_full = now + self.full_sync_interval
                        else:
                            outage.ok()
                            self.stopping.wait(min(1.0, self.renew_interval))
                            continue
                    self._renew_if_due()
                    if now >= next_alerts:
                        alerts.check_did_not_run()
                        next_alerts = now + ALERT_CHECK_INTERVAL
                    self._tend_executors(now)
                    if now >= next_full:
                        took = self._full_sync()
                        next_full = self._next_full_sync(time.monotonic(), took)
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
                except LeaseLost:
                    self._lose_leadership("the lease was taken over")
                    continue
                except DatabaseError as exc:
                    outage.failed("scheduler loop", exc)
                    self._last_db_error = time.monotonic()
                    connection.close()
                    if self.leader and not self.lease.valid():
                        self._lose_leadership("the lease expired during a database outage")
                    self.stopping.wait(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                wake = min(self._next_renew, next_sync, next_full) - time.monotonic()
                if self.changed.wait(max(0.01, min(wake, poll))):
                    # A change was notified: sync now instead of at the next interval.
                    self.changed.clear()
                    next_sync = time.monotonic()
        finally:
            self._shutdown()
        logger.info("Scheduler %s stopped (exit code %d).", self.identity, self.exit_code)
        return self.exit_code

    # -- leadership -------------------------------------------------------------------------

    def _renew_if_due(self) -> None:
        """Renew the lease when its time has come; raise ``LeaseLost`` if another holds it.

        The main loop calls it on each turn, and a full sync between its chunks: at a million
        schedules a full sync lasts minutes, and a lease left to expire meanwhile fenced every
        fire (and let a standby take over, whose own first sync outlasted the lease again).
        """
        now = time.monotonic()
        if not self.leader or now < self._next_renew:
            return
        if not self.lease.renew():
            raise LeaseLost
        self._next_renew = now + self.renew_interval

    def _become_leader(self) -> None:
        logger.info("Scheduler %s is the leader (lease %r).", self.identity, self.lease.name)
        self.leader = True
        if self.recorder is None:
            self.recorder = Recorder(may_start=self.lease.valid, busy=self._executor_busy)
            self.recorder.begin()
        self._start_executors(self.recorder)
        self._recover()
        # Taking over thousands of executions can outlast the lease's TTL: renew before the
        # full sync (a failed renewal fences the loop, and the main loop then steps down).
        self.lease.renew()
        self._next_renew = time.monotonic() + self.renew_interval
        self._start_scheduler()
        signals.leadership_changed.send(sender=type(self), holder=self.identity, leader=True)

    def _lose_leadership(self, reason: str) -> None:
        logger.error("Scheduler %s lost the lease (%s); it stops firing.", self.identity, reason)
        self.leader = False
        self.lease.valid_until = 0.0
        self._stop_scheduler()
        executors, self.executors = self.executors, {}
        for executor in executors.values():
            # Queued work is the new leader's to recover (a broker's queue keeps what it
            # has); running threads finish on their own and their conditional outcome writes
            # lose to the new leader's interruption.
            executor.shutdown(grace=0)
        with self._deferred_lock:
            # overlap=queue: what was held back or tracked is the new leader's to recover. Kept,
            # it would hold this schedule's runs back for good should this process lead again
            # (the executions it waits for never report done here).
            self._deferred.clear()
            self._by_execution.clear()
        self._stop_recorder(timeout=1.0)
        signals.leadership_changed.send(sender=type(self), holder=self.identity, leader=False)

    def _start_executors(self, writer: runner.OutcomeWriter) -> None:
        """Start every executor the settings select (``scheduling.executors.EXECUTORS``)."""
        context = ExecutorContext(
            identity=self.identity,
            worker=self.worker,
            writer=writer,
            on_done=self._release_deferred,
            lease_valid=self.lease.valid,
            max_workers=self.max_workers,
            last_database_error=lambda: self._last_db_error,
        )
        for name in selected():
            executor = get_executor_class(name)(context)
            executor.start()
            self.executors[name] = executor
            self._next_tend[name] = 0.0

    def _executor_for(self, execution: Execution) -> BaseExecutor:
        return self.executors[executor_name(execution.schedule_kind)]

    def _recover(self) -> None:
        """Let each executor take over what a previous holder left; interrupt the rest."""
        orphans = list(
            Execution.objects.select_related("schedule")
            .filter(status__in=ACTIVE_STATUSES)
            .exclude(claimed_by="")
            .exclude(claimed_by=self.identity)
        )
        for executor in self.executors.values():
            if orphans:
                orphans = executor.recover(orphans)
        if orphans:
            count = runner.interrupt(
                orphans, "The scheduler that owned this execution stopped before it finished."
            )
            logger.warning("Recovered %d execution(s) left active by a previous scheduler.", count)

    def _tend_executors(self, now: float) -> None:
        for name, executor in self.executors.items():
            interval = executor.tend_interval
            if interval is not None and now >= self._next_tend.get(name, 0.0):
                executor.tend()
                self._next_tend[name] = now + interval

    def _start_scheduler(self) -> None:
        self.scheduler = FencedScheduler(
            fence=self.lease.valid, claim_ahead=conf.CLAIM_AHEAD, timezone="UTC"
        )
        self.store = SignedDjangoJobStore(
            rebuild=self._rebuild, keep_trying=lambda: not self.stopping.is_set()
        )
        self.store.before_flush = self._flush_due
        self._due = []
        self._schedules.clear()
        self.scheduler.add_jobstore(self.store, "default")
        self.scheduler.add_executor(DispatchExecutor(self), "default")
        self.sync = JobSync(self.scheduler, self.store, between_chunks=self._renew_if_due)
        self._full_sync()
        self.scheduler.start()

    def _executor_busy(self) -> bool:
        return any(executor.backlog() > 0 for executor in list(self.executors.values()))

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
        # The executors live on: what they hold was claimed and still runs at its time.
        self.scheduler = None
        self._start_scheduler()

    # -- sync -------------------------------------------------------------------------------

    def _full_sync(self) -> float:
        """Reconcile every schedule with the job store; return the seconds it took."""
        if self.sync is None:
            return 0.0
        started = time.monotonic()
        self.sync.full()
        self._pick_up_queued()
        self._record_sync(started, count_jobs=True)
        return time.monotonic() - started

    def _next_full_sync(self, now: float, took: float) -> float:
        """When the next periodic full sync starts: after ``full_sync_interval`` seconds, and
        never sooner than ``FULL_SYNC_SHARE`` of the time goes to full syncs (at a million
        schedules one lasts a minute or more; the incremental passes carry every change
        meanwhile, the full sync only catches what they could not see)."""
        return now + max(self.full_sync_interval, took / FULL_SYNC_SHARE - took)

    def _incremental_sync(self, *, record: bool = True) -> None:
        if self.sync is None:
            return
        started = time.monotonic()
        result = self.sync.incremental()
        self._pick_up_queued()
        # A pass that changed the job store always records, with the new job count: the
        # dashboard, the API and the CLI show it, and it must not wait for the full sync.
        if record or result.changed:
            self._record_sync(started, count_jobs=bool(result.changed))

    def _record_sync(self, started: float, *, count_jobs: bool) -> None:
        values: dict[str, Any] = {
            "last_sync_at": timezone.now(),
            "sync_lag_ms": int((time.monotonic() - started) * 1000),
        }
        if count_jobs:
            # Counted only when jobs changed (and on the full sync, which also catches
            # drift), so an idle pass costs no count whatever the number of schedules.
            values["job_count"] = DjangoJob.objects.filter(id__startswith=JOB_PREFIX).count()
        SchedulerLease.objects.filter(name=self.lease.name, holder=self.identity).update(**values)

    def _pick_up_queued(self) -> None:
        """Claim queued manual runs and due retries that no scheduler owns yet."""
        if not self.lease.valid() or not _any_unclaimed():
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
            dispatch_many(
                due,
                claimed_by=self.identity,
                submit=self._submit,
                # Finished executions must not count as active in the overlap checks.
                finished=self.recorder.finished_unwritten if self.recorder is not None else None,
                schedules=self._schedules,
            )
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
        with self._deferred_lock:
            track = execution.pk in self._by_execution  # overlap=queue: released when done
        self._executor_for(execution).submit(
            execution,
            priority=priority,
            timeout=schedule.effective_timeout if schedule else conf.DEFAULT_TIMEOUT,
            # Claimed ahead (CLAIM_AHEAD): started at its time.
            not_before=execution.scheduled_for.timestamp(),
            track=track,
        )

    def _release_deferred(self, execution_id: int) -> None:
        if execution_id not in self._by_execution:
            # Not tracked (no overlap=queue): read without the lock, which every worker would
            # take for every execution. The id was put there before its execution was handed
            # over, and only this call, for this id, removes it.
            return
        with self._deferred_lock:
            schedule_id = self._by_execution.pop(execution_id, None)
            if schedule_id is None or not self._deferred.get(schedule_id):
                return
            next_id = self._deferred[schedule_id].popleft()
            self._by_execution[next_id] = schedule_id
        execution = Execution.objects.select_related("schedule__tenant").get(pk=next_id)
        self._hand_over(execution, execution.schedule.priority if execution.schedule else 0)

    # -- shutdown ---------------------------------------------------------------------------

    def _shutdown(self) -> None:
        if self.listener is not None:
            self.listener.stop()
        self._stop_scheduler()
        executors, self.executors = self.executors, {}
        try:
            close_old_connections()
            # Durable executors first: what they publish in the meantime is not lost.
            ordered = sorted(executors.values(), key=lambda e: not e.durable)
            unhanded: list[int] = []  # ids a durable executor could not hand over
            leftover_ids: list[int] = []
            for executor in ordered:
                leftovers = executor.shutdown(grace=self.shutdown_grace)
                if executor.durable:
                    unhanded += leftovers.never_started
                else:
                    leftover_ids += leftovers.never_started + leftovers.still_running
            if executors:
                # What finished must be written before the leftovers are told apart.
                self._stop_recorder(timeout=min(10.0, self.shutdown_grace + 1.0))
                with self._deferred_lock:
                    for ids in self._deferred.values():
                        leftover_ids.extend(ids)
                    self._deferred.clear()
                leftover = list(
                    Execution.objects.select_related("schedule").filter(
                        pk__in=leftover_ids, status__in=ACTIVE_STATUSES
                    )
                )
                if leftover:
                    runner.interrupt(leftover, "The scheduler stopped before this finished.")
            self._stop_recorder(timeout=1.0)
            if self.leader:
                # Anything we claimed but did not hand over yet. What reached a durable
                # executor (a broker) stays queued there: its workers run it whether or not a
                # scheduler is up.
                claimed = Execution.objects.filter(claimed_by=self.identity, status=Status.QUEUED)
                durable_kinds = [
                    kind
                    for kind in Kind.values
                    if executors.get(executor_name(kind)) is not None
                    and executors[executor_name(kind)].durable
                ]
                if durable_kinds:
                    claimed = claimed.exclude(
                        Q(schedule_kind__in=durable_kinds) & ~Q(pk__in=unhanded)
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


def _any_unclaimed() -> bool:
    """Whether ``Execution.objects.unclaimed()`` has a row: plain SQL, run every pass.

    On SQLite a pass follows every commit, and compiling the ORM's query cost more than
    running it.
    """
    quote = connection.ops.quote_name
    column = {f.name: quote(cast("str", f.column)) for f in Execution._meta.concrete_fields}
    sql = (
        f"SELECT 1 FROM {quote(Execution._meta.db_table)} "  # noqa: S608 (quoted identifiers)
        f"WHERE {column['status']} = %s AND {column['claimed_by']} = %s "
        f"AND ({column['run_after']} IS NULL OR {column['run_after']} <= %s) LIMIT 1"
    )
    params = [Status.QUEUED, "", connection.ops.adapt_datetimefield_value(timezone.now())]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone() is not None
