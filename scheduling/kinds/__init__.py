"""How each kind of schedule runs once its execution has started."""

from __future__ import annotations

from typing import Any

from ..context import ExecutionContext
from ..models import CleanupConfig, PeriodicScan, Report


def run_scan(scan: PeriodicScan, context: ExecutionContext) -> dict:
    """Call the registered scan type's handler."""
    from ..registry import scan_types

    entry = scan_types.get(scan.scan_type)
    return entry.func(scan, context) or {}


def run_report(report: Report, context: ExecutionContext) -> dict:
    """Produce the report's data, store it as an artifact in its format, e-mail it."""
    from .report import produce_report

    return produce_report(report, context)


def run_cleanup(cleanup: CleanupConfig, context: ExecutionContext) -> dict:
    """Delete the target's rows of this tenant older than ``retain_days``, in batches."""
    from .cleanup import run_cleanup_config

    return run_cleanup_config(cleanup, context)


def run_kind(schedule: Any, context: ExecutionContext) -> dict:
    """Run ``schedule`` (a concrete kind) and return its JSON result."""
    if isinstance(schedule, PeriodicScan):
        return run_scan(schedule, context)
    if isinstance(schedule, Report):
        return run_report(schedule, context)
    if isinstance(schedule, CleanupConfig):
        return run_cleanup(schedule, context)
    raise TypeError(f"Schedule {schedule.pk} has no kind row ({schedule.kind!r}).")
