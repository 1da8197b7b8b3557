"""The scheduler's side of the ``django_tasks`` executor: enqueue executions, look after them."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from numbers import Real
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.checks import Error, Warning
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from ... import runner
from ...conf import conf
from ...models import ACTIVE_STATUSES, Execution, SchedulerLease, Status
from ...scheduler.outage import OutageLog
from ..base import BaseExecutor, ExecutorContext, Leftovers
from ..celery.heartbeats import WORKER_LEASE_PREFIX, worker_lease_name
from ..choice import kinds_run_by
from .compat import Framework, framework

if TYPE_CHECKING:
    from django.core.checks import CheckMessage

logger = logging.getLogger("scheduling.executors.django_tasks")


# Where workers find the task (the backend stores this path with every enqueued task).
TASK_PATH = "scheduling.executors.django_tasks.tasks.execute"

# ``claimed_by`` of executions that a leader enqueued on the task backend: tasks:<leader>.
ENQUEUED_PREFIX = "tasks:"

# Rows per query where a takeover may bring thousands of ids.
CHUNK = 1000


enqueue_outage = OutageLog(logger)


@dataclass(frozen=True)
class Item:
    """One execution to enqueue, with what the task backend is told about it."""

    execution_id: int
    timeout: float
    priority: int
    # Epoch seconds before which it must not start (its scheduled time), or None.
    not_before: float | None


def tasks_kinds() -> list[str]:
    """Return the schedule kinds that run on the task framework under the current settings."""
    return kinds_run_by(DjangoTasksExecutor.name)


def task_options(
    backend: Any, tasks: Framework, *, priority: int, not_before: float | None
) -> dict[str, Any]:
    """Return the ``Task.using()`` arguments of one execution on ``backend``.

    Priority (clamped to the framework's range) only where the backend orders by it, and
    ``run_after`` only where it can defer: the others reject a task that sets them.
    """
    options: dict[str, Any] = {"backend": conf.TASKS_BACKEND, "queue_name": conf.TASKS_QUEUE}
    if backend.supports_priority:
        options["priority"] = max(tasks.min_priority, min(tasks.max_priority, int(priority)))
    if backend.supports_defer and not_before is not None:
        run_after = datetime.fromtimestamp(not_before, tz=UTC)
        options["run_after"] = run_after if settings.USE_TZ else timezone.make_naive(run_after)
    return options


class DjangoTasksExecutor(BaseExecutor):
    """Enqueues claimed executions on a task backend and keeps an eye on what workers do.

    Enqueueing happens on a thread of its own, so neither APScheduler's loop nor the
    leader's lease renewals ever wait for the backend (a database insert, or a broker
    round-trip). Once an execution is enqueued its row's ``claimed_by`` becomes
    ``tasks:<leader>``: a successor then knows which executions of a dead leader are on the
    backend already and which it must enqueue again.
    """

    name = "django_tasks"
    durable = True
    tend_interval = 1.0
    # At shutdown, enqueueing what is waiting gets this long at most.
    SHUTDOWN_ENQUEUE = 5.0

    def __init__(self, context: ExecutorContext) -> None:
        super().__init__(context)
        self.claimed_by = context.identity
        self.enqueued_mark = f"{ENQUEUED_PREFIX}{self.claimed_by}"
        # Executions whose end the scheduler waits for (overlap=queue): ``tend`` reports them.
        self._tracked: set[int] = set()
        self._lock = threading.Lock()
        self._queue: deque[Item] = deque()  # to enqueue
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Execution id -> (monotonic enqueue time, item); pruned by ``requeue_stale``.
        self._enqueued: dict[int, tuple[float, Item]] = {}

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name="scheduling-tasks-publisher", daemon=True
        )
        self._thread.start()

    @classmethod
    def check(cls) -> list[CheckMessage]:
        """Check the framework, the backend (one that runs tasks elsewhere) and its queue."""
        errors: list[CheckMessage] = []
        alias, queue, requeue = conf.TASKS_BACKEND, conf.TASKS_QUEUE, conf.TASKS_REQUEUE_AFTER
        if isinstance(requeue, bool) or not isinstance(requeue, Real) or requeue < 1:
            errors.append(
                Error(
                    f"SCHEDULING_TASKS_REQUEUE_AFTER must be a number of at least 1; "
                    f"got {requeue!r}.",
                    hint="Remove SCHEDULING_TASKS_REQUEUE_AFTER to use the default (300).",
                    id="scheduling.E043",
                )
            )
        alias_ok = isinstance(alias, str) and bool(alias)
        queue_ok = isinstance(queue, str) and bool(queue)
        if not alias_ok:
            errors.append(
                Error(
                    f"SCHEDULING_TASKS_BACKEND must be a non-empty string; got {alias!r}.",
                    hint="Name a backend of the TASKS setting, or remove it to use 'default'.",
                    id="scheduling.E040",
                )
            )
        if not queue_ok:
            errors.append(
                Error(
                    f"SCHEDULING_TASKS_QUEUE must be a non-empty string; got {queue!r}.",
                    hint="Remove SCHEDULING_TASKS_QUEUE to use the default 'default'.",
                    id="scheduling.E042",
                )
            )
        try:
            tasks = framework()
        except ImportError:
            return [
                *errors,
                Error(
                    "The django_tasks executor is selected but Django's task framework is not "
                    "installed (neither django.tasks, Django 6.0+, nor the django_tasks "
                    "backport).",
                    hint="On Django 5.2: pip install 'django-tenant-scheduling[tasks]'.",
                    id="scheduling.E039",
                ),
            ]
        if not alias_ok:
            return errors
        try:
            backend = tasks.task_backends[alias]
        except Exception as exc:  # unknown alias, unimportable class, malformed TASKS entry
            configured = ", ".join(repr(name) for name in _aliases(tasks)) or "none"
            errors.append(
                Error(
                    f"SCHEDULING_TASKS_BACKEND is {alias!r}, which is not a usable task "
                    f"backend: {exc}",
                    hint=f"Add it to the TASKS setting; configured backends: {configured}.",
                    id="scheduling.E040",
                )
            )
            return errors
        backend_name = f"{type(backend).__module__}.{type(backend).__qualname__}"
        if isinstance(backend, tasks.dummy_backend):
            errors.append(
                Error(
                    f"The task backend {alias!r} ({backend_name}) never runs a task: every "
                    "execution would stay queued.",
                    hint="Use a backend with workers, e.g. django_tasks_db.DatabaseBackend "
                    "(and its db_worker command).",
                    id="scheduling.E041",
                )
            )
        elif isinstance(backend, tasks.immediate_backend):
            errors.append(
                Warning(
                    f"The task backend {alias!r} ({backend_name}) runs each task as it is "
                    "enqueued, inside the scheduler process, one at a time.",
                    hint="Use a backend with workers, e.g. django_tasks_db.DatabaseBackend, "
                    "or the thread executor to run executions in the scheduler.",
                    id="scheduling.W005",
                )
            )
        if queue_ok and backend.queues and queue not in backend.queues:
            errors.append(
                Error(
                    f"SCHEDULING_TASKS_QUEUE is {queue!r}, which the task backend {alias!r} "
                    "does not have.",
                    hint=f"Add it to the backend's QUEUES (it has {sorted(backend.queues)}) "
                    "or name one of those.",
                    id="scheduling.E042",
                )
            )
        return errors

    def shutdown(self, *, grace: float) -> Leftovers:
        """Enqueue what is waiting (5 s at most); the rest never started.

        What reached the backend stays there: a worker runs it whether or not a scheduler is up.
        """
        deadline = time.monotonic() + min(self.SHUTDOWN_ENQUEUE, grace)
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
        """Enqueue ``execution`` once the transaction that claimed it commits.

        The backend gets its priority and its start time (``run_after``) where it supports
        them; the worker also waits for the start time itself (CLAIM_AHEAD at most).
        """
        # Claimed ahead while others of its schedule ran: decided now, a moment before its
        # time (CLAIM_AHEAD at most), since the worker cannot see the claim's in-memory mark.
        if runner.skipped_for_overlap(execution, self.context.writer):
            return
        item = Item(execution.pk, timeout, priority, not_before)
        if track:
            with self._lock:
                self._tracked.add(execution.pk)
        transaction.on_commit(lambda: self._put([item]))

    def tend(self) -> None:
        """Enqueue again what stayed queued; interrupt lost workers' executions; report ends."""
        self.requeue_stale()
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

    def recover(self, orphans: list[Execution]) -> list[Execution]:
        """Take over the task framework's executions among ``orphans``; return the others.

        Queued ones are enqueued again (a worker runs each once); running ones are left to
        their workers while those beat (``reap_lost_workers`` decides about the others).
        """
        kinds = set(tasks_kinds())
        beating = set(
            SchedulerLease.objects.filter(name__startswith=WORKER_LEASE_PREFIX).values_list(
                "name", flat=True
            )
        )
        queued = [e for e in orphans if e.status == Status.QUEUED and e.schedule_kind in kinds]
        queued_ids = {e.pk for e in queued}  # a takeover may find thousands: no list scans
        ids = [e.pk for e in queued]
        taken: set[int] = set()
        for start in range(0, len(ids), CHUNK):
            taken.update(
                Execution.objects.filter(
                    pk__in=ids[start : start + CHUNK], status=Status.QUEUED
                ).values_list("pk", flat=True)
            )
        if taken:
            now = self.adopt([e for e in queued if e.pk in taken])
            logger.warning(
                "Took over %d queued execution(s) of the task backend; %d of them are "
                "enqueued again now.",
                len(taken),
                now,
            )
        return [
            e
            for e in orphans
            if e.pk not in queued_ids
            and not (e.status == Status.RUNNING and worker_lease_name(e.worker) in beating)
        ]

    def adopt(self, executions: list[Execution]) -> int:
        """Take over the queued executions of a leader that stopped.

        Those it had enqueued (marked ``tasks:<leader>``) are on the backend: like our own,
        they are enqueued again only if still queued ``TASKS_REQUEUE_AFTER`` s from now. The
        others may never have reached it: they are enqueued now (a copy runs nothing twice).
        Returns how many go out now.
        """
        enqueued = [e for e in executions if e.claimed_by.startswith(ENQUEUED_PREFIX)]
        unenqueued = [e for e in executions if not e.claimed_by.startswith(ENQUEUED_PREFIX)]
        for rows, mark in ((enqueued, self.enqueued_mark), (unenqueued, self.claimed_by)):
            ids = [e.pk for e in rows]
            for start in range(0, len(ids), CHUNK):
                Execution.objects.filter(
                    pk__in=ids[start : start + CHUNK], status=Status.QUEUED
                ).update(claimed_by=mark)
        now = time.monotonic()
        with self._lock:
            for execution in enqueued:
                self._enqueued[execution.pk] = (now, _item_of(execution))
        self._put([_item_of(e) for e in unenqueued])
        return len(unenqueued)

    def requeue_stale(self, *, now: float | None = None) -> int:
        """Enqueue again executions still ``queued`` ``TASKS_REQUEUE_AFTER`` s after enqueueing.

        A task lost on the way (a worker killed between taking the task and starting the
        execution, a broker without persistence) would otherwise leave it queued for ever.
        """
        now = time.monotonic() if now is None else now
        cutoff = now - conf.TASKS_REQUEUE_AFTER
        with self._lock:
            old = {pk: item for pk, (at, item) in self._enqueued.items() if at <= cutoff}
            for pk in old:
                del self._enqueued[pk]
        if not old:
            return 0
        ids = list(old)
        waiting: list[int] = []
        for start in range(0, len(ids), CHUNK):
            waiting += Execution.objects.filter(
                pk__in=ids[start : start + CHUNK], status=Status.QUEUED
            ).values_list("pk", flat=True)
        self._put([old[pk] for pk in waiting])
        if waiting:
            logger.warning(
                "Enqueueing again %d execution(s) still queued after %s s.",
                len(waiting),
                conf.TASKS_REQUEUE_AFTER,
            )
        return len(waiting)

    def pending_ids(self) -> list[int]:
        """Ids that were claimed for the task backend but have not reached it yet."""
        with self._lock:
            return [item.execution_id for item in self._queue]

    def _put(self, items: list[Item]) -> None:
        with self._lock:
            self._queue.extend(items)
        self._wake.set()

    def _run(self) -> None:
        delay = 0.1
        try:
            while not self._stop.is_set():
                self._wake.wait(0.5)
                self._wake.clear()
                while not self._stop.is_set():
                    with self._lock:
                        batch = [self._queue.popleft() for _ in range(min(len(self._queue), 500))]
                    if not batch:
                        break
                    done = self.enqueue_many(batch)
                    self._mark_enqueued([item.execution_id for item in batch[:done]])
                    if done < len(batch):
                        with self._lock:
                            self._queue.extendleft(reversed(batch[done:]))
                        self._stop.wait(delay)  # the backend is unavailable: back off
                        delay = min(delay * 2, 5.0)
                        break
                    delay = 0.1
        finally:
            connection.close()

    def enqueue_many(self, items: list[Item]) -> int:
        """Enqueue ``items`` on the task backend; stop at the first failure; return how many."""
        done = 0
        try:
            # Imported here: the task module needs the framework and validates the backend.
            from .tasks import execute

            tasks = framework()
            backend = tasks.task_backends[conf.TASKS_BACKEND]
            for item in items:
                task = execute.using(
                    **task_options(
                        backend, tasks, priority=item.priority, not_before=item.not_before
                    )
                )
                task.enqueue(item.execution_id, timeout=item.timeout)
                now = time.monotonic()
                with self._lock:
                    self._enqueued[item.execution_id] = (now, item)
                done += 1
        except Exception as exc:  # a backend raises its own errors (and the database's)
            enqueue_outage.failed(f"enqueueing to the task backend {conf.TASKS_BACKEND!r}", exc)
            if isinstance(exc, DatabaseError):
                connection.close()
            return done
        enqueue_outage.ok()
        return done

    def _mark_enqueued(self, ids: list[int]) -> None:
        if not ids:
            return
        try:
            for start in range(0, len(ids), CHUNK):
                Execution.objects.filter(
                    pk__in=ids[start : start + CHUNK],
                    status=Status.QUEUED,
                    claimed_by=self.claimed_by,
                ).update(claimed_by=self.enqueued_mark)
        except DatabaseError as exc:
            # Unmarked, a successor would enqueue them again: harmless, a copy runs nothing.
            logger.warning("Could not mark %d enqueued execution(s): %s", len(ids), exc)
            connection.close()


def reap_lost_workers(now: datetime | None = None) -> int:
    """Interrupt ``running`` executions whose worker's heartbeat expired (and retry them).

    The heartbeat rows are the ones the Celery executor's workers keep (``worker:<host:pid>``,
    ``celery.heartbeats``); this executor's workers keep them alike. Executions without a
    heartbeat row are not a task worker's (the thread and process executors' watchdogs look
    after theirs); those of live workers are left to finish.
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
    expired = set(
        SchedulerLease.objects.filter(
            name__in=set(names.values()), expires_at__lte=now
        ).values_list("name", flat=True)
    )
    lost = [pk for pk, name in names.items() if name in expired]
    if not lost:
        return 0
    executions = Execution.objects.select_related("schedule").filter(
        pk__in=lost, status=Status.RUNNING
    )
    count = runner.interrupt(
        executions,
        "The task worker running this execution stopped (its heartbeat expired).",
    )
    if count:
        logger.warning("Interrupted %d execution(s) of lost task workers.", count)
    return count


def _aliases(tasks: Framework) -> list[str]:
    try:
        return list(tasks.task_backends.settings)
    except Exception:  # a malformed TASKS setting
        return []


def _item_of(execution: Execution) -> Item:
    schedule = execution.schedule
    return Item(
        execution.pk,
        schedule.effective_timeout if schedule else conf.DEFAULT_TIMEOUT,
        schedule.priority if schedule else 0,
        execution.scheduled_for.timestamp(),
    )
