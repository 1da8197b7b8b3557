"""A field's value between the file and the model: export writes it, import reads it back."""

from __future__ import annotations

import zoneinfo
from datetime import date, datetime, time
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from ..exceptions import InvalidTrigger
from ..triggers import format_weekdays, parse_weekdays

TEXT_FIELDS = (models.CharField, models.TextField)


def export_value(value: Any) -> Any:
    """Return a field's value as the file holds it: datetimes in UTC, ISO 8601; a wall-clock
    time as "HH:MM:SS"."""
    if isinstance(value, datetime):
        return value.astimezone(zoneinfo.ZoneInfo("UTC")).isoformat()
    if isinstance(value, time):
        return value.isoformat()
    return value


def import_value(model_field: models.Field, value: Any, *, zone: str) -> Any:
    """Return the file's ``value`` for ``model_field``; raise ``ValidationError``.

    YAML and JSON types are held to the field's (a quoted name stays text, ``yes`` is no
    number); a datetime without an offset is read in ``zone``. A time of day is "HH:MM" or
    "HH:MM:SS"; weekdays (``calendar_weekdays``) are "mon,thu" or a list of names.
    """
    if value is None:
        if not model_field.null:
            raise ValidationError("may not be empty (null)")
        return None
    if model_field.name == "calendar_weekdays":
        return _import_weekdays(value)
    if isinstance(model_field, models.TimeField):
        return _import_time(value)
    if isinstance(model_field, TEXT_FIELDS) and not model_field.choices:
        if not isinstance(value, str):
            raise ValidationError("must be a string (quote it)")
        return value
    if isinstance(model_field, models.DateTimeField):
        return _import_datetime(value, zone=zone)
    if isinstance(model_field, models.BooleanField) and not isinstance(value, bool):
        raise ValidationError("must be true or false")
    if isinstance(model_field, models.IntegerField) and isinstance(value, bool):
        raise ValidationError("must be a whole number")
    if isinstance(model_field, models.JSONField):
        return value
    return model_field.to_python(value)


def _import_datetime(value: Any, *, zone: str) -> datetime:
    if isinstance(value, str):
        parsed = models.DateTimeField().to_python(value)
    elif isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        raise ValidationError("must be a date and a time, for example 2026-01-31T09:00")
    else:
        raise ValidationError("must be an ISO 8601 date and time")
    if timezone.is_naive(parsed):
        try:
            parsed = timezone.make_aware(parsed, zoneinfo.ZoneInfo(zone))
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValidationError("has no UTC offset and the time zone is unknown") from None
    return parsed


def _import_time(value: Any) -> time:
    if isinstance(value, time):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads an unquoted 12:30 as the base-60 number 750.
        raise ValidationError("must be a time of day in quotes, for example '09:30'")
    if not isinstance(value, str):
        raise ValidationError("must be a time of day, for example '09:30' or '09:30:00'")
    for pattern in ("%H:%M", "%H:%M:%S", "%H:%M:%S.%f"):
        try:
            return datetime.strptime(value.strip(), pattern).time()
        except ValueError:
            continue
    raise ValidationError("must be a time of day, for example '09:30' or '09:30:00'")


def _import_weekdays(value: Any) -> str:
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        value = ",".join(value)
    elif not isinstance(value, str):
        raise ValidationError("must be weekdays, as 'mon,thu' or a list [mon, thu]")
    try:
        return format_weekdays(parse_weekdays(value))
    except InvalidTrigger:
        return value  # the schedule's validation names the unknown weekday
