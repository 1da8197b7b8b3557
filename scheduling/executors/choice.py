"""Which executor runs which kind of schedule (``SCHEDULING_EXECUTOR``, per kind
``SCHEDULING_EXECUTOR_OVERRIDES``), and the system checks of the selected executors."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.core.checks import Error

from ..conf import conf
from ..models import Kind
from . import EXECUTORS, get_executor_class

if TYPE_CHECKING:
    from django.core.checks import CheckMessage


def executor_name(kind: str) -> str:
    """Return the name of the executor that runs schedules of ``kind``."""
    overrides = conf.EXECUTOR_OVERRIDES if isinstance(conf.EXECUTOR_OVERRIDES, dict) else {}
    return str(overrides.get(kind, conf.EXECUTOR))


def kinds_run_by(name: str) -> list[str]:
    """Return the kinds of schedule that executor ``name`` runs under the current settings."""
    return [kind for kind in Kind.values if executor_name(kind) == name]


def selected() -> list[str]:
    """Return the names of the executors the settings select, each once, known ones only."""
    names = {executor_name(kind): None for kind in Kind.values}
    return [name for name in names if name in EXECUTORS]


def check_executors(**kwargs: Any) -> list[CheckMessage]:
    """Run the ``check()`` of every executor the settings select."""
    messages: list[CheckMessage] = []
    for name in selected():
        try:
            executor = get_executor_class(name)
        except ImportError as exc:
            messages.append(
                Error(
                    f"The {name} executor cannot be imported: {exc}.",
                    hint="Install the extra it needs (see the README's settings).",
                    id="scheduling.E038",
                )
            )
            continue
        messages.extend(executor.check())
    return messages
