"""The schedule form: trigger fieldsets by type and the next-runs preview of unsaved values."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import time_machine
from django.urls import reverse

from tests.factories import make_scan

pytestmark = pytest.mark.django_db

PREVIEW = "admin:scheduling_periodicscan_preview"
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
FORM = {
    "trigger_type": "cron",
    "cron_expression": "30 2 * * *",
    "timezone": "",
    "jitter_seconds": "0",
    "dst_gap_policy": "run_at_next_valid_time",
    "dst_fold_policy": "once",
}


def preview(client, **data):
    response = client.post(reverse(PREVIEW), {**FORM, **data})
    return response.status_code, json.loads(response.content)


@time_machine.travel(NOW, tick=False)
def test_preview_lists_the_next_five_runs_in_the_schedules_time_zone(superuser_client, tenant_a):
    status, body = preview(superuser_client, tenant=tenant_a.pk)  # tenant A is Europe/Berlin
    assert status == 200 and body["ok"]
    assert body["timezone"] == "Europe/Berlin"
    assert [run["local"] for run in body["runs"]] == [
        f"{day} 2026-03-0{n} 02:30:00 CET"
        for day, n in (("Tue", 3), ("Wed", 4), ("Thu", 5), ("Fri", 6), ("Sat", 7))
    ]
    assert body["runs"][0]["utc"] == "2026-03-03 01:30:00 UTC"
    assert body["description"].endswith("(Europe/Berlin)")


@time_machine.travel(NOW, tick=False)
def test_preview_uses_the_time_zone_typed_in_the_form(superuser_client, tenant_a):
    _status, body = preview(superuser_client, tenant=tenant_a.pk, timezone="Asia/Tokyo")
    assert body["timezone"] == "Asia/Tokyo"
    assert body["runs"][0]["local"] == "Tue 2026-03-03 02:30:00 JST"
    assert body["runs"][0]["utc"] == "2026-03-02 17:30:00 UTC"


def test_invalid_cron_is_a_readable_error(superuser_client, tenant_a):
    status, body = preview(superuser_client, tenant=tenant_a.pk, cron_expression="61 * * * *")
    assert status == 400 and not body["ok"]
    [message] = body["errors"]
    assert message.startswith("Cron expression: Invalid cron expression")
    # The zone the form's times read in, all the same: the page's notes follow the tenant.
    assert body["timezone"] == "Europe/Berlin"


def test_an_incomplete_trigger_still_names_the_zone_the_form_reads_times_in(
    superuser_client, tenant_a
):
    status, body = preview(superuser_client, tenant=tenant_a.pk, cron_expression="")
    assert status == 400 and not body["ok"]
    assert body["timezone"] == "Europe/Berlin"
    _status, body = preview(superuser_client, cron_expression="")  # no tenant yet: UTC
    assert body["timezone"] == "UTC"


def test_a_cron_that_never_fires_is_an_error(superuser_client):
    _status, body = preview(superuser_client, cron_expression="0 0 30 2 *")
    assert body["errors"] == [
        "Cron expression: This cron expression can never fire (no such date)."
    ]


def test_bad_numbers_and_dates_are_field_errors_not_crashes(superuser_client):
    _status, body = preview(
        superuser_client, trigger_type="interval", interval_seconds="99999999999999999999"
    )
    assert body["errors"] and body["errors"][0].startswith("Interval (seconds):")
    _status, body = preview(superuser_client, trigger_type="once", run_at_0="not a date")
    assert not body["ok"] and body["errors"]


@time_machine.travel(NOW, tick=False)
def test_preview_of_a_saved_schedule_uses_its_creation_time_for_intervals(
    superuser_client, tenant_a
):
    scan = make_scan(tenant=tenant_a, interval_seconds=3600)  # created at NOW
    _status, body = preview(
        superuser_client, object_id=scan.pk, trigger_type="interval", interval_seconds="7200"
    )
    assert [run["utc"] for run in body["runs"][:2]] == [
        "2026-03-02 11:00:00 UTC",
        "2026-03-02 13:00:00 UTC",
    ]


def test_viewer_may_not_use_the_preview(staff_client, tenant_a):
    client = staff_client({tenant_a: "viewer"})
    assert client.post(reverse(PREVIEW), FORM).status_code == 403


def test_operator_may_not_use_the_preview_either(staff_client, tenant_a):
    # Operators run schedules but do not edit them: the preview is part of the edit form.
    client = staff_client({tenant_a: "operator"})
    assert client.post(reverse(PREVIEW), FORM).status_code == 403


def fieldset_names(response):
    return [fieldset.name for fieldset in response.context["adminform"]]


def open_trigger_fieldsets(response):
    return [
        fieldset.name
        for fieldset in response.context["adminform"]
        if "scheduling-trigger" in fieldset.classes and "collapse" not in fieldset.classes
    ]


def test_change_page_opens_only_the_saved_trigger_types_fields(superuser_client, tenant_a):
    scan = make_scan(tenant=tenant_a, trigger_type="cron", cron_expression="0 3 * * *")
    response = superuser_client.get(reverse("admin:scheduling_periodicscan_change", args=[scan.pk]))
    # the DST policies have a fieldset of their own, shared by cron and calendar schedules
    assert open_trigger_fieldsets(response) == ["Cron", "Daylight saving time"]
    # the other types stay on the page, collapsed, so that the form works without JavaScript
    assert {"Interval", "Once", "Calendar"} <= set(fieldset_names(response))
    page = response.content.decode()
    assert "scheduling/admin/schedule_form.js" in page
    assert 'data-preview-url="/admin/scheduling/periodicscan/preview/"' in page


def test_add_page_follows_the_posted_trigger_type(superuser_client, tenant_a):
    url = reverse("admin:scheduling_periodicscan_add")
    assert open_trigger_fieldsets(superuser_client.get(url)) == ["Interval"]
    response = superuser_client.post(url, {"tenant": tenant_a.pk, "trigger_type": "once"})
    assert open_trigger_fieldsets(response) == ["Once"]


def test_read_only_page_shows_only_the_saved_trigger_type(staff_client, tenant_a):
    scan = make_scan(tenant=tenant_a)
    client = staff_client({tenant_a: "viewer"})
    response = client.get(reverse("admin:scheduling_periodicscan_change", args=[scan.pk]))
    names = fieldset_names(response)
    assert "Interval" in names and "Cron" not in names and "Once" not in names


@time_machine.travel(NOW, tick=False)
def test_change_page_shows_the_saved_next_runs_without_javascript(superuser_client, tenant_a):
    scan = make_scan(tenant=tenant_a, trigger_type="cron", cron_expression="0 3 * * *")
    response = superuser_client.get(reverse("admin:scheduling_periodicscan_change", args=[scan.pk]))
    page = response.content.decode()
    assert 'title="2026-03-03 02:00:00 UTC">Tue 2026-03-03 03:00:00 CET</time>' in page
