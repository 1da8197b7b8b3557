"""Run one execution in a child process, so that its timeout really ends it.

The child is started with the ``spawn`` method: a fresh interpreter that sets Django up and
opens its own database connection (a forked child would share the parent's connections).
The child records the outcome itself; when the timeout passes, the parent kills it and
records ``timed_out``.
"""

from __future__ import annotations

import logging
import multiprocessing
import os

logger = logging.getLogger("scheduling.executors.process")


def _child_main(execution_id: int) -> None:
    import django

    django.setup()
    from scheduling import runner

    runner.execute(execution_id)


def run_in_child(execution_id: int, *, timeout: float) -> int | None:
    """Run ``execution_id`` in a child process; kill it at ``timeout``. Return its exit code."""
    from django.db import connection

    from scheduling import runner
    from scheduling.models import ACTIVE_STATUSES, Execution

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    context = multiprocessing.get_context("spawn")
    process = context.Process(
        target=_child_main, args=(execution_id,), name=f"scheduling-execution-{execution_id}"
    )
    process.start()
    process.join(timeout)
    if process.is_alive():
        process.kill()
        process.join(10)
        logger.warning("Execution %s killed at its %s s timeout.", execution_id, timeout)
        runner.time_out(
            execution_id, detail=f"the process (pid {process.pid}) was killed at the timeout"
        )
        return process.exitcode
    if process.exitcode != 0:
        # The child died before it could record anything (e.g. killed by the OS).
        connection.close_if_unusable_or_obsolete()
        execution = Execution.objects.select_related("schedule").filter(pk=execution_id).first()
        message = f"The execution process exited with code {process.exitcode}."
        if (
            execution is not None
            and execution.status in ACTIVE_STATUSES
            and execution.mark_failed(message)
        ):
            runner.finish(execution)
    return process.exitcode
