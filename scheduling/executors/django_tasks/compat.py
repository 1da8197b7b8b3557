"""Django's task framework wherever it is installed: ``django.tasks`` (Django 6.0+), else the
``django_tasks`` backport (Django 5.2).

Imported only by what needs the framework (the task module, enqueueing, the system check),
never at the import of the executor, so that the app imports and works without either.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

# Tried in this order: the built-in one wins where both are installed.
CANDIDATES = ("django.tasks", "django_tasks")


@dataclass(frozen=True)
class Framework:
    """The parts of the task framework the executor uses."""

    # "django.tasks" or "django_tasks".
    name: str
    # The ``@task`` decorator.
    task: Any
    # The connection handler of the ``TASKS`` setting: ``task_backends[alias]``.
    task_backends: Any
    min_priority: int
    max_priority: int
    default_priority: int
    # Backends that run nothing (Dummy) or run in the enqueueing process (Immediate).
    dummy_backend: type
    immediate_backend: type


def framework() -> Framework:
    """Return the installed task framework; ImportError when neither is installed."""
    missing: list[str] = []
    for name in CANDIDATES:
        try:
            package = importlib.import_module(name)
            base = importlib.import_module(f"{name}.base")
            dummy = importlib.import_module(f"{name}.backends.dummy")
            immediate = importlib.import_module(f"{name}.backends.immediate")
            if name == "django_tasks":
                # Resets the backends when TASKS changes (override_settings), as
                # django.tasks does by itself; also its log lines for enqueued tasks.
                importlib.import_module("django_tasks.signals")
        except ImportError as exc:
            missing.append(f"{name} ({exc})")
            continue
        return Framework(
            name=name,
            task=package.task,
            task_backends=package.task_backends,
            min_priority=base.TASK_MIN_PRIORITY,
            max_priority=base.TASK_MAX_PRIORITY,
            default_priority=base.DEFAULT_TASK_PRIORITY,
            dummy_backend=dummy.DummyBackend,
            immediate_backend=immediate.ImmediateBackend,
        )
    raise ImportError(
        "Django's task framework is not installed: neither django.tasks (Django 6.0+) nor the "
        f"django_tasks backport could be imported: {'; '.join(missing)}"
    )
