"""Running a periodic scan: call its registered scan type's handler."""

from __future__ import annotations

from ..context import ExecutionContext
from ..models import PeriodicScan
from ..registry import scan_types


def run_scan(scan: PeriodicScan, context: ExecutionContext) -> dict:
    """Call the registered scan type's handler (awaited if async); return its JSON result."""
    entry = scan_types.get(scan.scan_type)
    if entry.func is None:
        raise TypeError(f"Scan type {scan.scan_type!r} has no handler.")
    return context.call(entry.func, scan) or {}
