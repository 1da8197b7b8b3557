"""One bad request names every wrong field (issue 18, item 7), and the schema's help gives the
values in force (item 9)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
import yaml
from django.core.exceptions import ValidationError
from django.test import override_settings
from rest_framework.test import APIClient

from scheduling import services
from scheduling.models import PeriodicScan, Schedule
from tests.factories import make_scan, make_user
from tests.scheduling.api.conftest import valid_payload

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def messages(response, field: str) -> list[str]:
    return [str(message) for message in response.data[field]]


@time_machine.travel(NOW, tick=False)
def test_a_payload_with_six_problems_gets_six_answers_at_once(world_a):
    before = Schedule.objects.count()
    body = valid_payload(
        "scans",
        world_a.tenant,
        scan_type="nmap",
        options={"ports": "all"},
        trigger_type="cron",
        cron_expression="61 * * * *",
        timezone="Mars/Base",
        timeout_seconds=0,
        end_at="2026-03-01T00:00:00Z",
        colour="blue",
    )
    response = world_a.client("admin").post("/api/scans/", body, format="json")
    assert response.status_code == 400
    assert set(response.data) == {
        "scan_type",
        "cron_expression",
        "timezone",
        "timeout_seconds",
        "end_at",
        "colour",
    }, response.data
    assert messages(response, "scan_type")[0].startswith("Unknown scan type 'nmap'")
    assert messages(response, "cron_expression")[0].startswith("Invalid cron expression")
    assert messages(response, "timezone") == [
        "Mars/Base is not a known IANA time zone (for example Europe/Berlin)."
    ]
    assert messages(response, "timeout_seconds") == [
        "Ensure this value is greater than or equal to 1."
    ]
    assert messages(response, "end_at")[0].startswith("This end has already passed")
    assert messages(response, "colour") == ["Unknown field."]
    assert Schedule.objects.count() == before


@time_machine.travel(NOW, tick=False)
def test_the_model_layers_problems_come_together_too(world_a):
    # Every field parses: the problems are the model layer's, all in one answer.
    body = valid_payload(
        "scans",
        world_a.tenant,
        name=world_a.scan.name,
        scan_type="test_sleep",
        options={"seconds": "long", "shell": "rm"},
        trigger_type="cron",
        cron_expression="0 0 30 2 *",
        end_at="2026-03-01T00:00:00Z",
    )
    response = world_a.client("admin").post("/api/scans/", body, format="json")
    assert response.status_code == 400
    assert set(response.data) == {"name", "options", "cron_expression", "end_at"}, response.data
    assert messages(response, "options") == [
        "Unknown option(s): shell.",
        "seconds: Enter a number.",
    ]
    assert messages(response, "cron_expression") == [
        "This cron expression can never fire (no such date)."
    ]


@override_settings(SCHEDULING_MIN_INTERVAL=60)
@time_machine.travel(NOW, tick=False)
def test_an_update_names_every_wrong_field(world_a):
    url = f"/api/scans/{world_a.scan.pk}/"
    body = {"interval_seconds": 1, "timezone": "europe/berlin", "priority": 10**6, "depth": 1}
    response = world_a.client("admin").patch(url, body, format="json")
    assert response.status_code == 400
    assert set(response.data) == {"interval_seconds", "timezone", "priority", "depth"}
    assert messages(response, "timezone") == [
        "europe/berlin is not a known IANA time zone; did you mean Europe/Berlin?"
    ]
    assert "at least 60 seconds" in messages(response, "interval_seconds")[0]


def test_a_refused_trigger_type_does_not_raise_errors_about_the_other_trigger(world_a):
    body = valid_payload("scans", world_a.tenant, trigger_type="hourly", timeout_seconds=-1)
    body.pop("interval_seconds")
    response = world_a.client("admin").post("/api/scans/", body, format="json")
    assert response.status_code == 400
    assert set(response.data) == {"trigger_type", "timeout_seconds"}, response.data


@time_machine.travel(NOW, tick=False)
def test_an_end_that_passed_since_blocks_no_other_change_but_a_new_one_is_refused(world_a):
    scan = world_a.scan
    PeriodicScan.objects.filter(pk=scan.pk).update(end_at=NOW - timedelta(days=1))
    client = world_a.client("admin")
    url = f"/api/scans/{scan.pk}/"
    response = client.patch(url, {"description": "ended"}, format="json")
    assert response.status_code == 200, response.data
    response = client.patch(url, {"end_at": "2026-03-01T12:00:00Z"}, format="json")
    assert response.status_code == 400
    assert messages(response, "end_at")[0].startswith("This end has already passed")
    response = client.patch(url, {"end_at": None}, format="json")
    assert response.status_code == 200


@override_settings(SCHEDULING_MIN_INTERVAL=60)
def test_services_report_every_error_once(world_a):
    # The path of the CLI and of imports: the model layer alone.
    with pytest.raises(ValidationError) as info:
        services.create_schedule(
            model=PeriodicScan,
            tenant=world_a.tenant,
            name="checks",
            scan_type="test_sleep",
            target="x",
            options={"seconds": -1},
            trigger_type="interval",
            interval_seconds=5,
            timezone="Nowhere/Town",
            max_instances=0,
        )
    errors = info.value.message_dict
    assert set(errors) == {"options", "interval_seconds", "timezone", "max_instances"}, errors
    assert errors["timezone"] == [
        "Nowhere/Town is not a known IANA time zone (for example Europe/Berlin)."
    ]
    assert errors["options"] == ["seconds: Ensure this value is greater than or equal to 0."]


def test_a_null_character_and_the_other_errors_come_together(world_a):
    # (The API refuses such a body as a whole, before any field: the CLI and imports do not.)
    with pytest.raises(ValidationError) as info:
        services.create_schedule(
            model=PeriodicScan,
            tenant=world_a.tenant,
            name="nul\x00name",
            scan_type="nmap",
            target="x",
            trigger_type="interval",
            interval_seconds=0,
        )
    errors = info.value.message_dict
    assert errors["name"] == ["Null characters are not allowed."]
    assert set(errors) == {"name", "interval_seconds", "scan_type"}, errors


# -- help texts in the schema ----------------------------------------------------------------


def schema_properties(name: str) -> dict:
    client = APIClient()
    client.force_authenticate(make_user())
    response = client.get("/api/schema/")
    assert response.status_code == 200
    return yaml.safe_load(response.content)["components"]["schemas"][name]["properties"]


def test_the_schema_gives_the_defaults_values_and_explains_the_policies():
    fields = schema_properties("PeriodicScan")
    assert fields["timeout_seconds"]["description"].endswith(
        "Empty: the default, 1 hour (SCHEDULING_DEFAULT_TIMEOUT)."
    )
    assert (
        "up to 1 hour (SCHEDULING_MAX_RETRY_BACKOFF)"
        in (fields["retry_backoff_seconds"]["description"])
    )
    assert "spring forward" in fields["dst_gap_policy"]["description"]
    assert "fall back" in fields["dst_fold_policy"]["description"]
    assert "tenants still take turns" in fields["priority"]["description"]
    assert "no timer of its own" in fields["depends_on"]["description"]
    with override_settings(SCHEDULING_DEFAULT_MISFIRE_GRACE=300):
        fields = schema_properties("PeriodicScan")
    assert fields["misfire_grace_seconds"]["description"].endswith(
        "Empty: the default, 5 minutes (SCHEDULING_DEFAULT_MISFIRE_GRACE)."
    )


def test_a_saved_scan_keeps_working_with_the_stricter_checks(world_a):
    # An existing schedule saved through the API again: no new rule refuses it.
    scan = make_scan(tenant=world_a.tenant, scan_type="test_echo", target="x")
    response = world_a.client("admin").patch(
        f"/api/scans/{scan.pk}/", {"priority": 5}, format="json"
    )
    assert response.status_code == 200, response.data
