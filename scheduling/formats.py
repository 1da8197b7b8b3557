"""How times read for people, one way wherever the app shows them: the admin, the reports.

``2026-03-29 08:00:00 CEST``: 24-hour, with seconds and the zone's label, in the zone the
caller names (a schedule's) or else the current time zone.
"""

from __future__ import annotations

import zoneinfo
from datetime import datetime, tzinfo

from django.utils import timezone

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def format_time(value: datetime | None, zone: str | None = None) -> str:
    """Return ``value`` as ``2026-03-29 08:00:00 CEST`` in ``zone`` (an IANA name) or else the
    current time zone; "-" for no time."""
    if value is None:
        return "-"
    local = value.astimezone(_zone_or_current(zone))
    label = local.tzname() or ""
    if not label or label[0] in "+-":
        # A zone without an abbreviation ("+03"): name the offset instead.
        label = f"UTC{label}" if label else local.strftime("UTC%z")
    return f"{local.strftime(TIME_FORMAT)} {label}"


def _zone_or_current(zone: str | None) -> tzinfo:
    if zone:
        try:
            return zoneinfo.ZoneInfo(zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            pass
    return timezone.get_current_timezone()
