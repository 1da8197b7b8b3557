"""``/healthz`` and ``/metrics``: the scheduler as monitoring sees it, read from the database.

Both are plain views without authentication, for load balancers, orchestrators and Prometheus
on the internal network; they show no tenant names, no schedule names and no host names.
Include them with ``path("", include("scheduling.urls"))`` where such endpoints belong.

``/healthz`` answers 200 while a scheduler holds the lease with a heartbeat no older than
``SCHEDULING_HEALTH_MAX_HEARTBEAT_AGE`` seconds, else 503 (also when the database cannot be
read), with ``{"status": "ok" | "unhealthy" | "error", "leader_active",
"heartbeat_age_seconds", "max_heartbeat_age_seconds"}``.

``/metrics`` is the Prometheus text format, computed from the database at scrape time, so every
web process answers the same and a restarted scheduler loses nothing. Series:

==============================================  =========  ==============================
``scheduling_executions{kind,status}``          gauge      execution rows in the history
``scheduling_execution_duration_seconds``       histogram  run time of executions that ran
``{kind}``                                                 (succeeded, failed, timed_out)
``scheduling_execution_lateness_seconds``       histogram  ``started_at - scheduled_for`` of
``{kind}``                                                 scheduled (not manual, retried or
                                                           dependent) executions that started
``scheduling_queue_depth{kind}``                gauge      queued executions
``scheduling_running_executions{kind}``         gauge      running executions
``scheduling_schedules{kind,state}``            gauge      schedules; state enabled|disabled
``scheduling_jobs``                             gauge      jobs in the scheduler's job store
``scheduling_celery_workers``                   gauge      Celery worker processes with a
                                                           current heartbeat
``scheduling_leader_present``                   gauge      1 while a scheduler holds a fresh
                                                           lease, else 0
``scheduling_heartbeat_age_seconds``            gauge      age of the leader's last renewal
``scheduling_sync_lag_seconds``                 gauge      duration of the last sync pass
``scheduling_last_sync_timestamp_seconds``      gauge      Unix time of the last sync
==============================================  =========  ==============================

The execution counts and histograms are totals over the rows the history keeps. They are
gauges rather than counters because retention deletes rows: a counter that goes down reads
as a process restart to ``rate()``. Use ``delta()`` over windows shorter than the retention
run's period, or alert on ratios of the current values. Series without a value (no lease row
yet) are left out. Each scrape runs a handful of aggregate queries over the execution table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import timedelta
from typing import Any, TypeAlias

from django.db import DatabaseError
from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, Sum
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from .executors.celery import live_workers
from .models import Execution, Kind, Schedule, Status, TriggerKind
from .status import get_lease, lease_health

# Upper bounds (seconds) of the histogram buckets.
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
LATENESS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
KINDS = [k.value for k in Kind]
RAN_STATUSES = (Status.SUCCEEDED, Status.FAILED, Status.TIMED_OUT)
# A ``values()`` row of one kind: its count, its total and one count per bucket, the latter
# named at run time (``le_0_5``), which no static row type can list.
Row: TypeAlias = Mapping[str, Any]


def _bucket_key(bound: float) -> str:
    return f"le_{str(bound).replace('.', '_')}"


def _histogram(
    name: str,
    documentation: str,
    rows: Mapping[str, Row],
    bounds: tuple[float, ...],
    total_seconds: Callable[[Row], float],
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=["kind"])
    for kind in KINDS:
        row = rows.get(kind, {})
        count = row.get("count") or 0
        buckets = [(str(b), float(row.get(_bucket_key(b)) or 0)) for b in bounds]
        buckets.append(("+Inf", float(count)))
        family.add_metric([kind], buckets, sum_value=total_seconds(row))
    return family


class SchedulingCollector(Collector):
    """Reads the scheduler's state and the execution history at scrape time."""

    def collect(self) -> Iterator[Metric]:
        yield from self._executions()
        yield from self._durations()
        yield from self._lateness()
        yield from self._schedules()
        yield from self._scheduler()

    def _executions(self) -> Iterator[Metric]:
        counts = {
            (row["schedule_kind"], row["status"]): row["n"]
            for row in Execution.objects.order_by()
            .values("schedule_kind", "status")
            .annotate(n=Count("pk"))
        }
        executions = GaugeMetricFamily(
            "scheduling_executions",
            "Execution rows in the history, by schedule kind and status.",
            labels=["kind", "status"],
        )
        queue = GaugeMetricFamily(
            "scheduling_queue_depth", "Queued executions, by schedule kind.", labels=["kind"]
        )
        running = GaugeMetricFamily(
            "scheduling_running_executions", "Running executions, by kind.", labels=["kind"]
        )
        for kind in KINDS:
            for status in Status:
                executions.add_metric([kind, status.value], counts.get((kind, status.value), 0))
            queue.add_metric([kind], counts.get((kind, Status.QUEUED.value), 0))
            running.add_metric([kind], counts.get((kind, Status.RUNNING.value), 0))
        yield executions
        yield queue
        yield running

    def _durations(self) -> Iterator[Metric]:
        aggregates = {
            _bucket_key(b): Count("pk", filter=Q(duration_ms__lte=b * 1000))
            for b in DURATION_BUCKETS
        }
        rows = {
            row["schedule_kind"]: row
            for row in Execution.objects.filter(status__in=RAN_STATUSES, duration_ms__isnull=False)
            .order_by()
            .values("schedule_kind")
            .annotate(count=Count("pk"), total_ms=Sum("duration_ms"), **aggregates)
        }
        yield _histogram(
            "scheduling_execution_duration_seconds",
            "Run time of executions that ran (succeeded, failed, timed out).",
            rows,
            DURATION_BUCKETS,
            lambda row: (row.get("total_ms") or 0) / 1000,
        )

    def _lateness(self) -> Iterator[Metric]:
        lateness = ExpressionWrapper(F("started_at") - F("scheduled_for"), DurationField())
        # Aliased as start_delay: "lateness" would shadow the Execution.lateness property.
        aggregates = {
            _bucket_key(b): Count("pk", filter=Q(start_delay__lte=timedelta(seconds=b)))
            for b in LATENESS_BUCKETS
        }
        rows = {
            row["schedule_kind"]: row
            for row in Execution.objects.filter(
                trigger=TriggerKind.SCHEDULE, attempt=1, started_at__isnull=False
            )
            .order_by()
            .alias(start_delay=lateness)
            .values("schedule_kind")
            .annotate(count=Count("pk"), total=Sum("start_delay"), **aggregates)
        }
        yield _histogram(
            "scheduling_execution_lateness_seconds",
            "Delay from the scheduled time to the start of scheduled executions.",
            rows,
            LATENESS_BUCKETS,
            lambda row: row["total"].total_seconds() if row.get("total") else 0.0,
        )

    def _schedules(self) -> Iterator[Metric]:
        counts = {
            (row["kind"], row["enabled"]): row["n"]
            for row in Schedule.objects.order_by().values("kind", "enabled").annotate(n=Count("pk"))
        }
        family = GaugeMetricFamily(
            "scheduling_schedules", "Schedules, by kind and state.", labels=["kind", "state"]
        )
        for kind in KINDS:
            family.add_metric([kind, "enabled"], counts.get((kind, True), 0))
            family.add_metric([kind, "disabled"], counts.get((kind, False), 0))
        yield family

    def _scheduler(self) -> Iterator[Metric]:
        lease = get_lease()
        health = lease_health(lease)
        yield GaugeMetricFamily(
            "scheduling_leader_present",
            "1 while a scheduler holds the lease with a fresh heartbeat, else 0.",
            value=1 if health["healthy"] else 0,
        )
        yield GaugeMetricFamily(
            "scheduling_jobs",
            "Jobs in the scheduler's job store at its last sync.",
            value=lease.job_count if lease else 0,
        )
        yield GaugeMetricFamily(
            "scheduling_celery_workers",
            "Celery worker processes whose heartbeat is current (the celery executor).",
            value=len(live_workers()),
        )
        if health["heartbeat_age_seconds"] is not None:
            yield GaugeMetricFamily(
                "scheduling_heartbeat_age_seconds",
                "Seconds since the leader last renewed its lease.",
                value=health["heartbeat_age_seconds"],
            )
        if lease is not None and lease.sync_lag_ms is not None:
            yield GaugeMetricFamily(
                "scheduling_sync_lag_seconds",
                "Duration of the scheduler's last sync pass.",
                value=lease.sync_lag_ms / 1000,
            )
        if lease is not None and lease.last_sync_at is not None:
            yield GaugeMetricFamily(
                "scheduling_last_sync_timestamp_seconds",
                "Unix time of the scheduler's last sync pass.",
                value=lease.last_sync_at.timestamp(),
            )


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """200 while the scheduler's heartbeat is fresh, 503 when it is stale or missing."""
    try:
        health = lease_health(get_lease(), timezone.now())
    except DatabaseError:
        return JsonResponse({"status": "error", "error": "database unavailable"}, status=503)
    data = {
        "status": "ok" if health["healthy"] else "unhealthy",
        "leader_active": health["leader_active"],
        "heartbeat_age_seconds": health["heartbeat_age_seconds"],
        "max_heartbeat_age_seconds": health["max_heartbeat_age_seconds"],
    }
    return JsonResponse(data, status=200 if health["healthy"] else 503)


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """The Prometheus exposition of the scheduler's state and execution history."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SchedulingCollector())
    # The format the scraper asks for (Prometheus text 0.0.4 without an Accept header,
    # OpenMetrics when requested), as prometheus_client's own exporters do.
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    try:
        body = encoder(registry)
    except DatabaseError:
        return HttpResponse(
            "# database unavailable\n", status=503, content_type="text/plain; charset=utf-8"
        )
    return HttpResponse(body, content_type=content_type)
