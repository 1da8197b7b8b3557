"""URLs of the API; the project includes them under ``api/``."""

from __future__ import annotations

from django.urls import path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.routers import DefaultRouter

from ..kinds import KINDS
from . import views
from .docs import docs_view
from .schema import SCHEMA_SETTINGS

app_name = "scheduling-api"

router = DefaultRouter()
router.register("tenants", views.TenantViewSet, basename="tenant")
# One endpoint per kind of schedule, from the table of kinds: /api/scans/, /api/reports/, ...
for spec in KINDS.values():
    router.register(spec.api_prefix, views.viewset_for(spec.model), basename=spec.kind)
router.register("executions", views.ExecutionViewSet, basename="execution")
router.register("report-artifacts", views.ReportArtifactViewSet, basename="report-artifact")

urlpatterns = [
    path("scheduler/status/", views.SchedulerStatusView.as_view(), name="scheduler-status"),
    path(
        "schema/",
        SpectacularAPIView.as_view(custom_settings=SCHEMA_SETTINGS),
        name="schema",
    ),
    path("docs/", docs_view, name="docs"),
    *router.urls,
]
