"""The one table of schedule kinds, and what runs each.

Everything that differs between kinds is read from ``KINDS``: the model and the select_related
name the runner, the dispatcher and the CLI load it by, the field that holds its registered type
key and the registry of those keys, its API prefix, its name in the CLI and in exported files
(the ``Kind`` value), and the function that runs it. Adding a kind means: its model (a
``Schedule`` subclass with ``KIND``, and a ``Kind`` value), its migration, its serializer in
``scheduling.api.serializers`` and one entry here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import prefetch_related_objects
from django.utils.translation import gettext as _

from ..context import ExecutionContext
from ..exceptions import UnknownTaskType
from ..models import CleanupConfig, Kind, PeriodicScan, Report, Schedule, ScheduledTask
from ..registry import Registry, cleanup_targets, report_types, scan_types, task_types
from ..validators import check_options_size
from .cleanup import run_cleanup_config
from .report import produce_report
from .scan import run_scan
from .task import run_task


@dataclass(frozen=True)
class KindSpec:
    """What the app needs to know about one kind of schedule."""

    kind: str
    model: type[Schedule]
    # The field holding the registered key, and the registry it must be in.
    type_field: str
    registry: Registry
    # ``/api/<api_prefix>/``.
    api_prefix: str
    run: Callable[[Any, ExecutionContext], dict]

    @property
    def relation(self) -> str:
        """The name of the kind's row from ``Schedule`` (``select_related``, admin URLs)."""
        return self.model._meta.model_name or ""

    @property
    def label(self) -> str:
        return str(Kind(self.kind).label)

    def type_key(self, schedule: Schedule) -> str:
        """Return the registered type key of ``schedule`` (an instance of this kind)."""
        return str(getattr(schedule, self.type_field, ""))


KINDS: dict[str, KindSpec] = {
    spec.kind: spec
    for spec in (
        KindSpec(Kind.SCAN, PeriodicScan, "scan_type", scan_types, "scans", run_scan),
        KindSpec(Kind.REPORT, Report, "report_type", report_types, "reports", produce_report),
        KindSpec(
            Kind.CLEANUP,
            CleanupConfig,
            "cleanup_target",
            cleanup_targets,
            "cleanups",
            run_cleanup_config,
        ),
        KindSpec(Kind.TASK, ScheduledTask, "task_type", task_types, "tasks", run_task),
    )
}


def get_kind(kind: str) -> KindSpec:
    """Return the table entry of ``kind`` (a ``Kind`` value); KeyError if there is none."""
    return KINDS[kind]


def all_kinds() -> Iterator[KindSpec]:
    return iter(KINDS.values())


def relations(prefix: str = "") -> list[str]:
    """The ``select_related`` names that load every kind's row (``prefix``: ``"schedule__"``)."""
    return [f"{prefix}{spec.relation}" for spec in KINDS.values()]


def load_kind_rows(schedules: Iterable[Schedule]) -> None:
    """Load the kind rows of those of ``schedules`` loaded without theirs: a query per kind.

    For work over many executions whose schedules were selected alone (their log lines name
    the registered type, read from the kind's row).
    """
    missing: dict[str, list[Schedule]] = {}
    for schedule in schedules:
        spec = KINDS.get(schedule.kind)
        if (
            type(schedule) is Schedule
            and spec is not None
            and not getattr(Schedule, spec.relation).is_cached(schedule)
        ):
            missing.setdefault(schedule.kind, []).append(schedule)
    for kind, group in missing.items():
        prefetch_related_objects(group, KINDS[kind].relation)


def run_kind(schedule: Schedule, context: ExecutionContext) -> dict:
    """Run ``schedule`` (an instance of its concrete kind) and return its JSON result."""
    spec = KINDS.get(schedule.kind)
    if spec is None or not isinstance(schedule, spec.model):
        raise TypeError(f"Schedule {schedule.pk} has no kind row ({schedule.kind!r}).")
    return spec.run(schedule, context)


def clean_run_options(schedule: Schedule, options: object) -> dict[str, Any]:
    """Validate one run's own ``options`` merged over ``schedule``'s; return the run's, cleaned.

    Raises ``ValidationError`` keyed on ``options``: not a JSON object, an option the type
    does not have, a value its form rejects (each message names the option).
    """
    if options is None or options == {}:
        return {}
    if not isinstance(options, dict):
        raise ValidationError({"options": _("Options must be a JSON object.")})
    too_large = check_options_size(options)
    if too_large is not None:
        raise ValidationError({"options": too_large})
    spec = KINDS.get(schedule.kind)
    if spec is None:
        raise ValidationError({"options": _("This kind of schedule takes no run options.")})
    try:
        entry = spec.registry.get(spec.type_key(schedule))
    except UnknownTaskType as exc:
        raise ValidationError({"options": str(exc)}) from exc
    cleaned = entry.validate_options({**(getattr(schedule, "options", None) or {}), **options})
    return {name: cleaned[name] for name in options if name in cleaned}


def relation_of(kind: str) -> str | None:
    """Return the ``select_related`` name (the model name) of ``kind``, or None if unknown."""
    spec = KINDS.get(kind)
    return spec.relation if spec else None
