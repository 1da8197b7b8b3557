"""Executors: what runs the executions the scheduler claims.

``EXECUTORS`` maps each ``SCHEDULING_EXECUTOR`` name to its class (a ``base.BaseExecutor``),
by dotted path so that an executor's optional dependencies are imported only when it is
selected. Adding an executor is one module and one entry here. Which executor runs which
kind of schedule is ``choice``'s business.

This module imports no models: a ``process`` executor's child imports the package before it
sets Django up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.utils.module_loading import import_string

if TYPE_CHECKING:
    from .base import BaseExecutor

EXECUTORS: dict[str, str] = {
    "thread": "scheduling.executors.thread.ThreadExecutor",
    "process": "scheduling.executors.process.ProcessExecutor",
    "celery": "scheduling.executors.celery.CeleryExecutor",
    "django_tasks": "scheduling.executors.django_tasks.DjangoTasksExecutor",
}


def get_executor_class(name: str) -> type[BaseExecutor]:
    """Return the executor class named ``name``; KeyError for a name not in ``EXECUTORS``."""
    executor: type[BaseExecutor] = import_string(EXECUTORS[name])
    return executor
