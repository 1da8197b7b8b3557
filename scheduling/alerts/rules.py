"""Alert rules: decide when a schedule is in trouble, and when it is not any more.

A rule (``AlertRule``, per tenant, optionally for one schedule) fires for a schedule when

- ``failing``: the schedule failed ``consecutive_failures`` occurrences in a row, checked by
  ``on_execution_finished`` after every final outcome, or
- ``did_not_run``: it has not succeeded for ``not_succeeded_multiple`` periods, checked by
  ``check_did_not_run`` from the scheduler loop (an occurrence that never fires leaves no row
  to react to, so only a periodic check can notice it).

It notifies (``scheduling.alerts.delivery``) at most once per cool-down for each (rule,
schedule), and once more with ``recovered`` when the schedule succeeds again.

Two decisions shape the code:

- The right to notify is claimed with one conditional ``UPDATE`` of the ``AlertState`` row, so
  two processes (Celery workers finishing runs of the same schedule, or the did-not-run check
  racing a failure) never both notify within one cool-down.
- Nothing is sent inside a transaction: a slow mail server or webhook must not hold the
  database's write lock. The price is "at most once": a process that dies between the claim and
  the send loses that notification until the cool-down has passed.

Alerts must never break the scheduler: both entry points log and swallow every exception.
"""

from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, TypeAlias, TypedDict

from django.db.models import OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from ..exceptions import InvalidTrigger
from ..models import (
    FAILURE_STATUSES,
    AlertDelivery,
    AlertRule,
    AlertState,
    Execution,
    Schedule,
    Status,
    TriggerType,
)
from ..sql import column, keys_in
from ..triggers import next_runs
from .delivery import Alert, deliver

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations

# The same logger as delivery's: one for the whole package.
logger = logging.getLogger("scheduling.alerts")

Event = AlertDelivery.Event

# The most fire times walked to find a did-not-run deadline; beyond, the last gap is repeated.
MAX_PERIODS_WALKED = 50


# -- entry points ------------------------------------------------------------------------------


def on_execution_finished(execution: Execution) -> list[AlertDelivery]:
    """Apply the tenant's alert rules to a final outcome; return the deliveries attempted."""
    try:
        schedule_id = execution.schedule_id
        if schedule_id is None:
            return []
        if execution.status == Status.SUCCEEDED:
            return _recover(execution, schedule_id)
        if execution.status in FAILURE_STATUSES:
            return _check_failing(execution, schedule_id)
    except Exception:
        logger.exception("Alert rules failed for execution %s", execution.pk)
    return []


def needing_rules(executions: list[Execution]) -> list[Execution]:
    """Return those of ``executions`` whose outcome some alert rule or state may act on.

    Two queries for any number of executions: ``on_execution_finished`` on the others would
    find nothing to do (a success with no firing alert, a failure with no failure rule).
    """
    # A run without a schedule is left out here as below; ``__in`` would drop its None anyway.
    succeeded = {
        e.schedule_id
        for e in executions
        if e.schedule_id is not None and e.status == Status.SUCCEEDED
    }
    # Alert rules belong to tenants: a system schedule's executions have none to match.
    failed_tenants = {
        e.tenant_id for e in executions if e.status in FAILURE_STATUSES and e.tenant_id is not None
    }
    firing = keys_in(
        AlertState, "schedule", succeeded, f"{column(AlertState, 'firing')} = %s", [True]
    )
    watched = set(
        AlertRule.objects.filter(
            tenant_id__in=failed_tenants, enabled=True, consecutive_failures__isnull=False
        ).values_list("tenant_id", flat=True)
        if failed_tenants
        else ()
    )
    return [
        e
        for e in executions
        if e.schedule_id is not None
        and (
            (e.status == Status.SUCCEEDED and e.schedule_id in firing)
            or (e.status in FAILURE_STATUSES and e.tenant_id in watched)
        )
    ]


def check_did_not_run(now: datetime | None = None) -> list[AlertDelivery]:
    """Alert on every watched schedule that has not succeeded for its rule's multiple of periods."""
    try:
        return _check_did_not_run(now or timezone.now())
    except Exception:
        logger.exception("The did-not-run alert check failed")
        return []


# -- failing and recovered ---------------------------------------------------------------------


def rules_for_schedule(tenant_id: int, schedule_id: int) -> QuerySet[AlertRule]:
    """Return the enabled rules of ``tenant_id`` that watch ``schedule_id``."""
    # Filtering on the tenant as well as the schedule keeps a rule that names another
    # tenant's schedule (a bad row) from ever firing for it.
    return AlertRule.objects.filter(tenant_id=tenant_id, enabled=True).filter(
        Q(schedule__isnull=True) | Q(schedule_id=schedule_id)
    )


def _check_failing(execution: Execution, schedule_id: int) -> list[AlertDelivery]:
    if execution.tenant_id is None:
        return []  # a system schedule: alert rules belong to tenants
    rules = list(
        rules_for_schedule(execution.tenant_id, schedule_id)
        .filter(consecutive_failures__isnull=False)
        .select_related("tenant")
    )
    if not rules:
        return []
    # Re-read: the runner increments the counter with an F() expression, and a failure with a
    # retry still to come leaves it unchanged.
    row = (
        Schedule.objects.filter(pk=schedule_id)
        .values_list("consecutive_failures", "last_status")
        .first()
    )
    if row is None:
        return []
    failures, last_status = row
    # The query left out rules without a threshold; the check says so to the type checker.
    due = [
        rule
        for rule in rules
        if rule.consecutive_failures is not None and failures >= rule.consecutive_failures
    ]
    now = timezone.now()
    deliveries: list[AlertDelivery] = []
    for rule in _claim(due, schedule_id, reason=Event.FAILING, now=now):
        alert = Alert(
            event=Event.FAILING,
            rule=rule,
            schedule_id=schedule_id,
            schedule_name=execution.schedule_name,
            schedule_kind=execution.schedule_kind,
            consecutive_failures=failures,
            last_status=last_status or execution.status,
            last_error=execution.error,
            at=now,
            execution_id=execution.pk,
        )
        deliveries += deliver(alert)
    return deliveries


def _recover(execution: Execution, schedule_id: int) -> list[AlertDelivery]:
    if execution.tenant_id is None:
        return []
    # Nothing is firing for the schedule on almost every success: a one-table indexed probe
    # answers that for a tenth of the cost of building the joined query below.
    if not AlertState.objects.filter(schedule_id=schedule_id, firing=True).exists():
        return []
    states = list(
        AlertState.objects.filter(
            schedule_id=schedule_id,
            firing=True,
            rule__enabled=True,
            rule__tenant_id=execution.tenant_id,
        )
        .filter(Q(rule__schedule__isnull=True) | Q(rule__schedule_id=schedule_id))
        .select_related("rule__tenant")
    )
    now = timezone.now()
    deliveries: list[AlertDelivery] = []
    for state in states:
        # Conditional, so a recovery is announced once even when two successes race.
        if not AlertState.objects.filter(pk=state.pk, firing=True).update(
            firing=False, reason="", last_notified_at=now
        ):
            continue
        alert = Alert(
            event=Event.RECOVERED,
            rule=state.rule,
            schedule_id=schedule_id,
            schedule_name=execution.schedule_name,
            schedule_kind=execution.schedule_kind,
            consecutive_failures=0,
            last_status=Status.SUCCEEDED,
            last_error="",
            at=now,
            execution_id=execution.pk,
        )
        deliveries += deliver(alert)
    return deliveries


def _claim(
    rules: list[AlertRule], schedule_id: int, *, reason: str, now: datetime
) -> list[AlertRule]:
    """Return the rules of ``rules`` that may notify now for the schedule, marking them firing.

    A rule may notify when it is not firing yet for the schedule, or when its cool-down has
    passed since it last notified (a reminder that the schedule is still in trouble).
    """
    if not rules:
        return []
    AlertState.objects.bulk_create(
        [AlertState(rule=rule, schedule_id=schedule_id) for rule in rules],
        ignore_conflicts=True,
    )
    claimed = []
    for rule in rules:
        quiet_since = now - timedelta(seconds=rule.cooldown_seconds)
        updated = (
            AlertState.objects.filter(rule=rule, schedule_id=schedule_id)
            .filter(
                Q(firing=False)
                | Q(last_notified_at__isnull=True)
                | Q(last_notified_at__lte=quiet_since)
            )
            .update(firing=True, reason=reason, last_notified_at=now)
        )
        if updated:
            claimed.append(rule)
    return claimed


# -- did not run -------------------------------------------------------------------------------


class _LastSuccess(TypedDict):
    latest_success_at: datetime | None


# A schedule annotated with the end of its latest successful run in the history (named apart
# from the field ``Schedule.last_success_at``, which an annotation may not shadow).
_Watched: TypeAlias = "WithAnnotations[Schedule, _LastSuccess]"

# What a deadline depends on: the latest success (else creation), updated_at, paused_until and
# the rule's multiple.
_DeadlineKey: TypeAlias = tuple[datetime, datetime, datetime | None, float]
_Deadlines: TypeAlias = dict[tuple[int, float], tuple[_DeadlineKey, datetime | None]]

# (pk, multiple) -> (what the deadline depends on, deadline). A deadline only changes with a new
# success or a new configuration, so the loop walks cron fire times once per success, not on
# every pass. Rebuilt on every pass, so deleted schedules drop out.
_deadlines: _Deadlines = {}


def _check_did_not_run(now: datetime) -> list[AlertDelivery]:
    global _deadlines
    rules = [
        rule
        for rule in AlertRule.objects.filter(
            enabled=True, not_succeeded_multiple__isnull=False
        ).select_related("tenant")
        # The schedules of an inactive tenant do not run: saying so would be noise.
        if getattr(rule.tenant, "is_active", True)
    ]
    if not rules:
        _deadlines = {}
        return []
    tenant_wide = {rule.tenant_id for rule in rules if rule.schedule_id is None}
    named = {rule.schedule_id for rule in rules if rule.schedule_id is not None}
    # The latest success of each schedule in the same query: a correlated subquery that the
    # (schedule, -scheduled_for) index answers with one probe, where a Max() over a join would
    # read a schedule's whole history on every pass.
    latest_success = (
        Execution.objects.filter(schedule=OuterRef("pk"), status=Status.SUCCEEDED)
        .order_by("-scheduled_for", "-attempt")
        .values("finished_at")[:1]
    )
    schedules: QuerySet[_Watched] = (
        Schedule.objects.filter(Q(tenant_id__in=tenant_wide) | Q(pk__in=named))
        .filter(enabled=True, tenant__isnull=False)
        .filter(Q(paused_until__isnull=True) | Q(paused_until__lte=now))
        # A one-off schedule has no period to be late by.
        .exclude(trigger_type=TriggerType.ONCE)
        .annotate(latest_success_at=Subquery(latest_success))
        .order_by()
    )
    by_tenant: dict[int | None, list[_Watched]] = {}
    by_pk: dict[int, _Watched] = {}
    for schedule in schedules:
        by_tenant.setdefault(schedule.tenant_id, []).append(schedule)
        by_pk[schedule.pk] = schedule

    deadlines: _Deadlines = {}
    overdue: list[tuple[AlertRule, _Watched]] = []
    for rule in rules:
        # The query left out rules without a multiple; the check says so to the type checker.
        multiple = rule.not_succeeded_multiple
        if multiple is None:
            continue
        if rule.schedule_id is None:
            watched = by_tenant.get(rule.tenant_id, [])
        else:
            one = by_pk.get(rule.schedule_id)
            watched = [one] if one is not None and one.tenant_id == rule.tenant_id else []
        for schedule in watched:
            deadline = _cached_deadline(schedule, multiple, deadlines)
            if deadline is not None and deadline <= now:
                overdue.append((rule, schedule))
    _deadlines = deadlines

    deliveries: list[AlertDelivery] = []
    for rule, schedule in overdue:
        if not _claim([rule], schedule.pk, reason=Event.DID_NOT_RUN, now=now):
            continue
        last = (
            Execution.objects.filter(schedule_id=schedule.pk, finished_at__isnull=False)
            .order_by("-finished_at")
            .values_list("error", flat=True)
            .first()
        )
        alert = Alert(
            event=Event.DID_NOT_RUN,
            rule=rule,
            schedule_id=schedule.pk,
            schedule_name=schedule.name,
            schedule_kind=schedule.kind,
            consecutive_failures=schedule.consecutive_failures,
            last_status=schedule.last_status,
            last_error=last or "",
            at=now,
            last_success_at=schedule.latest_success_at,
        )
        deliveries += deliver(alert)
    return deliveries


def _cached_deadline(schedule: _Watched, multiple: float, cache: _Deadlines) -> datetime | None:
    since = schedule.latest_success_at or schedule.created_at
    key: _DeadlineKey = (since, schedule.updated_at, schedule.paused_until, multiple)
    slot = (schedule.pk, multiple)
    cached = _deadlines.get(slot)
    if cached is not None and cached[0] == key:
        deadline = cached[1]
    else:
        try:
            deadline = did_not_run_deadline(schedule, since=since, multiple=multiple)
        except (InvalidTrigger, ValueError, OverflowError):
            logger.warning("Schedule %s has no usable trigger; no did-not-run check", schedule.pk)
            deadline = None
    cache[slot] = (key, deadline)
    return deadline


def did_not_run_deadline(
    schedule: Schedule, *, since: datetime, multiple: float
) -> datetime | None:
    """Return when ``schedule`` is overdue if it does not succeed after ``since`` (None: never).

    The clock starts at the first fire time after ``since`` (the occurrence that should have
    succeeded next) and runs ``multiple`` periods along the schedule's own fire times: for a
    cron schedule the period is the gap between consecutive fire times, so a weekdays-only job
    is not "late" over the weekend, and for an interval schedule it is ``interval_seconds``.
    Starting at a fire time, not at the last success, keeps a run that has just started from
    counting as missing.
    """
    # Beyond MAX_PERIODS_WALKED periods the last gap walked stands for the rest.
    whole = min(math.floor(multiple), MAX_PERIODS_WALKED)
    fires = next_runs(schedule, whole + 2, now=since)
    if len(fires) < whole + 2:
        return None  # The schedule ends before it could be late.
    gap = fires[whole + 1] - fires[whole]
    return fires[whole] + gap * (multiple - whole)
