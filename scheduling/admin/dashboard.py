"""The admin's scheduling dashboard: a read-only page drawn as server-side SVG.

The data comes from :mod:`scheduling.admin.figures`; this module turns it into chart geometry
(plain numbers and texts that the template writes into SVG elements, escaped like every
other template value) and renders the page inside the admin site that routes to it. No
script and no asset from a CDN: the charts are SVG, their tooltips ``<title>`` elements.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.text import Truncator
from django.utils.translation import gettext as _
from django.views.decorators.http import require_safe

from ..kinds import relation_of
from ..models import Schedule
from .base import tenant_label
from .figures import HOURS, RUNS_PER_SCHEDULE, Dashboard, build_dashboard

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
                    {"x": x(run), "title": f"{schedule.name}: {_local(run):%Y-%m-%d %H:%M:%S %Z}"}
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


def hourly_chart(data: Dashboard) -> dict[str, object]:
    """Stacked bars of succeeded / failed / other executions, one bar per hour."""
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
        segments: list[dict[str, object]] = []
        for css, n in (("ok", hour.succeeded), ("failed", hour.failed), ("other", hour.other)):
            h = height(n)
            if n:
                y = round(y - h, 1)
                segments.append({"css": css, "y": y, "height": h})
        start = _local(hour.start)
        bars.append(
            {
                "x": x,
                "width": round(slot - 4, 1),
                "segments": segments,
                "title": _(
                    "%(start)s–%(end)s: %(ok)d succeeded, %(failed)d failed, %(other)d other"
                )
                % {
                    "start": f"{start:%H:%M}",
                    "end": f"{start + timedelta(hours=1):%H:%M}",
                    "ok": hour.succeeded,
                    "failed": hour.failed,
                    "other": hour.other,
                },
                "label": f"{start:%H}" if i % 3 == 0 else "",
                "label_x": round(x + (slot - 4) / 2, 1),
                "start": start,
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
    data = build_dashboard(request.user, tenant=request.GET.get("tenant"))
    failing = [
        {"schedule": s, "url": change_url(site, s), "tenant": tenant_label(s.tenant)}
        for s in data.failing
    ]
    health = dict(data.health)
    if not request.user.is_superuser:
        # The leader's host name is infrastructure, not tenant data (as in the API).
        health["leader"] = None
    context = {
        **site.each_context(request),
        "title": _("Scheduling dashboard"),
        "dashboard": data,
        "timeline": timeline(data, site),
        "chart": hourly_chart(data),
        "failing": failing,
        "health": health,
        "show_leader": request.user.is_superuser,
        "runs_cap": RUNS_PER_SCHEDULE,
    }
    return TemplateResponse(request, "admin/scheduling/dashboard.html", context)
