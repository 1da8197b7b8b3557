"""The app's API mounted in a host project that has an API, a schema and docs of its own.

The app's schema and docs are made from the app's own URL patterns (never the host's
endpoints), follow the host's REST_FRAMEWORK permissions, and live under the prefix the host
mounts them at.
"""

from __future__ import annotations

import pytest
import yaml
from django.test import override_settings
from django.urls import reverse
from rest_framework.test import APIClient

from tests.factories import make_user
from tests.scheduling.api.host_urls import AppFirst, AsTheReadmeSays, HostFirst

pytestmark = pytest.mark.django_db


@pytest.fixture
def client() -> APIClient:
    client = APIClient()
    client.force_authenticate(make_user())
    return client


def paths(client: APIClient, url: str) -> set[str]:
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return set(yaml.safe_load(response.content)["paths"])


@override_settings(ROOT_URLCONF=HostFirst)
def test_the_hosts_docs_stay_the_hosts_and_the_apps_schema_has_only_the_apps_endpoints(client):
    assert client.get("/api/docs/").content == b"The host project's API reference"
    app = paths(client, "/api/schema/")
    assert "/api/scans/{id}/run/" in app
    assert "/api/widgets/" not in app
    # The host's own schema takes in both, and says nothing of the app's schema or docs.
    host = paths(client, "/api/host-schema/")
    assert {"/api/widgets/", "/api/scans/{id}/run/"} <= host
    assert not {"/api/schema/", "/api/docs/"} & host


@override_settings(ROOT_URLCONF=AppFirst)
def test_when_the_apps_docs_shadow_the_hosts_they_show_the_app_to_its_users_only(client):
    # Anonymous users get nothing (the demo's REST_FRAMEWORK: IsAuthenticated), as the host's
    # own docs would answer them.
    assert APIClient().get("/api/docs/").status_code in (401, 403)
    html = client.get("/api/docs/").content.decode()
    assert "/api/scans/{id}/run/" in html
    assert "/api/widgets/" not in html
    assert "/api/widgets/" not in paths(client, "/api/schema/")


@override_settings(ROOT_URLCONF=AsTheReadmeSays)
def test_mounted_as_the_readme_says_nothing_collides(client):
    assert client.get("/api/docs/").content == b"The host project's API reference"
    app = paths(client, "/api/scheduling/schema/")
    assert "/api/scheduling/scans/{id}/run/" in app
    assert "/api/widgets/" not in app
    assert "/api/scans/" not in app
    assert {"/api/widgets/", "/api/scheduling/scans/"} <= paths(client, "/api/schema/")
    docs = client.get("/api/scheduling/docs/").content.decode()
    assert 'href="/api/scheduling/schema/"' in docs
    assert "/api/scheduling/executions/" in docs
    assert reverse("scheduling-api:docs") == "/api/scheduling/docs/"
    links = client.get("/api/scheduling/", HTTP_ACCEPT="application/json").json()
    assert links["schema"] == "http://testserver/api/scheduling/schema/"
    assert links["scans"] == "http://testserver/api/scheduling/scans/"
