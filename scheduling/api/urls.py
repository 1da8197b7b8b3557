"""URLs of the API; the host project includes them under a prefix of its own (``api/`` here).

The API's operations (``routes``), and on top the OpenAPI schema of those alone and its
documentation page.
"""

from __future__ import annotations

from django.urls import path

from .docs import DocsView, SchemaView
from .routes import api_urlpatterns

app_name = "scheduling-api"

urlpatterns = [
    path("schema/", SchemaView.as_view(), name="schema"),
    path("docs/", DocsView.as_view(), name="docs"),
    *api_urlpatterns,
]
