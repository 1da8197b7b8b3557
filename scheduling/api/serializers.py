"""Serializers: thin mappings between JSON and the models; the rules live in ``services``.

Writes go through ``services.create_schedule`` / ``update_schedule``, which run the model
layer's ``full_clean()`` (trigger, time zone, registered type and options, constraints), the
dependency and quota rules, and record the audit trail. Their ``ValidationError`` becomes a
400 with the same field names.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.core.exceptions import NON_FIELD_ERRORS
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Model
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import ErrorDetail, PermissionDenied
from rest_framework.settings import api_settings

from .. import help_texts, services, triggers, validators
from ..models import (
    TRIGGER_CHECKED_FIELDS,
    AuditEntry,
    CalendarUnit,
    CleanupConfig,
    Execution,
    PeriodicScan,
    Report,
    ReportArtifact,
    Schedule,
    ScheduledTask,
    Status,
)
from ..registry import cleanup_targets, report_types, scan_types, task_types
from ..tenancy import get_tenant_model
from .fields import (
    RegisteredKeyField,
    TenantField,
    VisibleSchedulesField,
    WallTimeField,
    WeekdaysField,
)
from .permissions import ADMIN, effective_role, has_role, sees_system_rows, tenant_ids

if TYPE_CHECKING:
    from tenants.models import Tenant


def api_errors(exc: DjangoValidationError) -> dict[str, list[ErrorDetail]]:
    """Turn a model-layer ``ValidationError`` into DRF's ``{field: [messages]}`` form."""
    detail = serializers.as_serializer_error(exc)
    if NON_FIELD_ERRORS in detail:
        detail[api_settings.NON_FIELD_ERRORS_KEY] = detail.pop(NON_FIELD_ERRORS)
    return detail


class StrictMixin(serializers.Serializer):
    """Reject keys the serializer does not accept instead of silently ignoring them."""

    def to_internal_value(self, data: object) -> dict[str, Any]:
        refused = {}
        if isinstance(data, Mapping):
            fields = self.fields
            for key in data:
                if key not in fields:
                    refused[key] = [_("Unknown field.")]
                elif fields[key].read_only:
                    refused[key] = [_("This field is read-only.")]
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            # One answer names the unknown keys and the wrong values alike.
            if refused and isinstance(exc.detail, dict):
                raise serializers.ValidationError({**exc.detail, **refused}) from exc
            raise
        if refused:
            raise serializers.ValidationError(refused)
        return value


# -- tenants ---------------------------------------------------------------------------------


def _tenant_fields() -> list[str]:
    # The tenant model is swappable: show the default model's fields where they exist.
    names = {f.name for f in get_tenant_model()._meta.get_fields()}
    wanted = [
        "name",
        "slug",
        "timezone",
        "is_active",
        "max_schedules",
        "max_concurrent_executions",
        "created_at",
    ]
    return ["id", *(n for n in wanted if n in names)]


# Quotas: like in the admin, set by users who see every tenant only.
TENANT_QUOTA_FIELDS = ("max_schedules", "max_concurrent_executions")


class TenantSerializer(StrictMixin, serializers.ModelSerializer):
    """A tenant. Writes: see ``permissions.TenantPermission``; ``is_active`` goes through
    ``services.set_tenant_active`` (deactivating pauses the tenant's schedules)."""

    role = serializers.SerializerMethodField(
        help_text=_("Your effective role in this tenant (superusers: owner).")
    )
    schedule_count = serializers.SerializerMethodField(
        help_text=_("How many schedules the tenant has.")
    )

    class Meta:
        model = get_tenant_model()
        fields = [*_tenant_fields(), "role", "schedule_count"]
        read_only_fields = ["id", "created_at"]
        extra_kwargs = {
            "is_active": {
                "help_text": _(
                    "false pauses the tenant's schedules; true again resumes the ones it "
                    "paused (not those paused by hand before)."
                )
            },
            "timezone": {"help_text": _("An IANA time zone name, e.g. Europe/Berlin.")},
            **{
                name: {"help_text": _("Set by users who see every tenant only.")}
                for name in TENANT_QUOTA_FIELDS
            },
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        request = self.context.get("request")
        if request is not None and tenant_ids(request) is not None:
            for name in TENANT_QUOTA_FIELDS:
                if name in self.fields:
                    self.fields[name].read_only = True

    # drf-spectacular reads this method's annotations at run time: the tenant model, which is
    # swappable, cannot be named here.
    def get_role(self, obj: Model) -> str | None:
        return effective_role(self.context["request"], obj.pk)

    def get_schedule_count(self, obj: Model) -> int:
        count = getattr(obj, "schedule_count", None)  # annotated by the view's queryset
        return Schedule.objects.filter(tenant_id=obj.pk).count() if count is None else count

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # The model's own rules beyond its fields' (a host's tenant model may have a clean()).
        trial = copy.copy(self.instance) if self.instance is not None else self.Meta.model()
        for name, value in attrs.items():
            setattr(trial, name, value)
        try:
            trial.full_clean(validate_unique=False)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(api_errors(exc)) from exc
        return attrs

    def create(self, validated_data: dict[str, Any]) -> Model:
        active = validated_data.get("is_active", True)
        tenant = super().create(validated_data)
        if not active:
            services.set_tenant_active(
                tenant=tenant, active=False, user=self.context["request"].user, source="api"
            )
        return tenant

    def update(self, instance: Model, validated_data: dict[str, Any]) -> Model:
        active = validated_data.pop("is_active", None)
        tenant = super().update(instance, validated_data)
        if active is not None:
            services.set_tenant_active(
                tenant=tenant, active=active, user=self.context["request"].user, source="api"
            )
        return tenant


# -- schedules -------------------------------------------------------------------------------

COMMON_FIELDS = [
    "tenant",
    "name",
    "description",
    "enabled",
    "paused_until",
    "trigger_type",
    "interval_seconds",
    "cron_expression",
    "run_at",
    "calendar_every",
    "calendar_unit",
    "calendar_time",
    "calendar_weekdays",
    "start_at",
    "end_at",
    "timezone",
    "jitter_seconds",
    "dst_gap_policy",
    "dst_fold_policy",
    "timeout_seconds",
    "max_retries",
    "retry_backoff_seconds",
    "overlap",
    "max_instances",
    "misfire_grace_seconds",
    "coalesce",
    "priority",
    "stagger",
    "max_executions",
    "ping_url",
    "ping_style",
    "depends_on",
]
SCHEDULER_STATE = [
    "next_run_at",
    "last_run_at",
    "last_success_at",
    "last_status",
    "run_count",
    "consecutive_failures",
]
READ_ONLY_FIELDS = [
    "id",
    "kind",
    "tenant_slug",
    "trigger_description",
    "legacy_day_rule",
    *SCHEDULER_STATE,
    "declared",
    "created_at",
    "updated_at",
]


def _number_limits(fields: list[str]) -> dict[str, dict[str, int]]:
    """Document the service's bounds on the serializer fields (and check them early)."""
    kwargs: dict[str, dict[str, int]] = {}
    for name in fields:
        if name in validators.NUMBER_LIMITS:
            kwargs[name] = {"max_value": validators.NUMBER_LIMITS[name]}
            if name in validators.NUMBER_MINIMUMS:
                kwargs[name]["min_value"] = validators.NUMBER_MINIMUMS[name]
    return kwargs


class ScheduleSerializer(StrictMixin, serializers.ModelSerializer):
    """Fields every kind shares; subclasses add the kind's own fields."""

    tenant = TenantField(
        allow_null=True,
        help_text=_(
            "The tenant's id or slug; fixed once created. null: a system schedule (superusers "
            "and holders of scheduling.manage_system_schedules only)."
        ),
    )
    tenant_slug = serializers.CharField(source="tenant.slug", read_only=True)
    depends_on = VisibleSchedulesField(
        many=True,
        required=False,
        help_text=_(
            "Ids of upstream schedules of the same tenant. A schedule with upstreams has no "
            "timer of its own: it runs once all of them succeeded for the same occurrence, and "
            "is recorded as skipped when one of them did not. Cycles are refused."
        ),
    )
    trigger_description = serializers.SerializerMethodField()
    calendar_unit = serializers.ChoiceField(
        choices=CalendarUnit.choices,
        allow_blank=True,
        required=False,
        help_text=_("Calendar: repeat in days, weeks or months (with calendar_every)."),
    )
    calendar_time = WallTimeField(
        allow_null=True,
        required=False,
        help_text=_(
            'Calendar: the time of day, "HH:MM" or "HH:MM:SS" in the schedule\'s time zone '
            "(no offset); kept across DST by the DST policies."
        ),
    )
    calendar_weekdays = WeekdaysField(
        required=False,
        help_text=_(
            'Calendar, in weeks: the weekdays, as "mon,thu" or ["mon", "thu"] (mon tue wed thu '
            "fri sat sun); returned as the comma-separated string. Empty: the weekday of the "
            "start (else of the creation)."
        ),
    )
    # Empty until the first run; DRF drops allow_blank from read-only model fields.
    last_status = serializers.ChoiceField(choices=Status.choices, allow_blank=True, read_only=True)

    class Meta:
        model = Schedule
        fields = [*READ_ONLY_FIELDS, *COMMON_FIELDS]
        read_only_fields = READ_ONLY_FIELDS
        extra_kwargs = _number_limits(COMMON_FIELDS)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance is not None and "tenant" in self.fields:
            self.fields["tenant"].required = False

    def to_internal_value(self, data: object) -> dict[str, Any]:
        try:
            return super().to_internal_value(data)
        except serializers.ValidationError as exc:
            # A field error stops DRF before the model layer: add the model layer's errors of
            # the fields that did parse, so that one answer names every wrong field.
            if isinstance(exc.detail, dict) and isinstance(data, Mapping):
                errors: dict[str, Any] = exc.detail  # field -> its messages
                for name, messages in self._model_errors(data, refused=set(errors)).items():
                    errors.setdefault(name, messages)
            raise

    def _model_errors(
        self, data: Mapping[str, Any], *, refused: set[str]
    ) -> dict[str, list[ErrorDetail]]:
        """Return what the model layer (``services.validate_schedule``) finds wrong with the
        fields of ``data`` that parse, over the schedule's own values on an update.

        The fields in ``refused`` already have their errors; their trial values are defaults,
        so what the model layer says about them, or (for the trigger type) about the fields
        whose rules depend on them, is left out.
        """
        instance = self.instance
        trial = copy.copy(instance) if isinstance(instance, Schedule) else self.Meta.model()
        depends_on = None
        for name, field in self.fields.items():
            if field.read_only or name not in data or name in refused:
                continue
            try:
                value = field.run_validation(data[name])
            except (serializers.ValidationError, DjangoValidationError):
                continue
            if name == "depends_on":
                depends_on = value
            else:
                setattr(trial, name, value)
        ignored = set(refused)
        if "trigger_type" in refused:
            ignored |= TRIGGER_CHECKED_FIELDS
        try:
            services.validate_schedule(
                trial, depends_on=depends_on, creating=not isinstance(instance, Schedule)
            )
        except DjangoValidationError as exc:
            return {name: found for name, found in api_errors(exc).items() if name not in ignored}
        except (ArithmeticError, ValueError, TypeError):
            pass  # the field errors already refuse the request
        return {}

    @extend_schema_field(str)
    def get_trigger_description(self, obj: Schedule) -> str:
        return triggers.describe(obj)

    def get_extra_kwargs(self) -> dict[str, Any]:
        # The help texts that show the settings' values, read when the serializer is built.
        kwargs: dict[str, Any] = super().get_extra_kwargs()
        for name, text in help_texts.schedule_help_texts().items():
            kwargs[name] = {**kwargs.get(name, {}), "help_text": text}
        return kwargs

    def validate_end_at(self, value: datetime | None) -> datetime | None:
        saved = self.instance.end_at if isinstance(self.instance, Schedule) else None
        message = validators.check_end_not_passed(value, saved)
        if message is not None:
            raise serializers.ValidationError(message)
        return value

    def validate_tenant(self, tenant: Tenant | None) -> Tenant | None:
        if isinstance(self.instance, Schedule):
            try:
                services.check_tenant_unchanged(
                    self.instance, tenant.pk if tenant is not None else None
                )
            except DjangoValidationError as exc:
                raise serializers.ValidationError(exc.message_dict["tenant"]) from exc
        if tenant is None:
            if not sees_system_rows(self.context["request"]):
                raise serializers.ValidationError(
                    _("Give a tenant: only superusers may create system schedules.")
                )
            return None
        if not has_role(self.context["request"], tenant.pk, ADMIN):
            raise PermissionDenied(_("Only an admin or owner of this tenant may do this."))
        return tenant

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        instance = self.instance
        if isinstance(instance, Schedule) and instance.declared:
            # Declared in code: only its state is the operators'; a value sent unchanged
            # (a PUT of what GET gave) is no change.
            refused = [
                name
                for name, value in attrs.items()
                if name not in services.DECLARED_OPERATOR_FIELDS
                and not _same_value(instance, name, value)
            ]
            if refused:
                raise serializers.ValidationError(
                    {name: [services.DECLARED_MESSAGE] for name in refused}
                )
        return attrs

    def create(self, validated_data: dict[str, Any]) -> Schedule:
        request = self.context["request"]
        try:
            return services.create_schedule(
                model=self.Meta.model, user=request.user, source="api", **validated_data
            )
        except DjangoValidationError as exc:
            raise serializers.ValidationError(api_errors(exc)) from exc

    def update(self, instance: Schedule, validated_data: dict[str, Any]) -> Schedule:
        validated_data.pop("tenant", None)
        request = self.context["request"]
        try:
            return services.update_schedule(
                schedule=instance, data=validated_data, user=request.user, source="api"
            )
        except DjangoValidationError as exc:
            raise serializers.ValidationError(api_errors(exc)) from exc


def _same_value(schedule: Schedule, name: str, value: object) -> bool:
    """Return whether ``value`` (validated) is what ``schedule`` holds in field ``name``."""
    if name == "tenant":
        return getattr(value, "pk", None) == schedule.tenant_id
    if name == "depends_on":
        current = set(schedule.depends_on.values_list("pk", flat=True))
        return {dep.pk for dep in value} == current if isinstance(value, list) else False
    return bool(getattr(schedule, name, None) == value)


class PeriodicScanSerializer(ScheduleSerializer):
    """A periodic scan: a registered scan type run against a target."""

    scan_type = RegisteredKeyField(registry=scan_types)

    class Meta(ScheduleSerializer.Meta):
        model = PeriodicScan
        fields = [*ScheduleSerializer.Meta.fields, "scan_type", "target", "options"]


class ReportSerializer(ScheduleSerializer):
    """A report: a registered report type rendered in a format and e-mailed."""

    report_type = RegisteredKeyField(registry=report_types)

    class Meta(ScheduleSerializer.Meta):
        model = Report
        fields = [*ScheduleSerializer.Meta.fields, "report_type", "format", "recipients", "options"]


class CleanupConfigSerializer(ScheduleSerializer):
    """A cleanup: rows of a registered target older than ``retain_days`` are deleted."""

    cleanup_target = RegisteredKeyField(registry=cleanup_targets)

    class Meta(ScheduleSerializer.Meta):
        model = CleanupConfig
        fields = [
            *ScheduleSerializer.Meta.fields,
            "cleanup_target",
            "retain_days",
            "batch_size",
            "options",
        ]
        extra_kwargs = _number_limits([*COMMON_FIELDS, "retain_days", "batch_size"])


class ScheduledTaskSerializer(ScheduleSerializer):
    """A scheduled task: one of the host project's own registered functions."""

    task_type = RegisteredKeyField(registry=task_types)

    class Meta(ScheduleSerializer.Meta):
        model = ScheduledTask
        fields = [*ScheduleSerializer.Meta.fields, "task_type", "options"]


# -- schedule actions ------------------------------------------------------------------------


class EmptySerializer(StrictMixin, serializers.Serializer):
    """No body, or an empty JSON object."""


class ConflictSerializer(serializers.Serializer):
    """The body of a 409: why the object's state does not allow the action."""

    detail = serializers.CharField()


class RunSerializer(StrictMixin, serializers.Serializer):
    options = serializers.JSONField(
        required=False,
        help_text=_(
            "Options for this run only, merged over the schedule's own and validated by its "
            "type's form; stored on the execution."
        ),
    )


class PauseSerializer(StrictMixin, serializers.Serializer):
    until = serializers.DateTimeField(
        required=False,
        allow_null=True,
        help_text=_("Resume by itself at this instant; without it, stay paused until resumed."),
    )

    def validate_until(self, value: datetime | None) -> datetime | None:
        if value is None:
            return value
        if value <= timezone.now():
            raise serializers.ValidationError(_("The pause must end in the future."))
        if value >= validators.LATEST:
            raise serializers.ValidationError(_("Use a date before 9000."))
        return value


class NextRunsQuerySerializer(serializers.Serializer):
    count = serializers.IntegerField(
        required=False,
        default=5,
        min_value=1,
        max_value=10_000,
        help_text=_("How many fire times to return (default 5; more than the cap give the cap)."),
    )


class NextRunsSerializer(serializers.Serializer):
    description = serializers.CharField()
    timezone = serializers.CharField()
    enabled = serializers.BooleanField()
    paused_until = serializers.DateTimeField(allow_null=True)
    runs = serializers.ListField(child=serializers.DateTimeField())


class AuditEntrySerializer(serializers.ModelSerializer):
    user = serializers.SerializerMethodField()

    class Meta:
        model = AuditEntry
        fields = [
            "id",
            "action",
            "user",
            "source",
            "changes",
            "schedule_name",
            "schedule_kind",
            "created_at",
        ]
        read_only_fields = fields

    def get_user(self, obj: AuditEntry) -> str | None:
        return obj.user.get_username() if obj.user else None


# -- executions and artifacts ----------------------------------------------------------------


class ExecutionSerializer(serializers.ModelSerializer):
    triggered_by = serializers.SerializerMethodField()
    traceback = serializers.CharField(
        read_only=True,
        allow_null=True,
        help_text=_(
            "The full traceback (it names server paths); null unless you are an admin or owner "
            "of the execution's tenant. Everyone sees `error`."
        ),
    )
    worker = serializers.CharField(
        read_only=True,
        allow_null=True,
        help_text=_(
            "host:pid of the process that ran it; null unless you are an admin or owner of the "
            "execution's tenant."
        ),
    )

    class Meta:
        model = Execution
        fields = [
            "id",
            "tenant",
            "schedule",
            "schedule_name",
            "schedule_kind",
            "scheduled_for",
            "attempt",
            "trigger",
            "status",
            "queued_at",
            "started_at",
            "finished_at",
            "duration_ms",
            "run_after",
            "result",
            "error",
            "traceback",
            "worker",
            "triggered_by",
            "options",
        ]
        read_only_fields = fields

    def get_triggered_by(self, obj: Execution) -> str | None:
        return obj.triggered_by.get_username() if obj.triggered_by else None

    def to_representation(self, instance: Execution) -> dict[str, Any]:
        data: dict[str, Any] = super().to_representation(instance)
        request = self.context.get("request")
        # Host names and server paths: for the tenant's admins and owners (and superusers).
        # The role comes from the request's cached tenant ids: no query per row.
        if request is None or not has_role(request, instance.tenant_id, ADMIN):
            data["traceback"] = data["worker"] = None
        return data


class ReportArtifactSerializer(serializers.ModelSerializer):
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = ReportArtifact
        fields = [
            "id",
            "tenant",
            "report",
            "execution",
            "format",
            "filename",
            "content_type",
            "size",
            "checksum",
            "created_at",
            "download_url",
        ]
        read_only_fields = fields

    def get_download_url(self, obj: ReportArtifact) -> str:
        return reverse("scheduling-api:report-artifact-download", args=[obj.pk])


# -- scheduler status ------------------------------------------------------------------------


class NextFireSerializer(serializers.ModelSerializer):
    tenant = serializers.IntegerField(source="tenant_id", read_only=True)

    class Meta:
        model = Schedule
        fields = ["id", "kind", "name", "tenant", "next_run_at", "paused_until"]
        read_only_fields = fields


class SchedulerStatusSerializer(serializers.Serializer):
    lease_name = serializers.CharField()
    leader_active = serializers.BooleanField(
        help_text=_("Whether a scheduler holds an unexpired lease.")
    )
    healthy = serializers.BooleanField(
        help_text=_("A leader is active and its heartbeat is fresh (as /healthz says).")
    )
    leader = serializers.CharField(
        allow_null=True,
        help_text=_("The lease holder (host:pid:id); shown to users who see every tenant."),
    )
    heartbeat_age_seconds = serializers.FloatField(
        allow_null=True, help_text=_("Seconds since the leader last renewed its lease.")
    )
    renewed_at = serializers.DateTimeField(allow_null=True)
    expires_at = serializers.DateTimeField(allow_null=True)
    last_sync_at = serializers.DateTimeField(allow_null=True)
    sync_lag_ms = serializers.IntegerField(
        allow_null=True, help_text=_("Duration of the last sync pass.")
    )
    job_count = serializers.IntegerField(
        help_text=_(
            "Jobs in the scheduler for users who see every tenant; for others, the enabled "
            "schedules of their tenants."
        )
    )
    next_fires = NextFireSerializer(many=True)
