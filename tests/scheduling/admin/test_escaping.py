"""User-supplied text renders escaped on every admin page; odd ids are not found, never a 500."""

from __future__ import annotations

import html

import pytest
from django.urls import reverse

from scheduling.models import Execution
from tests.factories import make_artifact, make_cleanup, make_execution, make_report, make_scan

pytestmark = pytest.mark.django_db

NAME = "<img src=x onerror=alert(1)>"
ESCAPED_NAME = html.escape(NAME, quote=False)  # Django also escapes quotes; there are none
CHUNK = '<script>alert("owned")</script><b onmouseover=alert(2)>bold</b>\n'
ERROR = (CHUNK * (50_000 // len(CHUNK) + 1))[:50_000]


@pytest.fixture
def hostile(tenant_a):
    scan = make_scan(tenant=tenant_a, name=NAME, target=NAME, description=NAME)
    execution = make_execution(schedule=scan, status="failed", error=ERROR, traceback=ERROR)
    report = make_report(tenant=tenant_a, name=NAME)
    report_run = make_execution(schedule=report, result={"note": NAME})
    artifact = make_artifact(execution=report_run, filename=f"{NAME}.csv")
    cleanup = make_cleanup(tenant=tenant_a, name=NAME)
    return {
        "scan": scan,
        "execution": execution,
        "report": report,
        "artifact": artifact,
        "cleanup": cleanup,
    }


def assert_escaped(response):
    assert response.status_code == 200
    page = response.content.decode()
    assert NAME not in page
    assert "<script>alert(" not in page
    assert "<b onmouseover" not in page
    return page


def pages(hostile):
    scan, execution = hostile["scan"], hostile["execution"]
    yield reverse("admin:scheduling_periodicscan_changelist")
    yield reverse("admin:scheduling_report_changelist")
    yield reverse("admin:scheduling_cleanupconfig_changelist")
    yield reverse("admin:scheduling_execution_changelist")
    yield reverse("admin:scheduling_reportartifact_changelist")
    for key, model in (
        ("scan", "periodicscan"),
        ("report", "report"),
        ("cleanup", "cleanupconfig"),
    ):
        for page in ("change", "history", "delete"):
            yield reverse(f"admin:scheduling_{model}_{page}", args=[hostile[key].pk])
    yield reverse("admin:scheduling_execution_change", args=[execution.pk])
    yield reverse("admin:scheduling_execution_history", args=[execution.pk])
    yield reverse("admin:scheduling_reportartifact_change", args=[hostile["artifact"].pk])
    yield reverse("admin:scheduling_periodicscan_changelist") + f"?q={scan.name}"


def test_hostile_names_and_errors_render_escaped_on_every_page(superuser_client, hostile):
    for url in pages(hostile):
        page = assert_escaped(superuser_client.get(url))
        assert ESCAPED_NAME in page or html.escape(CHUNK[:20]) in page, url


def test_confirmation_pages_and_messages_escape_names(superuser_client, hostile):
    url = reverse("admin:scheduling_periodicscan_changelist")
    selected = {"_selected_action": [hostile["scan"].pk]}
    page = assert_escaped(superuser_client.post(url, {"action": "pause", **selected}))
    assert ESCAPED_NAME in page
    page = assert_escaped(superuser_client.post(url, {"action": "delete_selected", **selected}))
    assert ESCAPED_NAME in page
    response = superuser_client.post(url, {"action": "duplicate", **selected}, follow=True)
    page = assert_escaped(response)
    # the hostile target makes the copy invalid: the refusal quotes both, escaped
    assert f"{ESCAPED_NAME} was not duplicated: {ESCAPED_NAME} is not a valid host" in page


def test_a_50kb_error_is_stored_whole_shown_whole_in_detail_and_cut_in_lists(
    superuser_client, hostile
):
    execution = hostile["execution"]
    assert len(Execution.objects.get(pk=execution.pk).error) == 50_000
    escaped = html.escape(ERROR)
    detail = assert_escaped(
        superuser_client.get(reverse("admin:scheduling_execution_change", args=[execution.pk]))
    )
    assert f'<pre class="scheduling-pre">{escaped}</pre>' in detail
    listing = assert_escaped(superuser_client.get(reverse("admin:scheduling_execution_changelist")))
    assert escaped not in listing
    first_line = html.escape(CHUNK.strip())
    assert first_line[:40] in listing
    assert len(listing) < 40_000  # the list page carries a line, not the 50 kB
    inline = assert_escaped(
        superuser_client.get(
            reverse("admin:scheduling_periodicscan_change", args=[hostile["scan"].pk])
        )
    )
    assert escaped not in inline and first_line[:40] in inline


def test_execution_links_back_to_its_schedule(superuser_client, hostile):
    execution, scan = hostile["execution"], hostile["scan"]
    page = superuser_client.get(
        reverse("admin:scheduling_execution_change", args=[execution.pk])
    ).content.decode()
    url = reverse("admin:scheduling_periodicscan_change", args=[scan.pk])
    assert f'<a href="{url}">{ESCAPED_NAME}</a>' in page


def test_artifact_download_names_the_file_safely(superuser_client, hostile):
    artifact = hostile["artifact"]
    response = superuser_client.get(
        reverse("admin:scheduling_reportartifact_download", args=[artifact.pk])
    )
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith("attachment; filename")
    assert "\n" not in response["Content-Disposition"]
    assert response["X-Content-Type-Options"] == "nosniff"


MODELS = [
    "scheduling_periodicscan",
    "scheduling_report",
    "scheduling_cleanupconfig",
    "scheduling_schedule",
    "scheduling_execution",
    "scheduling_reportartifact",
    "tenants_tenant",
    "tenants_membership",
]


@pytest.mark.parametrize("object_id", ["99999999999999999999999", "abc", "-1", "1.5"])
@pytest.mark.parametrize("page", ["change", "history", "delete"])
@pytest.mark.parametrize("model", MODELS)
def test_ids_that_cannot_exist_are_not_found(superuser_client, model, page, object_id):
    url = f"/admin/{model.replace('_', '/', 1)}/{object_id}/{page}/"
    assert superuser_client.get(url).status_code == 404


@pytest.mark.parametrize("object_id", ["99999999999999999999999", "abc"])
def test_odd_ids_elsewhere_are_not_found_or_ignored(superuser_client, object_id):
    download = f"/admin/scheduling/reportartifact/{object_id}/download/"
    assert superuser_client.get(download).status_code == 404
    preview = reverse("admin:scheduling_periodicscan_preview")
    response = superuser_client.post(
        preview, {"object_id": object_id, "trigger_type": "interval", "interval_seconds": 60}
    )
    assert response.status_code == 404
    response = superuser_client.get(
        reverse("admin:scheduling_periodicscan_changelist"), {"tenant": object_id}
    )
    assert response.status_code == 200
