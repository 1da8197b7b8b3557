"""The scheduler's side of the ``django_tasks`` executor: enqueue executions, look after them."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from numbers import Real
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.checks import Error, Warning
from django.db import DatabaseError, connection
from django.utils import timezone

from ...conf import conf
from ...scheduler.outage import OutageLog
from ..choice import kinds_run_by
from ..queueing import Item, QueueingExecutor
from .compat import Framework, framework

if TYPE_CHECKING:
    from django.core.checks import CheckMessage

logger = logging.getLogger("scheduling.executors.django_tasks")


# Where workers find the task (the backend stores this path with every enqueued task).
TASK_PATH = "scheduling.executors.django_tasks.tasks.execute"

# ``claimed_by`` of executions that a leader enqueued on the task backend: tasks:<leader>.
ENQUEUED_PREFIX = "tasks:"

enqueue_outage = OutageLog(logger)


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


class DjangoTasksExecutor(QueueingExecutor):
    """Enqueues claimed executions on a task backend and keeps an eye on what workers do.

    A ``QueueingExecutor``: enqueued rows are marked ``tasks:<leader>``. The backend gets
    each execution's priority and its start time (``run_after``) where it supports them; the
    worker also waits for the start time itself (CLAIM_AHEAD at most).
    """

    name = "django_tasks"
    mark_prefix = ENQUEUED_PREFIX
    queue_label = "the task backend"
    lost_worker_error = "The task worker running this execution stopped (its heartbeat expired)."

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

    def requeue_after(self) -> float:
        return float(conf.TASKS_REQUEUE_AFTER)

    def publish_many(self, items: list[Item]) -> int:
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
                self.published(item)
                done += 1
        except Exception as exc:  # a backend raises its own errors (and the database's)
            enqueue_outage.failed(f"enqueueing to the task backend {conf.TASKS_BACKEND!r}", exc)
            if isinstance(exc, DatabaseError):
                connection.close()
            return done
        enqueue_outage.ok()
        return done


def _aliases(tasks: Framework) -> list[str]:
    try:
        return list(tasks.task_backends.settings)
    except Exception:  # a malformed TASKS setting
        return []
