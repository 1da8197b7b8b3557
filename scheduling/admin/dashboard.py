"""The admin's scheduling dashboard: a read-only page drawn as server-side SVG.

The data comes from :mod:`scheduling.admin.figures`; this module turns it into chart geometry
(plain numbers and texts that the template writes into SVG elements, escaped like every
other template value) and renders the page inside the admin site that routes to it. No
script and no asset from a CDN: the charts are SVG, their tooltips ``<title>`` elements.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from django.contrib import admin
from django.contrib.admin.utils import model_ngettext
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.http import urlencode
from django.utils.text import Truncator
from django.utils.translation import gettext as _
from django.views.decorators.http import require_safe

from ..kinds import KINDS, relation_of
from ..models import FAILURE_STATUSES, Schedule, Status
from .base import format_time, tenant_label, truncate
from .figures import (
    COUNTS,
    HOURS,
    OTHER_STATUSES,
    RUNS_PER_SCHEDULE,
    Dashboard,
    build_dashboard,
)
from .filters import FAILING, PAUSED

# Geometry of the two charts, in SVG user units (the SVGs scale to the page width).
WIDTH = 960
TIMELINE_LABEL = 230
TIMELINE_ROW = 18
TIMELINE_AXIS = 26
CHART_LEFT = 44
CHART_HEIGHT = 180
CHART_AXIS = 24
LABEL_CHARS = 34


def change_url(site: admin.AdminSite, schedule: Schedule) -> str | None:
    """Return the admin change page of ``schedule``'s kind, if that kind has an admin."""
    model_name = relation_of(schedule.kind)
    if not model_name:
        return None
    try:
        return reverse(f"{site.name}:scheduling_{model_name}_change", args=[schedule.pk])
    except NoReverseMatch:
        return None


def _local(value: datetime) -> datetime:
    return timezone.localtime(value)


# -- drill-down: the lists behind each number ---------------------------------------------

# The outcomes of the hourly chart, by the segment's CSS class.
OUTCOMES: dict[str, Sequence[str]] = {
    "ok": (Status.SUCCEEDED,),
    "failed": FAILURE_STATUSES,
    "other": OTHER_STATUSES,
}
FINISHED = tuple(status for statuses in OUTCOMES.values() for status in statuses)

# What each schedule card adds to a kind's list: the filter that matches its count.
CARD_FILTERS: dict[str, dict[str, str]] = {
    "total": {},
    "enabled": {"enabled__exact": "1"},
    PAUSED: {"state": PAUSED},
    FAILING: {"state": FAILING},
}


def changelist_url(
    site: admin.AdminSite, model_name: str, params: dict[str, str], data: Dashboard
) -> str | None:
    """Return the admin list of ``model_name`` filtered by ``params`` and the dashboard's tenant."""
    try:
        url = reverse(f"{site.name}:scheduling_{model_name}_changelist")
    except NoReverseMatch:
        return None
    if data.tenant is not None:
        params = {**params, "tenant": str(data.tenant.pk)}
    return f"{url}?{urlencode(params)}" if params else url


def executions_url(
    site: admin.AdminSite,
    data: Dashboard,
    statuses: Sequence[str],
    start: datetime,
    end: datetime | None = None,
) -> str | None:
    """Return the executions that finished with one of ``statuses`` from ``start`` (to ``end``)."""
    params = {"status__in": ",".join(statuses), "finished_at__gte": start.isoformat()}
    if len(statuses) == 1:
        # The status filter's own parameter: the list shows it as chosen.
        del params["status__in"]
        params["status__exact"] = statuses[0]
    if end is not None:
        params["finished_at__lt"] = end.isoformat()
    return changelist_url(site, "execution", params, data)


def cards(data: Dashboard, site: admin.AdminSite) -> list[dict[str, object]]:
    """The numbers at the top, each linked to the list it counts.

    Schedules are listed per kind: a schedule card links to its kind's list when one kind
    makes up its number, and otherwise to each kind's share of it.
    """
    labels = {
        "total": _("schedules"),
        "enabled": _("enabled"),
        PAUSED: _("paused"),
        FAILING: _("failing"),
    }
    result: list[dict[str, object]] = []
    for key in COUNTS:
        parts = [
            {
                "value": counts[key],
                "label": model_ngettext(spec.model._meta, counts[key]),
                "url": changelist_url(site, spec.relation, CARD_FILTERS[key], data),
            }
            for kind, spec in KINDS.items()  # in the order of the admin's kinds
            if (counts := data.kind_counts.get(kind, {})).get(key)
        ]
        result.append(
            {
                "key": key,
                "value": data.counts[key],
                "label": labels[key],
                "url": parts[0]["url"] if len(parts) == 1 else None,
                "parts": parts if len(parts) > 1 else [],
            }
        )
    totals = data.totals
    for key, value, statuses, label in (
        ("succeeded", totals.succeeded, OUTCOMES["ok"], _("succeeded in 24 h")),
        ("failed", totals.failed, OUTCOMES["failed"], _("failed in 24 h")),
    ):
        url = executions_url(site, data, statuses, data.window_start)
        result.append({"key": key, "value": value, "label": label, "url": url, "parts": []})
    return result


def failing_rows(data: Dashboard, site: admin.AdminSite) -> list[dict[str, object]]:
    """The failing schedules, each with its latest error and a link to that execution."""
    rows: list[dict[str, object]] = []
    for schedule in data.failing:
        failure = data.latest_failures.get(schedule.pk)
        execution_url = error = status = None
        if failure is not None:
            execution_url = reverse(
                f"{site.name}:scheduling_execution_change", args=[failure.execution_id]
            )
            error = truncate(failure.error) or None
            status = Status(failure.status).label if failure.status in Status.values else None
        rows.append(
            {
                "schedule": schedule,
                "url": change_url(site, schedule),
                "tenant": tenant_label(schedule.tenant),
                "last_run": format_time(schedule.last_run_at, schedule.effective_timezone),
                "execution_url": execution_url,
                "error": error,
                "error_status": status,
                "error_title": failure.error if failure is not None else "",
            }
        )
    return rows


def timeline(data: Dashboard, site: admin.AdminSite) -> dict[str, object]:
    """Rows of dots (one per upcoming run) on a 24-hour axis starting now."""
    plot = WIDTH - TIMELINE_LABEL - 10
    span = (data.horizon - data.now).total_seconds()

    def x(at: datetime) -> float:
        return round(TIMELINE_LABEL + (at - data.now).total_seconds() / span * plot, 1)

    rows: list[dict[str, object]] = []
    for i, row in enumerate(data.upcoming):
        y = TIMELINE_AXIS + i * TIMELINE_ROW + TIMELINE_ROW / 2
        schedule = row.schedule
        zone = schedule.effective_timezone
        count = f"{RUNS_PER_SCHEDULE}+" if row.truncated else str(len(row.runs))
        rows.append(
            {
                "y": y,
                "text_y": y + 4,
                "label": Truncator(schedule.name).chars(LABEL_CHARS),
                "title": _("%(name)s (%(tenant)s): %(count)s runs in the next 24 hours")
                % {"name": schedule.name, "tenant": tenant_label(schedule.tenant), "count": count},
                "url": change_url(site, schedule),
                "error": row.error,
                "dots": [
                    {"x": x(run), "title": f"{schedule.name}: {format_time(run, zone)}"}
                    for run in row.runs
                ],
                "band_end": x(row.runs[-1]) if row.truncated else None,
            }
        )
    first_tick = _local(data.now).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    ticks = []
    for h in range(HOURS):
        at = first_tick + timedelta(hours=h)
        if at >= data.horizon:
            break
        ticks.append({"x": x(at), "label": f"{at:%H:%M}" if at.hour % 3 == 0 else ""})
    height = TIMELINE_AXIS + max(1, len(rows)) * TIMELINE_ROW + 6
    return {
        "width": WIDTH,
        "height": height,
        "left": TIMELINE_LABEL,
        "right": WIDTH - 10,
        "axis_y": TIMELINE_AXIS - 8,
        "bottom": height - 4,
        "rows": rows,
        "ticks": ticks,
    }


def _nice_ceiling(value: int) -> int:
    """Round ``value`` up to 1, 2 or 5 times a power of ten (at least 1)."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if value <= step * factor:
                return step * factor
        step *= 10


def hourly_chart(data: Dashboard, site: admin.AdminSite) -> dict[str, object]:
    """Stacked bars of succeeded / failed / other executions, one bar per hour.

    Each segment links to its executions; the rest of the bar's height to all of the hour's.
    """
    top = _nice_ceiling(max((h.total for h in data.hours), default=0))
    plot = WIDTH - CHART_LEFT - 10
    slot = plot / max(1, len(data.hours))
    base = CHART_HEIGHT

    def height(n: int) -> float:
        return round(n / top * (CHART_HEIGHT - 10), 1)

    bars: list[dict[str, object]] = []
    for i, hour in enumerate(data.hours):
        x = round(CHART_LEFT + i * slot + 2, 1)
        y: float = base
        start = _local(hour.start)
        end = start + timedelta(hours=1)
        segments: list[dict[str, object]] = []
        for css, n in (("ok", hour.succeeded), ("failed", hour.failed), ("other", hour.other)):
            h = height(n)
            if n:
                y = round(y - h, 1)
                url = executions_url(site, data, OUTCOMES[css], start, end)
                segments.append({"css": css, "y": y, "height": h, "url": url})
        bars.append(
            {
                "x": x,
                "width": round(slot - 4, 1),
                "segments": segments,
                "url": executions_url(site, data, FINISHED, start, end) if hour.total else None,
                "title": _(
                    "%(start)s – %(end)s: %(ok)d succeeded, %(failed)d failed, %(other)d other"
                )
                % {
                    "start": format_time(start),
                    "end": format_time(end),
                    "ok": hour.succeeded,
                    "failed": hour.failed,
                    "other": hour.other,
                },
                "label": f"{start:%H}" if i % 3 == 0 else "",
                "label_x": round(x + (slot - 4) / 2, 1),
                "start": start,
                "start_text": format_time(start),
                "hour": hour,
            }
        )
    gridlines: list[dict[str, object]] = []
    for value in sorted({0, top // 2, top}):
        line_y = round(base - height(value), 1)
        gridlines.append({"y": line_y, "text_y": round(line_y + 4, 1), "value": value})
    return {
        "width": WIDTH,
        "height": CHART_HEIGHT + CHART_AXIS,
        "left": CHART_LEFT,
        "right": WIDTH - 10,
        "base": base,
        "label_y": base + 16,
        "bars": bars,
        "gridlines": gridlines,
    }


@require_safe
def dashboard_view(request: HttpRequest, admin_site: admin.AdminSite | None = None) -> HttpResponse:
    """The dashboard of the tenants the user may see (``?tenant=<id>`` narrows it to one)."""
    site = admin_site or admin.site
    data = build_dashboard(request.user, tenant=request.GET.get("tenant"), request=request)
    health = dict(data.health)
    if not request.user.is_superuser:
        # The leader's host name is infrastructure, not tenant data (as in the API).
        health["leader"] = None
    last_sync = health.get("last_sync_at")
    health["last_sync_text"] = format_time(last_sync if isinstance(last_sync, datetime) else None)
    context = {
        **site.each_context(request),
        "title": _("Scheduling dashboard"),
        "dashboard": data,
        "timeline": timeline(data, site),
        "chart": hourly_chart(data, site),
        "cards": cards(data, site),
        "failing": failing_rows(data, site),
        "health": health,
        "show_leader": request.user.is_superuser,
        "runs_cap": RUNS_PER_SCHEDULE,
    }
    return TemplateResponse(request, "admin/scheduling/dashboard.html", context)
