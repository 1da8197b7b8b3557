"""Alert rules: tell a tenant's owners and admins when a schedule is in trouble, and when not.

A rule (``AlertRule``, per tenant, optionally for one schedule) fires for a schedule when

- ``failing``: the schedule failed ``consecutive_failures`` occurrences in a row, checked by
  ``on_execution_finished`` after every final outcome, or
- ``did_not_run``: it has not succeeded for ``not_succeeded_multiple`` periods, checked by
  ``check_did_not_run`` from the scheduler loop (an occurrence that never fires leaves no row
  to react to, so only a periodic check can notice it).

It notifies by e-mail to the tenant's owners and admins and/or by a JSON webhook, at most once
per cool-down for each (rule, schedule), and once more with ``recovered`` when the schedule
succeeds again. Every attempt is recorded as an ``AlertDelivery``.

Three decisions shape the code:

- The right to notify is claimed with one conditional ``UPDATE`` of the ``AlertState`` row, so
  two processes (Celery workers finishing runs of the same schedule, or the did-not-run check
  racing a failure) never both notify within one cool-down.
- Nothing is sent inside a transaction: a slow mail server or webhook must not hold the
  database's write lock. The price is "at most once": a process that dies between the claim and
  the send loses that notification until the cool-down has passed.
- Webhooks go through the scan target policy (``scheduling.targets``) and connect to the
  checked address itself, so a tenant cannot point the scheduler at the cloud metadata service
  or another internal address, not even through a name that resolves there later.

Alerts must never break the scheduler: both entry points log and swallow every exception.
"""

from __future__ import annotations

import http.client
import json
import logging
import math
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import FieldDoesNotExist
from django.core.mail import EmailMessage
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import OuterRef, Q, QuerySet, Subquery
from django.utils import timezone
from django.utils.translation import gettext

from ..conf import conf
from ..exceptions import InvalidTrigger, TargetNotAllowed
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
from ..targets import ResolutionError, open_connection
from ..triggers import next_runs

logger = logging.getLogger("scheduling.alerts")

Event = AlertDelivery.Event
Channel = AlertDelivery.Channel

# How much of an execution's error an alert quotes; the full text is in the execution history.
ERROR_LIMIT = 1000
# The most fire times walked to find a did-not-run deadline; beyond, the last gap is repeated.
MAX_PERIODS_WALKED = 50
USER_AGENT = "django-tenant-scheduling/1 (alert webhook)"


@dataclass(frozen=True)
class Alert:
    """One notification to send: which rule, which schedule, what happened."""

    event: str
    rule: AlertRule
    schedule_id: int
    schedule_name: str
    schedule_kind: str
    consecutive_failures: int
    last_status: str
    last_error: str
    at: datetime
    execution_id: int | None = None
    last_success_at: datetime | None = None

    @property
    def tenant(self) -> Any:
        return self.rule.tenant


# -- entry points ------------------------------------------------------------------------------


def on_execution_finished(execution: Execution) -> list[AlertDelivery]:
    """Apply the tenant's alert rules to a final outcome; return the deliveries attempted."""
    try:
        if execution.schedule_id is None:
            return []
        if execution.status == Status.SUCCEEDED:
            return _recover(execution)
        if execution.status in FAILURE_STATUSES:
            return _check_failing(execution)
    except Exception:
        logger.exception("Alert rules failed for execution %s", execution.pk)
    return []


def needing_rules(executions: list[Execution]) -> list[Execution]:
    """Return those of ``executions`` whose outcome some alert rule or state may act on.

    Two queries for any number of executions: ``on_execution_finished`` on the others would
    find nothing to do (a success with no firing alert, a failure with no failure rule).
    """
    succeeded = {e.schedule_id for e in executions if e.status == Status.SUCCEEDED}
    failed_tenants = {e.tenant_id for e in executions if e.status in FAILURE_STATUSES}
    firing = set(
        AlertState.objects.filter(schedule_id__in=succeeded, firing=True).values_list(
            "schedule_id", flat=True
        )
        if succeeded
        else ()
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


def rules_for_schedule(tenant_id: Any, schedule_id: Any) -> QuerySet[AlertRule]:
    """Return the enabled rules of ``tenant_id`` that watch ``schedule_id``."""
    # Filtering on the tenant as well as the schedule keeps a rule that names another
    # tenant's schedule (a bad row) from ever firing for it.
    return AlertRule.objects.filter(tenant_id=tenant_id, enabled=True).filter(
        Q(schedule__isnull=True) | Q(schedule_id=schedule_id)
    )


def _check_failing(execution: Execution) -> list[AlertDelivery]:
    rules = list(
        rules_for_schedule(execution.tenant_id, execution.schedule_id)
        .filter(consecutive_failures__isnull=False)
        .select_related("tenant")
    )
    if not rules:
        return []
    # Re-read: the runner increments the counter with an F() expression, and a failure with a
    # retry still to come leaves it unchanged.
    row = (
        Schedule.objects.filter(pk=execution.schedule_id)
        .values_list("consecutive_failures", "last_status")
        .first()
    )
    if row is None:
        return []
    failures, last_status = row
    due = [rule for rule in rules if failures >= rule.consecutive_failures]
    now = timezone.now()
    deliveries: list[AlertDelivery] = []
    for rule in _claim(due, execution.schedule_id, reason=Event.FAILING, now=now):
        alert = Alert(
            event=Event.FAILING,
            rule=rule,
            schedule_id=execution.schedule_id,
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


def _recover(execution: Execution) -> list[AlertDelivery]:
    # Nothing is firing for the schedule on almost every success: a one-table indexed probe
    # answers that for a tenth of the cost of building the joined query below.
    if not AlertState.objects.filter(schedule_id=execution.schedule_id, firing=True).exists():
        return []
    states = list(
        AlertState.objects.filter(
            schedule_id=execution.schedule_id,
            firing=True,
            rule__enabled=True,
            rule__tenant_id=execution.tenant_id,
        )
        .filter(Q(rule__schedule__isnull=True) | Q(rule__schedule_id=execution.schedule_id))
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
            schedule_id=execution.schedule_id,
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
    rules: list[AlertRule], schedule_id: Any, *, reason: str, now: datetime
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


# (pk, multiple) -> (what the deadline depends on, deadline). A deadline only changes with a new
# success or a new configuration, so the loop walks cron fire times once per success, not on
# every pass. Rebuilt on every pass, so deleted schedules drop out.
_deadlines: dict[tuple[int, float], tuple[tuple, datetime | None]] = {}


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
    schedules = (
        Schedule.objects.filter(Q(tenant_id__in=tenant_wide) | Q(pk__in=named))
        .filter(enabled=True)
        .filter(Q(paused_until__isnull=True) | Q(paused_until__lte=now))
        # A one-off schedule has no period to be late by.
        .exclude(trigger_type=TriggerType.ONCE)
        .annotate(last_success_at=Subquery(latest_success))
        .order_by()
    )
    by_tenant: dict[Any, list[Schedule]] = {}
    by_pk: dict[Any, Schedule] = {}
    for schedule in schedules:
        by_tenant.setdefault(schedule.tenant_id, []).append(schedule)
        by_pk[schedule.pk] = schedule

    deadlines: dict[tuple[int, float], tuple[tuple, datetime | None]] = {}
    overdue: list[tuple[AlertRule, Schedule]] = []
    for rule in rules:
        if rule.schedule_id is None:
            watched = by_tenant.get(rule.tenant_id, [])
        else:
            one = by_pk.get(rule.schedule_id)
            watched = [one] if one is not None and one.tenant_id == rule.tenant_id else []
        for schedule in watched:
            deadline = _cached_deadline(schedule, rule.not_succeeded_multiple, deadlines)
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
            last_success_at=schedule.last_success_at,
        )
        deliveries += deliver(alert)
    return deliveries


def _cached_deadline(schedule: Schedule, multiple: float, cache: dict) -> datetime | None:
    since = schedule.last_success_at or schedule.created_at
    key = (since, schedule.updated_at, schedule.paused_until, multiple)
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


# -- delivery ----------------------------------------------------------------------------------


def deliver(alert: Alert) -> list[AlertDelivery]:
    """Send ``alert`` through the rule's channels and record every attempt."""
    deliveries: list[AlertDelivery] = []
    if alert.rule.email_admins:
        deliveries.append(_send_email(alert))
    if alert.rule.webhook_url:
        deliveries.append(_post_webhook(alert))
    for delivery in deliveries:
        delivery.save()
    return deliveries


def _record(alert: Alert, channel: str, recipient: str, *, ok: bool, detail: str) -> AlertDelivery:
    return AlertDelivery(
        tenant_id=alert.rule.tenant_id,
        rule=alert.rule,
        schedule_id=alert.schedule_id,
        event=alert.event,
        channel=channel,
        recipient=recipient[:500],
        ok=ok,
        detail=detail[:ERROR_LIMIT],
        created_at=alert.at,
    )


def admin_emails(tenant: Any) -> list[str]:
    """Return the e-mail addresses of ``tenant``'s owners and admins.

    A tenant resolver (``SCHEDULING_TENANT_RESOLVER``) with an ``alert_recipients(tenant)``
    method answers for a host project with its own membership rules; otherwise the roles of
    ``tenants.Membership`` decide.
    """
    resolver = conf.get_tenant_resolver()
    hook = getattr(resolver, "alert_recipients", None)
    if hook is not None:
        return _unique(str(address) for address in hook(tenant))
    if not apps.is_installed("tenants"):
        return []
    from tenants.models import Membership, Role

    email_field = get_user_model().get_email_field_name()
    members = Membership.objects.filter(tenant_id=tenant.pk, role__in=[Role.OWNER, Role.ADMIN])
    if _has_field(get_user_model(), "is_active"):
        members = members.filter(user__is_active=True)
    return _unique(
        members.exclude(**{f"user__{email_field}": ""})
        .order_by(f"user__{email_field}")
        .values_list(f"user__{email_field}", flat=True)
    )


def _has_field(model: Any, name: str) -> bool:
    try:
        model._meta.get_field(name)
    except FieldDoesNotExist:
        return False
    return True


def _unique(addresses: Any) -> list[str]:
    seen: dict[str, str] = {}
    for address in addresses:
        address = (address or "").strip()
        if address and address.lower() not in seen:
            seen[address.lower()] = address
    return list(seen.values())


def _one_line(value: Any) -> str:
    # Header values must stay on one line (Django refuses newlines in headers).
    return " ".join(str(value).split())


def _short(text: str, limit: int = ERROR_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render_email(alert: Alert) -> tuple[str, str]:
    """Return the subject and body of the e-mail for ``alert``."""
    names = {
        "tenant": _one_line(alert.tenant),
        "schedule": _one_line(alert.schedule_name),
        "count": alert.consecutive_failures,
        "since": _when(alert.last_success_at),
    }
    if alert.event == Event.FAILING:
        subject = gettext("[%(tenant)s] %(schedule)s failed %(count)d times in a row") % names
        summary = gettext(
            "The schedule %(schedule)s of %(tenant)s has failed %(count)d times in a row."
        )
    elif alert.event == Event.DID_NOT_RUN:
        subject = gettext("[%(tenant)s] %(schedule)s did not run") % names
        summary = gettext(
            "The schedule %(schedule)s of %(tenant)s has not succeeded since %(since)s, "
            "longer than its alert rule allows."
        )
    else:
        subject = gettext("[%(tenant)s] %(schedule)s recovered") % names
        summary = gettext("The schedule %(schedule)s of %(tenant)s succeeded again.")
    lines = [
        summary % names,
        "",
        gettext("Tenant: %s") % names["tenant"],
        gettext("Schedule: %(name)s (%(kind)s, id %(id)s)")
        % {"name": names["schedule"], "kind": alert.schedule_kind, "id": alert.schedule_id},
        gettext("Event: %s") % Event(alert.event).label,
        gettext("Consecutive failures: %d") % alert.consecutive_failures,
        gettext("Last status: %s") % (alert.last_status or "-"),
    ]
    if alert.event != Event.RECOVERED:
        lines.append(gettext("Last error: %s") % (_short(alert.last_error) or "-"))
    lines += [
        gettext("Alert rule: %s") % alert.rule.name,
        gettext("At: %s") % _when(alert.at),
        "",
        gettext(
            "You receive this because you are an owner or admin of %(tenant)s. This alert is "
            "not repeated for %(cooldown)d seconds while the schedule stays in trouble."
        )
        % {"tenant": names["tenant"], "cooldown": alert.rule.cooldown_seconds},
    ]
    return subject, "\n".join(lines) + "\n"


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if value else "-"


def _send_email(alert: Alert) -> AlertDelivery:
    try:
        recipients = admin_emails(alert.tenant)
    except Exception as exc:
        # A host project's resolver failing must not keep the webhook from going out.
        logger.exception("Alert recipients of tenant %s could not be read", alert.rule.tenant_id)
        return _record(alert, Channel.EMAIL, "", ok=False, detail=_error_text(exc))
    if not recipients:
        return _record(
            alert,
            Channel.EMAIL,
            "",
            ok=False,
            detail=gettext("The tenant has no owner or admin with an e-mail address."),
        )
    subject, body = render_email(alert)
    recipient = ", ".join(recipients)
    try:
        sent = EmailMessage(
            subject=subject,
            body=body,
            from_email=conf.ALERT_FROM_EMAIL or settings.DEFAULT_FROM_EMAIL,
            to=recipients,
        ).send(fail_silently=False)
    except Exception as exc:
        logger.warning("Alert e-mail for schedule %s failed: %s", alert.schedule_id, exc)
        return _record(alert, Channel.EMAIL, recipient, ok=False, detail=_error_text(exc))
    return _record(
        alert,
        Channel.EMAIL,
        recipient,
        ok=bool(sent),
        detail=gettext("Sent to %d recipients.") % len(recipients) if sent else "",
    )


def webhook_payload(alert: Alert) -> dict[str, Any]:
    """Return the JSON document a webhook receives for ``alert``."""
    tenant = alert.tenant
    payload: dict[str, Any] = {
        "event": alert.event,
        "tenant": {
            "id": tenant.pk,
            "name": str(tenant),
            "slug": getattr(tenant, "slug", None),
        },
        "schedule": {
            "id": alert.schedule_id,
            "name": alert.schedule_name,
            "kind": alert.schedule_kind,
        },
        "rule": {"id": alert.rule.pk, "name": alert.rule.name},
        "consecutive_failures": alert.consecutive_failures,
        "last_status": alert.last_status,
        "last_error": _short(alert.last_error),
        "at": alert.at.isoformat(),
    }
    if alert.execution_id is not None:
        payload["execution_id"] = alert.execution_id
    if alert.event == Event.DID_NOT_RUN:
        payload["last_success_at"] = (
            alert.last_success_at.isoformat() if alert.last_success_at else None
        )
    return payload


def _post_webhook(alert: Alert) -> AlertDelivery:
    url = alert.rule.webhook_url
    recipient = redact_url(url)
    try:
        status = post_json(url, webhook_payload(alert), timeout=conf.WEBHOOK_TIMEOUT)
    except Exception as exc:
        # TargetNotAllowed lands here too: refused before any connection, recorded not ok.
        logger.warning("Alert webhook for schedule %s failed: %s", alert.schedule_id, exc)
        return _record(alert, Channel.WEBHOOK, recipient, ok=False, detail=_error_text(exc))
    return _record(
        alert, Channel.WEBHOOK, recipient, ok=200 <= status < 300, detail=f"HTTP {status}"
    )


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, TargetNotAllowed | ResolutionError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def redact_url(url: str) -> str:
    """Return ``url`` without credentials or query string, to record where an alert went."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc.rsplit("@", 1)[-1]
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    except ValueError:
        return "(invalid URL)"


class CheckedHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection to a policy-checked address of its host (the Host header keeps it)."""

    address = ""

    def connect(self) -> None:
        self.sock, self.address = open_connection(self.host, self.port, timeout=self.timeout)


class CheckedHTTPSConnection(http.client.HTTPSConnection):
    """Like ``CheckedHTTPConnection``; the certificate is verified against the host name."""

    address = ""

    def __init__(self, host: str, port: int, *, timeout: float, context: ssl.SSLContext) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._tls = context

    def connect(self) -> None:
        sock, self.address = open_connection(self.host, self.port, timeout=self.timeout)
        try:
            self.sock = self._tls.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


def post_json(url: str, data: Any, *, timeout: float) -> int:
    """POST ``data`` as JSON to ``url`` through the target policy; return the HTTP status.

    Raises ``TargetNotAllowed`` before connecting when the host resolves to a forbidden
    address. Redirects are not followed: they could lead past the policy.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"Not an http(s) URL: {redact_url(url)}")
    https = scheme == "https"
    port = parts.port or (443 if https else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    body = json.dumps(data, cls=DjangoJSONEncoder).encode()
    connection: http.client.HTTPConnection
    if https:
        connection = CheckedHTTPSConnection(
            parts.hostname, port, timeout=timeout, context=ssl.create_default_context()
        )
    else:
        connection = CheckedHTTPConnection(parts.hostname, port, timeout=timeout)
    try:
        connection.request(
            "POST",
            path,
            body=body,
            headers={
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                "Connection": "close",
            },
        )
        return connection.getresponse().status
    except TimeoutError as exc:
        raise TimeoutError(f"No answer within {timeout:g} s.") from exc
    finally:
        connection.close()
