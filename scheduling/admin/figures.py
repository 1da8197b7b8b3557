"""The admin dashboard's data: upcoming runs, hourly outcomes, failing schedules, health.

Whatever the number of schedules and executions, :func:`build_dashboard` runs the same few
queries: the execution history is counted by the database (one ``GROUP BY`` hour over the
last 24 hours), and only the rows on show are loaded (the soonest schedules, the worst
failing ones, a bounded list of tenants to filter by). Nothing here iterates executions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.db.models import Count, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Left, TruncHour
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext as _

from ..exceptions import InvalidTrigger
from ..models import FAILING_SCHEDULES, FAILURE_STATUSES, Execution, Schedule, Status
from ..status import scheduler_status
from ..tenancy import (
    get_tenant_model,
    request_sees_system,
    request_tenant_ids,
    scope_q,
    sees_system,
    visible_tenant_ids,
)
from ..triggers import next_runs
from .filters import FAILING as FAILING_STATE
from .filters import PAUSED, schedule_state_q

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

    from tenants.models import Tenant

HOURS = 24
UPCOMING_SCHEDULES = 50  # rows of the timeline: the schedules that fire soonest
RUNS_PER_SCHEDULE = 48  # dots per timeline row; a denser schedule says "48+ runs"
FAILING_LIMIT = 20
ERROR_CHARS = 500  # of a failing schedule's latest error, read from the database
TENANT_CHOICES = 100  # tenants offered by the filter; more are reachable with ?tenant=<id>

# Finished executions that neither succeeded nor failed (the run did not happen).
OTHER_STATUSES = (Status.SKIPPED, Status.MISSED)
FAILING = FAILING_SCHEDULES


@dataclass(frozen=True)
class HourBucket:
    """Finished executions of one hour, by outcome."""

    start: datetime
    succeeded: int = 0
    failed: int = 0
    other: int = 0

    @property
    def total(self) -> int:
        return self.succeeded + self.failed + self.other


@dataclass
class UpcomingRow:
    """One schedule on the timeline with its fire times within the horizon."""

    schedule: Schedule
    runs: list[datetime]
    truncated: bool = False  # more than RUNS_PER_SCHEDULE runs in the horizon
    error: str = ""


@dataclass(frozen=True)
class LatestFailure:
    """The latest failed execution of a failing schedule."""

    execution_id: int
    status: str
    error: str  # its first ERROR_CHARS characters


# The schedule counts of the cards, per kind: {kind: {"total", "enabled", "paused", "failing"}}.
COUNTS = ("total", "enabled", "paused", "failing")


@dataclass
class Dashboard:
    now: datetime
    horizon: datetime  # end of the upcoming window
    window_start: datetime  # start of the first hour of the history chart
    tenant: Tenant | None = None  # the tenant filtered on, if any
    tenant_error: str = ""
    tenant_choices: list[Tenant] = field(default_factory=list)
    more_tenants: bool = False
    upcoming: list[UpcomingRow] = field(default_factory=list)
    hours: list[HourBucket] = field(default_factory=list)
    failing: list[Schedule] = field(default_factory=list)
    latest_failures: dict[int, LatestFailure] = field(default_factory=dict)  # by schedule pk
    counts: dict[str, int] = field(default_factory=dict)
    kind_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    health: dict[str, object] = field(default_factory=dict)  # ``scheduler_status``

    @property
    def totals(self) -> HourBucket:
        return HourBucket(
            start=self.window_start,
            succeeded=sum(h.succeeded for h in self.hours),
            failed=sum(h.failed for h in self.hours),
            other=sum(h.other for h in self.hours),
        )


def _select_tenant(raw: str | None, ids: set[int] | None) -> tuple[Tenant | None, str]:
    """Return the tenant named by ``?tenant=`` if the user may see it, else an error text.

    Another tenant's id and an id that does not exist get the same answer, so the filter
    cannot be used to probe for tenants.
    """
    if raw is None or raw.strip() == "":
        return None, ""
    refused = _("Unknown tenant %(value)s: showing all your tenants instead.") % {"value": raw}
    try:
        pk = int(raw)
    except ValueError:
        return None, refused
    if ids is not None and pk not in ids:
        return None, refused
    tenant = get_tenant_model()._default_manager.filter(pk=pk).first()
    return (tenant, "") if tenant is not None else (None, refused)


def _tenant_choices(ids: set[int] | None, selected: Tenant | None) -> tuple[list[Tenant], bool]:
    qs = get_tenant_model()._default_manager.order_by("name", "pk")
    if ids is not None:
        qs = qs.filter(pk__in=ids)
    choices = list(qs[: TENANT_CHOICES + 1])
    more = len(choices) > TENANT_CHOICES
    choices = choices[:TENANT_CHOICES]
    if selected is not None and all(t.pk != selected.pk for t in choices):
        choices.append(selected)
    return choices, more


def hourly_outcomes(
    executions: QuerySet[Execution], *, now: datetime, hours: int = HOURS
) -> tuple[datetime, list[HourBucket]]:
    """Count finished executions per hour (of the current time zone) over the last ``hours``.

    One query: the database groups by the truncated ``finished_at`` and counts each outcome.
    Returns the start of the first hour and one bucket per hour, oldest first.
    """
    current = timezone.localtime(now).replace(minute=0, second=0, microsecond=0)
    start = current - timedelta(hours=hours - 1)
    end = current + timedelta(hours=1)
    rows = (
        executions.filter(finished_at__gte=start, finished_at__lt=end)
        .order_by()
        .annotate(hour=TruncHour("finished_at"))
        .values("hour")
        .annotate(
            succeeded=Count("pk", filter=Q(status=Status.SUCCEEDED)),
            failed=Count("pk", filter=Q(status__in=FAILURE_STATUSES)),
            other=Count("pk", filter=Q(status__in=OTHER_STATUSES)),
        )
    )
    found = {row["hour"]: row for row in rows}
    buckets = []
    for i in range(hours):
        hour = start + timedelta(hours=i)
        row = found.get(hour)
        if row is None:  # nothing finished in that hour
            buckets.append(HourBucket(start=hour))
            continue
        buckets.append(
            HourBucket(
                start=hour, succeeded=row["succeeded"], failed=row["failed"], other=row["other"]
            )
        )
    return start, buckets


def upcoming_runs(
    schedules: QuerySet[Schedule], *, now: datetime, horizon: datetime
) -> list[UpcomingRow]:
    """Return the soonest schedules with their fire times before ``horizon``.

    The fire times come from the trigger (``triggers.next_runs``), capped per schedule, so
    the cost depends on the rows shown, not on how often a schedule fires.
    """
    soonest = (
        schedules.filter(enabled=True, next_run_at__isnull=False, next_run_at__lt=horizon)
        .select_related("tenant")
        .order_by("next_run_at", "pk")[:UPCOMING_SCHEDULES]
    )
    rows = []
    for schedule in soonest:
        try:
            runs = next_runs(schedule, RUNS_PER_SCHEDULE + 1, now=now)
        except (InvalidTrigger, ValueError, KeyError, OverflowError) as exc:
            # A row stored before a validation rule existed: show it, do not fail the page.
            rows.append(UpcomingRow(schedule, [], error=str(exc) or exc.__class__.__name__))
            continue
        runs = [run for run in runs if run < horizon]
        if runs:
            truncated = len(runs) > RUNS_PER_SCHEDULE
            rows.append(UpcomingRow(schedule, runs[:RUNS_PER_SCHEDULE], truncated=truncated))
    return rows


def schedule_counts(schedules: QuerySet[Schedule], *, now: datetime) -> dict[str, dict[str, int]]:
    """Count the schedules of each kind: all, enabled, paused, failing (one query).

    Paused and failing are what the schedule lists' "state" filter shows, so a card's number
    and the list it links to agree.
    """
    # Aliases apart from the field names: "enabled" would stand for the field in a filter.
    rows = (
        schedules.order_by()
        .values("kind")
        .annotate(
            n_total=Count("pk"),
            n_enabled=Count("pk", filter=Q(enabled=True)),
            n_paused=Count("pk", filter=schedule_state_q(PAUSED, now)),
            n_failing=Count("pk", filter=schedule_state_q(FAILING_STATE, now)),
        )
    )
    return {
        row["kind"]: {
            "total": row["n_total"],
            "enabled": row["n_enabled"],
            "paused": row["n_paused"],
            "failing": row["n_failing"],
        }
        for row in rows
    }


def failing_schedules(
    schedules: QuerySet[Schedule],
) -> tuple[list[Schedule], dict[int, LatestFailure]]:
    """Return the worst failing schedules and the latest failed execution of each (one query)."""
    latest = Execution.objects.filter(
        schedule=OuterRef("pk"), status__in=FAILURE_STATUSES
    ).order_by("-scheduled_for", "-attempt")
    rows = list(
        schedules.filter(FAILING)
        .select_related("tenant")
        .annotate(
            failure_id=Subquery(latest.values("pk")[:1]),
            failure_status=Subquery(latest.values("status")[:1]),
            failure_error=Subquery(
                latest.annotate(head=Left("error", ERROR_CHARS)).values("head")[:1]
            ),
        )
        .order_by("-consecutive_failures", "-last_run_at", "pk")[:FAILING_LIMIT]
    )
    failures = {
        row.pk: LatestFailure(row.failure_id, row.failure_status, row.failure_error or "")
        for row in rows
        if row.failure_id is not None
    }
    shown: list[Schedule] = list(rows)
    return shown, failures


def build_dashboard(
    user: AbstractBaseUser | AnonymousUser,
    *,
    tenant: str | None = None,
    now: datetime | None = None,
    request: HttpRequest | None = None,
) -> Dashboard:
    """Collect everything the dashboard shows for the tenants ``user`` may see.

    ``tenant`` is the raw ``?tenant=`` value; a tenant the user may not see is refused with
    a message and the dashboard shows all of the user's tenants.
    """
    now = now or timezone.now()
    # Within the request's own scope (a tenant's domain) when there is a request.
    ids = request_tenant_ids(request) if request is not None else visible_tenant_ids(user)
    system = request_sees_system(request) if request is not None else sees_system(user)
    selected, tenant_error = _select_tenant(tenant, ids)
    # System schedules (no tenant) and their executions count only for those who see them.
    scope = Q(tenant_id=selected.pk) if selected is not None else scope_q(ids, system)

    schedules = Schedule.objects.all()
    executions = Execution.objects.all()
    if scope is not None:
        schedules = schedules.filter(scope)
        executions = executions.filter(scope)

    dashboard = Dashboard(
        now=now,
        horizon=now + timedelta(hours=HOURS),
        window_start=now,
        tenant=selected,
        tenant_error=tenant_error,
    )
    dashboard.tenant_choices, dashboard.more_tenants = _tenant_choices(ids, selected)
    dashboard.upcoming = upcoming_runs(schedules, now=now, horizon=dashboard.horizon)
    dashboard.window_start, dashboard.hours = hourly_outcomes(executions, now=now)
    dashboard.failing, dashboard.latest_failures = failing_schedules(schedules)
    dashboard.kind_counts = schedule_counts(schedules, now=now)
    dashboard.counts = {
        key: sum(counts[key] for counts in dashboard.kind_counts.values()) for key in COUNTS
    }
    # The lease's job count is every job's; a scoped dashboard counts its enabled schedules
    # (no tenant ids: scheduler_status then reads only the lease).
    dashboard.health = scheduler_status(
        tenant_ids=None if scope is None else (), next_count=0, now=now
    )
    if scope is not None:
        dashboard.health["job_count"] = dashboard.counts["enabled"]
    return dashboard
