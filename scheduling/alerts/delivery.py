"""Alert delivery: tell a tenant's owners and admins by e-mail, and a webhook by a JSON POST.

``deliver`` sends one ``Alert`` through the channels its rule names and records every attempt
as an ``AlertDelivery``, sent or not. It decides nothing: whether to alert is up to
``scheduling.alerts.rules``, which calls it outside any transaction.

Webhooks go through the scan target policy (``scheduling.targets``, with the rule's tenant's
allow list) and connect to the checked address itself, so a tenant cannot point the scheduler
at the cloud metadata service or another internal address, not even through a name that
resolves there later. The rule's URL is checked when it is saved, too (``AlertRule.clean``).
"""

from __future__ import annotations

import http.client
import json
import logging
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import FieldDoesNotExist
from django.core.mail import EmailMessage
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Model
from django.utils.translation import gettext

from ..conf import conf
from ..exceptions import TargetNotAllowed
from ..models import AlertDelivery, AlertRule
from ..targets import CheckedHTTPConnection, CheckedHTTPSConnection, ResolutionError

if TYPE_CHECKING:
    from tenants.models import Tenant

# One logger for the whole package, so that logging configuration written for the single
# module keeps working.
logger = logging.getLogger("scheduling.alerts")

Event = AlertDelivery.Event
Channel = AlertDelivery.Channel

# How much of an execution's error an alert quotes; the full text is in the execution history.
ERROR_LIMIT = 1000
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
    def tenant(self) -> Tenant:
        return self.rule.tenant


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


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, TargetNotAllowed | ResolutionError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


# -- e-mail ------------------------------------------------------------------------------------


def admin_emails(tenant: Tenant) -> list[str]:
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


def _has_field(model: type[Model], name: str) -> bool:
    try:
        model._meta.get_field(name)
    except FieldDoesNotExist:
        return False
    return True


def _unique(addresses: Iterable[str | None]) -> list[str]:
    seen: dict[str, str] = {}
    for address in addresses:
        address = (address or "").strip()
        if address and address.lower() not in seen:
            seen[address.lower()] = address
    return list(seen.values())


def _one_line(value: object) -> str:
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


# -- webhook -----------------------------------------------------------------------------------


def webhook_payload(alert: Alert) -> dict[str, object]:
    """Return the JSON document a webhook receives for ``alert``."""
    tenant = alert.tenant
    payload: dict[str, object] = {
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
        status = post_json(
            url, webhook_payload(alert), timeout=conf.WEBHOOK_TIMEOUT, tenant=alert.tenant
        )
    except Exception as exc:
        # TargetNotAllowed lands here too: refused before any connection, recorded not ok.
        logger.warning("Alert webhook for schedule %s failed: %s", alert.schedule_id, exc)
        return _record(alert, Channel.WEBHOOK, recipient, ok=False, detail=_error_text(exc))
    return _record(
        alert, Channel.WEBHOOK, recipient, ok=200 <= status < 300, detail=f"HTTP {status}"
    )


def redact_url(url: str) -> str:
    """Return ``url`` without credentials or query string, to record where an alert went."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc.rsplit("@", 1)[-1]
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    except ValueError:
        return "(invalid URL)"


def post_json(url: str, data: object, *, timeout: float, tenant: Model | None = None) -> int:
    """POST ``data`` as JSON to ``url`` through the target policy; return the HTTP status.

    ``tenant`` (the alert rule's) adds its own allow list to the policy. Raises
    ``TargetNotAllowed`` before connecting when the host resolves to a forbidden address.
    Redirects are not followed: they could lead past the policy.
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
            parts.hostname,
            port,
            timeout=timeout,
            context=ssl.create_default_context(),
            tenant=tenant,
        )
    else:
        connection = CheckedHTTPConnection(parts.hostname, port, timeout=timeout, tenant=tenant)
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
