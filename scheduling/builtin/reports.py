"""The built-in report types: ``execution_summary`` and ``scan_status``.

A report type returns data about the report's own tenant only; ``scheduling.kinds.report`` renders
it as JSON, CSV or HTML. Numbers are aggregated in the database, so a report over a busy
period costs a handful of queries, not one row per execution in Python.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django import forms
from django.db.models import Avg, Count, Max, Min, Model, OuterRef, Q, QuerySet, Subquery
from django.db.models import JSONField as JSONModelField
from django.utils.translation import gettext_lazy as _

from ..context import ExecutionContext
from ..kinds.report import report_options
from ..models import FAILURE_STATUSES, RAN_STATUSES, Execution, PeriodicScan, Report, Status
from ..registry import JSONObject, report_type

if TYPE_CHECKING:
    from tenants.models import Tenant

# Failure rates and durations are over runs (RAN_STATUSES): skipped and missed occurrences
# never ran, and an interrupted one did not run to an outcome.
FAILED_RUNS = tuple(s for s in RAN_STATUSES if s in FAILURE_STATUSES)
PERCENTILES = (50, 95, 99)
TOP_N = 5


def _options(report: Report) -> JSONObject:
    return report_options(report)


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _ms(value: float | None) -> float | None:
    return None if value is None else round(float(value), 1)


def percentiles(
    queryset: QuerySet[Model], field: str, count: int, ps: tuple[int, ...]
) -> dict[str, object]:
    """Return nearest-rank percentiles of ``field`` over ``queryset`` (``count`` rows).

    Each one is a single ``ORDER BY ... LIMIT 1 OFFSET k`` query: the database sorts, and no
    rows travel to Python.
    """
    ordered = queryset.order_by(field).values_list(field, flat=True)
    values: dict[str, object] = {}
    for p in ps:
        # Nearest rank: the smallest value with at least p% of the values at or below it.
        rank = max(1, -(-p * count // 100))
        values[f"p{p}"] = ordered[rank - 1] if count else None
    return values


# -- execution_summary -----------------------------------------------------------------------


class ExecutionSummaryOptions(forms.Form):
    period_hours = forms.IntegerField(
        label=_("period (hours)"),
        required=False,
        initial=24,
        min_value=1,
        max_value=8760,
        help_text=_("The report covers the executions scheduled in this many hours before it."),
    )

    def clean_period_hours(self) -> int:
        value = self.cleaned_data.get("period_hours")
        return 24 if value is None else value


def _schedule_row(row: JSONObject) -> JSONObject:
    return {
        "schedule_id": row["schedule_id"],
        "name": row["schedule_name"],
        "kind": row["schedule_kind"],
    }


def execution_summary_data(tenant: Tenant | None, start: datetime, end: datetime) -> JSONObject:
    """Aggregate the tenant's executions scheduled in ``[start, end)``.

    With no tenant (a system report), every tenant's executions and the system's.
    """
    executions = Execution.objects.filter(scheduled_for__gte=start, scheduled_for__lt=end)
    if tenant is not None:
        executions = executions.filter(tenant=tenant)
    executions = executions.order_by()

    by_status = dict.fromkeys(Status.values, 0)
    for row in executions.values("status").annotate(n=Count("pk")):
        by_status[row["status"]] = row["n"]
    total = sum(by_status.values())
    ran = sum(by_status[s] for s in RAN_STATUSES)
    failures = sum(by_status[s] for s in FAILED_RUNS)

    timed = executions.filter(status__in=RAN_STATUSES, duration_ms__isnull=False)
    stats = timed.aggregate(
        count=Count("pk"), min=Min("duration_ms"), avg=Avg("duration_ms"), max=Max("duration_ms")
    )
    durations = {
        "count": stats["count"],
        "min": stats["min"],
        "avg": _ms(stats["avg"]),
        "max": stats["max"],
        **percentiles(timed, "duration_ms", stats["count"], PERCENTILES),
    }

    per_schedule = ("schedule_id", "schedule_name", "schedule_kind")
    slowest = (
        timed.values(*per_schedule)
        .annotate(runs=Count("pk"), avg_ms=Avg("duration_ms"), max_ms=Max("duration_ms"))
        .order_by("-max_ms", "-avg_ms", "schedule_name")[:TOP_N]
    )
    failing = (
        executions.filter(status__in=RAN_STATUSES)
        .values(*per_schedule)
        .annotate(
            runs=Count("pk"),
            failures=Count("pk", filter=Q(status__in=FAILED_RUNS)),
            last_failure_at=Max("scheduled_for", filter=Q(status__in=FAILED_RUNS)),
        )
        .filter(failures__gt=0)
        .order_by("-failures", "-last_failure_at", "schedule_name")[:TOP_N]
    )
    rate = _ratio(failures, ran)
    return {
        "tenant": {"id": tenant.pk, "name": str(tenant)} if tenant is not None else None,
        "period": {"start": start, "end": end, "hours": round((end - start) / timedelta(hours=1))},
        "total": total,
        "by_status": by_status,
        "ran": ran,
        "failures": failures,
        "failure_rate": rate,
        "failure_rate_percent": None if rate is None else round(rate * 100, 2),
        "duration_ms": durations,
        "slowest_schedules": [
            {
                **_schedule_row(row),
                "runs": row["runs"],
                "avg_ms": _ms(row["avg_ms"]),
                "max_ms": row["max_ms"],
            }
            for row in slowest
        ],
        "most_failing_schedules": [
            {
                **_schedule_row(row),
                "runs": row["runs"],
                "failures": row["failures"],
                "failure_rate": _ratio(row["failures"], row["runs"]),
                "last_failure_at": row["last_failure_at"],
            }
            for row in failing
        ],
    }


def execution_summary_csv(data: JSONObject) -> list[list[object]]:
    """One fact per row: section, schedule (when per schedule), metric, value."""
    rows: list[list[object]] = [["section", "schedule", "metric", "value"]]
    rows += [["period", "", key, data["period"][key]] for key in ("start", "end", "hours")]
    rows += [["executions", "", status, count] for status, count in data["by_status"].items()]
    rows += [
        ["executions", "", key, data[key]] for key in ("total", "ran", "failures", "failure_rate")
    ]
    rows += [["duration_ms", "", key, value] for key, value in data["duration_ms"].items()]
    for row in data["slowest_schedules"]:
        rows += [["slowest", row["name"], key, row[key]] for key in ("runs", "avg_ms", "max_ms")]
    for row in data["most_failing_schedules"]:
        rows += [
            ["most_failing", row["name"], key, row[key]]
            for key in ("runs", "failures", "failure_rate", "last_failure_at")
        ]
    return rows


@report_type(
    "execution_summary",
    label=_("Execution summary"),
    options=ExecutionSummaryOptions,
    template="scheduling/reports/execution_summary.html",
    csv_rows=execution_summary_csv,
)
def execution_summary(report: Report, context: ExecutionContext) -> JSONObject:
    """Counts, failure rate, duration percentiles, slowest and most-failing schedules."""
    hours = _options(report)["period_hours"]
    end = context.scheduled_for
    return execution_summary_data(report.tenant, end - timedelta(hours=hours), end)


# -- scan_status -----------------------------------------------------------------------------


class ScanStatusOptions(forms.Form):
    include_disabled = forms.BooleanField(
        label=_("include disabled scans"),
        required=False,
        help_text=_("List disabled scans too (they are left out by default)."),
    )


ERROR_PREVIEW = 500


def scan_status_data(
    tenant: Tenant | None, as_of: datetime, *, include_disabled: bool = False
) -> JSONObject:
    """The latest state of each scan of ``tenant`` as of ``as_of``, in one query.

    With no tenant (a system report), every scan.
    """
    latest = Execution.objects.filter(
        schedule=OuterRef("pk"),
        status__in=RAN_STATUSES,
        scheduled_for__lte=as_of,
    ).order_by("-scheduled_for", "-attempt")
    scans = PeriodicScan.objects.order_by("name", "pk")
    if tenant is not None:
        scans = scans.filter(tenant=tenant)
    if not include_disabled:
        scans = scans.filter(enabled=True)
    checked = scans.annotate(
        check_status=Subquery(latest.values("status")[:1]),
        checked_at=Subquery(latest.values("finished_at")[:1]),
        check_duration_ms=Subquery(latest.values("duration_ms")[:1]),
        check_error=Subquery(latest.values("error")[:1]),
        check_result=Subquery(latest.values("result")[:1], output_field=JSONModelField()),
    )
    rows = []
    counts = {"up": 0, "down": 0, "unknown": 0}
    for scan in checked:
        state = {
            Status.SUCCEEDED: "up",
            Status.FAILED: "down",
            Status.TIMED_OUT: "down",
        }.get(scan.check_status, "unknown")
        counts[state] += 1
        error = scan.check_error or ""
        rows.append(
            {
                "schedule_id": scan.pk,
                "name": scan.name,
                "scan_type": scan.scan_type,
                "target": scan.target,
                "enabled": scan.enabled,
                "paused": scan.is_paused(as_of),
                "state": state,
                "check_status": scan.check_status,
                "checked_at": scan.checked_at,
                "duration_ms": scan.check_duration_ms,
                "error": error[:ERROR_PREVIEW],
                "result": scan.check_result,
                "last_status": scan.last_status or None,
                "last_run_at": scan.last_run_at,
                "next_run_at": scan.next_run_at,
                "consecutive_failures": scan.consecutive_failures,
            }
        )
    return {
        "tenant": {"id": tenant.pk, "name": str(tenant)} if tenant is not None else None,
        "as_of": as_of,
        "total": len(rows),
        "counts": counts,
        "scans": rows,
    }


SCAN_STATUS_COLUMNS = (
    "name",
    "scan_type",
    "target",
    "enabled",
    "state",
    "check_status",
    "checked_at",
    "duration_ms",
    "consecutive_failures",
    "next_run_at",
    "error",
)


def scan_status_csv(data: JSONObject) -> list[list[object]]:
    """One row per scan."""
    return [list(SCAN_STATUS_COLUMNS)] + [
        [row[column] for column in SCAN_STATUS_COLUMNS] for row in data["scans"]
    ]


@report_type(
    "scan_status",
    label=_("Scan status"),
    options=ScanStatusOptions,
    template="scheduling/reports/scan_status.html",
    csv_rows=scan_status_csv,
)
def scan_status(report: Report, context: ExecutionContext) -> JSONObject:
    """The latest check of each scan: up, down or unknown, with its error."""
    options = _options(report)
    return scan_status_data(
        report.tenant, context.scheduled_for, include_disabled=bool(options["include_disabled"])
    )
