"""ViewSets: tenant-scoped querysets, role checks, and calls into ``services``.

Every queryset starts from the tenants the requester may see, so another tenant's object is
404 on every route (detail, actions, filters), before any role is checked. The web process
never runs a job: ``run/`` queues an execution for the scheduler process.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, TypeVar

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.db.models import Count, Model, Prefetch, QuerySet
from django.http import Http404, HttpResponse
from django.utils.http import content_disposition_header
from django.utils.translation import gettext as _
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, mixins, routers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.filters import OrderingFilter
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import BaseRenderer, BrowsableAPIRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

from .. import kinds, runner, services, triggers
from ..conf import conf
from ..exceptions import StateConflict
from ..kinds.report import CONTENT_TYPES
from ..models import (
    AuditAction,
    AuditEntry,
    CleanupConfig,
    Execution,
    PeriodicScan,
    Report,
    ReportArtifact,
    Schedule,
    ScheduledTask,
)
from ..status import scheduler_status
from ..tenancy import get_tenant_model, scope_q
from ..validators import has_null_character
from . import filters, serializers
from .filters import MAX_ID
from .pagination import ExecutionCursorPagination, PagePagination
from .parsers import StrictJSONParser
from .permissions import (
    ADMIN,
    OPERATOR,
    TenantPermission,
    TenantRolePermission,
    sees_system_rows,
    tenant_ids,
)
from .schema import APISchema
from .throttling import SchedulingRateThrottle, SchedulingRunRateThrottle

if TYPE_CHECKING:
    from rest_framework.serializers import BaseSerializer
    from rest_framework.throttling import BaseThrottle

    from tenants.models import Tenant

NEXT_FIRES = 10

_M = TypeVar("_M", bound=Model)
_QS = TypeVar("_QS", bound=QuerySet[Model])


def max_next_runs() -> int:
    """The cap on ``next-runs/?count=`` (SCHEDULING_API_MAX_NEXT_RUNS)."""
    return conf.API_MAX_NEXT_RUNS


def _scoped(queryset: _QS, request: Request, tenant_field: str = "tenant_id") -> _QS:
    ids = tenant_ids(request)
    if tenant_field == "pk":  # the tenants themselves
        return queryset if ids is None else queryset.filter(pk__in=ids)
    q = scope_q(ids, sees_system_rows(request), tenant_field.removesuffix("_id"))
    return queryset if q is None else queryset.filter(q)


class APIMixin(APIView):
    """What every view of this API shares, independent of the project's DRF defaults."""

    permission_classes = [IsAuthenticated, TenantRolePermission]
    parser_classes = [StrictJSONParser]
    renderer_classes = [JSONRenderer, BrowsableAPIRenderer]
    schema = APISchema()

    def get_throttles(self) -> list[BaseThrottle]:
        # The project's own throttles (DEFAULT_THROTTLE_CLASSES) still apply, plus ours.
        return [*super().get_throttles(), SchedulingRateThrottle(), SchedulingRunRateThrottle()]

    def initial(self, request: Request, *args: object, **kwargs: object) -> None:
        super().initial(request, *args, **kwargs)
        for name, values in request.query_params.lists():
            if has_null_character([name, *values]):
                raise ValidationError({name: [_("Null characters are not allowed.")]})

    def fake_view(self) -> bool:
        """Whether drf-spectacular is introspecting the view (no real request)."""
        return getattr(self, "swagger_fake_view", False)


class ObjectAPIMixin(APIMixin, generics.GenericAPIView[_M]):
    """What the API's viewsets share: a JSON 404 for any id that cannot exist."""

    lookup_value_regex = "[^/]+"  # any id reaches the view and gets a JSON 404, not HTML

    def get_object(self) -> _M:
        # Ids the database cannot hold are simply not found (SQLite raises OverflowError on
        # them, and exact lookups through a parent link are not range-checked by Django).
        value = self.kwargs.get(self.lookup_url_kwarg or self.lookup_field, "")
        if not (value.isascii() and value.isdigit() and 0 < int(value) <= MAX_ID):
            model = self.get_queryset().model
            raise Http404(f"No {model._meta.object_name} matches the given query.")
        return super().get_object()


class TenantViewSet(
    ObjectAPIMixin["Tenant"],
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.ReadOnlyModelViewSet["Tenant"],
):
    """The tenants you are a member of, with your role in each.

    Creating a tenant needs the tenant model's add permission; changing one its change
    permission and, unless you see every tenant, the role admin in it. `is_active: false`
    pauses the tenant's schedules and `true` resumes the ones that deactivating paused.
    Tenants are deactivated, not deleted.
    """

    serializer_class = serializers.TenantSerializer
    pagination_class = PagePagination
    permission_classes = [IsAuthenticated, TenantPermission]

    def perform_create(self, serializer: BaseSerializer[Tenant]) -> None:
        with transaction.atomic():
            serializer.save()

    def perform_update(self, serializer: BaseSerializer[Tenant]) -> None:
        with transaction.atomic():
            serializer.save()

    def get_queryset(self) -> QuerySet[Tenant]:
        model = get_tenant_model()
        if self.fake_view():
            return model._default_manager.none()
        qs = model._default_manager.annotate(schedule_count=Count("schedules"))
        return _scoped(qs, self.request, "pk").order_by("name", "pk")


class ScheduleViewSet(ObjectAPIMixin[Schedule], viewsets.ModelViewSet[Schedule]):
    """Schedules of one kind: CRUD plus run, pause, resume, next-runs and history."""

    model: type[Schedule] = Schedule
    pagination_class = PagePagination
    filter_backends = [DjangoFilterBackend, OrderingFilter]
    ordering_fields = [
        "id",
        "name",
        "priority",
        "next_run_at",
        "last_run_at",
        "created_at",
        "updated_at",
    ]
    ordering = ["name", "id"]
    required_roles = {
        "create": ADMIN,
        "update": ADMIN,
        "partial_update": ADMIN,
        "destroy": ADMIN,
        "run": OPERATOR,
        "pause": OPERATOR,
        "resume": OPERATOR,
    }
    # Actions that answer 409 when the object's state does not allow them (in the schema).
    conflict_actions = ("resume",)

    def get_queryset(self) -> QuerySet[Schedule]:
        if self.fake_view():
            return self.model.objects.none()
        qs = self.model.objects.select_related("tenant").prefetch_related(
            Prefetch("depends_on", queryset=Schedule.objects.only("id").order_by("id"))
        )
        return _scoped(qs, self.request)

    def perform_create(self, serializer: BaseSerializer[Schedule]) -> None:
        # Validation, quota, dependencies and the audit entry: services.create_schedule.
        serializer.save()

    def perform_update(self, serializer: BaseSerializer[Schedule]) -> None:
        serializer.save()

    def perform_destroy(self, instance: Schedule) -> None:
        try:
            services.delete_schedule(schedule=instance, user=self.request.user, source="api")
        except StateConflict as exc:  # declared in code (SCHEDULING_DECLARED_SCHEDULES)
            raise Conflict(str(exc)) from exc

    @extend_schema(
        responses={204: None, 409: serializers.ConflictSerializer},
        description="A schedule declared in code (`declared`) answers 409: remove it from "
        "SCHEDULING_DECLARED_SCHEDULES instead.",
    )
    def destroy(self, request: Request, *args: object, **kwargs: object) -> Response:
        return super().destroy(request, *args, **kwargs)

    def _check_empty_body(self, request: Request) -> None:
        body = serializers.EmptySerializer(data=request.data)
        body.is_valid(raise_exception=True)

    @extend_schema(
        request=serializers.RunSerializer,
        responses={
            202: serializers.ExecutionSerializer,
            200: serializers.ExecutionSerializer,
            409: serializers.ConflictSerializer,
        },
        summary="Queue a manual run",
        description="The scheduler process picks the execution up within its sync interval. "
        'An optional body `{"options": {...}}` gives this run its own options. While a manual '
        "run of the schedule with the same options is still queued, that execution is returned "
        "with 200 instead of queueing another (a new one answers 202). Ten queued manual runs "
        "(each with other options) answer 409 until one starts.",
    )
    @action(detail=True, methods=["post"])
    def run(self, request: Request, pk: str | None = None) -> Response:
        schedule = self.get_object()
        body = serializers.RunSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            options = kinds.clean_run_options(
                schedule.get_kind_object(), body.validated_data.get("options")
            )
        except DjangoValidationError as exc:
            raise ValidationError(exc.message_dict) from exc
        try:
            execution, created = services.queue_run(
                schedule=schedule, user=request.user, source="api", options=options
            )
        except StateConflict as exc:  # too many manual runs queued already
            raise Conflict(str(exc)) from exc
        data = serializers.ExecutionSerializer(execution, context=self.get_serializer_context())
        return Response(
            data.data, status=status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK
        )

    @extend_schema(
        request=serializers.PauseSerializer,
        summary="Pause",
        description="With `until`, until that instant; without, until resumed (`paused_until` "
        "is then 8000-01-01T00:00:00Z). `enabled` is left alone: disabling is an admin's.",
    )
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, pk: str | None = None) -> Response:
        schedule = self.get_object()
        body = serializers.PauseSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        services.pause_schedule(
            schedule=schedule,
            until=body.validated_data.get("until"),
            user=request.user,
            source="api",
        )
        return Response(self.get_serializer(schedule).data)

    @extend_schema(
        request=None,
        summary="Resume: end a pause",
        description="Clears `paused_until`. A disabled schedule answers 409 and stays disabled: "
        "enabling it (`enabled` in a PATCH) needs the role admin.",
    )
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, pk: str | None = None) -> Response:
        schedule = self.get_object()
        self._check_empty_body(request)
        try:
            services.resume_schedule(schedule=schedule, user=request.user, source="api")
        except StateConflict as exc:  # disabled: an admin's to enable
            raise Conflict(str(exc)) from exc
        return Response(self.get_serializer(schedule).data)

    @extend_schema(
        parameters=[serializers.NextRunsQuerySerializer],
        responses=serializers.NextRunsSerializer,
        summary="Preview the next fire times",
    )
    @action(detail=True, methods=["get"], url_path="next-runs")
    def next_runs(self, request: Request, pk: str | None = None) -> Response:
        schedule = self.get_object()
        query = serializers.NextRunsQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        count = min(query.validated_data["count"], max_next_runs())
        try:
            runs = triggers.next_runs(schedule, count)
        except (ArithmeticError, ValueError) as exc:
            raise ValidationError(
                {"detail": _("The trigger cannot compute its runs: %s") % exc}
            ) from exc
        data = {
            "description": triggers.describe(schedule),
            "timezone": schedule.effective_timezone,
            "enabled": schedule.enabled,
            "paused_until": schedule.paused_until,
            "runs": runs,
        }
        return Response(serializers.NextRunsSerializer(data).data)

    @extend_schema(
        responses=serializers.AuditEntrySerializer(many=True),
        summary="Audit trail: who changed what, and when",
    )
    @action(detail=True, methods=["get"], pagination_class=PagePagination, filter_backends=[])
    def history(self, request: Request, pk: str | None = None) -> Response:
        schedule = self.get_object()
        entries = AuditEntry.objects.filter(schedule=schedule).select_related("user")
        ordered = entries.order_by("-created_at", "-pk")
        # Any queryset pages; the stubs tie paginate_queryset to the view's own model.
        page = self.paginate_queryset(ordered)  # type: ignore[arg-type]
        data = serializers.AuditEntrySerializer(page, many=True).data
        return self.get_paginated_response(data)


class PeriodicScanViewSet(ScheduleViewSet):
    """Periodic scans of the tenants you can see."""

    model = PeriodicScan
    serializer_class = serializers.PeriodicScanSerializer
    filterset_class = filters.PeriodicScanFilter
    ordering_fields = [*ScheduleViewSet.ordering_fields, "scan_type"]


class ReportViewSet(ScheduleViewSet):
    """Reports of the tenants you can see."""

    model = Report
    serializer_class = serializers.ReportSerializer
    filterset_class = filters.ReportFilter
    ordering_fields = [*ScheduleViewSet.ordering_fields, "report_type"]


class CleanupConfigViewSet(ScheduleViewSet):
    """Cleanup configs of the tenants you can see."""

    model = CleanupConfig
    serializer_class = serializers.CleanupConfigSerializer
    filterset_class = filters.CleanupConfigFilter
    ordering_fields = [*ScheduleViewSet.ordering_fields, "cleanup_target"]


class ScheduledTaskViewSet(ScheduleViewSet):
    """Scheduled tasks (the host project's own functions) of the tenants you can see."""

    model = ScheduledTask
    serializer_class = serializers.ScheduledTaskSerializer
    filterset_class = filters.ScheduledTaskFilter
    ordering_fields = [*ScheduleViewSet.ordering_fields, "task_type"]


def viewset_for(model: type[Schedule]) -> type[ScheduleViewSet]:
    """Return the API viewset of a kind's model: the ``ScheduleViewSet`` subclass naming it."""
    for viewset in ScheduleViewSet.__subclasses__():
        if viewset.model is model:
            return viewset
    raise LookupError(f"No ScheduleViewSet subclass has model = {model.__name__}.")


class ExecutionViewSet(ObjectAPIMixin[Execution], viewsets.ReadOnlyModelViewSet[Execution]):
    """The execution log (newest first, cursor-paginated)."""

    serializer_class = serializers.ExecutionSerializer
    pagination_class = ExecutionCursorPagination
    filter_backends = [DjangoFilterBackend]
    filterset_class = filters.ExecutionFilter

    required_roles = {"cancel": OPERATOR, "retry": OPERATOR}

    def get_queryset(self) -> QuerySet[Execution]:
        if self.fake_view():
            return Execution.objects.none()
        queryset = Execution.objects.select_related("triggered_by")
        if self.action in ("cancel", "retry"):
            queryset = queryset.select_related("schedule", "tenant")
        return _scoped(queryset, self.request)

    @extend_schema(
        request=None,
        responses={200: serializers.ExecutionSerializer, 409: serializers.ConflictSerializer},
        summary="Cancel a queued or running execution",
        description="A queued execution never starts; a running one is asked to stop. Both "
        "end `cancelled`. A finished execution answers 409.",
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        execution = self.get_object()
        serializers.EmptySerializer(data=request.data).is_valid(raise_exception=True)
        try:
            runner.cancel(execution, by=request.user)
        except StateConflict as exc:
            raise Conflict(str(exc)) from exc
        services.record_audit(
            schedule=execution.schedule or _snapshot_of(execution),
            action=AuditAction.CANCEL,
            user=request.user,
            source="api",
            changes={"execution": [execution.pk, execution.pk]},
        )
        return Response(self.get_serializer(execution).data)

    @extend_schema(
        request=None,
        responses={202: serializers.ExecutionSerializer, 409: serializers.ConflictSerializer},
        summary="Retry a failed, timed-out, interrupted or missed execution",
        description="Queues the next attempt of the same occurrence (same `scheduled_for`). "
        "Any other state, or a later attempt that exists already, answers 409.",
    )
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: str | None = None) -> Response:
        execution = self.get_object()
        serializers.EmptySerializer(data=request.data).is_valid(raise_exception=True)
        try:
            queued = runner.retry(execution, by=request.user)
        except StateConflict as exc:
            raise Conflict(str(exc)) from exc
        services.record_audit(
            schedule=queued.schedule or _snapshot_of(execution),
            action=AuditAction.RETRY,
            user=request.user,
            source="api",
            changes={"execution": [execution.pk, queued.pk]},
        )
        data = self.get_serializer(queued).data
        return Response(data, status=status.HTTP_202_ACCEPTED)


class Conflict(APIException):
    """The object's state does not allow the action (cancel a finished execution)."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = _("The current state does not allow this action.")
    default_code = "conflict"


def _snapshot_of(execution: Execution) -> Schedule:
    """An unsaved stand-in for the deleted schedule of ``execution`` (for the audit trail)."""
    return Schedule(
        tenant_id=execution.tenant_id, name=execution.schedule_name, kind=execution.schedule_kind
    )


class DownloadRenderer(BaseRenderer):
    """Lets a download answer any ``Accept``; the view returns the file itself."""

    media_type = "*/*"
    format = "download"

    def render(
        self,
        data: object,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, object] | None = None,
    ) -> bytes:
        # Only errors get here (a download returns its own response): they are JSON.
        response = (renderer_context or {}).get("response")
        if isinstance(response, HttpResponse):
            response["Content-Type"] = "application/json"
        return JSONRenderer().render(data, "application/json", renderer_context)


_UNSAFE_HEADER = re.compile(r"[\x00-\x1f\x7f]")
# What a download answers: the content type of the artifact's format, or octet-stream.
DOWNLOAD_MEDIA_TYPES = ("application/octet-stream", *sorted(set(CONTENT_TYPES.values())))


class ReportArtifactViewSet(
    ObjectAPIMixin[ReportArtifact], viewsets.ReadOnlyModelViewSet[ReportArtifact]
):
    """Rendered reports; ``download/`` returns the file in its format."""

    serializer_class = serializers.ReportArtifactSerializer
    pagination_class = PagePagination
    filter_backends = [DjangoFilterBackend]
    filterset_class = filters.ReportArtifactFilter

    def get_queryset(self) -> QuerySet[ReportArtifact]:
        if self.fake_view():
            return ReportArtifact.objects.none()
        qs = ReportArtifact.objects.defer("content").order_by("-created_at", "-id")
        if self.action == "download":
            qs = qs.defer(None)
        return _scoped(qs, self.request)

    @extend_schema(
        # One entry per media type the file can have (a client generator skips ``*/*``);
        # octet-stream first: generators read the body the way the first one they know says.
        responses={
            (200, media_type): OpenApiResponse(
                OpenApiTypes.BINARY,
                description="The file, with the content type of its format (JSON, CSV, HTML).",
            )
            for media_type in DOWNLOAD_MEDIA_TYPES
        },
        summary="Download the rendered report",
    )
    @action(
        detail=True,
        methods=["get"],
        renderer_classes=[JSONRenderer, DownloadRenderer],
        filter_backends=[],
    )
    def download(self, request: Request, pk: str | None = None) -> HttpResponse:
        artifact = self.get_object()
        content_type = artifact.content_type
        if not content_type or _UNSAFE_HEADER.search(content_type):
            content_type = "application/octet-stream"
        filename = _UNSAFE_HEADER.sub("", artifact.filename) or f"report-{artifact.pk}"
        response = HttpResponse(artifact.content, content_type=content_type)
        response["Content-Disposition"] = content_disposition_header(True, filename)
        response["X-Content-Type-Options"] = "nosniff"
        return response


class APIRootView(routers.APIRootView):
    """The API's endpoints: tenants, each kind of schedule, executions and report artifacts;
    the scheduler's status; the OpenAPI schema and its documentation."""

    # Links beside the router's: key -> URL name in this API's namespace.
    more_links = {"scheduler/status": "scheduler-status", "schema": "schema", "docs": "docs"}

    def get(self, request: Request, *args: object, **kwargs: object) -> Response:
        response = super().get(request, *args, **kwargs)
        match = request.resolver_match
        namespace = match.namespace if match else ""
        url_kwargs = {k: v for k, v in kwargs.items() if k != "format"}  # no .json on these
        for key, name in self.more_links.items():
            response.data[key] = reverse(
                f"{namespace}:{name}" if namespace else name, kwargs=url_kwargs, request=request
            )
        return response


class SchedulerStatusView(APIMixin, APIView):
    """The leader, its heartbeat, the last sync and the next fires you can see."""

    permission_classes = [IsAuthenticated]

    @extend_schema(responses=serializers.SchedulerStatusSerializer)
    def get(self, request: Request) -> Response:
        visible = tenant_ids(request)
        data = scheduler_status(tenant_ids=visible, next_count=NEXT_FIRES)
        if visible is not None:
            data["leader"] = None  # host names are not tenant data to show
        return Response(serializers.SchedulerStatusSerializer(data).data)
