"""The API's operations: the router of its resources and the scheduler's status.

The schema is made from ``api_urlpatterns`` alone (``docs.build_schema``); ``urls`` adds the
schema and its documentation page on top.
"""

from __future__ import annotations

from django.urls import path
from rest_framework.routers import DefaultRouter

from ..kinds import KINDS
from . import views


class APIRouter(DefaultRouter):
    """The router whose root view also links the scheduler's status, the schema and the docs."""

    APIRootView = views.APIRootView


router = APIRouter()
router.register("tenants", views.TenantViewSet, basename="tenant")
# One endpoint per kind of schedule, from the table of kinds: /api/scans/, /api/reports/, ...
for spec in KINDS.values():
    router.register(spec.api_prefix, views.viewset_for(spec.model), basename=spec.kind)
router.register("executions", views.ExecutionViewSet, basename="execution")
router.register("report-artifacts", views.ReportArtifactViewSet, basename="report-artifact")

api_urlpatterns = [
    path("scheduler/status/", views.SchedulerStatusView.as_view(), name="scheduler-status"),
    *router.urls,
]
