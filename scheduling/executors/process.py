"""The ``process`` executor: each execution in a child process, so its timeout really ends it.

Executions wait in the thread executor's pool (priority, per-tenant limits, start times);
a worker thread then starts a child with the ``spawn`` method: a fresh interpreter that sets
Django up with the settings module it inherits and opens its own database connection (a forked
child would share the parent's connections). The child records the outcome itself; when the
timeout passes, the parent kills it and records ``timed_out``.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from typing import TYPE_CHECKING

from django.conf import ENVIRONMENT_VARIABLE
from django.core.checks import Error
from django.db import DatabaseError, connection

from .. import runner
from ..models import ACTIVE_STATUSES, Execution, Status
from .child import run_execution
from .thread import ThreadExecutor

if TYPE_CHECKING:
    from django.core.checks import CheckMessage

logger = logging.getLogger("scheduling.executors.process")


def run_in_child(execution_id: int, *, timeout: float) -> int | None:
    """Run ``execution_id`` in a child process; kill it at ``timeout``. Return its exit code."""
    context = multiprocessing.get_context("spawn")
    process = context.Process(
        target=run_execution,
        args=(execution_id,),
        name=f"scheduling-execution-{execution_id}",
    )
    process.start()
    if _wait_unless_cancelled(process, execution_id, timeout):
        process.kill()
        process.join(10)
        logger.warning("Execution %s cancelled: its process was terminated.", execution_id)
        return process.exitcode
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


# How often the parent looks whether an operator cancelled its child's execution (seconds).
CANCEL_POLL = 1.0


def _wait_unless_cancelled(
    process: multiprocessing.process.BaseProcess, execution_id: int, timeout: float
) -> bool:
    """Wait for ``process`` up to ``timeout`` s; return True when its execution was cancelled.

    The cancel (``runner.cancel``) has already recorded the execution ``cancelled``; the
    child still running must then be stopped, which only its parent can do.
    """
    deadline = time.monotonic() + timeout
    while process.is_alive():
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        process.join(min(CANCEL_POLL, left))
        if not process.is_alive():
            return False
        try:
            cancelled = Execution.objects.filter(pk=execution_id, status=Status.CANCELLED).exists()
        except DatabaseError:
            connection.close()  # the database is away: keep waiting; the timeout still holds
            continue
        if cancelled:
            return True
    return False


class ProcessExecutor(ThreadExecutor):
    """Run each execution in a child process that its timeout kills."""

    name = "process"

    @classmethod
    def check(cls) -> list[CheckMessage]:
        if os.environ.get(ENVIRONMENT_VARIABLE):
            return []
        return [
            Error(
                f"The process executor is selected but {ENVIRONMENT_VARIABLE} is not set: its "
                "child processes could not set Django up.",
                hint=f"Set {ENVIRONMENT_VARIABLE}, or use SCHEDULING_EXECUTOR = 'thread'.",
                id="scheduling.E037",
            )
        ]

    def watchdog_timeout(self, timeout: float) -> float | None:
        return None  # the child is killed at the timeout instead (run_in_child)

    def run(self, execution_id: int, execution: Execution | None, timeout: float) -> None:
        # Claimed ahead while others of its schedule ran: decided here, before a child starts.
        if execution is None or not runner.skipped_for_overlap(execution, self.context.writer):
            run_in_child(execution_id, timeout=timeout)
