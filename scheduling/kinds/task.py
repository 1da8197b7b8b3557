"""Running a scheduled task: call its registered task type (``@task_type``, ``register_task``)."""

from __future__ import annotations

from typing import Any

from ..context import ExecutionContext
from ..models import ScheduledTask
from ..registry import task_types


def run_task(task: ScheduledTask, context: ExecutionContext) -> dict:
    """Call the task type's handler (awaited if it is ``async def``); return a JSON object.

    A handler that returns something other than a dict (a ``django.tasks`` task's return
    value) has it stored as ``{"return_value": ...}``.
    """
    entry = task_types.get(task.task_type)
    if entry.func is None:
        raise TypeError(f"Task type {task.task_type!r} has no handler.")
    result: Any = context.call(entry.func, task)
    if result is None:
        return {}
    return result if isinstance(result, dict) else {"return_value": result}
