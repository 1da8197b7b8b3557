"""The worker's side of the ``django_tasks`` executor: run one execution in a task worker.

This is the body of the task (``tasks.execute``), whatever runs it: django-tasks-db's
``db_worker``, another backend's worker, or the ImmediateBackend in the enqueueing process.
"""

from __future__ import annotations

from ...models import Execution
from ..heartbeats import run_in_worker as run_queued


def run_in_worker(execution_id: int, *, timeout: float | None = None) -> Execution | None:
    """Run one execution in this worker process and record its outcome (once).

    A task worker cannot stop a handler that overruns: the watchdog records ``timed_out``
    and the late result is discarded.
    """
    return run_queued(
        execution_id,
        timeout=timeout,
        timeout_detail="the task worker cannot stop the handler; its result is discarded",
    )
