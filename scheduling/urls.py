"""Monitoring endpoints: ``healthz`` and ``metrics`` (see ``scheduling.monitoring``).

Include them at the root of a project's URLconf::

    path("", include("scheduling.urls")),
"""

from __future__ import annotations

from django.urls import path

from . import monitoring as health

urlpatterns = [
    path("healthz", health.healthz, name="scheduling-healthz"),
    path("metrics", health.metrics, name="scheduling-metrics"),
]
