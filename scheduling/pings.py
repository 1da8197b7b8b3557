"""Heartbeat pings: a schedule's ``ping_url`` hears as each run starts and ends.

Two conventions (``Schedule.ping_style``):

- ``healthchecks`` (healthchecks.io and its clones): ``<url>/start`` as the handler starts,
  ``<url>`` when it succeeds, ``<url>/fail`` when it fails, times out or is cancelled;
- ``cronitor`` (Cronitor's telemetry URLs): ``<url>?state=run``, ``state=complete``,
  ``state=fail&message=<the error>``, each with ``series=<execution id>`` so that Cronitor pairs
  the start and the end of one run.

Each ping is a POST with a JSON body (execution, schedule, status, error) through the target
policy, like an alert webhook (``SCHEDULING_WEBHOOK_TIMEOUT``, no redirects). A run that never
starts (missed, or lost with its worker) sends nothing: the heartbeat service notices the
silence itself. A ping that fails is logged as a warning and never fails the run.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .alerts.delivery import post_json, redact_url
from .conf import conf
from .logs import execution_fields
from .models import Execution, PingStyle, Status

logger = logging.getLogger("scheduling.pings")

START, SUCCESS, FAILURE = "start", "success", "failure"
HEALTHCHECKS_SUFFIX = {START: "/start", SUCCESS: "", FAILURE: "/fail"}
CRONITOR_STATE = {START: "run", SUCCESS: "complete", FAILURE: "fail"}
MESSAGE_LIMIT = 1000


def event_of(status: str) -> str:
    """Return the ping that ends a run with final ``status``."""
    return SUCCESS if status == Status.SUCCEEDED else FAILURE


def ping_url(
    url: str, style: str, event: str, *, series: int | None = None, error: str = ""
) -> str:
    """Return the URL that tells ``url``'s service of ``event`` in ``style``'s convention."""
    parts = urlsplit(url)
    if style == PingStyle.CRONITOR:
        query = parse_qsl(parts.query, keep_blank_values=True)
        query.append(("state", CRONITOR_STATE[event]))
        if series is not None:
            query.append(("series", str(series)))
        if event == FAILURE and error:
            query.append(("message", error[:MESSAGE_LIMIT]))
        return urlunsplit(parts._replace(query=urlencode(query)))
    path = parts.path.rstrip("/") + HEALTHCHECKS_SUFFIX[event]
    return urlunsplit(parts._replace(path=path or "/"))


def send(
    execution: Execution, event: str, *, status: str = Status.RUNNING, error: str = ""
) -> bool:
    """Ping ``execution``'s schedule's heartbeat URL of ``event``; True when it answered 2xx.

    ``status`` and ``error`` are the run's outcome (not recorded yet when the end is pinged).
    Does nothing (False) for a schedule without a heartbeat URL. Never raises.
    """
    schedule = execution.schedule if execution.schedule_id else None
    if schedule is None or not schedule.ping_url:
        return False
    url = ping_url(
        schedule.ping_url,
        schedule.ping_style,
        event,
        series=execution.pk,
        error=error,
    )
    body = {
        "execution_id": execution.pk,
        "schedule_id": execution.schedule_id,
        "schedule": execution.schedule_name,
        "event": event,
        "status": status,
        "error": error[:MESSAGE_LIMIT],
    }
    try:
        answer = post_json(
            url,
            body,
            timeout=conf.WEBHOOK_TIMEOUT,
            tenant=execution.tenant if execution.tenant_id else None,
        )
    except Exception as exc:  # the run goes on whatever the heartbeat service does
        problem = f"{type(exc).__name__}: {exc}"
    else:
        if 200 <= answer < 300:
            return True
        problem = f"HTTP {answer}"
    logger.warning(
        "Heartbeat ping %s of execution %s to %s failed: %s",
        event,
        execution.pk,
        redact_url(url),
        problem,
        extra=execution_fields(execution),
    )
    return False
