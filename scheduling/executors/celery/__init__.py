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

The package: ``publisher`` (the scheduler's side: ``CeleryExecutor``, a
``QueueingExecutor`` of ``executors.queueing``) and ``worker`` (the body of the Celery task,
``scheduling.tasks.execute``); which workers live is ``executors.heartbeats``, shared with the
``django_tasks`` executor.
Celery itself is imported only where it is used, so the app works without it installed.
"""

from ..heartbeats import (
    WORKER_LEASE_PREFIX,
    forget_dead_workers,
    heartbeat,
    live_workers,
    reap_lost_workers,
    worker_lease_name,
)
from .publisher import TASK_NAME, CeleryExecutor, celery_kinds, time_limits
from .worker import run_in_worker

__all__ = [
    "TASK_NAME",
    "WORKER_LEASE_PREFIX",
    "CeleryExecutor",
    "celery_kinds",
    "forget_dead_workers",
    "heartbeat",
    "live_workers",
    "reap_lost_workers",
    "run_in_worker",
    "time_limits",
    "worker_lease_name",
]
