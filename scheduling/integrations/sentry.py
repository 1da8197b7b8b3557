"""Sentry: a handler's exception as an event, and (opt-in) a cron monitor per schedule.

Active where the project initialised the Sentry SDK (``sentry_sdk.init``); without the
package, or before ``init``, every function here does nothing.

- **Exceptions.** A handler's exception is captured with the tags ``scheduling.tenant``,
  ``scheduling.schedule``, ``scheduling.kind`` and ``scheduling.type`` and the fingerprint
  ``["scheduling", <schedule id>, <exception type>]``: one issue per schedule and kind of
  failure, not one per execution nor one for all schedules together.
- **Cron monitors** (``SCHEDULING_SENTRY_MONITORS = True``). Each run of a cron or interval
  schedule checks in ``in_progress`` as its handler starts and ``ok`` or ``error`` as it ends,
  with the duration, to the monitor ``schedule-<id>``. Every check-in carries the monitor's
  config, so Sentry creates the monitor and keeps it in step with the schedule: the cron
  expression or the interval, the time zone, the check-in margin (the misfire grace) and the
  maximum runtime (the timeout), both in whole minutes. Schedules that Sentry cannot describe
  (once, calendar, intervals that are no whole number of minutes, cron expressions with
  ``L`` or ``#``) check in with no monitor.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..conf import conf
from ..logs import type_key_of
from ..models import Execution, Schedule, Status, TriggerType

if TYPE_CHECKING:
    from sentry_sdk._types import MonitorConfig

try:
    import sentry_sdk
    from sentry_sdk.crons import capture_checkin
except ImportError:  # the `sentry` extra is not installed
    sentry_sdk = None  # type: ignore[assignment]

# Sentry's interval units, largest first, in seconds.
INTERVAL_UNITS = (("week", 604_800), ("day", 86_400), ("hour", 3_600), ("minute", 60))
# The statuses of an outcome's check-in; the others (cancelled, skipped) send none.
CHECK_IN_STATUS: dict[str, str] = {
    Status.SUCCEEDED: "ok",
    Status.FAILED: "error",
    Status.TIMED_OUT: "error",
    Status.INTERRUPTED: "error",
}


def active() -> bool:
    """Whether the project initialised Sentry in this process."""
    return sentry_sdk is not None and sentry_sdk.get_client().is_active()


def tags(execution: Execution) -> dict[str, str]:
    """Return the tags of ``execution``'s events: its tenant, schedule, kind and type."""
    schedule = execution.schedule if execution.schedule_id else None
    return {
        "scheduling.tenant": str(execution.tenant_id or "system"),
        "scheduling.schedule": str(execution.schedule_id or ""),
        "scheduling.kind": execution.schedule_kind,
        "scheduling.type": type_key_of(schedule),
    }


def capture_failure(execution: Execution, exc: BaseException) -> None:
    """Send ``exc``, raised by ``execution``'s handler, to Sentry (where it is set up)."""
    if not active():
        return
    with sentry_sdk.new_scope() as scope:
        for key, value in tags(execution).items():
            scope.set_tag(key, value)
        scope.set_context(
            "scheduling",
            {
                "execution_id": execution.pk,
                "schedule_name": execution.schedule_name,
                "scheduled_for": execution.scheduled_for.isoformat(),
                "attempt": execution.attempt,
                "trigger": execution.trigger,
            },
        )
        scope.fingerprint = ["scheduling", str(execution.schedule_id), type(exc).__name__]
        sentry_sdk.capture_exception(exc)


def monitor_slug(schedule: Schedule) -> str:
    return f"schedule-{schedule.pk}"


def monitor_config(schedule: Schedule) -> MonitorConfig | None:
    """Return the config of ``schedule``'s monitor, or None where Sentry cannot describe it."""
    sentry_schedule: Any
    if schedule.trigger_type == TriggerType.CRON:
        expression = (schedule.cron_expression or "").strip()
        fields = expression.split()
        if len(fields) != 5 or any(mark in expression for mark in ("L", "#", "W", "?")):
            return None
        sentry_schedule = {"type": "crontab", "value": expression}
    elif schedule.trigger_type == TriggerType.INTERVAL:
        seconds = schedule.interval_seconds or 0
        unit = next(
            ((name, size) for name, size in INTERVAL_UNITS if seconds and seconds % size == 0),
            None,
        )
        if unit is None:
            return None
        sentry_schedule = {"type": "interval", "value": seconds // unit[1], "unit": unit[0]}
    else:
        return None
    return {
        "schedule": sentry_schedule,
        "timezone": schedule.effective_timezone,
        "checkin_margin": max(1, math.ceil(schedule.effective_misfire_grace / 60)),
        "max_runtime": max(1, math.ceil(schedule.effective_timeout / 60)),
    }


def start_monitor(execution: Execution) -> Callable[[str], None] | None:
    """Check in ``execution``'s start; return what checks in its outcome (None: nothing to do).

    Only with ``SCHEDULING_SENTRY_MONITORS`` and Sentry set up, for a run of a schedule whose
    monitor Sentry can describe.
    """
    if not conf.SENTRY_MONITORS or not active() or not execution.schedule_id:
        return None
    schedule = execution.schedule
    assert schedule is not None  # noqa: S101  # schedule_id is set
    config = monitor_config(schedule)
    if config is None:
        return None
    slug = monitor_slug(schedule)
    check_in_id = capture_checkin(monitor_slug=slug, status="in_progress", monitor_config=config)
    started = time.monotonic()

    def finish(status: str) -> None:
        outcome = CHECK_IN_STATUS.get(status)
        if outcome is None:
            return
        capture_checkin(
            monitor_slug=slug,
            check_in_id=check_in_id,
            status=outcome,
            duration=time.monotonic() - started,
            monitor_config=config,
        )

    return finish
