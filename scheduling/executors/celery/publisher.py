"""The scheduler's side of the ``celery`` executor: publish claimed executions, look after them."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.core.checks import Error
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from ... import runner
from ...conf import conf
from ...models import ACTIVE_STATUSES, Execution, SchedulerLease, Status
from ...scheduler.outage import OutageLog
from ..base import BaseExecutor, ExecutorContext, Leftovers
from ..choice import kinds_run_by
from .heartbeats import WORKER_LEASE_PREFIX, reap_lost_workers, worker_lease_name

if TYPE_CHECKING:
    from django.core.checks import CheckMessage

logger = logging.getLogger("scheduling.executors.celery")


TASK_NAME = "scheduling.execute"


# Celery's soft time limit comes this long after the watchdog recorded ``timed_out``, so the
# handler is interrupted only once the outcome is settled.
SOFT_LIMIT_DELAY = 1.0


# ``claimed_by`` of executions that a leader published to the broker: celery:<leader>.
PUBLISHED_PREFIX = "celery:"


publish_outage = OutageLog(logger)


# How far before its previous look ``revoke_cancelled`` looks again (commit delays, clock skew).
REVOKE_WINDOW = timedelta(seconds=60)


def task_id_of(execution_id: int) -> str:
    """Return the Celery task id of ``execution_id``'s message (every copy shares it)."""
    return f"scheduling-execution-{execution_id}"


def celery_kinds() -> list[str]:
    """Return the schedule kinds that run on Celery under the current settings."""
    return kinds_run_by(CeleryExecutor.name)


def time_limits(timeout: float) -> tuple[float, float]:
    """Return Celery's ``(soft_time_limit, time_limit)`` for a schedule's timeout."""
    return timeout + SOFT_LIMIT_DELAY, timeout + max(conf.CELERY_HARD_TIMEOUT_GRACE, 2.0)


class CeleryExecutor(BaseExecutor):
    """Publishes claimed executions to Celery and keeps an eye on what the workers do.

    Publishing happens on a thread of its own, so neither APScheduler's loop nor the leader's
    lease renewals ever wait for the broker. Once a batch is in the broker, its rows'
    ``claimed_by`` becomes ``celery:<leader>``: a successor then knows which executions of a
    dead leader are in the queue already and which it must publish again.
    """

    name = "celery"
    durable = True
    tend_interval = 1.0
    # At shutdown, publishing what is waiting gets this long at most.
    SHUTDOWN_PUBLISH = 5.0

    def __init__(self, context: ExecutorContext) -> None:
        super().__init__(context)
        self.claimed_by = context.identity
        self.published_mark = f"{PUBLISHED_PREFIX}{self.claimed_by}"
        # Executions whose end the scheduler waits for (overlap=queue): ``tend`` reports them.
        self._tracked: set[int] = set()
        self._lock = threading.Lock()
        self._queue: deque[tuple[int, float]] = deque()  # (execution id, timeout) to publish
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Cancelled executions finished since this instant are still to be revoked.
        self._revoked_up_to = timezone.now()
        self._revoked: dict[int, datetime] = {}  # execution id -> when it was revoked
        # Execution id -> (monotonic publish time, timeout); pruned by ``requeue_stale``.
        self._published: dict[int, tuple[float, float]] = {}

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name="scheduling-celery-publisher", daemon=True
        )
        self._thread.start()

    @classmethod
    def check(cls) -> list[CheckMessage]:
        """Check that Celery is installed, its app has a broker, and the queue is named."""
        errors: list[CheckMessage] = []
        queue = conf.CELERY_QUEUE
        if not isinstance(queue, str) or not queue:
            errors.append(
                Error(
                    f"SCHEDULING_CELERY_QUEUE must be a non-empty string; got {queue!r}.",
                    hint="Remove SCHEDULING_CELERY_QUEUE to use the default 'scheduling'.",
                    id="scheduling.E032",
                )
            )
        try:
            from celery import current_app
        except ImportError:
            return [
                *errors,
                Error(
                    "The celery executor is selected but Celery is not installed.",
                    hint="pip install 'django-tenant-scheduling[celery]'.",
                    id="scheduling.E033",
                ),
            ]
        if not current_app.conf.broker_url:
            errors.append(
                Error(
                    "The celery executor is selected but the Celery app has no broker.",
                    hint="Define a Celery app for the project (see Celery's 'First steps with "
                    "Django') and set CELERY_BROKER_URL, e.g. 'redis://127.0.0.1:6379/0'.",
                    id="scheduling.E034",
                )
            )
        return errors

    def shutdown(self, *, grace: float) -> Leftovers:
        """Publish what is waiting (5 s at most); the rest never started.

        What reached the broker stays there: a worker runs it whether or not a scheduler is up.
        """
        deadline = time.monotonic() + min(self.SHUTDOWN_PUBLISH, grace)
        while self.pending_ids() and time.monotonic() < deadline:
            time.sleep(0.05)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)
        return Leftovers(never_started=self.pending_ids())

    def submit(
        self,
        execution: Execution,
        *,
        priority: int,
        timeout: float,
        not_before: float | None = None,
        track: bool = False,
    ) -> None:
        """Publish ``execution`` once the transaction that claimed it commits.

        A worker starts it at its time (``not_before``); priority is not passed on (the
        broker's queue is first in, first out).
        """
        # Claimed ahead while others of its schedule ran: decided now, a moment before its
        # time (CLAIM_AHEAD at most), since the worker cannot see the claim's in-memory mark.
        if runner.skipped_for_overlap(execution, self.context.writer):
            return
        execution_id = execution.pk
        if track:
            with self._lock:
                self._tracked.add(execution_id)
        transaction.on_commit(lambda: self._enqueue([(execution_id, timeout)]))

    def tend(self) -> None:
        """Interrupt lost workers' executions; publish what the broker missed; report ends;
        revoke the runs that operators cancelled."""
        self.requeue_stale()
        self.revoke_cancelled()
        # Right after a database outage, workers' heartbeats are stale because they could
        # not write either: give them one heartbeat period to catch up before judging them.
        if time.monotonic() - self.context.last_database_error() > conf.CELERY_HEARTBEAT_TTL:
            reap_lost_workers()
        with self._lock:
            tracked = list(self._tracked)
        if not tracked:
            return
        done = set(
            Execution.objects.filter(pk__in=tracked)
            .exclude(status__in=ACTIVE_STATUSES)
            .values_list("pk", flat=True)
        )
        with self._lock:
            self._tracked -= done
        for execution_id in done:
            self.context.on_done(execution_id)

    def revoke_cancelled(self) -> int:
        """Revoke (terminating the worker child) the published executions cancelled lately:
        ``runner.cancel`` has recorded them; stopping the handler is Celery's part.

        ``finished_at`` comes from the clock of the process that cancelled, stamped before its
        transaction committed: the look goes back ``REVOKE_WINDOW`` s before the last one, so
        a late commit or a clock a little behind is still seen; each id is revoked once.
        """
        now = timezone.now()
        since, self._revoked_up_to = self._revoked_up_to - REVOKE_WINDOW, now
        ids = [
            pk
            for pk in Execution.objects.filter(
                status=Status.CANCELLED,
                claimed_by=self.published_mark,
                finished_at__gte=since,
                started_at__isnull=False,
            ).values_list("pk", flat=True)
            if pk not in self._revoked
        ]
        # Forget what has left the window: it is never selected again.
        self._revoked = {pk: at for pk, at in self._revoked.items() if at >= since}
        if not ids:
            return 0
        from celery import current_app

        try:
            current_app.control.revoke(
                [task_id_of(pk) for pk in ids], terminate=True, signal="SIGTERM"
            )
        except Exception as exc:  # broker down: the handler may finish; its result is discarded
            logger.warning("Could not revoke %d cancelled execution(s): %s", len(ids), exc)
            return 0
        self._revoked.update(dict.fromkeys(ids, now))
        logger.info("Revoked %d cancelled Celery execution(s).", len(ids))
        return len(ids)

    def recover(self, orphans: list[Execution]) -> list[Execution]:
        """Take over the Celery executions among ``orphans``; return the others.

        Queued ones are published again (a worker runs each once); running ones are left to
        their workers while those beat (``reap_lost_workers`` decides about the others).
        """
        kinds = set(celery_kinds())
        beating = set(
            SchedulerLease.objects.filter(name__startswith=WORKER_LEASE_PREFIX).values_list(
                "name", flat=True
            )
        )
        queued = [e for e in orphans if e.status == Status.QUEUED and e.schedule_kind in kinds]
        queued_ids = {e.pk for e in queued}  # a takeover may find thousands: no list scans
        taken = set(
            Execution.objects.filter(
                pk__in=[e.pk for e in queued], status=Status.QUEUED
            ).values_list("pk", flat=True)
        )
        if taken:
            republished = self.adopt([e for e in queued if e.pk in taken])
            logger.warning(
                "Took over %d queued Celery execution(s); %d of them are published again.",
                len(taken),
                republished,
            )
        return [
            e
            for e in orphans
            if e.pk not in queued_ids
            and not (e.status == Status.RUNNING and worker_lease_name(e.worker) in beating)
        ]

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
        from celery import current_app

        published = 0
        try:
            with current_app.producer_or_acquire() as producer:
                for execution_id, timeout in items:
                    soft, hard = time_limits(timeout)
                    # By name: the task (``scheduling.tasks.execute``) lives on the workers' side.
                    current_app.send_task(
                        TASK_NAME,
                        # One id per execution, so that a cancel can revoke every copy.
                        task_id=task_id_of(execution_id),
                        args=[execution_id],
                        kwargs={"timeout": timeout},
                        queue=conf.CELERY_QUEUE,
                        # As the task itself declares: a result backend is never asked.
                        ignore_result=True,
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
