"""Run executions on Django's task framework: the ``django_tasks`` executor.

``django.tasks`` on Django 6.0+, the ``django_tasks`` backport on Django 5.2, with any
backend that has workers (django-tasks-db's ``DatabaseBackend`` and its ``db_worker``, for
one). The leader claims an occurrence as always (the ``Execution`` insert) and, once the
claim is committed, a publisher thread enqueues the app's one task, ``tasks.execute``, with
the execution id on ``SCHEDULING_TASKS_BACKEND``/``SCHEDULING_TASKS_QUEUE`` (with its
priority and start time where the backend supports them), then marks the row
``claimed_by = tasks:<leader>``. A worker runs it through ``runner.execute``, the code path
of every other executor.

As with the ``celery`` executor, the execution row is the only truth:

- The task is idempotent: ``mark_started`` only moves a ``queued`` row to ``running``, so a
  task enqueued twice runs the handler once; later copies find the row taken.
- Timeouts: a watchdog in the worker records ``timed_out`` at the schedule's timeout; the
  handler cannot be stopped (task workers have no time limits), so its late result is
  discarded, as with the thread executor.
- Lost workers: a worker process keeps a heartbeat row while it runs tasks (the Celery
  workers' mechanism, ``executors.heartbeats``); the leader interrupts ``running`` executions
  whose worker's heartbeat expired (and retries them per policy).
- A leader that dies: its successor enqueues again the queued executions it had claimed but
  not marked as enqueued.
- Lost tasks: the leader enqueues again executions still ``queued``
  ``SCHEDULING_TASKS_REQUEUE_AFTER`` seconds after enqueueing them.

The package: ``publisher`` (the scheduler's side: ``DjangoTasksExecutor``), ``worker`` (the
body of the task), ``tasks`` (the task itself, imported by workers by its path) and
``compat`` (which framework is installed). The framework is imported only where it is used,
so the app works without it.
"""

from .publisher import (
    ENQUEUED_PREFIX,
    TASK_PATH,
    DjangoTasksExecutor,
    task_options,
    tasks_kinds,
)
from .worker import run_in_worker

__all__ = [
    "ENQUEUED_PREFIX",
    "TASK_PATH",
    "DjangoTasksExecutor",
    "run_in_worker",
    "task_options",
    "tasks_kinds",
]
