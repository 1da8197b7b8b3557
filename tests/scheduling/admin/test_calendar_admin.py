"""Calendar schedules in the admin; the notice of a cron schedule that keeps the old day rule."""

from __future__ import annotations

import json
import zoneinfo
from datetime import UTC, datetime, time

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from scheduling import triggers
from scheduling.models import AuditEntry, PeriodicScan, Schedule
from tests.factories import make_scan
from tests.scheduling.admin.test_admin import add_form

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday, 10:00 in Berlin
ADD = "admin:scheduling_periodicscan_add"
CHANGE = "admin:scheduling_periodicscan_change"
PREVIEW = "admin:scheduling_periodicscan_preview"
CALENDAR = {
    "trigger_type": "calendar",
    "calendar_every": "2",
    "calendar_unit": "week",
    "calendar_time": "09:30",
    "calendar_weekdays": ["mon", "thu"],
}
# Every other week on Monday and Thursday at 09:30 in Berlin, counted from Monday 2 March:
# the Monday of this week has passed; DST begins on 29 March.
FORTNIGHTLY_RUNS = [
    "Thu 2026-03-05 09:30:00 CET",
    "Mon 2026-03-16 09:30:00 CET",
    "Thu 2026-03-19 09:30:00 CET",
    "Mon 2026-03-30 09:30:00 CEST",
    "Thu 2026-04-02 09:30:00 CEST",
]


def form_data(tenant, **overrides):
    """The fields the change form of a scan posts (a cron scan unless overridden)."""
    return add_form(
        tenant, **{"name": "fortnightly", "cron_expression": "", "timezone": "", **overrides}
    )


def open_trigger_fieldsets(response):
    return [
        fieldset.name
        for fieldset in response.context["adminform"]
        if "scheduling-trigger" in fieldset.classes and "collapse" not in fieldset.classes
    ]


def local_runs(schedule):
    zone = zoneinfo.ZoneInfo(schedule.effective_timezone)
    return [
        f"{run.astimezone(zone):%a %Y-%m-%d %H:%M:%S %Z}" for run in triggers.next_runs(schedule, 5)
    ]


# -- calendar schedules -------------------------------------------------------------------------


@time_machine.travel(NOW, tick=False)
def test_a_calendar_schedule_is_created_through_the_add_form(superuser_client, tenant_a):
    response = superuser_client.post(reverse(ADD), form_data(tenant_a, **CALENDAR))
    assert response.status_code == 302, response.context["adminform"].form.errors
    scan = PeriodicScan.objects.get(name="fortnightly")
    assert (scan.trigger_type, scan.calendar_every, scan.calendar_unit) == ("calendar", 2, "week")
    assert scan.calendar_time == time(9, 30)
    assert scan.calendar_weekdays == "mon,thu"  # the checkboxes, stored as the comma string
    assert local_runs(scan) == FORTNIGHTLY_RUNS
    assert triggers.describe(scan) == (
        "Every 2 weeks on Monday and Thursday at 09:30, from 2026-03-02 (Europe/Berlin)"
    )


@time_machine.travel(NOW, tick=False)
def test_the_change_page_of_a_calendar_schedule_shows_its_fields_ticked(superuser_client, tenant_a):
    scan = make_scan(
        tenant=tenant_a,
        scan_type="test_echo",
        target="x",
        trigger_type="calendar",
        interval_seconds=None,
        calendar_every=2,
        calendar_unit="week",
        calendar_time=time(9, 30),
        calendar_weekdays="thu,Monday",  # stored by other means: still read
    )
    response = superuser_client.get(reverse(CHANGE, args=[scan.pk]))
    assert open_trigger_fieldsets(response) == ["Calendar", "Daylight saving time"]
    form = response.context["adminform"].form
    assert form["calendar_weekdays"].value() == ["mon", "thu"]
    page = response.content.decode()
    for day, checked in (("mon", True), ("tue", False), ("thu", True), ("sun", False)):
        start = page.index(f'value="{day}"')
        tag = page[page.rindex("<input", 0, start) : page.index(">", start)]
        assert ("checked" in tag) is checked, tag
    assert 'value="09:30:00"' in page
    # the sentence and the next runs (without JavaScript: the saved trigger)
    assert "Every 2 weeks on Monday and Thursday at 09:30, from 2026-03-02" in page
    assert ">Thu 2026-03-05 09:30:00 CET</time>" in page


@time_machine.travel(NOW, tick=False)
def test_saving_a_calendar_schedule_unchanged_changes_nothing(superuser_client, tenant_a):
    superuser_client.post(reverse(ADD), form_data(tenant_a, **CALENDAR))
    scan = PeriodicScan.objects.get(name="fortnightly")
    data = form_data(tenant_a, **{**CALENDAR, "calendar_weekdays": ["thu", "mon"]})
    assert superuser_client.post(reverse(CHANGE, args=[scan.pk]), data).status_code == 302
    assert [entry.action for entry in AuditEntry.objects.filter(schedule=scan)] == ["create"]


@pytest.mark.parametrize(
    ("overrides", "errors"),
    [
        ({"calendar_time": ""}, {"calendar_time": "needs a time of day"}),
        ({"calendar_time": "25:00"}, {"calendar_time": "Enter a valid time"}),
        ({"calendar_every": "0"}, {"calendar_every": "greater than or equal to 1"}),
        ({"calendar_every": ""}, {"calendar_every": "needs a number of days"}),
        ({"calendar_unit": "year"}, {"calendar_unit": "Select a valid choice"}),
        (
            {"calendar_unit": "day"},
            {"calendar_weekdays": "only to a schedule that repeats in weeks"},
        ),
        ({"calendar_weekdays": ["funday"]}, {"calendar_weekdays": "Select a valid choice"}),
        (
            {"calendar_every": "0", "calendar_time": "", "calendar_unit": "month"},
            {
                "calendar_every": "greater than or equal to 1",
                "calendar_time": "needs a time of day",
                "calendar_weekdays": "only to a schedule that repeats in weeks",
            },
        ),
    ],
)
def test_bad_calendar_input_is_a_form_error_on_its_field(
    superuser_client, tenant_a, overrides, errors
):
    response = superuser_client.post(reverse(ADD), form_data(tenant_a, **{**CALENDAR, **overrides}))
    assert response.status_code == 200
    form_errors = response.context["adminform"].form.errors
    for field, text in errors.items():
        assert text in " ".join(form_errors.get(field, [])), form_errors
    assert not PeriodicScan.objects.filter(name="fortnightly").exists()


def test_a_calendar_form_with_errors_still_shows_the_calendar_fieldset(superuser_client, tenant_a):
    response = superuser_client.post(
        reverse(ADD), form_data(tenant_a, **{**CALENDAR, "calendar_time": ""})
    )
    assert open_trigger_fieldsets(response) == ["Calendar", "Daylight saving time"]


def test_a_viewer_sees_only_the_calendar_and_dst_fieldsets(staff_client, tenant_a):
    scan = make_scan(
        tenant=tenant_a,
        trigger_type="calendar",
        interval_seconds=None,
        calendar_every=1,
        calendar_unit="day",
        calendar_time=time(6),
    )
    client = staff_client({tenant_a: "viewer"})
    response = client.get(reverse(CHANGE, args=[scan.pk]))
    names = [fieldset.name for fieldset in response.context["adminform"]]
    assert "Calendar" in names and "Daylight saving time" in names
    assert "Cron" not in names and "Interval" not in names
    assert "Every day at 06:00 (Europe/Berlin)" in response.content.decode()


@time_machine.travel(NOW, tick=False)
def test_the_preview_shows_the_runs_and_sentence_of_an_unsaved_calendar_trigger(
    superuser_client, tenant_a
):
    response = superuser_client.post(
        reverse(PREVIEW), {**form_data(tenant_a, **CALENDAR), "tenant": tenant_a.pk}
    )
    body = json.loads(response.content)
    assert response.status_code == 200 and body["ok"], body
    assert [run["local"] for run in body["runs"]] == FORTNIGHTLY_RUNS
    assert body["description"] == (
        "Every 2 weeks on Monday and Thursday at 09:30, from 2026-03-02 (Europe/Berlin)"
    )


@time_machine.travel(NOW, tick=False)
def test_the_preview_of_a_calendar_follows_the_dst_gap_policy(superuser_client, tenant_a):
    # 02:30 does not exist in Berlin on 29 March: run at 03:00, or skip that day.
    data = {
        **form_data(tenant_a, **CALENDAR),
        "calendar_every": "1",
        "calendar_unit": "day",
        "calendar_time": "02:30",
        "calendar_weekdays": [],
        "start_at_0": "2026-03-28",
        "start_at_1": "00:00",
    }
    body = json.loads(superuser_client.post(reverse(PREVIEW), data).content)
    assert [run["local"] for run in body["runs"][:2]] == [
        "Sat 2026-03-28 02:30:00 CET",
        "Sun 2026-03-29 03:00:00 CEST",
    ]
    data["dst_gap_policy"] = "skip"
    body = json.loads(superuser_client.post(reverse(PREVIEW), data).content)
    assert [run["local"] for run in body["runs"][:2]] == [
        "Sat 2026-03-28 02:30:00 CET",
        "Mon 2026-03-30 02:30:00 CEST",
    ]


def test_the_preview_names_the_calendar_field_in_error(superuser_client, tenant_a):
    data = {**form_data(tenant_a, **CALENDAR), "calendar_time": "", "calendar_unit": "day"}
    response = superuser_client.post(reverse(PREVIEW), data)
    body = json.loads(response.content)
    assert response.status_code == 400 and not body["ok"]
    assert sorted(body["errors"]) == [
        "At (wall-clock time): A calendar schedule needs a time of day (HH:MM, in the "
        "schedule's time zone).",
        "On weekdays: Weekdays apply only to a schedule that repeats in weeks.",
    ]


# -- the old day rule -----------------------------------------------------------------------------

# Both day fields restricted: the first Monday of the month under the old rule; under cron's,
# the 1st to the 7th and every Monday.
BOTH_DAY_FIELDS = "0 9 1-7 * 1"
OLD_RULE_RUNS = [
    "Mon 2026-04-06 09:00:00 CEST",
    "Mon 2026-05-04 09:00:00 CEST",
    "Mon 2026-06-01 09:00:00 CEST",
    "Mon 2026-07-06 09:00:00 CEST",
    "Mon 2026-08-03 09:00:00 CEST",
]
CRON_RULE_RUNS = [
    f"{day} 2026-03-0{n} 09:00:00 CET"
    for day, n in (("Tue", 3), ("Wed", 4), ("Thu", 5), ("Fri", 6), ("Sat", 7))
]


@pytest.fixture
def legacy_scan(tenant_a):
    scan = make_scan(
        tenant=tenant_a,
        name="first monday",
        scan_type="test_echo",
        target="x",
        trigger_type="cron",
        cron_expression=BOTH_DAY_FIELDS,
        interval_seconds=None,
    )
    Schedule.objects.filter(pk=scan.pk).update(legacy_day_rule=True)  # as migration 0006 does
    scan.refresh_from_db()
    return scan


def notice(response):
    page = response.content.decode()
    start = page.find('<div class="scheduling-day-rule-notice"')
    # It is the form's top: the fieldsets follow it.
    return None if start < 0 else page[start : page.index("<fieldset", start)]


@time_machine.travel(NOW, tick=False)
def test_a_schedule_on_the_old_day_rule_shows_a_notice_with_the_runs_of_both_rules(
    superuser_client, legacy_scan
):
    response = superuser_client.get(reverse(CHANGE, args=[legacy_scan.pk]))
    text = notice(response)
    assert text is not None
    assert "still uses the old day rule" in text
    assert "a day had to match both fields" in text
    assert "Saving the schedule adopts cron's rule." in text
    old_part, cron_part = text.split('class="scheduling-day-rule-cron"')
    for run in OLD_RULE_RUNS:
        assert f">{run}</time>" in old_part and f">{run}</time>" not in cron_part
    for run in CRON_RULE_RUNS:
        assert f">{run}</time>" in cron_part and f">{run}</time>" not in old_part
    assert "(the old rule: both day fields must match" in old_part


@time_machine.travel(NOW, tick=False)
def test_saving_a_schedule_on_the_old_day_rule_adopts_crons_rule_and_drops_the_notice(
    superuser_client, tenant_a, legacy_scan
):
    url = reverse(CHANGE, args=[legacy_scan.pk])
    data = form_data(tenant_a, name=legacy_scan.name, cron_expression=BOTH_DAY_FIELDS)
    assert superuser_client.post(url, data).status_code == 302
    legacy_scan.refresh_from_db()
    assert legacy_scan.legacy_day_rule is False
    assert local_runs(legacy_scan) == CRON_RULE_RUNS
    assert notice(superuser_client.get(url)) is None
    entry = AuditEntry.objects.get(schedule=legacy_scan, action="change")
    assert entry.changes == {"legacy_day_rule": [True, False]}


def test_a_form_with_errors_keeps_the_old_day_rule_and_its_notice(
    superuser_client, tenant_a, legacy_scan
):
    url = reverse(CHANGE, args=[legacy_scan.pk])
    data = form_data(tenant_a, name=legacy_scan.name, cron_expression="61 * * * *")
    response = superuser_client.post(url, data)
    assert response.status_code == 200
    assert notice(response) is not None  # with the preview's error, not a crash
    legacy_scan.refresh_from_db()
    assert legacy_scan.legacy_day_rule is True


def test_schedules_on_cron_rule_have_no_notice(superuser_client, tenant_a):
    scan = make_scan(tenant=tenant_a, trigger_type="cron", cron_expression=BOTH_DAY_FIELDS)
    assert notice(superuser_client.get(reverse(CHANGE, args=[scan.pk]))) is None


def test_the_notice_costs_no_query(superuser_client, legacy_scan):
    url = reverse(CHANGE, args=[legacy_scan.pk])
    with CaptureQueriesContext(connection) as with_notice:
        superuser_client.get(url)
    Schedule.objects.filter(pk=legacy_scan.pk).update(legacy_day_rule=False)
    with CaptureQueriesContext(connection) as without:
        superuser_client.get(url)
    assert len(with_notice.captured_queries) == len(without.captured_queries)
