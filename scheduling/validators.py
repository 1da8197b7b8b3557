"""Validators shared by the app's models and by the default tenant model."""

from __future__ import annotations

import zoneinfo
from typing import Any

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


def has_null_character(value: Any) -> bool:
    """Return whether a string anywhere in ``value`` (dict keys included) contains U+0000.

    PostgreSQL can neither store nor compare text with a NUL in it (text and jsonb alike), so
    such input is refused as invalid on every database, before any query sees it.
    """
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list | tuple):
            pending.extend(item)
    return False


def null_character_errors(instance: Any) -> dict[str, str]:
    """Return a "no null characters" error for each field of ``instance`` that holds one."""
    return {
        field.name: _("Null characters are not allowed.")
        for field in instance._meta.concrete_fields
        if has_null_character(getattr(instance, field.attname, None))
    }
