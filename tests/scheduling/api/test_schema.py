"""The OpenAPI schema validates and documents every route; the docs page needs no CDN."""

from __future__ import annotations

import re

import pytest
import yaml
from django.core.management import call_command
from drf_spectacular.settings import patched_settings
from drf_spectacular.validation import validate_schema
from rest_framework.test import APIClient

from scheduling.api.schema import SCHEMA_SETTINGS

pytestmark = pytest.mark.django_db

KINDS = ("scans", "reports", "cleanups", "tasks")
EXPECTED_PATHS = {
    "/api/tenants/": {"get"},
    "/api/tenants/{id}/": {"get"},
    "/api/executions/": {"get"},
    "/api/executions/{id}/": {"get"},
    "/api/executions/{id}/cancel/": {"post"},
    "/api/executions/{id}/retry/": {"post"},
    "/api/report-artifacts/": {"get"},
    "/api/report-artifacts/{id}/": {"get"},
    "/api/report-artifacts/{id}/download/": {"get"},
    "/api/scheduler/status/": {"get"},
    **{f"/api/{k}/": {"get", "post"} for k in KINDS},
    **{f"/api/{k}/{{id}}/": {"get", "put", "patch", "delete"} for k in KINDS},
    **{f"/api/{k}/{{id}}/{a}/": {"post"} for k in KINDS for a in ("run", "pause", "resume")},
    **{f"/api/{k}/{{id}}/{a}/": {"get"} for k in KINDS for a in ("next-runs", "history")},
}


def test_the_spectacular_command_validates_the_schema_without_warnings(tmp_path):
    out = tmp_path / "schema.yaml"
    with patched_settings(SCHEMA_SETTINGS):
        call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    assert "/api/scans/{id}/run/" in out.read_text()


@pytest.fixture
def schema() -> dict:
    response = APIClient().get("/api/schema/")
    assert response.status_code == 200
    document = yaml.safe_load(response.content)
    validate_schema(document)
    return document


def test_the_served_schema_is_valid_openapi_3_and_lists_every_route(schema):
    assert schema["openapi"].startswith("3.")
    paths = {
        path: {m for m in item if m in ("get", "post", "put", "patch", "delete")}
        for path, item in schema["paths"].items()
    }
    assert paths == EXPECTED_PATHS


def test_every_operation_documents_its_errors(schema):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            codes = set(operation["responses"])
            assert {"401", "403"} <= codes, (method, path)
            if "{id}" in path:
                assert "404" in codes, (method, path)
            if method in ("post", "put", "patch"):
                assert "400" in codes, (method, path)


def test_run_is_documented_as_202_with_the_execution(schema):
    responses = schema["paths"]["/api/scans/{id}/run/"]["post"]["responses"]
    assert responses["202"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Execution"
    }


def test_request_bodies_forbid_unknown_keys_and_leave_out_state_fields(schema):
    request = schema["components"]["schemas"]["PeriodicScanRequest"]
    assert request["additionalProperties"] is False
    assert "next_run_at" not in request["properties"]
    assert "run_count" not in request["properties"]
    response = schema["components"]["schemas"]["PeriodicScan"]
    assert response["properties"]["next_run_at"]["readOnly"] is True


def test_the_docs_page_lists_the_endpoints_and_loads_nothing_from_outside():
    response = APIClient().get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert response["Content-Type"].startswith("text/html")
    for path in ("/api/scans/{id}/run/", "/api/executions/", "/api/scheduler/status/"):
        assert path in html
    assert "PeriodicScanRequest" in html
    # No external scripts, styles, fonts or images: every URL on the page is relative.
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    assert "<script" not in html
