"""Validators shared by the app's models and by the default tenant model."""

from __future__ import annotations

import zoneinfo

from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _


def validate_timezone_name(value: str) -> None:
    """Reject names that are not IANA time zones."""
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationError(
            _("%(value)s is not a known IANA time zone (for example Europe/Berlin)."),
            code="invalid_timezone",
            params={"value": value},
        ) from exc
