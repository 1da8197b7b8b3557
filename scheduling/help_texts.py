"""Help texts that show the values in force, not only the names of the settings behind them.

A model's help text is fixed when the code is written (its migrations record it), so it can
only name a setting. The admin's schedule form and the API's serializers replace it with the
text built here when they are built, so a form or the OpenAPI schema shows "Empty: the
default, 1 hour (SCHEDULING_DEFAULT_TIMEOUT)." and follows a changed setting at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from django.utils.functional import lazy
from django.utils.translation import gettext, ngettext

from .conf import conf

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise

_UNITS: tuple[tuple[int, Callable[[int], str]], ...] = (
    (86_400, lambda n: ngettext("%(count)d day", "%(count)d days", n)),
    (3_600, lambda n: ngettext("%(count)d hour", "%(count)d hours", n)),
    (60, lambda n: ngettext("%(count)d minute", "%(count)d minutes", n)),
    (1, lambda n: ngettext("%(count)d second", "%(count)d seconds", n)),
)


def format_seconds(seconds: float) -> str:
    """Return a number of seconds in words: "1 hour", "1 hour 30 minutes", "2.5 seconds"."""
    if seconds != int(seconds) or seconds < 1:
        return ngettext("%(count)s second", "%(count)s seconds", 2) % {"count": f"{seconds:g}"}
    rest = int(seconds)
    parts = []
    for size, words in _UNITS:
        count, rest = divmod(rest, size)
        if count:
            parts.append(words(count) % {"count": count})
    return " ".join(parts)


def schedule_help_texts() -> dict[str, str]:
    """Return the help texts of the schedule fields whose defaults or bounds are settings."""
    return {
        "interval_seconds": gettext(
            "Interval: seconds from one run to the next; at least %(value)s "
            "(SCHEDULING_MIN_INTERVAL)."
        )
        % {"value": format_seconds(conf.MIN_INTERVAL)},
        "timeout_seconds": gettext(
            "A run that takes longer is recorded as timed out (the process executor stops it). "
            "Empty: the default, %(value)s (SCHEDULING_DEFAULT_TIMEOUT)."
        )
        % {"value": format_seconds(conf.DEFAULT_TIMEOUT)},
        "retry_backoff_seconds": gettext(
            "The wait before the first retry; it doubles for each further retry, up to "
            "%(value)s (SCHEDULING_MAX_RETRY_BACKOFF)."
        )
        % {"value": format_seconds(conf.MAX_RETRY_BACKOFF)},
        "misfire_grace_seconds": gettext(
            "A run that cannot start within this time after it was due (the scheduler was down, "
            "the clock jumped) is recorded as missed. Empty: the default, %(value)s "
            "(SCHEDULING_DEFAULT_MISFIRE_GRACE)."
        )
        % {"value": format_seconds(conf.DEFAULT_MISFIRE_GRACE)},
    }


def setting_help(build: Callable[[], str]) -> StrOrPromise:
    """Return a help text that ``build`` writes each time it is shown (it reads settings).

    For form fields declared at import time, such as a registered type's options, which must
    not read settings then.
    """
    return lazy(build, str)()
