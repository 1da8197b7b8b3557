"""URLconfs of a host project with an API of its own beside the app's (``test_mounting``).

The host has a view of its own under ``api/`` and its own schema and docs, the way
cookiecutter-django lays them out (``api/schema/``, ``api/docs/``).
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView


class WidgetView(APIView):
    """The host project's own endpoint."""

    def get(self, request: Request) -> Response:
        return Response({"widgets": []})


def host_docs(request: HttpRequest) -> HttpResponse:
    return HttpResponse("The host project's API reference")


HOST = [
    path("api/widgets/", WidgetView.as_view(), name="widgets"),
    path("api/docs/", host_docs, name="api-docs"),
]


class HostFirst:
    """The README's advice not followed: the app at ``api/``, after the host's routes."""

    urlpatterns = [
        *HOST,
        path("api/host-schema/", SpectacularAPIView.as_view(), name="api-schema"),
        path("api/", include("scheduling.api.urls")),
    ]


class AppFirst:
    """The app at ``api/`` before the host's routes: its ``docs/`` shadows the host's."""

    urlpatterns = [
        path("api/", include("scheduling.api.urls")),
        *HOST,
        path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    ]


class AsTheReadmeSays:
    """The README's mounting example: the app under a prefix of its own."""

    urlpatterns = [
        *HOST,
        path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
        path("api/scheduling/", include("scheduling.api.urls")),
    ]
