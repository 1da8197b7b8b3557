"""The worker's side of the ``celery`` executor: run one execution in a Celery worker process."""

from __future__ import annotations

from ...models import Execution
from ..heartbeats import run_in_worker as run_queued


def run_in_worker(execution_id: int, *, timeout: float | None = None) -> Execution | None:
    """Run one execution in this worker process (the body of the Celery task).

    A database error propagates: the task retries it, and runs the execution only if it is
    still queued.
    """
    return run_queued(
        execution_id,
        timeout=timeout,
        timeout_detail="the Celery soft time limit interrupts the handler",
    )
