"""Calendar schedules through the API, and the old day rule of cron schedules (read-only)."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pytest
import time_machine
import yaml

from scheduling.models import AuditEntry, PeriodicScan, Schedule
from tests.factories import make_scan
from tests.scheduling.api.conftest import SCHEDULE_KINDS, valid_payload

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday
CALENDAR = {
    "trigger_type": "calendar",
    "interval_seconds": None,
    "calendar_every": 2,
    "calendar_unit": "week",
    "calendar_time": "09:30",
    "calendar_weekdays": "thu,mon",
}
# Every other week on Monday and Thursday at 09:30 UTC, counted from Monday 2 March.
FORTNIGHTLY_RUNS = [
    "2026-03-02T09:30:00Z",
    "2026-03-05T09:30:00Z",
    "2026-03-16T09:30:00Z",
    "2026-03-19T09:30:00Z",
    "2026-03-30T09:30:00Z",
]
FORTNIGHTLY = "Every 2 weeks on Monday and Thursday at 09:30, from 2026-03-02 (UTC)"


def create(world, kind="scans", **overrides):
    body = valid_payload(kind, world.tenant, **{**CALENDAR, **overrides})
    return world.client("admin").post(f"/api/{kind}/", body, format="json")


@time_machine.travel(NOW, tick=False)
@pytest.mark.parametrize("kind", SCHEDULE_KINDS)
def test_every_kind_takes_a_calendar_trigger_and_returns_it(world_a, kind):
    response = create(world_a, kind)
    assert response.status_code == 201, response.data
    data = response.data
    assert (data["trigger_type"], data["calendar_every"], data["calendar_unit"]) == (
        "calendar",
        2,
        "week",
    )
    assert data["calendar_time"] == "09:30:00"
    assert data["calendar_weekdays"] == "mon,thu"  # in the stored order
    assert data["legacy_day_rule"] is False
    assert data["trigger_description"] == FORTNIGHTLY
    schedule = Schedule.objects.get(pk=data["id"])
    assert schedule.calendar_time == time(9, 30)
    assert schedule.calendar_weekdays == "mon,thu"


@time_machine.travel(NOW, tick=False)
def test_weekdays_may_be_a_list_of_names(world_a):
    response = create(world_a, calendar_weekdays=["Thursday", "mon"])
    assert response.status_code == 201, response.data
    assert response.data["calendar_weekdays"] == "mon,thu"


@time_machine.travel(NOW, tick=False)
def test_next_runs_and_the_sentence_of_a_calendar_schedule(world_a):
    pk = create(world_a).data["id"]
    response = world_a.client("viewer").get(f"/api/scans/{pk}/next-runs/")
    assert response.status_code == 200, response.data
    assert response.data["runs"] == FORTNIGHTLY_RUNS
    assert response.data["description"] == FORTNIGHTLY
    assert response.data["timezone"] == "UTC"


@time_machine.travel(NOW, tick=False)
def test_a_calendar_schedule_follows_its_time_zone_across_dst(world_a):
    pk = create(
        world_a,
        calendar_unit="day",
        calendar_every=1,
        calendar_weekdays="",
        calendar_time="02:30",
        timezone="Europe/Berlin",
        start_at="2026-03-28T00:00:00+01:00",
    ).data["id"]
    response = world_a.client("viewer").get(f"/api/scans/{pk}/next-runs/?count=3")
    # 02:30 does not exist in Berlin on 29 March: it runs at 03:00 CEST (01:00 UTC).
    assert response.data["runs"] == [
        "2026-03-28T01:30:00Z",
        "2026-03-29T01:00:00Z",
        "2026-03-30T00:30:00Z",
    ]


@time_machine.travel(NOW, tick=False)
def test_patch_changes_the_calendar_and_its_runs(world_a):
    client = world_a.client("admin")
    pk = create(world_a).data["id"]
    response = client.patch(
        f"/api/scans/{pk}/",
        {"calendar_unit": "month", "calendar_time": "07:15:30", "calendar_weekdays": []},
        format="json",
    )
    assert response.status_code == 200, response.data
    assert response.data["calendar_time"] == "07:15:30"
    assert response.data["calendar_weekdays"] == ""
    assert response.data["trigger_description"] == (
        "Every 2 months on day 2 at 07:15, from 2026-03-02 (UTC)"
    )
    runs = client.get(f"/api/scans/{pk}/next-runs/?count=2").data["runs"]
    assert runs == ["2026-05-02T07:15:30Z", "2026-07-02T07:15:30Z"]


@time_machine.travel(NOW, tick=False)
def test_a_cron_schedule_can_become_a_calendar_one(world_a):
    client = world_a.client("admin")
    # Created before NOW: its start gives the anchor (else its creation date would).
    body = {**CALENDAR, "cron_expression": "", "start_at": "2026-03-02T00:00:00Z"}
    del body["interval_seconds"]
    response = client.patch(f"/api/scans/{world_a.scan.pk}/", body, format="json")
    assert response.status_code == 200, response.data
    assert response.data["trigger_description"] == FORTNIGHTLY


CASES = [
    # (overrides, field, text in its message)
    ({"calendar_time": None}, "calendar_time", "needs a time of day"),
    ({"calendar_time": "25:00"}, "calendar_time", "hh:mm"),
    ({"calendar_time": "09:30+02:00"}, "calendar_time", "hh:mm"),
    ({"calendar_time": 930}, "calendar_time", "hh:mm"),
    ({"calendar_every": 0}, "calendar_every", "greater than or equal to 1"),
    ({"calendar_every": None}, "calendar_every", "needs a number of days"),
    ({"calendar_every": 1001}, "calendar_every", "less than or equal to 1000"),
    ({"calendar_unit": "year"}, "calendar_unit", "not a valid choice"),
    ({"calendar_unit": ""}, "calendar_unit", "days, weeks or months"),
    ({"calendar_unit": "day"}, "calendar_weekdays", "only to a schedule that repeats in weeks"),
    ({"calendar_weekdays": "mon,funday"}, "calendar_weekdays", "unknown weekday 'funday'"),
    ({"calendar_weekdays": ["funday"]}, "calendar_weekdays", "unknown weekday 'funday'"),
    ({"calendar_weekdays": 5}, "calendar_weekdays", "not int"),
    ({"calendar_weekdays": ["mon", 1]}, "calendar_weekdays", "not int"),
    ({"calendar_weekdays": "mon\x00"}, "calendar_weekdays", "Null characters"),
    ({"calendar_weekdays": "x" * 65}, "calendar_weekdays", "at most 64"),
]


@pytest.mark.parametrize(("overrides", "field", "text"), CASES)
def test_bad_calendar_input_is_a_400_naming_the_field(world_a, overrides, field, text):
    before = Schedule.objects.count()
    response = create(world_a, **overrides)
    assert response.status_code == 400, response.data
    assert field in response.data, response.data
    assert text in " ".join(map(str, response.data[field])), response.data
    assert Schedule.objects.count() == before


def test_a_400_names_every_wrong_calendar_field_at_once(world_a):
    # calendar_every and calendar_unit fail as fields; the trigger's own rules still report
    # the missing time and the weekdays.
    response = create(
        world_a,
        calendar_every=0,
        calendar_unit="year",
        calendar_time=None,
        calendar_weekdays="funday",
    )
    assert response.status_code == 400
    assert set(response.data) == {
        "calendar_every",
        "calendar_unit",
        "calendar_time",
        "calendar_weekdays",
    }
    assert "not a valid choice" in str(response.data["calendar_unit"])
    assert "needs a time of day" in str(response.data["calendar_time"])


def test_a_patch_with_bad_fields_reports_the_triggers_errors_over_the_stored_values(world_a):
    response = world_a.client("admin").patch(
        f"/api/scans/{world_a.scan.pk}/",
        {"trigger_type": "calendar", "calendar_every": "often", "calendar_unit": "week"},
        format="json",
    )
    assert response.status_code == 400
    assert "valid integer" in str(response.data["calendar_every"])
    assert "needs a time of day" in str(response.data["calendar_time"])


def test_an_unknown_trigger_type_reports_only_itself(world_a):
    response = create(world_a, trigger_type="hourly", calendar_time=None)
    assert response.status_code == 400
    assert set(response.data) == {"trigger_type"}


# -- the old day rule -----------------------------------------------------------------------------

BOTH_DAY_FIELDS = "0 9 1-7 * 1"  # old rule: the first Monday; cron's: days 1-7 and Mondays


@pytest.fixture
def legacy_scan(world_a):
    scan = make_scan(
        tenant=world_a.tenant,
        name="first monday",
        scan_type="test_echo",
        target="x",
        trigger_type="cron",
        cron_expression=BOTH_DAY_FIELDS,
        interval_seconds=None,
    )
    Schedule.objects.filter(pk=scan.pk).update(legacy_day_rule=True)  # as migration 0006 does
    return scan


@time_machine.travel(NOW, tick=False)
def test_the_api_shows_the_old_day_rule_and_its_runs(world_a, legacy_scan):
    client = world_a.client("viewer")
    data = client.get(f"/api/scans/{legacy_scan.pk}/").data
    assert data["legacy_day_rule"] is True
    assert "(the old rule: both day fields must match" in data["trigger_description"]
    runs = client.get(f"/api/scans/{legacy_scan.pk}/next-runs/?count=3").data
    assert runs["runs"] == ["2026-03-02T09:00:00Z", "2026-04-06T09:00:00Z", "2026-05-04T09:00:00Z"]
    listed = client.get("/api/scans/", {"name": "first monday"}).data["results"]
    assert [row["legacy_day_rule"] for row in listed] == [True]


@time_machine.travel(NOW, tick=False)
def test_a_patch_adopts_crons_day_rule(world_a, legacy_scan):
    client = world_a.client("admin")
    response = client.patch(f"/api/scans/{legacy_scan.pk}/", {}, format="json")
    assert response.status_code == 200, response.data
    assert response.data["legacy_day_rule"] is False
    assert "old rule" not in response.data["trigger_description"]
    assert PeriodicScan.objects.get(pk=legacy_scan.pk).legacy_day_rule is False
    runs = client.get(f"/api/scans/{legacy_scan.pk}/next-runs/?count=3").data["runs"]
    assert runs == ["2026-03-02T09:00:00Z", "2026-03-03T09:00:00Z", "2026-03-04T09:00:00Z"]
    entry = AuditEntry.objects.get(schedule=legacy_scan, action="change", source="api")
    assert entry.changes == {"legacy_day_rule": [True, False]}


def test_legacy_day_rule_is_read_only(world_a, legacy_scan):
    response = world_a.client("admin").patch(
        f"/api/scans/{legacy_scan.pk}/", {"legacy_day_rule": False}, format="json"
    )
    assert response.status_code == 400
    assert "read-only" in str(response.data["legacy_day_rule"])
    assert PeriodicScan.objects.get(pk=legacy_scan.pk).legacy_day_rule is True


# -- the schema ------------------------------------------------------------------------------------


@pytest.fixture
def components(world_a) -> dict:
    response = world_a.client("viewer").get("/api/schema/")  # the schema is for signed-in users
    return yaml.safe_load(response.content)["components"]["schemas"]


def test_the_schema_documents_the_calendar_fields(components):
    request = components["PeriodicScanRequest"]["properties"]
    weekdays = request["calendar_weekdays"]
    assert [option["type"] for option in weekdays["oneOf"]] == ["string", "array"]
    assert weekdays["oneOf"][1]["items"]["enum"] == [
        "mon",
        "tue",
        "wed",
        "thu",
        "fri",
        "sat",
        "sun",
    ]
    assert "HH:MM" in request["calendar_time"]["description"]
    assert request["calendar_time"]["nullable"] is True
    assert "legacy_day_rule" not in request
    response = components["PeriodicScan"]["properties"]
    assert response["calendar_weekdays"]["type"] == "string"
    assert response["legacy_day_rule"] == {**response["legacy_day_rule"], "readOnly": True}
    assert components["CalendarUnitEnum"]["enum"] == ["day", "week", "month"]
