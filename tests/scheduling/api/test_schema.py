"""The OpenAPI schema validates and documents every route; the docs page needs no CDN."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from django.core.checks import run_checks
from django.core.management import call_command
from django.test import override_settings
from drf_spectacular.settings import patched_settings
from drf_spectacular.validation import validate_schema
from rest_framework.test import APIClient

from scheduling.api.schema import ENUMS, SCHEMA_SETTINGS
from tests.factories import make_user

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[3]
KINDS = ("scans", "reports", "cleanups", "tasks")
EXPECTED_PATHS = {
    "/api/tenants/": {"get", "post"},
    "/api/tenants/{id}/": {"get", "put", "patch"},
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


def test_the_spectacular_command_validates_the_project_schema_without_warnings(tmp_path):
    # The host project's own schema (its settings, none of ours) takes in the app's endpoints.
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    assert "/api/report-artifacts/{id}/download/" in out.read_text()


def test_the_deploy_check_finds_no_schema_warnings():
    messages = run_checks(include_deployment_checks=True)
    assert [m for m in messages if m.id and m.id.startswith("drf_spectacular")] == []


def test_the_deploy_check_of_the_demo_project_shows_no_schema_warnings(tmp_path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "SCHEDULING_DB_PATH": str(tmp_path / "db.sqlite3"),
    }
    result = subprocess.run(  # noqa: S603 - our own interpreter and manage.py
        [sys.executable, str(ROOT / "manage.py"), "check", "--deploy"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "System check identified" in result.stderr + result.stdout, result.stderr
    assert "drf_spectacular" not in result.stderr + result.stdout


def test_every_choice_set_has_one_name():
    values = [frozenset(choices.values) for choices in ENUMS.values()]
    assert len(set(values)) == len(values)


@pytest.fixture
def schema_client() -> APIClient:
    client = APIClient()
    client.force_authenticate(make_user())
    return client


@pytest.fixture
def schema(schema_client) -> dict:
    response = schema_client.get("/api/schema/")
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


def test_the_schema_names_each_choice_set_once(schema):
    components = schema["components"]["schemas"]
    assert components["ScheduleKindEnum"]["enum"] == ["scan", "report", "cleanup", "task"]
    for component, field in (("PeriodicScan", "kind"), ("Execution", "schedule_kind")):
        assert components[component]["properties"][field]["allOf"] == [
            {"$ref": "#/components/schemas/ScheduleKindEnum"}
        ]
    last_status = components["PeriodicScan"]["properties"]["last_status"]["oneOf"]
    assert {"$ref": "#/components/schemas/ScheduleStatusEnum"} in last_status
    assert not [
        name for name in components if re.fullmatch(r"(Kind|Status|\w+[0-9a-f]{3})Enum", name)
    ]


def test_the_download_is_a_binary_response_in_each_format(schema):
    responses = schema["paths"]["/api/report-artifacts/{id}/download/"]["get"]["responses"]
    content = responses["200"]["content"]
    assert list(content) == [
        "application/octet-stream",
        "application/json",
        "text/csv",
        "text/html",
    ]
    for media_type in content.values():
        assert media_type["schema"] == {"type": "string", "format": "binary"}


@pytest.mark.parametrize("url", ["/api/schema/", "/api/docs/"])
def test_the_schema_and_docs_follow_the_projects_permissions(url):
    assert APIClient().get(url).status_code in (401, 403)  # the demo: IsAuthenticated
    public = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    }
    with override_settings(REST_FRAMEWORK=public):
        assert APIClient().get(url).status_code == 200


def test_the_api_root_links_the_resources_the_status_the_schema_and_the_docs(schema_client):
    response = schema_client.get("/api/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    links = response.json()
    assert links["scans"] == "http://testserver/api/scans/"
    assert links["scheduler/status"] == "http://testserver/api/scheduler/status/"
    assert links["schema"] == "http://testserver/api/schema/"
    assert links["docs"] == "http://testserver/api/docs/"
    for url in links.values():
        assert schema_client.get(url).status_code == 200, url


def test_the_docs_page_renders_markdown_and_escapes_html(schema_client):
    html = schema_client.get("/api/docs/").content.decode()
    # Help texts, docstrings and choice lists are Markdown: none of it shows as syntax.
    assert "Everyone sees <code>error</code>." in html
    assert "<li><code>succeeded</code> - Succeeded</li>" in html
    assert not re.search(r"`\w+`", html)


def test_markdown_in_descriptions_cannot_inject_html():
    from scheduling.api.docs import markdown

    html = markdown("<script>alert(1)</script> [x](javascript:alert(1)) `ok`")
    assert "<script" not in html
    assert 'href="javascript' not in html
    assert "<code>ok</code>" in html


def test_the_docs_page_lists_the_endpoints_and_loads_nothing_from_outside(schema_client):
    response = schema_client.get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert response["Content-Type"].startswith("text/html")
    for path in ("/api/scans/{id}/run/", "/api/executions/", "/api/scheduler/status/"):
        assert path in html
    assert "PeriodicScanRequest" in html
    # No external scripts, styles, fonts or images: every URL on the page is relative.
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    assert "<script" not in html
