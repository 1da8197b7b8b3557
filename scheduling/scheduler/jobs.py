"""The APScheduler job of a schedule: its id, how it is built, and its run times.

A leaf of the scheduler package: the job store, the sync and the dispatcher all use it.
Job-store rows pickle the job function by name (``scheduling.runner:fire``); that name is
kept stable across releases so rows written by an older version still load and fire.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any, NamedTuple

from apscheduler.job import Job
from django.core.exceptions import FieldDoesNotExist
from django.db.models import Exists, OuterRef
from django.utils import timezone

from ..conf import conf
from ..models import Schedule, is_paused_at, schedule_job_id, trigger_fingerprint
from ..runner import fire, values_rows
from ..triggers import build_trigger

JOB_PREFIX = "schedule:"


# How many missed run times one pass enumerates before it jumps to the latest one.
MAX_RUN_TIMES = 100


class BoundedJob(Job):
    """A job whose missed run times are enumerated only up to ``MAX_RUN_TIMES``.

    APScheduler lists every missed run time before coalescing: after a clock jump of a year,
    half a million of them for a minutely job. Past the bound, this jumps straight to the
    latest run time at or before ``now``; the dispatcher records the gap as missed.
    """

    __slots__ = ()

    def _get_run_times(self, now: datetime) -> list[datetime]:
        run_times: list[datetime] = []
        next_run_time = self.next_run_time
        while next_run_time and next_run_time <= now and len(run_times) < MAX_RUN_TIMES:
            run_times.append(next_run_time)
            next_run_time = self.trigger.get_next_fire_time(next_run_time, now)
        if next_run_time and next_run_time <= now:
            latest = latest_fire_time(self.trigger, run_times[-1], now)
            if latest is not None and latest > run_times[-1]:
                run_times.append(latest)
        return run_times


def latest_fire_time(trigger: Any, after: datetime, now: datetime) -> datetime | None:
    """Return the trigger's last fire time in (``after``, ``now``], searching backwards."""
    window = timedelta(seconds=1)
    while True:
        start = max(after + timedelta(microseconds=1), now - window)
        fire = trigger.get_next_fire_time(None, start)
        if fire is not None and fire <= now:
            # The window holds at least one fire time; walk forward to the last (few) of them.
            for _ in range(10_000):
                following = trigger.get_next_fire_time(fire, now)
                if following is None or following > now or following <= fire:
                    return fire
                fire = following
            return fire
        if start <= after + timedelta(microseconds=1):
            return None
        window *= 2


def schedule_pk(job_id: str) -> int | None:
    """Return the schedule pk of a ``schedule:<pk>`` job id, else None."""
    if job_id.startswith(JOB_PREFIX):
        try:
            return int(job_id[len(JOB_PREFIX) :])
        except ValueError:
            return None
    return None


JOB_FUNC = "scheduling.runner:fire"


class ScheduleRow(NamedTuple):
    """The columns of a schedule row that shape its job, read without a model instance.

    A full sync reads every schedule: building 10,000 ``Schedule`` instances with their tenants
    took three times as long as reading the same columns with ``values_list``. Triggers are
    built from these attributes exactly as from a model instance (``build_trigger`` reads
    attributes only), and the job id, the pause check and the fingerprint are ``Schedule``'s
    own code, so a row and its model instance give the same job.
    """

    pk: int
    kind: str
    name: str
    enabled: bool
    updated_at: datetime
    created_at: datetime
    trigger_type: str
    interval_seconds: int | None
    cron_expression: str
    legacy_day_rule: bool
    calendar_every: int | None
    calendar_unit: str
    calendar_time: time | None
    calendar_weekdays: str
    run_at: datetime | None
    start_at: datetime | None
    end_at: datetime | None
    jitter_seconds: int
    stagger: bool
    dst_gap_policy: str
    dst_fold_policy: str
    paused_until: datetime | None
    coalesce: bool
    max_instances: int
    # Derived: the tenant's time zone where the schedule names none, the default grace.
    effective_timezone: str
    effective_misfire_grace: int
    has_upstreams: bool

    # The job id, the pause check and the fingerprint are the model's own code.

    @property
    def job_id(self) -> str:
        return schedule_job_id(self.pk)

    def is_paused(self, now: datetime | None = None) -> bool:
        return is_paused_at(self.paused_until, now)

    def trigger_fingerprint(self) -> bytes:
        return trigger_fingerprint(self)

    @classmethod
    def load(
        cls, *filters: Any, after_pk: int | None = None, limit: int | None = None
    ) -> list[ScheduleRow]:
        """Return the rows matching ``filters`` (Q objects), in one or two queries.

        With ``limit``: at most that many, in primary key order after ``after_pk`` (one page
        of a keyset walk over the table).
        """
        # A schedule with upstreams is driven by them (trigger=dependency), not by a job.
        upstreams = Schedule.depends_on.through.objects.filter(from_schedule=OuterRef("pk"))
        columns = cls._fields[:-3]  # all but the derived fields
        rows = Schedule.objects.filter(*filters).annotate(has_upstreams=Exists(upstreams))
        if limit is not None:
            rows = rows.filter(pk__gt=after_pk or 0).order_by("pk")[:limit]
        else:
            # No ordering: SQLite would scan the name index instead of using updated_at's.
            rows = rows.order_by()
        # The tenant's time zone is joined in where the tenant model has a column for it
        # (a chunk of a full sync names thousands of tenants: building them cost more than
        # reading the schedules); else the tenants are read (``tenant_timezones``).
        joined = _tenant_zone_column()
        tenant = f"tenant__{joined}" if joined else "tenant_id"
        # The annotation last, where the SQL has it: values_rows reads the compiler's rows.
        values = values_rows(
            rows.values_list(*columns, "timezone", "misfire_grace_seconds", tenant, "has_upstreams")
        )
        zones: dict[Any, str] = {}
        if not joined:
            # Only rows that name no time zone of their own need their tenant's.
            zones = tenant_timezones({tenant for *_, zone, _g, tenant, _u in values if not zone})
        default_grace = conf.DEFAULT_MISFIRE_GRACE
        return [
            cls._make(
                (
                    *columns,
                    zone or ((tenant or "UTC") if joined else zones.get(tenant, "UTC")),
                    default_grace if grace is None else grace,
                    has_upstreams,
                )
            )
            for *columns, zone, grace, tenant, has_upstreams in values
        ]


def _tenant_zone_column() -> str | None:
    """The tenant model's ``timezone`` field, where it is a text column (else None)."""
    model = Schedule._meta.get_field("tenant").related_model
    try:
        field = model._meta.get_field("timezone")
    except FieldDoesNotExist:
        return None
    concrete = getattr(field, "concrete", False) and not field.is_relation
    text = field.get_internal_type() in ("CharField", "TextField")
    return "timezone" if concrete and text else None


def tenant_timezones(ids: set[Any]) -> dict[Any, str]:
    """Return ``{tenant pk: default time zone}`` (``Schedule.default_timezone``) in one query."""
    if not ids:
        return {}
    model = Schedule._meta.get_field("tenant").related_model
    tenants = model._base_manager.all()
    if len(ids) <= 500:  # else read them all rather than overflow a parameter limit
        tenants = tenants.filter(pk__in=ids)
    return {tenant.pk: getattr(tenant, "timezone", "") or "UTC" for tenant in tenants}


def make_job(
    scheduler: Any,
    schedule: Schedule | ScheduleRow,
    now: datetime | None = None,
    next_run_time: datetime | None = None,
    fingerprint: bytes | None = None,
) -> Job | None:
    """Return the APScheduler job for ``schedule``, or None when it will not fire again."""
    now = now or timezone.now()
    trigger = build_trigger(schedule)
    if next_run_time is None:
        start = schedule.paused_until if schedule.is_paused(now) else now
        next_run_time = trigger.get_next_fire_time(None, start)
    if next_run_time is None:
        return None
    # Built directly rather than through Job(...): its argument checks cost a third of a
    # full sync, and every value here is known to be valid.
    job = BoundedJob.__new__(BoundedJob)
    job._scheduler = scheduler
    job._jobstore_alias = None
    job.id = schedule.job_id
    job.func_ref = JOB_FUNC
    job.func = fire
    job.trigger = trigger
    job.executor = "default"
    job.args = (schedule.pk,)
    # The fingerprint travels in the job (Job has __slots__) into the signed header.
    fingerprint = schedule.trigger_fingerprint() if fingerprint is None else fingerprint
    job.kwargs = {"fingerprint": fingerprint.hex()}
    job.name = f"{schedule.kind}:{schedule.name}"[:200]
    job.misfire_grace_time = schedule.effective_misfire_grace
    job.coalesce = schedule.coalesce
    job.max_instances = max(1, schedule.max_instances)
    job.next_run_time = next_run_time.astimezone(UTC)
    return job
