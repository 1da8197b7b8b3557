"""The worker's side of the ``django_tasks`` executor: run one execution in a task worker.

This is the body of the task (``tasks.execute``), whatever runs it: django-tasks-db's
``db_worker``, another backend's worker, or the ImmediateBackend in the enqueueing process.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import threading
import time

from django.db import DatabaseError, close_old_connections, connection
from django.utils import timezone

from ... import runner
from ...conf import conf
from ...models import Execution
from ..celery.heartbeats import heartbeat

logger = logging.getLogger("scheduling.executors.django_tasks")

_exit_hook = threading.Lock()
_exit_hook_pids: set[int] = set()


def run_in_worker(execution_id: int, *, timeout: float | None = None) -> Execution | None:
    """Run one execution in this worker process and record its outcome.

    Idempotent: ``runner.execute`` starts the execution only if it is still ``queued``, so a
    second delivery of the same task (a re-enqueue, a duplicate) runs nothing. The worker
    process keeps a heartbeat row (the one the Celery executor's workers keep) while it lives:
    if it dies mid-run, the leader marks the execution ``interrupted``.
    """
    close_old_connections()
    heartbeat.ensure()
    _stop_heartbeat_at_exit()
    execution = runner.load(execution_id)
    if execution is None:
        return None
    # The scheduler claims occurrences a moment ahead (CLAIM_AHEAD): start each at its time
    # (a backend without run_after support may hand it over that early).
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
        # Marked interrupted once the database is back; the heartbeat goes on meanwhile.
        heartbeat.settle_later(
            execution_id, f"The database was unavailable while recording the outcome: {exc}"
        )
        raise  # the task result records the failure; the execution row stays the truth
    finally:
        if watchdog is not None:
            watchdog.cancel()
        close_old_connections()


def _time_out(execution_id: int) -> None:
    try:
        runner.time_out(
            execution_id, detail="the task worker cannot stop the handler; its result is discarded"
        )
    except DatabaseError as exc:
        logger.error("Could not mark execution %s timed out: %s", execution_id, exc)
    finally:
        connection.close()


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
