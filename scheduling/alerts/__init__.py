"""Alerts: tell a tenant's owners and admins when a schedule is in trouble, and when not.

``rules`` decides (failing, did not run, recovered; who may notify within a cool-down) and
calls ``delivery``, which tells (e-mail, webhook) and records every attempt; never the other
way round. Callers use the names below.

Each name is looked up at run time in the module that defines it: patch
``scheduling.alerts.rules._claim`` or ``scheduling.alerts.delivery.post_json``, not a name
here.
"""

from __future__ import annotations

from .delivery import (
    Alert,
    CheckedHTTPConnection,
    CheckedHTTPSConnection,
    admin_emails,
    deliver,
    post_json,
    redact_url,
    render_email,
    webhook_payload,
)
from .rules import (
    check_did_not_run,
    did_not_run_deadline,
    needing_rules,
    on_execution_finished,
    rules_for_schedule,
)

__all__ = [
    "Alert",
    "CheckedHTTPConnection",
    "CheckedHTTPSConnection",
    "admin_emails",
    "check_did_not_run",
    "deliver",
    "did_not_run_deadline",
    "needing_rules",
    "on_execution_finished",
    "post_json",
    "redact_url",
    "render_email",
    "rules_for_schedule",
    "webhook_payload",
]
