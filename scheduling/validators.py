"""Validators shared by the app's models and by the default tenant model."""

from __future__ import annotations

import functools
import json
import zoneinfo
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

if TYPE_CHECKING:
    from django.db.models import Model
    from django_stubs_ext import StrOrPromise


@functools.cache
def timezone_names() -> tuple[str, ...]:
    """Return the IANA time zone names this system knows, sorted."""
    return tuple(sorted(zoneinfo.available_timezones()))


@functools.cache
def _timezones_by_lower_name() -> dict[str, str]:
    return {name.lower(): name for name in timezone_names()}


def find_timezone(name: str) -> str | None:
    """Return the IANA name ``name`` spells in any case ("europe/berlin"), else None."""
    return _timezones_by_lower_name().get(name.strip().lower())


def validate_timezone_name(value: str) -> None:
    """Reject names that are not IANA time zones."""
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        known = find_timezone(value) if isinstance(value, str) else None
        if known is not None:
            raise ValidationError(
                _("%(value)s is not a known IANA time zone; did you mean %(known)s?"),
                code="invalid_timezone",
                params={"value": value, "known": known},
            ) from exc
        raise ValidationError(
            _("%(value)s is not a known IANA time zone (for example Europe/Berlin)."),
            code="invalid_timezone",
            params={"value": value},
        ) from exc


def check_end_not_passed(
    end_at: datetime | None, saved: datetime | None, now: datetime | None = None
) -> StrOrPromise | None:
    """Return an error when a schedule is given an end that has already passed.

    Only a new or changed end counts (``saved`` is the stored one): a schedule that has ended
    since can still be edited. The admin and the API ask this of what a person enters; an
    import or a declaration in code may restore a schedule that has ended.
    """
    if end_at is None or end_at == saved or end_at > (now or timezone.now()):
        return None
    return _(
        "This end has already passed: the schedule would never run again. Choose a later time, "
        "or leave it empty."
    )


def has_null_character(value: object) -> bool:
    """Return whether a string anywhere in ``value`` (dict keys included) contains U+0000.

    PostgreSQL can neither store nor compare text with a NUL in it (text and jsonb alike), so
    such input is refused as invalid on every database, before any query sees it.
    """
    pending: list[object] = [value]
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


def null_character_errors(instance: Model) -> dict[str, StrOrPromise]:
    """Return a "no null characters" error for each field of ``instance`` that holds one."""
    return {
        field.name: _("Null characters are not allowed.")
        for field in instance._meta.concrete_fields
        if has_null_character(getattr(instance, field.attname, None))
    }


# Upper bounds beyond which the scheduler's date arithmetic overflows (timedelta, thread
# timeouts) long before any sensible schedule needs them.
DAY = 86_400
NUMBER_LIMITS: dict[str, int] = {
    "interval_seconds": 100 * 366 * DAY,
    "calendar_every": 1_000,  # every 1,000 months is 83 years: beyond any plan
    "jitter_seconds": 7 * DAY,
    "timeout_seconds": 7 * DAY,
    "retry_backoff_seconds": 30 * DAY,
    "misfire_grace_seconds": 30 * DAY,
    "max_executions": 2**31 - 1,
    "max_retries": 32_767,
    "max_instances": 32_767,
    "priority": 32_767,
    "retain_days": 100 * 366,
    "batch_size": 1_000_000,
}
NUMBER_MINIMUMS: dict[str, int] = {"priority": -32_768}
DATETIME_FIELDS = ("run_at", "start_at", "end_at", "paused_until")
# Datetimes far from now overflow when shifted by a zone offset or a jitter.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


# Sizes past which input is abuse rather than configuration (issue 17): they bound what one
# request can make the database, the audit trail and every later page that shows it carry.
DESCRIPTION_MAX_LENGTH = 2_000  # characters
MAX_RECIPIENTS = 50  # report recipients
RECIPIENTS_MAX_LENGTH = MAX_RECIPIENTS * 255  # characters of the recipients text
OPTIONS_MAX_BYTES = 16 * 1024  # a schedule's or a run's options, serialized as JSON (UTF-8)
# The audit entry a change writes: a longer value is cut (with a marker), and the whole
# entry's changes are kept under the entry limit (``services.bounded_changes``).
AUDIT_VALUE_MAX_BYTES = OPTIONS_MAX_BYTES
AUDIT_ENTRY_MAX_BYTES = 64 * 1024


def json_size(value: object) -> int:
    """Return the size in bytes of ``value`` serialized as compact JSON (UTF-8)."""
    text = json.dumps(value, cls=DjangoJSONEncoder, separators=(",", ":"), ensure_ascii=False)
    return len(text.encode())


def check_options_size(options: object) -> StrOrPromise | None:
    """Return an error if ``options`` serialize to more than ``OPTIONS_MAX_BYTES``."""
    try:
        size = json_size(options)
    except (TypeError, ValueError):
        return None  # not JSON at all: the field's own validation says so
    if size > OPTIONS_MAX_BYTES:
        return _("Options may take at most %(max)d bytes as JSON; these take %(size)d.") % {
            "max": OPTIONS_MAX_BYTES,
            "size": size,
        }
    return None


def check_sizes(schedule: Model) -> dict[str, list[StrOrPromise]]:
    """Return errors for a description, recipients or options past the abuse limits."""
    errors: dict[str, list[StrOrPromise]] = {}
    description = getattr(schedule, "description", None)
    if isinstance(description, str) and len(description) > DESCRIPTION_MAX_LENGTH:
        errors["description"] = [
            _("Ensure this value has at most %(max)d characters (it has %(length)d).")
            % {"max": DESCRIPTION_MAX_LENGTH, "length": len(description)}
        ]
    recipients = getattr(schedule, "recipients", None)
    if isinstance(recipients, str):
        count = len([r for r in recipients.replace(",", "\n").splitlines() if r.strip()])
        if count > MAX_RECIPIENTS:
            errors["recipients"] = [
                _("A report may have at most %(max)d recipients (this has %(count)d).")
                % {"max": MAX_RECIPIENTS, "count": count}
            ]
        elif len(recipients) > RECIPIENTS_MAX_LENGTH:
            errors["recipients"] = [
                _("Ensure this value has at most %(max)d characters (it has %(length)d).")
                % {"max": RECIPIENTS_MAX_LENGTH, "length": len(recipients)}
            ]
    if hasattr(schedule, "options"):
        message = check_options_size(schedule.options)
        if message is not None:
            errors["options"] = [message]
    return errors


def check_limits(schedule: Model) -> dict[str, list[StrOrPromise]]:
    """Return errors for values so large (or dates so far) that trigger arithmetic overflows.

    And for texts and options past the abuse limits (``check_sizes``).
    """
    errors: dict[str, list[StrOrPromise]] = check_sizes(schedule)
    for name, maximum in NUMBER_LIMITS.items():
        value = getattr(schedule, name, None)
        minimum = NUMBER_MINIMUMS.get(name)
        if isinstance(value, int) and value > maximum:
            errors[name] = [_("Ensure this value is at most %(max)d.") % {"max": maximum}]
        elif isinstance(value, int) and minimum is not None and value < minimum:
            errors[name] = [_("Ensure this value is at least %(min)d.") % {"min": minimum}]
    for name in DATETIME_FIELDS:
        value = getattr(schedule, name, None)
        if (
            isinstance(value, datetime)
            and timezone.is_aware(value)
            and not EARLIEST <= value < LATEST
        ):
            errors[name] = [_("Use a date between 1970 and 9000.")]
    return errors
