"""The Celery task of the ``celery`` executor (found by Celery's ``autodiscover_tasks``).

Import this module only where Celery is installed: workers import it when they autodiscover
the project's tasks. The scheduler publishes to it by name (``TASK_NAME``) and never imports it.
"""

from __future__ import annotations

import contextlib

from celery import shared_task
from celery.signals import worker_process_shutdown
from django.db import DatabaseError

from .executors.celery.worker import run_in_worker
from .executors.heartbeats import heartbeat


@shared_task(
    name="scheduling.execute",
    # Acknowledge after the run, and give the message back when the worker process dies:
    # the execution row decides whether a second delivery runs anything (it does not once
    # the row left ``queued``).
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    # Database down: try again later. A copy that finds the row no longer queued does nothing.
    autoretry_for=(DatabaseError,),
    retry_backoff=1,
    retry_backoff_max=5,
    retry_jitter=False,
    max_retries=120,
)
def execute(execution_id: int, timeout: float | None = None) -> None:
    """Run execution ``execution_id`` and record its outcome."""
    run_in_worker(execution_id, timeout=timeout)


@worker_process_shutdown.connect(dispatch_uid="scheduling_worker_heartbeat_stop")
def _stop_heartbeat(**kwargs: object) -> None:
    with contextlib.suppress(DatabaseError):  # the row expires by itself
        heartbeat.stop()
