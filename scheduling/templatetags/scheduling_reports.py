"""Filters of the report templates: times, statuses and kinds as people read them.

A report renders in its schedule's time zone (``kinds.report.render`` makes it current), so a
time reads as it does in the admin: ``2026-03-29 08:00:00 CEST``.
"""

from __future__ import annotations

from datetime import datetime

from django import template

from ..formats import format_time
from ..models import Kind, Status

register = template.Library()


@register.filter
def local_time(value: datetime | None) -> str:
    """Return ``value`` in the current time zone, with seconds and the zone's label."""
    return format_time(value)


@register.filter
def status_label(value: str | None) -> str:
    """Return the label of an execution status ("Timed out" for ``timed_out``)."""
    if value in Status.values:
        return str(Status(value).label)
    return value or "-"


@register.filter
def kind_label(value: str | None) -> str:
    """Return the label of a schedule kind ("Periodic scan" for ``scan``)."""
    if value in Kind.values:
        return str(Kind(value).label)
    return value or "-"
