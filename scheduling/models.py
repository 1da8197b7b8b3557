"""Schedules of every kind, their executions, report artifacts and the scheduler's lease.

``Schedule`` is one concrete table for all kinds (one job-id space, one foreign-key target for
executions and dependencies); each kind adds its own fields in a child table (multi-table
inheritance). The scheduler process keeps the "state" fields up to date with ``update()``
calls that do not touch ``updated_at``, which is the change marker the sync loop polls.
"""

from __future__ import annotations

import calendar
import hashlib
import zoneinfo
from collections.abc import Iterable, Mapping
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Self, TypedDict, TypeVar
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, validate_email
from django.db import connections, models, transaction
from django.db.models import F, Q
from django.http import Http404
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .conf import conf
from .exceptions import TargetNotAllowed, UnknownTaskType
from .formats import format_time
from .registry import cleanup_targets, report_types, scan_types, task_types
from .targets import ResolutionError, check_url
from .tenancy import scope_q, sees_system, visible_tenant_ids
from .triggers import (
    TRIGGER_INPUTS,
    TriggerFields,
    cron_meaning_changed,
    is_paused_indefinitely,
    next_runs,
    validate_trigger,
)
from .validators import check_limits, null_character_errors, validate_timezone_name

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
    from django_stubs_ext import StrOrPromise

    from tenants.models import Tenant

    from .registry import Registry, TaskType

TENANT_MODEL = getattr(settings, "SCHEDULING_TENANT_MODEL", "tenants.Tenant")


class Kind(models.TextChoices):
    SCAN = "scan", _("Periodic scan")
    REPORT = "report", _("Report")
    CLEANUP = "cleanup", _("Cleanup")
    TASK = "task", _("Task")


class TriggerType(models.TextChoices):
    INTERVAL = "interval", _("Interval")
    CRON = "cron", _("Cron")
    ONCE = "once", _("Once")
    CALENDAR = "calendar", _("Calendar")


class CalendarUnit(models.TextChoices):
    DAY = "day", _("Days")
    WEEK = "week", _("Weeks")
    MONTH = "month", _("Months")


class PingStyle(models.TextChoices):
    """How a heartbeat URL is told that a run started, succeeded or failed."""

    HEALTHCHECKS = "healthchecks", _("healthchecks.io: URL/start, URL, URL/fail")
    CRONITOR = "cronitor", _("Cronitor: URL?state=run, complete, fail")


class Overlap(models.TextChoices):
    SKIP = "skip", _("Skip when still running")
    QUEUE = "queue", _("Queue after the running one")
    ALLOW = "allow", _("Allow up to max instances")


class DstGapPolicy(models.TextChoices):
    RUN_AT_NEXT_VALID_TIME = "run_at_next_valid_time", _("Run at the next valid time")
    SKIP = "skip", _("Skip")


class DstFoldPolicy(models.TextChoices):
    ONCE = "once", _("Run once")
    TWICE = "twice", _("Run twice")


class Status(models.TextChoices):
    QUEUED = "queued", _("Queued")
    RUNNING = "running", _("Running")
    SUCCEEDED = "succeeded", _("Succeeded")
    FAILED = "failed", _("Failed")
    TIMED_OUT = "timed_out", _("Timed out")
    SKIPPED = "skipped", _("Skipped")
    MISSED = "missed", _("Missed")
    INTERRUPTED = "interrupted", _("Interrupted")
    CANCELLED = "cancelled", _("Cancelled")


ACTIVE_STATUSES = (Status.QUEUED, Status.RUNNING)
FINISHED_STATUSES = tuple(s for s in Status if s not in ACTIVE_STATUSES)
# The handler ran to an outcome: these count as runs of the schedule.
RAN_STATUSES = (Status.SUCCEEDED, Status.FAILED, Status.TIMED_OUT)
# Failures of the schedule: they feed retries, consecutive failures and alerts.
FAILURE_STATUSES = (Status.FAILED, Status.TIMED_OUT, Status.INTERRUPTED)
# A failing schedule: its last run failed, or failures are still being counted. What the
# dashboard lists as failing and ``scheduling list --failing`` shows (``.failing()``). A
# disabled schedule does not run, so it is not failing, whatever its last run did.
FAILING_SCHEDULES = Q(enabled=True) & (
    Q(last_status__in=FAILURE_STATUSES) | Q(consecutive_failures__gt=0)
)
# What an operator may queue again (``runner.retry``): a failure, or an occurrence that never
# ran because the scheduler missed it.
RETRYABLE_STATUSES = (*FAILURE_STATUSES, Status.MISSED)


class TriggerKind(models.TextChoices):
    SCHEDULE = "schedule", _("Schedule")
    MANUAL = "manual", _("Manual")
    RETRY = "retry", _("Retry")
    DEPENDENCY = "dependency", _("Dependency")


class ReportFormat(models.TextChoices):
    JSON = "json", "JSON"
    CSV = "csv", "CSV"
    HTML = "html", "HTML"


# The model of a schedule queryset: ``PeriodicScan.objects`` yields PeriodicScans.
_S = TypeVar("_S", bound="Schedule")


class ScheduleQuerySet(models.QuerySet[_S]):
    def enabled(self) -> Self:
        return self.filter(enabled=True)

    def due(self, now: datetime | None = None) -> Self:
        now = now or timezone.now()
        return self.enabled().filter(next_run_at__lte=now)

    def failing(self) -> Self:
        """Enabled schedules whose last run failed, or that have failed since their last
        success."""
        return self.filter(FAILING_SCHEDULES)

    def for_tenant(self, tenant: Tenant) -> Self:
        return self.filter(tenant=tenant)

    def visible_to(self, user: AbstractBaseUser | AnonymousUser) -> Self:
        """Rows of the tenants ``user`` may see; system rows only for those who see them."""
        q = scope_q(visible_tenant_ids(user), sees_system(user))
        return self if q is None else self.filter(q)

    def changed_since(self, marker: datetime) -> Self:
        return self.filter(updated_at__gt=marker)

    def get_for_tenant(self, tenant: Tenant, pk: int | str) -> _S:
        """Return schedule ``pk`` of ``tenant``; another tenant's id is simply not found."""
        try:
            return self.get(tenant=tenant, pk=pk)
        except (Schedule.DoesNotExist, ValueError, TypeError) as exc:
            raise Http404("No schedule matches the given query.") from exc


class JobFields(TriggerFields, Protocol):
    """A trigger's fields plus what else shapes a schedule's job (``trigger_fingerprint``)."""

    @property
    def paused_until(self) -> datetime | None: ...
    @property
    def effective_misfire_grace(self) -> int: ...
    @property
    def coalesce(self) -> bool: ...


def same_tenant(tenant_id: int | None, field: str = "tenant") -> Q:
    """Rows of tenant ``tenant_id``; with None, the system's rows (no tenant)."""
    if tenant_id is None:
        return Q(**{f"{field}__isnull": True})
    return Q(**{f"{field}_id": tenant_id})


def schedule_job_id(pk: int | None) -> str:
    """Return the job-store id of schedule ``pk`` (``schedule:<pk>``)."""
    return f"schedule:{pk}"


def is_paused_at(paused_until: datetime | None, now: datetime | None = None) -> bool:
    """Return whether a schedule paused until ``paused_until`` is paused at ``now``."""
    return paused_until is not None and paused_until > (now or timezone.now())


def _cron_rule_marker(fields: JobFields) -> tuple[str, ...]:
    """Marks a job that reads its cron expression otherwise than the previous version did.

    A schedule flagged ``legacy_day_rule`` keeps the fingerprint it had before the upgrade, so
    its job (and the occurrence it has pending) stays; saving it clears the flag, which adds
    this marker, and the sync rebuilds its job with cron's rule.
    """
    if fields.trigger_type != "cron" or fields.legacy_day_rule:
        return ()
    return ("cron rule",) if cron_meaning_changed(fields.cron_expression) else ()


def trigger_fingerprint(fields: JobFields) -> bytes:
    """Digest of everything that shapes a schedule's job in the job store."""
    parts = [
        fields.trigger_type,
        fields.interval_seconds,
        fields.cron_expression,
        fields.run_at,
        # Only where they matter, so that the fingerprints of other schedules stay as they
        # were (a changed fingerprint rewrites the job and forgets its pending run time).
        *_cron_rule_marker(fields),
        *(
            (fields.calendar_every, fields.calendar_unit, fields.calendar_time)
            + (fields.calendar_weekdays,)
            if fields.trigger_type == "calendar"
            else ()
        ),
        fields.start_at,
        fields.end_at,
        fields.effective_timezone,
        fields.jitter_seconds,
        fields.stagger,
        fields.dst_gap_policy,
        fields.dst_fold_policy,
        fields.paused_until,
        fields.effective_misfire_grace,
        fields.coalesce,
        fields.created_at,
    ]
    return hashlib.blake2b(repr(parts).encode(), digest_size=16).digest()


# Fields the scheduler process (and a tenant's deactivation) own. A form or serializer saving
# a stale instance must not overwrite them, so ``Schedule.save()`` leaves them out of ordinary
# updates.
STATE_FIELDS = frozenset(
    {
        "next_run_at",
        "last_run_at",
        "last_success_at",
        "last_status",
        "run_count",
        "consecutive_failures",
        "paused_until_before_deactivation",  # kept by services.set_tenant_active
    }
)


class Schedule(models.Model):
    # The ``Kind`` of a concrete kind's model (``PeriodicScan.KIND == Kind.SCAN``).
    KIND: ClassVar[str] = ""

    # Empty for a system schedule: maintenance that belongs to no tenant, which only
    # superusers (and holders of ``scheduling.manage_system_schedules``) see.
    tenant = models.ForeignKey(
        TENANT_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="schedules",
        verbose_name=_("tenant"),
        help_text=_("Empty: a system schedule, which belongs to no tenant."),
        # The unique (tenant, kind, name) index serves every lookup by tenant. Each index is
        # written again whenever next_run_at moves (at every fire): no second one.
        db_index=False,
    )
    kind = models.CharField(_("kind"), max_length=16, choices=Kind, editable=False)
    name = models.CharField(_("name"), max_length=200)
    description = models.TextField(_("description"), blank=True)

    enabled = models.BooleanField(_("enabled"), default=True)
    paused_until = models.DateTimeField(
        _("paused until"),
        null=True,
        blank=True,
        help_text=_("While set and in the future, no occurrence fires; it resumes by itself."),
    )
    # Set by ``services.set_tenant_active`` when deactivating the tenant paused the schedule:
    # the pause to give back on reactivation. Pausing or resuming by hand clears it.
    paused_until_before_deactivation = models.DateTimeField(
        _("paused until, before the tenant was deactivated"),
        null=True,
        blank=True,
        editable=False,
        help_text=_(
            "Set while the schedule is paused because its tenant is inactive: the end of the "
            "pause it had before (a past instant: it was not paused), restored when the tenant "
            "is reactivated."
        ),
    )

    trigger_type = models.CharField(
        _("trigger type"), max_length=16, choices=TriggerType, default=TriggerType.INTERVAL
    )
    interval_seconds = models.PositiveIntegerField(
        _("interval (seconds)"),
        null=True,
        blank=True,
        help_text=_(
            "Interval: seconds from one run to the next, at least the project's minimum "
            "(setting SCHEDULING_MIN_INTERVAL)."
        ),
    )
    cron_expression = models.CharField(
        _("cron expression"),
        max_length=200,
        blank=True,
        help_text=_("Five fields (minute hour day month weekday) or @hourly, @daily, @weekly..."),
    )
    # Set by migration 0006 on a cron schedule whose days change under cron's rule (both day
    # fields restricted: either matches, where APScheduler required both). It keeps the old
    # reading until the schedule is saved again; ``manage.py check`` lists such schedules.
    legacy_day_rule = models.BooleanField(
        _("old day rule"),
        default=False,
        editable=False,
        help_text=_(
            "Both day fields must match, as before this version followed cron; saving the "
            "schedule again switches it to cron's rule (either matches)."
        ),
    )
    calendar_every = models.PositiveSmallIntegerField(
        _("repeat every"),
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text=_("Calendar: the number of days, weeks or months from one run to the next."),
    )
    calendar_unit = models.CharField(
        _("calendar unit"), max_length=8, choices=CalendarUnit, blank=True
    )
    calendar_time = models.TimeField(
        _("at (wall-clock time)"),
        null=True,
        blank=True,
        help_text=_("Calendar: the time of day in the schedule's time zone, kept across DST."),
    )
    calendar_weekdays = models.CharField(
        _("on weekdays"),
        max_length=64,
        blank=True,
        help_text=_(
            "Calendar, in weeks: mon,tue,wed,thu,fri,sat,sun; empty means the weekday of the "
            "start (else of the creation)."
        ),
    )
    run_at = models.DateTimeField(
        _("run at"), null=True, blank=True, help_text=_("Once: when the one run happens.")
    )
    start_at = models.DateTimeField(
        _("start at"),
        null=True,
        blank=True,
        help_text=_(
            "No run before this time. Interval schedules count from it (else from their "
            "creation), calendar schedules from its date."
        ),
    )
    end_at = models.DateTimeField(
        _("end at"), null=True, blank=True, help_text=_("No run after this time.")
    )
    timezone = models.CharField(
        _("time zone"),
        max_length=64,
        blank=True,
        validators=[validate_timezone_name],
        help_text=_(
            "IANA name (Europe/Berlin); empty means the tenant's time zone, else UTC. Cron and "
            "calendar times, and the times this schedule shows and asks for, are in this zone."
        ),
    )
    jitter_seconds = models.PositiveIntegerField(
        _("jitter (seconds)"),
        default=0,
        help_text=_("Delay each run by a random 0 to this many seconds, to spread the load."),
    )
    dst_gap_policy = models.CharField(
        _("DST gap policy"),
        max_length=32,
        choices=DstGapPolicy,
        default=DstGapPolicy.RUN_AT_NEXT_VALID_TIME,
        help_text=_(
            "Cron and calendar: a time that does not exist on the day clocks spring forward "
            "(02:30 when they jump from 02:00 to 03:00) runs at the first time after the gap "
            "(03:00), or not at all that day (skip)."
        ),
    )
    dst_fold_policy = models.CharField(
        _("DST fold policy"),
        max_length=16,
        choices=DstFoldPolicy,
        default=DstFoldPolicy.ONCE,
        help_text=_(
            "Cron and calendar: a time that happens twice on the day clocks fall back (02:30 "
            "when they go from 03:00 back to 02:00) runs once, at the first, or twice."
        ),
    )

    timeout_seconds = models.PositiveIntegerField(
        _("timeout (seconds)"),
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text=_(
            "A run that takes longer is recorded as timed out. Empty: the project's default "
            "timeout (setting SCHEDULING_DEFAULT_TIMEOUT)."
        ),
    )
    max_retries = models.PositiveSmallIntegerField(
        _("max retries"),
        default=0,
        help_text=_("How many times a failed run is tried again (0: never)."),
    )
    retry_backoff_seconds = models.PositiveIntegerField(
        _("retry backoff (seconds)"),
        default=60,
        help_text=_(
            "The wait before the first retry; it doubles for each further retry, up to the "
            "project's maximum (setting SCHEDULING_MAX_RETRY_BACKOFF)."
        ),
    )
    overlap = models.CharField(
        _("overlap"),
        max_length=8,
        choices=Overlap,
        default=Overlap.SKIP,
        help_text=_("What happens when a run is due while the previous one still runs."),
    )
    max_instances = models.PositiveSmallIntegerField(
        _("max instances"),
        default=1,
        validators=[MinValueValidator(1)],
        help_text=_('With overlap "allow": how many runs may go on at once.'),
    )
    misfire_grace_seconds = models.PositiveIntegerField(
        _("misfire grace (seconds)"),
        null=True,
        blank=True,
        help_text=_(
            "A run that cannot start within this time after it was due is recorded as missed. "
            "Empty: the project's default (setting SCHEDULING_DEFAULT_MISFIRE_GRACE)."
        ),
    )
    coalesce = models.BooleanField(
        _("coalesce missed runs"),
        default=True,
        help_text=_("Runs missed while the scheduler was down run once, not once each."),
    )
    priority = models.SmallIntegerField(
        _("priority"),
        default=0,
        help_text=_(
            "When all workers are busy, the tenant's waiting runs start highest priority first "
            "(-32768 to 32767); tenants still take turns, so it orders only this tenant's work."
        ),
    )
    stagger = models.BooleanField(
        _("stagger"),
        default=False,
        help_text=_(
            "Shift every run by a fixed offset derived from the schedule's id, within "
            "jitter_seconds, so that many identical schedules do not start in the same second."
        ),
    )
    max_executions = models.PositiveIntegerField(
        _("max executions"),
        null=True,
        blank=True,
        help_text=_("Disable the schedule after this many successful runs."),
    )
    ping_url = models.URLField(
        _("heartbeat URL"),
        max_length=500,
        blank=True,
        help_text=_(
            "Pinged as each run starts and ends (a healthchecks.io check, a Cronitor monitor), "
            "through the target policy; a ping that fails never fails the run."
        ),
    )
    ping_style = models.CharField(
        _("heartbeat convention"),
        max_length=16,
        choices=PingStyle,
        default=PingStyle.HEALTHCHECKS,
    )
    depends_on = models.ManyToManyField(
        "self",
        symmetrical=False,
        blank=True,
        related_name="dependents",
        verbose_name=_("depends on"),
        help_text=_(
            "Upstream schedules of the same tenant. A schedule with upstreams has no timer of "
            "its own: it runs once all of them succeeded for the same occurrence, and is "
            "recorded as skipped when one of them did not. Cycles are refused."
        ),
    )

    next_run_at = models.DateTimeField(_("next run at"), null=True, blank=True, editable=False)
    last_run_at = models.DateTimeField(_("last run at"), null=True, blank=True, editable=False)
    # Kept on the schedule, not looked up in the history, so that it outlives retention.
    last_success_at = models.DateTimeField(
        _("last success at"), null=True, blank=True, editable=False
    )
    last_status = models.CharField(
        _("last status"), max_length=16, choices=Status, blank=True, editable=False
    )
    run_count = models.PositiveIntegerField(_("run count"), default=0, editable=False)
    consecutive_failures = models.PositiveIntegerField(
        _("consecutive failures"), default=0, editable=False
    )
    # Set for a schedule declared in SCHEDULING_DECLARED_SCHEDULES: code owns its definition;
    # operators may only enable, disable and pause it.
    declared = models.BooleanField(
        _("declared in code"),
        default=False,
        editable=False,
        help_text=_("Managed by SCHEDULING_DECLARED_SCHEDULES; only its state may be changed."),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True, db_index=True)

    objects = ScheduleQuerySet.as_manager()

    class Meta:
        ordering = ["tenant_id", "kind", "name"]
        verbose_name = _("schedule")
        verbose_name_plural = _("schedules")
        permissions = [
            ("manage_system_schedules", _("Can see and change system schedules (no tenant)")),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "kind", "name"], name="schedule_unique_name_per_tenant_kind"
            ),
            # NULLs are distinct in a unique constraint: system schedules need their own.
            models.UniqueConstraint(
                fields=["kind", "name"],
                condition=Q(tenant__isnull=True),
                name="schedule_unique_system_name_per_kind",
            ),
            models.CheckConstraint(
                condition=(
                    Q(trigger_type="interval", interval_seconds__gt=0)
                    | (Q(trigger_type="cron") & ~Q(cron_expression=""))
                    | Q(trigger_type="once", run_at__isnull=False)
                    | (
                        Q(
                            trigger_type="calendar",
                            calendar_every__gt=0,
                            calendar_time__isnull=False,
                        )
                        & ~Q(calendar_unit="")
                    )
                ),
                name="schedule_trigger_configured",
            ),
            models.CheckConstraint(
                condition=Q(start_at__isnull=True)
                | Q(end_at__isnull=True)
                | Q(start_at__lt=F("end_at")),
                name="schedule_start_before_end",
            ),
        ]
        # Few: next_run_at is in an index, so each move of it (every fire, every full sync's
        # write) adds an entry to every index of the table. Lookups by tenant and kind use
        # the unique constraint's index.
        indexes = [
            models.Index(fields=["enabled", "next_run_at"], name="schedule_enabled_next_idx"),
            # manage.py check lists these on every run: a partial index keeps that cheap.
            models.Index(
                fields=["id"],
                condition=Q(legacy_day_rule=True),
                name="schedule_legacy_day_rule_idx",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, **kwargs: Any) -> None:
        if not self.timezone:
            self.timezone = self.default_timezone()
        if not self.kind:
            self.kind = getattr(type(self), "KIND", "") or self.kind
        if kwargs.get("update_fields") is None:
            # A schedule saved whole takes cron's day rule (see ``legacy_day_rule``).
            self.legacy_day_rule = False
        if not self._state.adding and kwargs.get("update_fields") is None:
            kwargs["update_fields"] = [
                f.name
                for f in self._meta.concrete_fields
                if not f.primary_key and f.name not in STATE_FIELDS and f.name != "created_at"
            ]
        super().save(**kwargs)

    # -- derived values -------------------------------------------------------------------

    def default_timezone(self) -> str:
        tenant = self.tenant if self.tenant_id else None
        return getattr(tenant, "timezone", "") or "UTC"

    @property
    def effective_timezone(self) -> str:
        return self.timezone or self.default_timezone()

    @property
    def effective_timeout(self) -> int:
        return self.timeout_seconds or conf.DEFAULT_TIMEOUT

    @property
    def effective_misfire_grace(self) -> int:
        if self.misfire_grace_seconds is None:
            return conf.DEFAULT_MISFIRE_GRACE
        return self.misfire_grace_seconds

    @property
    def job_id(self) -> str:
        return schedule_job_id(self.pk)

    def is_paused(self, now: datetime | None = None) -> bool:
        return is_paused_at(self.paused_until, now)

    def is_paused_indefinitely(self) -> bool:
        return is_paused_indefinitely(self.paused_until)

    def expected_next_run(self, now: datetime | None = None) -> datetime | None:
        """Return when the scheduler will fire this schedule next, as the row stands now.

        None while it is disabled, paused until resumed, started by the schedules it depends
        on, or has no further run; else its trigger's next run after ``now`` and after the end
        of a pause (without jitter). The scheduler's sync stores its own (jittered) value in
        ``next_run_at``.
        """
        if not self.enabled or self.is_paused_indefinitely():
            return None
        if self.pk is not None and self.depends_on.exists():
            return None
        try:
            runs = next_runs(self, 1, now=now)
        except (ArithmeticError, KeyError, ValueError):
            # A stored trigger or zone that no longer validates (InvalidTrigger is a
            # ValueError, an unknown zone a KeyError): the sync drops its job.
            return None
        return runs[0] if runs else None

    def get_kind_object(self) -> Schedule:
        """Return this schedule as its concrete kind (PeriodicScan, Report, CleanupConfig)."""
        if type(self) is not Schedule:
            return self
        for model in Schedule.__subclasses__():
            # The parent link's accessor is the child model's name (``self.periodicscan``).
            if self.kind == model.KIND and model._meta.model_name:
                return getattr(self, model._meta.model_name)
        return self

    def overlap_reason(self, active: int) -> str:
        """Why the overlap policy forbids a new run while ``active`` others run, or ''."""
        if self.overlap == Overlap.ALLOW and active >= self.max_instances:
            return f"{active} execution(s) still active; max_instances is {self.max_instances}."
        if self.overlap == Overlap.SKIP and active:
            return "The previous execution is still running (overlap=skip)."
        return ""

    def trigger_fingerprint(self) -> bytes:
        """Digest of everything that shapes the job in the job store."""
        return trigger_fingerprint(self)

    # -- validation -----------------------------------------------------------------------

    def clean(self) -> None:
        # Every rule runs, so that one form or one request names every wrong field at once. A
        # field keeps the first error found: a later rule neither repeats it nor computes with
        # the value an earlier one refused.
        super().clean()
        if not self.kind:
            self.kind = getattr(type(self), "KIND", "")
        errors: dict[str, list[StrOrPromise]] = {}
        # Before any query: PostgreSQL fails on such text instead of comparing it.
        _add_new(errors, {name: [text] for name, text in null_character_errors(self).items()})
        # Values this far out would overflow the trigger arithmetic.
        _add_new(errors, check_limits(self))
        # The field's own validator (``clean_fields``) saw only a zone that was given, not
        # the tenant's filled in here.
        zone_given = bool(self.timezone)
        if self.timezone == "" and self.tenant_id:
            self.timezone = self.default_timezone()
        if errors.keys().isdisjoint(TRIGGER_CHECKED_FIELDS):
            try:
                validate_trigger(self)
            except ValidationError as exc:
                found = exc.message_dict
                if zone_given and _timezone_field_rejects(self):
                    found.pop("timezone", None)  # the field's own validator says the same
                _add_new(errors, found)
        try:
            self.clean_type()
        except ValidationError as exc:
            _add_new(errors, exc.message_dict)
        if self.ping_url and "ping_url" not in errors:
            try:
                check_url(self.ping_url, tenant=self.tenant if self.tenant_id else None)
            except (TargetNotAllowed, ResolutionError, ValueError) as exc:
                errors["ping_url"] = [str(exc)]
        # Forms exclude ``kind`` (not editable), which makes Django skip the unique constraint;
        # check it here so a duplicate is a field error, not an IntegrityError.
        if (
            self.name
            and "name" not in errors
            and Schedule.objects.filter(same_tenant(self.tenant_id), kind=self.kind, name=self.name)
            .exclude(pk=self.pk)
            .exists()
        ):
            where = _("this tenant") if self.tenant_id else _("the system schedules")
            errors["name"] = [
                _("A %(kind)s named %(name)s already exists for %(where)s.")
                % {"kind": Kind(self.kind).label.lower(), "name": self.name, "where": where}
            ]
        if errors:
            raise ValidationError(errors)

    def clean_type(self) -> None:
        """Validate the registered type key and its options (kinds override this).

        Raises one ``ValidationError`` naming every field of the kind that is wrong.
        """


# The fields ``validate_trigger`` reads: an earlier error on one of them skips it.
TRIGGER_CHECKED_FIELDS = frozenset({*TRIGGER_INPUTS, "jitter_seconds"})


def _add_new(errors: dict[str, list[StrOrPromise]], found: Mapping[str, Iterable[Any]]) -> None:
    """Add the errors of ``found`` on fields that have none in ``errors`` yet."""
    for name, messages in found.items():
        if name not in errors:
            errors[name] = list(messages)


def _timezone_field_rejects(schedule: Schedule) -> bool:
    """Return whether the time zone field's own validator refuses the schedule's zone.

    ``full_clean`` runs it (``clean_fields``, for a zone that is not empty) before ``clean``:
    its error is reported.
    """
    if not schedule.timezone:
        return False
    try:
        validate_timezone_name(schedule.timezone)
    except ValidationError:
        return True
    return False


# A kind with a registered type key and options, and the registry of its keys.
_Registered = TypeVar("_Registered", "PeriodicScan", "Report", "CleanupConfig", "ScheduledTask")


def _clean_registered(
    schedule: _Registered,
    registry: Registry[_Registered],
    key_field: str,
    errors: dict[str, list[StrOrPromise]],
) -> TaskType[_Registered] | None:
    """Return the registered type of ``schedule`` with its options cleaned, else None.

    What is wrong (the key, the options) goes into ``errors``; options that do not validate
    are left as they are.
    """
    key = getattr(schedule, key_field)
    try:
        entry = registry.get(key)
    except UnknownTaskType as exc:
        errors[key_field] = [str(exc)]
        return None
    try:
        schedule.options = entry.validate_options(schedule.options)
    except ValidationError as exc:
        for name, messages in exc.message_dict.items():
            errors.setdefault(name, []).extend(messages)
    return entry


class PeriodicScan(Schedule):
    KIND = Kind.SCAN

    scan_type = models.CharField(_("scan type"), max_length=64)
    target = models.CharField(
        _("target"), max_length=500, help_text=_("URL, host:port or host name, by scan type.")
    )
    options = models.JSONField(_("options"), default=dict, blank=True)

    class Meta:
        verbose_name = _("periodic scan")
        verbose_name_plural = _("periodic scans")

    def clean_type(self) -> None:
        errors: dict[str, list[StrOrPromise]] = {}
        entry = _clean_registered(self, scan_types, "scan_type", errors)
        if entry is not None and entry.validate_target is not None:
            try:
                entry.validate_target(self.target, None if "options" in errors else self.options)
            except ValidationError as exc:
                errors["target"] = list(exc.messages)
        if errors:
            raise ValidationError(errors)


class Report(Schedule):
    KIND = Kind.REPORT

    report_type = models.CharField(_("report type"), max_length=64)
    format = models.CharField(
        _("format"), max_length=8, choices=ReportFormat, default=ReportFormat.JSON
    )
    recipients = models.TextField(
        _("recipients"),
        blank=True,
        help_text=_("E-mail addresses, one per line or separated by commas."),
    )
    options = models.JSONField(_("options"), default=dict, blank=True)

    class Meta:
        verbose_name = _("report")
        verbose_name_plural = _("reports")

    def recipient_list(self) -> list[str]:
        return [r.strip() for r in self.recipients.replace(",", "\n").splitlines() if r.strip()]

    def clean_type(self) -> None:
        errors: dict[str, list[StrOrPromise]] = {}
        _clean_registered(self, report_types, "report_type", errors)
        bad = []
        for address in self.recipient_list():
            try:
                validate_email(address)
            except ValidationError:
                bad.append(address)
        if bad:
            errors["recipients"] = [_("Not valid e-mail addresses: %s") % ", ".join(bad)]
        if errors:
            raise ValidationError(errors)


class CleanupConfig(Schedule):
    KIND = Kind.CLEANUP

    cleanup_target = models.CharField(_("cleanup target"), max_length=64)
    retain_days = models.PositiveIntegerField(
        _("retain (days)"), default=30, validators=[MinValueValidator(1)]
    )
    batch_size = models.PositiveIntegerField(
        _("batch size"), default=1000, validators=[MinValueValidator(1)]
    )
    options = models.JSONField(_("options"), default=dict, blank=True)

    class Meta:
        verbose_name = _("cleanup config")
        verbose_name_plural = _("cleanup configs")

    def clean_type(self) -> None:
        errors: dict[str, list[StrOrPromise]] = {}
        entry = _clean_registered(self, cleanup_targets, "cleanup_target", errors)
        if entry is not None and entry.system_only and self.tenant_id is not None:
            # What it deletes belongs to no single tenant (the ``files`` target).
            message = _("%(label)s runs only as a system schedule (no tenant).")
            errors["cleanup_target"] = [message % {"label": entry.label}]
        if errors:
            raise ValidationError(errors)


class ScheduledTask(Schedule):
    """A schedule of one of the host project's own functions (``@task_type``, ``register_task``)."""

    KIND = Kind.TASK

    task_type = models.CharField(_("task type"), max_length=64)
    options = models.JSONField(_("options"), default=dict, blank=True)

    class Meta:
        verbose_name = _("scheduled task")
        verbose_name_plural = _("scheduled tasks")

    def clean_type(self) -> None:
        errors: dict[str, list[StrOrPromise]] = {}
        _clean_registered(self, task_types, "task_type", errors)
        if errors:
            raise ValidationError(errors)


class ScheduleDeletion(models.Model):
    """Tombstone of a deleted schedule, so the incremental sync can drop its job quickly."""

    schedule_id = models.BigIntegerField()
    deleted_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        verbose_name = _("schedule deletion")
        verbose_name_plural = _("schedule deletions")

    def __str__(self) -> str:
        return f"schedule:{self.schedule_id} deleted at {self.deleted_at:%Y-%m-%d %H:%M:%S}"


def history_timezone(schedule: Schedule | None, tenant: object | None) -> str:
    """Return the zone a schedule's history reads in: its own, else its tenant's, else UTC.

    Takes the history row's tenant (the schedule's) rather than ``schedule.tenant``: a list of
    executions with their tenants selected then costs no query per row, and a row whose
    schedule was deleted still reads in its tenant's zone.
    """
    if schedule is not None and schedule.timezone:
        return schedule.timezone
    return getattr(tenant, "timezone", "") or "UTC"


class ExecutionQuerySet(models.QuerySet["Execution"]):
    def for_tenant(self, tenant: Tenant) -> Self:
        return self.filter(tenant=tenant)

    def visible_to(self, user: AbstractBaseUser | AnonymousUser) -> Self:
        """Rows of the tenants ``user`` may see; system rows only for those who see them."""
        q = scope_q(visible_tenant_ids(user), sees_system(user))
        return self if q is None else self.filter(q)

    def active(self) -> Self:
        return self.filter(status__in=ACTIVE_STATUSES)

    def running(self) -> Self:
        return self.filter(status=Status.RUNNING)

    def queued(self) -> Self:
        return self.filter(status=Status.QUEUED)

    def finished(self) -> Self:
        return self.filter(status__in=FINISHED_STATUSES)

    def unclaimed(self, now: datetime | None = None) -> Self:
        """Queued executions no scheduler has picked up yet (manual runs, retries) due now."""
        now = now or timezone.now()
        return self.filter(status=Status.QUEUED, claimed_by="").filter(
            Q(run_after__isnull=True) | Q(run_after__lte=now)
        )


class StartValues(TypedDict):
    """The fields an execution's start sets (``Execution.start_values``)."""

    status: str
    started_at: datetime
    worker: str


class OutcomeValues(TypedDict):
    """The fields an execution's outcome sets (``Execution.outcome_values``)."""

    status: str
    finished_at: datetime
    duration_ms: int
    result: object  # stored in a JSONField
    error: str
    traceback: str


class Execution(models.Model):
    # Not a field: set on a claim made ahead of its time while others of its schedule were
    # active; the overlap policy is then decided when it is due (``runner.skipped_for_overlap``).
    recheck_overlap: bool = False

    schedule = models.ForeignKey(
        Schedule,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="executions",
        verbose_name=_("schedule"),
    )
    schedule_name = models.CharField(_("schedule name"), max_length=200)
    schedule_kind = models.CharField(_("schedule kind"), max_length=16, choices=Kind)
    # Empty for the executions of a system schedule.
    tenant = models.ForeignKey(
        TENANT_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="executions",
        verbose_name=_("tenant"),
    )
    scheduled_for = models.DateTimeField(_("scheduled for"))
    attempt = models.PositiveSmallIntegerField(_("attempt"), default=1)
    trigger = models.CharField(
        _("trigger"), max_length=16, choices=TriggerKind, default=TriggerKind.SCHEDULE
    )
    status = models.CharField(_("status"), max_length=16, choices=Status, default=Status.QUEUED)
    queued_at = models.DateTimeField(_("queued at"), default=timezone.now)
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    duration_ms = models.PositiveIntegerField(_("duration (ms)"), null=True, blank=True)
    result = models.JSONField(_("result"), null=True, blank=True)
    error = models.TextField(_("error"), blank=True)
    traceback = models.TextField(_("traceback"), blank=True)
    worker = models.CharField(_("worker"), max_length=255, blank=True)
    claimed_by = models.CharField(
        _("claimed by"),
        max_length=255,
        blank=True,
        help_text=_("The scheduler (lease holder) that owns this execution."),
    )
    triggered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("triggered by"),
    )
    run_after = models.DateTimeField(
        _("run after"),
        null=True,
        blank=True,
        help_text=_("A queued retry or manual run does not start before this time."),
    )
    options = models.JSONField(
        _("options"),
        null=True,
        blank=True,
        help_text=_("Options given to this run only, merged over the schedule's own."),
    )

    objects = ExecutionQuerySet.as_manager()

    class Meta:
        ordering = ["-scheduled_for", "-attempt"]
        get_latest_by = "queued_at"
        verbose_name = _("execution")
        verbose_name_plural = _("executions")
        constraints = [
            # The exactly-once guard: whoever inserts this row owns the occurrence.
            models.UniqueConstraint(
                fields=["schedule", "scheduled_for", "attempt"],
                name="execution_one_attempt_per_occurrence",
            ),
        ]
        indexes = [
            models.Index(fields=["tenant", "-scheduled_for"], name="execution_tenant_time_idx"),
            models.Index(fields=["schedule", "-scheduled_for"], name="execution_schedule_time_idx"),
            models.Index(fields=["status", "claimed_by"], name="execution_status_idx"),
            models.Index(fields=["finished_at"], name="execution_finished_idx"),
            # A tenant's history retention (its old finished rows, without walking everyone's
            # history) and a tenant's rows of one status (the admin's capped count for staff).
            models.Index(
                fields=["tenant", "status", "finished_at"], name="execution_tenant_status_idx"
            ),
            # The history's default order across tenants (admin for superusers, API, CLI).
            models.Index(fields=["-scheduled_for", "-attempt"], name="execution_time_idx"),
        ]

    def __str__(self) -> str:
        # In the schedule's zone where its schedule and tenant are at hand (as on the admin's
        # pages, which select them), else in UTC: the name of a row never costs a query.
        loaded = all(
            getattr(self, f"{name}_id") is None or name in self._state.fields_cache
            for name in ("schedule", "tenant")
        )
        zone = self.effective_timezone if loaded else "UTC"
        return f"{self.schedule_name} @ {format_time(self.scheduled_for, zone)} #{self.attempt}"

    @classmethod
    def for_occurrence(
        cls,
        schedule: Schedule,
        scheduled_for: datetime,
        *,
        attempt: int = 1,
        trigger: str = TriggerKind.SCHEDULE,
        status: str = Status.QUEUED,
        claimed_by: str = "",
        error: str = "",
        run_after: datetime | None = None,
        options: dict[str, Any] | None = None,
        now: datetime | None = None,
    ) -> Self:
        """Return the unsaved row of one attempt of ``schedule``'s occurrence at ``scheduled_for``.

        The one constructor of execution rows: claims, retries, dependents and manual runs.
        A row created already final (skipped, missed) is finished at once, in no time.
        """
        now = now or timezone.now()
        values = {
            "schedule_id": schedule.pk,
            "schedule_name": schedule.name,
            "schedule_kind": schedule.kind,
            "tenant_id": schedule.tenant_id,
            "scheduled_for": scheduled_for,
            "attempt": attempt,
            "trigger": trigger,
            "status": status,
            "queued_at": now,
            "claimed_by": claimed_by,
            "error": error,
            "run_after": run_after,
            "options": options or None,
        }
        # Positional values (every field, the others' defaults), then the schedule cached as
        # the relation: keyword arguments and the relation's descriptor were most of the cost
        # of a row, and the scheduler builds a thousand a second.
        execution = cls(
            *(
                values[f.attname] if f.attname in values else f.get_default()
                for f in cls._meta.concrete_fields
            )
        )
        cls._meta.get_field("schedule").set_cached_value(execution, schedule)  # type: ignore[union-attr]
        if status not in ACTIVE_STATUSES:
            execution.finished_at, execution.duration_ms = now, 0
        return execution

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    @property
    def lateness(self) -> timedelta | None:
        return self.started_at - self.scheduled_for if self.started_at else None

    @property
    def effective_timezone(self) -> str:
        """The zone its times read in: its schedule's, else its tenant's (or UTC)."""
        return history_timezone(
            self.schedule if self.schedule_id else None, self.tenant if self.tenant_id else None
        )

    # State changes save only what changed; outcome writes are conditional on the execution
    # still being active, so a late thread result never overwrites a timeout or interruption.

    def start_values(self, *, worker: str) -> StartValues:
        """Return the field values of starting now on ``worker`` (nothing is written)."""
        return {"status": Status.RUNNING, "started_at": timezone.now(), "worker": worker}

    def outcome_values(
        self, status: str, *, result: object = None, error: str = "", traceback: str = ""
    ) -> OutcomeValues:
        """Return the field values of finishing now with ``status`` (nothing is written)."""
        now = timezone.now()
        started = self.started_at or now
        return {
            "status": status,
            "finished_at": now,
            "duration_ms": max(0, int((now - started).total_seconds() * 1000)),
            "result": result,
            "error": error,
            "traceback": traceback,
        }

    def mark_started(self, *, worker: str) -> bool:
        values = self.start_values(worker=worker)
        updated = Execution.objects.filter(pk=self.pk, status=Status.QUEUED).update(**values)
        if updated:
            for key, value in values.items():
                setattr(self, key, value)
        return bool(updated)

    def mark_finished(
        self,
        status: str,
        *,
        result: object = None,
        error: str = "",
        traceback: str = "",
    ) -> bool:
        values = self.outcome_values(status, result=result, error=error, traceback=traceback)
        # No savepoint inside a caller's transaction: the outcome and its count are one write.
        with transaction.atomic(savepoint=False):
            updated = Execution.objects.filter(pk=self.pk, status__in=ACTIVE_STATUSES).update(
                **values
            )
            if updated:
                for key, value in values.items():
                    setattr(self, key, value)
                ExecutionCounter.objects.count_finished([self])
        return bool(updated)

    def mark_succeeded(self, result: object = None) -> bool:
        return self.mark_finished(Status.SUCCEEDED, result=result)

    def mark_failed(self, error: str, traceback: str = "") -> bool:
        return self.mark_finished(Status.FAILED, error=error, traceback=traceback)


class ReportArtifact(models.Model):
    tenant = models.ForeignKey(
        TENANT_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="report_artifacts",
        verbose_name=_("tenant"),
    )
    report = models.ForeignKey(
        Report,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="artifacts",
        verbose_name=_("report"),
    )
    # Artifacts have their own retention: they outlive the execution history.
    execution = models.ForeignKey(
        Execution,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="artifacts",
        verbose_name=_("execution"),
    )
    format = models.CharField(_("format"), max_length=8, choices=ReportFormat)
    filename = models.CharField(_("file name"), max_length=255)
    content_type = models.CharField(_("content type"), max_length=100)
    content = models.TextField(_("content"))
    size = models.PositiveIntegerField(_("size (bytes)"))
    checksum = models.CharField(_("SHA-256"), max_length=64)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("report artifact")
        verbose_name_plural = _("report artifacts")
        indexes = [
            models.Index(fields=["tenant", "-created_at"], name="artifact_tenant_time_idx"),
        ]

    def __str__(self) -> str:
        return self.filename

    def save(self, **kwargs: Any) -> None:
        data = self.content.encode()
        self.size = len(data)
        self.checksum = hashlib.sha256(data).hexdigest()
        super().save(**kwargs)

    @property
    def effective_timezone(self) -> str:
        """The zone its times read in: its report's, else its tenant's (or UTC)."""
        return history_timezone(
            self.report if self.report_id else None, self.tenant if self.tenant_id else None
        )


class SchedulerLease(models.Model):
    """The leader lease: one row per scheduler group; its holder is the one that fires."""

    name = models.CharField(_("name"), max_length=64, primary_key=True)
    holder = models.CharField(_("holder"), max_length=255, blank=True)
    acquired_at = models.DateTimeField(_("acquired at"), null=True, blank=True)
    renewed_at = models.DateTimeField(_("renewed at"), null=True, blank=True)
    expires_at = models.DateTimeField(_("expires at"), null=True, blank=True)
    last_sync_at = models.DateTimeField(_("last sync at"), null=True, blank=True)
    sync_lag_ms = models.PositiveIntegerField(_("sync lag (ms)"), null=True, blank=True)
    job_count = models.PositiveIntegerField(_("job count"), default=0)

    class Meta:
        verbose_name = _("scheduler lease")
        verbose_name_plural = _("scheduler leases")

    def __str__(self) -> str:
        return f"{self.name}: {self.holder or '-'}"

    def is_held(self, now: datetime | None = None) -> bool:
        return (
            bool(self.holder)
            and self.expires_at is not None
            and self.expires_at > (now or timezone.now())
        )

    @property
    def heartbeat_age(self) -> timedelta | None:
        return timezone.now() - self.renewed_at if self.renewed_at else None


class AuditSource(models.TextChoices):
    """Through which interface an audited change came (``AuditEntry.source``)."""

    ADMIN = "admin", _("Admin")
    API = "api", _("API")
    CLI = "cli", _("CLI")
    DECLARED = "declared", _("Declared in code")


class AuditAction(models.TextChoices):
    CREATE = "create", _("Created")
    CHANGE = "change", _("Changed")
    DELETE = "delete", _("Deleted")
    RUN = "run", _("Run now")
    PAUSE = "pause", _("Paused")
    RESUME = "resume", _("Resumed")
    ENABLE = "enable", _("Enabled")
    DISABLE = "disable", _("Disabled")
    CANCEL = "cancel", _("Cancelled a run")
    RETRY = "retry", _("Retried a run")


class AuditEntry(models.Model):
    """Who did what to a schedule, through which interface, with the old and new values."""

    tenant = models.ForeignKey(
        TENANT_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("tenant"),
    )
    schedule = models.ForeignKey(
        Schedule,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="audit_entries",
        verbose_name=_("schedule"),
    )
    schedule_name = models.CharField(_("schedule name"), max_length=200)
    schedule_kind = models.CharField(_("schedule kind"), max_length=16, choices=Kind)
    action = models.CharField(_("action"), max_length=16, choices=AuditAction)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("user"),
    )
    source = models.CharField(
        _("source"), max_length=16, choices=AuditSource, default=AuditSource.API
    )
    # {"field": [old, new]} for changes; {} for actions without field changes.
    changes = models.JSONField(_("changes"), default=dict, blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name = _("audit entry")
        verbose_name_plural = _("audit entries")
        indexes = [
            models.Index(fields=["schedule", "-created_at"], name="audit_schedule_time_idx"),
            models.Index(fields=["tenant", "-created_at"], name="audit_tenant_time_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_action_display()} {self.schedule_name} by {self.user or '-'}"


class BlackoutKind(models.TextChoices):
    WEEKLY = "weekly", _("Every week")
    DATES = "dates", _("Date range")


class BlackoutWindow(models.Model):
    """A period in which occurrences are recorded ``skipped`` instead of run.

    Weekly windows repeat ("Sat 22:00 to Sun 06:00", in their time zone); date windows cover
    one range of instants. A window without a schedule applies to every schedule of the tenant.
    """

    tenant = models.ForeignKey(
        TENANT_MODEL, on_delete=models.CASCADE, related_name="+", verbose_name=_("tenant")
    )
    schedule = models.ForeignKey(
        Schedule,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="blackout_windows",
        verbose_name=_("schedule"),
        help_text=_("Empty: the window applies to every schedule of the tenant."),
    )
    name = models.CharField(_("name"), max_length=200)
    kind = models.CharField(_("kind"), max_length=8, choices=BlackoutKind)
    start_weekday = models.PositiveSmallIntegerField(
        _("start weekday"), null=True, blank=True, help_text=_("0 = Monday ... 6 = Sunday")
    )
    start_time = models.TimeField(_("start time"), null=True, blank=True)
    end_weekday = models.PositiveSmallIntegerField(_("end weekday"), null=True, blank=True)
    end_time = models.TimeField(_("end time"), null=True, blank=True)
    starts_at = models.DateTimeField(_("starts at"), null=True, blank=True)
    ends_at = models.DateTimeField(_("ends at"), null=True, blank=True)
    timezone = models.CharField(
        _("time zone"),
        max_length=64,
        blank=True,
        default="",
        validators=[validate_timezone_name],
        help_text=_("IANA name; empty means the tenant's time zone, else UTC."),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("blackout window")
        verbose_name_plural = _("blackout windows")
        indexes = [models.Index(fields=["tenant", "schedule"], name="blackout_tenant_idx")]

    def __str__(self) -> str:
        return self.name

    def save(self, **kwargs: Any) -> None:
        if not self.timezone:
            self.timezone = self.default_timezone()
        super().save(**kwargs)

    def default_timezone(self) -> str:
        """Return the zone of a window created without one: its tenant's, else UTC."""
        tenant = self.tenant if self.tenant_id else None
        return getattr(tenant, "timezone", "") or "UTC"

    @property
    def effective_timezone(self) -> str:
        return self.timezone or self.default_timezone()

    def clean(self) -> None:
        if not self.timezone and self.tenant_id:
            self.timezone = self.default_timezone()
        errors: dict[str, StrOrPromise] = {}
        schedule = self.schedule if self.schedule_id and self.tenant_id else None
        if schedule is not None and schedule.tenant_id != self.tenant_id:
            errors["schedule"] = _("The schedule belongs to another tenant.")
        if self.kind == BlackoutKind.WEEKLY:
            for name in ("start_weekday", "start_time", "end_weekday", "end_time"):
                if getattr(self, name) is None:
                    errors[name] = _("A weekly window needs this field.")
            for name in ("start_weekday", "end_weekday"):
                value = getattr(self, name)
                if value is not None and value > 6:
                    errors[name] = _("Weekdays run from 0 (Monday) to 6 (Sunday).")
        elif self.kind == BlackoutKind.DATES:
            if self.starts_at is None:
                errors["starts_at"] = _("A date window needs a start.")
            if self.ends_at is None:
                errors["ends_at"] = _("A date window needs an end.")
            if self.starts_at and self.ends_at and self.starts_at >= self.ends_at:
                errors["ends_at"] = _("The end must be after the start.")
        if errors:
            raise ValidationError(errors)

    def _weekly_bounds(self) -> tuple[int, time, int, time] | None:
        """Return (start weekday, start time, end weekday, end time), or None if incomplete."""
        start_day, start_time = self.start_weekday, self.start_time
        end_day, end_time = self.end_weekday, self.end_time
        if start_day is None or start_time is None or end_day is None or end_time is None:
            return None
        return start_day, start_time, end_day, end_time

    def describe(self) -> str:
        """Return the window in words: "Sat 22:00 to Sun 06:00" or a date range."""
        if self.kind == BlackoutKind.DATES:
            if not (self.starts_at and self.ends_at):
                return "-"
            zone = zoneinfo.ZoneInfo(self.effective_timezone)
            start, end = self.starts_at.astimezone(zone), self.ends_at.astimezone(zone)
            return f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M}"
        bounds = self._weekly_bounds()
        if bounds is None:
            return "-"
        start_day, start_time, end_day, end_time = bounds
        days = calendar.day_abbr
        return f"{days[start_day]} {start_time:%H:%M} to {days[end_day]} {end_time:%H:%M}"

    def contains(self, at: datetime) -> bool:
        """Return whether the instant ``at`` falls inside this window."""
        if self.kind == BlackoutKind.DATES:
            return bool(self.starts_at and self.ends_at and self.starts_at <= at < self.ends_at)
        bounds = self._weekly_bounds()
        if bounds is None:
            return False
        start_day, start_time, end_day, end_time = bounds
        local = at.astimezone(zoneinfo.ZoneInfo(self.effective_timezone))

        def minute_of_week(weekday: int, hour: int, minute: int, second: int = 0) -> float:
            return weekday * 1440 + hour * 60 + minute + second / 60

        now = minute_of_week(local.weekday(), local.hour, local.minute, local.second)
        start = minute_of_week(start_day, start_time.hour, start_time.minute)
        end = minute_of_week(end_day, end_time.hour, end_time.minute)
        if start <= end:
            return start <= now < end
        return now >= start or now < end  # the window wraps around the end of the week


class AlertRule(models.Model):
    """When to tell a tenant's owners and admins that a schedule is in trouble."""

    tenant = models.ForeignKey(
        TENANT_MODEL, on_delete=models.CASCADE, related_name="+", verbose_name=_("tenant")
    )
    schedule = models.ForeignKey(
        Schedule,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="alert_rules",
        verbose_name=_("schedule"),
        help_text=_("Empty: the rule watches every schedule of the tenant."),
    )
    name = models.CharField(_("name"), max_length=200)
    enabled = models.BooleanField(_("enabled"), default=True)
    consecutive_failures = models.PositiveIntegerField(
        _("after consecutive failures"),
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text=_("Alert when a schedule failed this many occurrences in a row."),
    )
    not_succeeded_multiple = models.FloatField(
        _("did not run (multiple of the period)"),
        null=True,
        blank=True,
        validators=[MinValueValidator(1.0)],
        help_text=_("Alert when a schedule has not succeeded for this many periods."),
    )
    email_admins = models.BooleanField(_("e-mail owners and admins"), default=True)
    webhook_url = models.URLField(_("webhook URL"), blank=True)
    cooldown_seconds = models.PositiveIntegerField(_("cool-down (seconds)"), default=3600)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("alert rule")
        verbose_name_plural = _("alert rules")

    def __str__(self) -> str:
        return self.name

    def masked_webhook_url(self) -> str:
        """Return the webhook URL as ``scheme://host/…``: its path and query carry secrets."""
        return mask_url(self.webhook_url)

    def clean(self) -> None:
        errors: dict[str, StrOrPromise] = {}
        schedule = self.schedule if self.schedule_id and self.tenant_id else None
        if schedule is not None and schedule.tenant_id != self.tenant_id:
            errors["schedule"] = _("The schedule belongs to another tenant.")
        if self.consecutive_failures is None and self.not_succeeded_multiple is None:
            errors["consecutive_failures"] = _(
                "Set at least one condition: consecutive failures or periods without success."
            )
        if not self.email_admins and not self.webhook_url:
            errors["webhook_url"] = _(
                "Give a webhook URL or e-mail the owners and admins: otherwise nobody is told."
            )
        elif self.webhook_url and self.tenant_id:
            # Checked again at every delivery (a name may resolve elsewhere later); refused
            # here so that a rule never points at an internal address in the first place.
            try:
                check_url(self.webhook_url, tenant=self.tenant)
            except ResolutionError as exc:
                errors["webhook_url"] = _(
                    "%(error)s The webhook's host must resolve when the rule is saved: its "
                    "addresses are checked against the target policy."
                ) % {"error": exc}
            except (TargetNotAllowed, ValueError) as exc:
                errors["webhook_url"] = str(exc)
        if errors:
            raise ValidationError(errors)


def mask_url(url: str) -> str:
    """Return ``url`` as ``scheme://host[:port]/…``: no credentials, path, query or fragment."""
    if not url:
        return ""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return "…"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{f':{port}' if port else ''}/…"


class AlertState(models.Model):
    """Whether a rule is firing for a schedule, and when it last notified."""

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="states")
    schedule = models.ForeignKey(Schedule, on_delete=models.CASCADE, related_name="+")
    firing = models.BooleanField(default=False)
    reason = models.CharField(max_length=32, blank=True)
    last_notified_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("alert state")
        verbose_name_plural = _("alert states")
        constraints = [
            models.UniqueConstraint(fields=["rule", "schedule"], name="alert_state_unique")
        ]

    def __str__(self) -> str:
        return f"{self.rule} / {self.schedule_id}: {'firing' if self.firing else 'ok'}"


class AlertDelivery(models.Model):
    """One notification sent (or attempted) for an alert."""

    class Event(models.TextChoices):
        FAILING = "failing", _("Failing")
        DID_NOT_RUN = "did_not_run", _("Did not run")
        RECOVERED = "recovered", _("Recovered")

    class Channel(models.TextChoices):
        EMAIL = "email", _("E-mail")
        WEBHOOK = "webhook", _("Webhook")

    tenant = models.ForeignKey(
        TENANT_MODEL, on_delete=models.CASCADE, related_name="+", verbose_name=_("tenant")
    )
    rule = models.ForeignKey(
        AlertRule, on_delete=models.SET_NULL, null=True, related_name="deliveries"
    )
    schedule = models.ForeignKey(
        Schedule, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    event = models.CharField(_("event"), max_length=16, choices=Event)
    channel = models.CharField(_("channel"), max_length=8, choices=Channel)
    recipient = models.CharField(_("recipient"), max_length=500)
    ok = models.BooleanField(_("delivered"), default=False)
    detail = models.TextField(_("detail"), blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("alert delivery")
        verbose_name_plural = _("alert deliveries")
        indexes = [models.Index(fields=["tenant", "-created_at"], name="alert_delivery_idx")]

    def __str__(self) -> str:
        return f"{self.get_event_display()} via {self.get_channel_display()} to {self.recipient}"


# Upper bounds (seconds) of the buckets of the ``/metrics`` histograms. Counted buckets are
# stored by bound: changing a bound needs a migration that counts the history again.
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
LATENESS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
INF_BUCKET = "+Inf"
SUM_BUCKET = "sum_ms"


def _bucket(seconds: float, bounds: tuple[float, ...]) -> str:
    return next((str(b) for b in bounds if seconds <= b), INF_BUCKET)


def counter_observations(execution: Execution) -> list[tuple[str, str, int]]:
    """Return the (series, bucket, amount) increments a finished ``execution`` adds.

    Series ``executions`` counts it; ``duration`` (executions that ran) and ``lateness``
    (first attempts of scheduled occurrences that started) count it in one bucket, not
    cumulatively, and add its milliseconds to the ``sum_ms`` bucket.
    """
    found: list[tuple[str, str, int]] = [(CounterSeries.EXECUTIONS, "", 1)]
    if execution.status in RAN_STATUSES and execution.duration_ms is not None:
        found.append(
            (CounterSeries.DURATION, _bucket(execution.duration_ms / 1000, DURATION_BUCKETS), 1)
        )
        found.append((CounterSeries.DURATION, SUM_BUCKET, execution.duration_ms))
    if (
        execution.trigger == TriggerKind.SCHEDULE
        and execution.attempt == 1
        and execution.started_at is not None
    ):
        late = execution.started_at - execution.scheduled_for
        found.append((CounterSeries.LATENESS, _bucket(late.total_seconds(), LATENESS_BUCKETS), 1))
        found.append((CounterSeries.LATENESS, SUM_BUCKET, round(late / timedelta(milliseconds=1))))
    return found


class CounterSeries(models.TextChoices):
    EXECUTIONS = "executions", _("Executions")
    DURATION = "duration", _("Duration")
    LATENESS = "lateness", _("Lateness")


# (kind, status, series, bucket): the key of one counter row.
CounterKey = tuple[str, str, str, str]


class ExecutionCounterQuerySet(models.QuerySet["ExecutionCounter"]):
    def count_finished(self, executions: Iterable[Execution]) -> None:
        """Add finished ``executions`` to the counters, in the transaction of their outcome.

        One UPDATE for the whole batch; a row is created the first time its key is seen.
        """
        totals: dict[CounterKey, int] = {}
        for execution in executions:
            for series, bucket, amount in counter_observations(execution):
                key = (execution.schedule_kind, execution.status, series, bucket)
                totals[key] = totals.get(key, 0) + amount
        if not totals:
            return
        found = self._increment(totals)
        if len(found) == len(totals):
            return
        # First use of some keys: create their rows at 0 (a concurrent creator's row wins the
        # conflict), then add to those only: the rows the first statement found have their
        # share already. Not those another transaction created since (asking which rows exist
        # now instead lost those shares, and with none left to add, ran an empty statement).
        missing = {key: amount for key, amount in totals.items() if key not in found}
        self.bulk_create(
            [self.model(kind=k, status=s, series=r, bucket=b) for k, s, r, b in sorted(missing)],
            ignore_conflicts=True,
        )
        self._increment(missing)

    def _matching(self, keys: Iterable[CounterKey]) -> Q:
        where = Q()
        for kind, status, series, bucket in keys:
            where |= Q(kind=kind, status=status, series=series, bucket=bucket)
        return where

    def _increment(self, totals: dict[CounterKey, int]) -> set[CounterKey]:
        """Add each amount to the row of its key, in one statement; return the keys found.

        Plain SQL: compiling the same through the ORM cost a quarter of a Celery worker's time
        per execution. Where the database locks rows (PostgreSQL), they are locked in key order
        first: an UPDATE alone locks them in the order it meets them, which each update of a
        row changes, so two outcomes sharing rows could each hold one the other waits for (a
        deadlock, and an outcome lost until it is written again). Locked in key order, one
        that waits holds no row another needs first.
        """
        if not totals:
            return set()
        connection = connections[self.db]
        quote = connection.ops.quote_name
        table = quote(self.model._meta.db_table)
        names = [quote(c) for c in ("kind", "status", "series", "bucket")]
        columns = ", ".join(names)
        keys = sorted(totals)
        key_list = ", ".join(["(%s, %s, %s, %s)"] * len(keys))
        is_key = " AND ".join(f"{table}.{name} = %s" for name in names)
        cases = " ".join([f"WHEN {is_key} THEN %s"] * len(keys))
        value = quote("value")
        key_params = [part for key in keys for part in key]
        case_params = [part for key in keys for part in (*key, totals[key])]
        # Identifiers come from the model, quoted; values are parameters.
        increment = f"UPDATE {table} SET {value} = {table}.{value} + CASE {cases} ELSE 0 END"  # noqa: S608
        if connection.features.has_select_for_update:
            pk = quote("id")
            sql = (
                f"WITH locked AS MATERIALIZED (SELECT {pk} FROM {table}"  # noqa: S608
                f" WHERE ({columns}) IN ({key_list}) ORDER BY {columns} FOR UPDATE)"
                f" {increment} FROM locked WHERE {table}.{pk} = locked.{pk}"
            )
            params = [*key_params, *case_params]
        else:
            sql = f"{increment} WHERE ({columns}) IN ({key_list})"  # noqa: S608
            params = [*case_params, *key_params]
        if not (
            connection.vendor in ("postgresql", "sqlite")
            and connection.features.can_return_rows_from_bulk_insert
        ):
            # No UPDATE ... RETURNING (SQLite before 3.35, which writes one transaction at a
            # time, so no other creates a row in between; MySQL): the keys whose rows exist now.
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
            found = self.filter(self._matching(totals))
            return set(found.values_list("kind", "status", "series", "bucket"))
        returning = ", ".join(f"{table}.{name}" for name in names)
        with connection.cursor() as cursor:
            cursor.execute(f"{sql} RETURNING {returning}", params)
            return {(kind, status, series, bucket) for kind, status, series, bucket in cursor}


class ExecutionCounter(models.Model):
    """A running total over finished executions, for ``/metrics`` (``scheduling.monitoring``).

    Counted when an execution reaches its final status, in the transaction that writes it;
    never decremented: deleting history (retention, ``purge``) leaves the totals alone, as
    Prometheus expects of a counter. Totals are per schedule kind and status, never per tenant.
    """

    kind = models.CharField(_("schedule kind"), max_length=16, choices=Kind)
    status = models.CharField(_("status"), max_length=16, choices=Status)
    series = models.CharField(_("series"), max_length=16, choices=CounterSeries)
    # A histogram bucket's upper bound in seconds, "+Inf" or "sum_ms"; empty for a count.
    bucket = models.CharField(_("bucket"), max_length=16, blank=True)
    value = models.BigIntegerField(_("value"), default=0)

    objects = ExecutionCounterQuerySet.as_manager()

    class Meta:
        verbose_name = _("execution counter")
        verbose_name_plural = _("execution counters")
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "status", "series", "bucket"], name="execution_counter_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.status} {self.series} {self.bucket}: {self.value}"
