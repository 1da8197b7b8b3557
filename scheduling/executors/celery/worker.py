"""The worker's side of the ``celery`` executor: run one execution in a Celery worker process."""

from __future__ import annotations

import logging
import threading
import time

from django.db import DatabaseError, close_old_connections, connection
from django.utils import timezone

from ... import runner
from ...conf import conf
from ...models import Execution
from .heartbeats import heartbeat

logger = logging.getLogger("scheduling.executors.celery")


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
