"""``/healthz`` and ``/metrics``: the scheduler as monitoring sees it, read from the database.

Both are plain views for load balancers, orchestrators and Prometheus; they show no tenant
names, no schedule names and no host names. Include them with
``path("", include("scheduling.urls"))`` where such endpoints belong. Two settings restrict
them (``manage.py check --deploy`` warns, ``scheduling.W009``, while neither is set):
``SCHEDULING_MONITORING_ALLOW_NETWORKS`` (CIDRs ``REMOTE_ADDR`` must be in, else 403) and
``SCHEDULING_MONITORING_TOKEN`` (``Authorization: Bearer <token>`` required, else 401).

``/healthz`` answers 200 while a scheduler holds the lease with a heartbeat no older than
``SCHEDULING_HEALTH_MAX_HEARTBEAT_AGE`` seconds, else 503 (also when the database cannot be
read), with ``{"status": "ok" | "unhealthy" | "error", "leader_active",
"heartbeat_age_seconds", "max_heartbeat_age_seconds"}``. The 503 is an answer, not a server
error: it is not logged by ``django.request`` (no error mail per probe while no scheduler runs).

``/metrics`` is the Prometheus text format, read from the database at scrape time, so every
web process answers the same and a restarted scheduler loses nothing. Series:

==============================================  =========  ==============================
``scheduling_executions_total{kind,status}``    counter    executions that finished with
                                                           that status
``scheduling_execution_duration_seconds``       histogram  run time of executions that ran
``{kind}``                                                 (succeeded, failed, timed_out)
``scheduling_execution_lateness_seconds``       histogram  ``started_at - scheduled_for`` of
``{kind}``                                                 scheduled (not manual, retried or
                                                           dependent) executions that
                                                           started, counted when they finish
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
``scheduling_build_info{version,django}``       gauge      1, labelled with this package's
                                                           and Django's versions
==============================================  =========  ==============================

With ``SCHEDULING_METRICS_PER_SCHEDULE = True``, two gauges per enabled schedule follow,
labelled ``{schedule_id,tenant_id,kind}`` (ids only; ``tenant_id`` empty for a system
schedule): ``scheduling_schedule_last_success_timestamp_seconds`` (``Schedule.last_success_at``,
which retention does not delete; 0 while it never succeeded) and
``scheduling_schedule_next_run_timestamp_seconds`` (``next_run_at``, where the scheduler knows
one). They cost one query of the schedule table per scrape, and two series per schedule in
Prometheus, hence off by default.

The execution counter and the histograms come from ``ExecutionCounter``: totals the
scheduler adds to in the transaction that writes each final status, so a scrape reads a few
dozen rows whatever the size of the history (``bench/metrics.py``). They are monotonic, as
Prometheus counters are: retention and ``purge`` delete history, never counts, so use
``rate()``/``increase()``. The data migration that created them counted the history kept at
the time. The gauges are live queries that only read active executions (an index on status)
and the schedule table. Series without a value (no lease row yet) are left out.
"""

from __future__ import annotations

import hmac
import importlib.metadata
import ipaddress
from collections.abc import Callable, Iterator
from functools import cache, wraps

import django
from django.db import DatabaseError
from django.db.models import Count
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from .conf import conf
from .executors.celery import live_workers
from .models import (
    ACTIVE_STATUSES,
    DURATION_BUCKETS,
    FINISHED_STATUSES,
    INF_BUCKET,
    LATENESS_BUCKETS,
    SUM_BUCKET,
    CounterSeries,
    Execution,
    ExecutionCounter,
    Kind,
    Schedule,
    Status,
)
from .status import get_lease, lease_health

KINDS = [k.value for k in Kind]
# This project's distribution name (pyproject.toml), whose version scheduling_build_info shows.
DISTRIBUTION = "django-tenant-scheduling"
# (kind, series) -> bucket -> value, summed over statuses.
Histograms = dict[tuple[str, str], dict[str, int]]


def _histogram(
    name: str, documentation: str, series: str, found: Histograms, bounds: tuple[float, ...]
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=["kind"])
    for kind in KINDS:
        counts = found.get((kind, series), {})
        cumulative, buckets = 0, []
        for bound in bounds:
            cumulative += counts.get(str(bound), 0)
            buckets.append((str(bound), float(cumulative)))
        buckets.append(("+Inf", float(cumulative + counts.get(INF_BUCKET, 0))))
        family.add_metric([kind], buckets, sum_value=counts.get(SUM_BUCKET, 0) / 1000)
    return family


@cache
def distribution_version(name: str = DISTRIBUTION) -> str:
    """Return the installed version of distribution ``name``, "unknown" when not installed."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"  # e.g. a checkout on sys.path, not installed


class SchedulingCollector(Collector):
    """Reads the counters and the scheduler's state at scrape time."""

    def collect(self) -> Iterator[Metric]:
        yield from self._counters()
        yield from self._active()
        yield from self._schedules()
        yield from self._scheduler()
        yield self._build_info()
        if conf.METRICS_PER_SCHEDULE:
            yield from self._per_schedule()

    def _counters(self) -> Iterator[Metric]:
        totals: dict[tuple[str, str], int] = {}
        histograms: Histograms = {}
        for kind, status, series, bucket, value in ExecutionCounter.objects.values_list(
            "kind", "status", "series", "bucket", "value"
        ):
            if series == CounterSeries.EXECUTIONS:
                totals[kind, status] = totals.get((kind, status), 0) + value
            else:
                counts = histograms.setdefault((kind, series), {})
                counts[bucket] = counts.get(bucket, 0) + value
        executions = CounterMetricFamily(
            "scheduling_executions",
            "Executions that finished, by schedule kind and final status.",
            labels=["kind", "status"],
        )
        for kind in KINDS:
            for status in FINISHED_STATUSES:
                executions.add_metric([kind, status.value], totals.get((kind, status.value), 0))
        yield executions
        yield _histogram(
            "scheduling_execution_duration_seconds",
            "Run time of executions that ran (succeeded, failed, timed out).",
            CounterSeries.DURATION,
            histograms,
            DURATION_BUCKETS,
        )
        yield _histogram(
            "scheduling_execution_lateness_seconds",
            "Delay from the scheduled time to the start of scheduled executions.",
            CounterSeries.LATENESS,
            histograms,
            LATENESS_BUCKETS,
        )

    def _active(self) -> Iterator[Metric]:
        # Reads only queued and running rows (execution_status_idx), not the history.
        counts = {
            (row["schedule_kind"], row["status"]): row["n"]
            for row in Execution.objects.filter(status__in=ACTIVE_STATUSES)
            .order_by()
            .values("schedule_kind", "status")
            .annotate(n=Count("pk"))
        }
        queue = GaugeMetricFamily(
            "scheduling_queue_depth", "Queued executions, by schedule kind.", labels=["kind"]
        )
        running = GaugeMetricFamily(
            "scheduling_running_executions", "Running executions, by kind.", labels=["kind"]
        )
        for kind in KINDS:
            queue.add_metric([kind], counts.get((kind, Status.QUEUED.value), 0))
            running.add_metric([kind], counts.get((kind, Status.RUNNING.value), 0))
        yield queue
        yield running

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

    def _build_info(self) -> Metric:
        family = GaugeMetricFamily(
            "scheduling_build_info",
            "Always 1; the labels name the versions of this package and of Django.",
            labels=["version", "django"],
        )
        family.add_metric([distribution_version(), django.get_version()], 1)
        return family

    def _per_schedule(self) -> Iterator[Metric]:
        labels = ["schedule_id", "tenant_id", "kind"]
        last_success = GaugeMetricFamily(
            "scheduling_schedule_last_success_timestamp_seconds",
            "Unix time at which the schedule's last successful execution finished (0: never).",
            labels=labels,
        )
        next_run = GaugeMetricFamily(
            "scheduling_schedule_next_run_timestamp_seconds",
            "Unix time of the schedule's next run, as the scheduler last stored it.",
            labels=labels,
        )
        # One query whatever the number of schedules; ids only (no names on this endpoint).
        rows = (
            Schedule.objects.filter(enabled=True)
            .order_by("pk")
            .values_list("pk", "tenant_id", "kind", "last_success_at", "next_run_at")
        )
        for pk, tenant_id, kind, succeeded_at, next_run_at in rows:
            values = [str(pk), "" if tenant_id is None else str(tenant_id), kind]
            last_success.add_metric(values, succeeded_at.timestamp() if succeeded_at else 0)
            if next_run_at is not None:
                next_run.add_metric(values, next_run_at.timestamp())
        yield last_success
        yield next_run


def _client_allowed(request: HttpRequest) -> bool:
    networks = conf.MONITORING_ALLOW_NETWORKS
    if not networks:
        return True
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:10.0.0.1 from a dual-stack socket
    return any(
        address.version == network.version and address in network
        for network in (ipaddress.ip_network(n, strict=False) for n in networks)
    )


def _token_given(request: HttpRequest) -> bool:
    token = conf.MONITORING_TOKEN
    if not token:
        return True
    scheme, _space, given = request.headers.get("Authorization", "").partition(" ")
    # Constant time, so that the response time tells nothing about the token.
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )


def monitoring_access(
    view: Callable[[HttpRequest], HttpResponse],
) -> Callable[[HttpRequest], HttpResponse]:
    """Answer 403 outside ``MONITORING_ALLOW_NETWORKS``, 401 without ``MONITORING_TOKEN``."""

    @wraps(view)
    def wrapped(request: HttpRequest) -> HttpResponse:
        if not _client_allowed(request):
            return HttpResponse(status=403)
        if not _token_given(request):
            response = HttpResponse(status=401)
            response["WWW-Authenticate"] = 'Bearer realm="scheduling"'
            return response
        return view(request)

    return wrapped


def _unavailable(response: HttpResponse) -> HttpResponse:
    """Mark a 503 that answers a probe as logged: ``django.request`` would log it as an error
    (and ``AdminEmailHandler`` mail it) on every probe while no scheduler runs."""
    response._has_been_logged = True  # type: ignore[attr-defined]  # django.utils.log
    return response


@never_cache
@require_GET
@monitoring_access
def healthz(request: HttpRequest) -> HttpResponse:
    """200 while the scheduler's heartbeat is fresh, 503 when it is stale or missing."""
    try:
        health = lease_health(get_lease(), timezone.now())
    except DatabaseError:
        return _unavailable(
            JsonResponse({"status": "error", "error": "database unavailable"}, status=503)
        )
    data = {
        "status": "ok" if health["healthy"] else "unhealthy",
        "leader_active": health["leader_active"],
        "heartbeat_age_seconds": health["heartbeat_age_seconds"],
        "max_heartbeat_age_seconds": health["max_heartbeat_age_seconds"],
    }
    if health["healthy"]:
        return JsonResponse(data)
    return _unavailable(JsonResponse(data, status=503))


@never_cache
@require_GET
@monitoring_access
def metrics(request: HttpRequest) -> HttpResponse:
    """The Prometheus exposition of the scheduler's state and execution counters."""
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
