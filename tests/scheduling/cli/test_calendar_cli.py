"""Calendar schedules and the old cron day rule through ``manage.py scheduling``: list, show,
export, import and validate."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time

import pytest
import time_machine
import yaml

from scheduling.models import AuditEntry, PeriodicScan, Schedule
from tests.scheduling.cli.conftest import cli, echo_scan

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday, 10:00 in Berlin
SENTENCE = "Every 2 weeks on Monday and Thursday at 09:30, from 2026-03-02 (Europe/Berlin)"
CALENDAR_ENTRY = """\
version: 1
schedules:
- tenant: acme
  kind: scan
  name: Fortnightly
  scan_type: test_echo
  target: x
  trigger_type: calendar
  calendar_every: 2
  calendar_unit: week
  calendar_time: '09:30'
  calendar_weekdays: [thu, mon]
  start_at: '2026-03-02T00:00:00'
"""


@pytest.fixture
def fortnightly(world):
    with time_machine.travel(NOW, tick=False):
        return echo_scan(
            world.acme,
            name="Fortnightly",
            trigger_type="calendar",
            interval_seconds=None,
            calendar_every=2,
            calendar_unit="week",
            calendar_time=time(9, 30),
            calendar_weekdays="mon,thu",
        )


@pytest.fixture
def first_monday(world):
    """A cron schedule that keeps the old day rule (both day fields must match)."""
    scan = echo_scan(
        world.acme,
        name="First Monday",
        trigger_type="cron",
        cron_expression="0 9 1-7 * 1",
        interval_seconds=None,
    )
    Schedule.objects.filter(pk=scan.pk).update(legacy_day_rule=True)  # as migration 0006 does
    scan.refresh_from_db()
    return scan


def write(tmp_path, text, name="schedules.yaml"):
    target = tmp_path / name
    target.write_text(text)
    return str(target)


class TestReading:
    def test_list_and_show_describe_a_calendar_schedule(self, fortnightly):
        [row] = [
            r
            for r in cli("list", "--format", "json").data["schedules"]
            if r["name"] == "Fortnightly"
        ]
        assert (row["trigger_type"], row["trigger"]) == ("calendar", SENTENCE)

        with time_machine.travel(NOW, tick=False):
            data = cli("show", str(fortnightly.pk), "--format", "json").data
        assert data["schedule"]["trigger"] == SENTENCE
        config = data["schedule"]["config"]
        assert {key: config[key] for key in config if key.startswith("calendar_")} == {
            "calendar_every": 2,
            "calendar_unit": "week",
            "calendar_time": "09:30:00",
            "calendar_weekdays": "mon,thu",
        }
        assert data["next_runs"][:3] == [
            "2026-03-05T08:30:00+00:00",
            "2026-03-16T08:30:00+00:00",
            "2026-03-19T08:30:00+00:00",
        ]

    def test_show_names_the_old_day_rule_but_its_config_leaves_it_out(self, first_monday):
        data = cli("show", str(first_monday.pk), "--format", "json").data
        assert "(the old rule: both day fields must match" in data["schedule"]["trigger"]
        assert "legacy_day_rule" not in data["schedule"]["config"]


class TestExportImport:
    @pytest.mark.parametrize("file_format", ["yaml", "json"])
    def test_a_calendar_schedule_round_trips(self, fortnightly, tmp_path, file_format):
        target = str(tmp_path / f"all.{file_format}")
        assert cli("export", "--tenant", "acme", "-o", target).code == 0
        with open(target) as file:
            exported = file.read()
        load = json.loads if file_format == "json" else yaml.safe_load
        [entry] = [e for e in load(exported)["schedules"] if e["name"] == "Fortnightly"]
        assert entry["calendar_time"] == "09:30:00"  # a string, in YAML quoted
        assert entry["calendar_weekdays"] == "mon,thu"
        Schedule.objects.all().delete()

        result = cli("import", target)

        assert result.code == 0, result.err + result.out
        scan = PeriodicScan.objects.get(name="Fortnightly")
        assert (scan.calendar_every, scan.calendar_unit, scan.calendar_time) == (
            2,
            "week",
            time(9, 30),
        )
        assert scan.calendar_weekdays == "mon,thu"
        assert cli("export", "--tenant", "acme", "-o", target).code == 0
        with open(target) as file:
            assert file.read() == exported

    def test_the_yaml_export_quotes_the_time(self, fortnightly):
        out = cli("export", "--tenant", "acme").out
        assert "calendar_time: '09:30:00'" in out

    @time_machine.travel(NOW, tick=False)
    def test_a_hand_written_calendar_entry_is_imported(self, world, tmp_path):
        result = cli("import", write(tmp_path, CALENDAR_ENTRY))
        assert result.code == 0, result.err + result.out
        scan = PeriodicScan.objects.get(name="Fortnightly")
        assert scan.calendar_time == time(9, 30)
        assert scan.calendar_weekdays == "mon,thu"  # the list, stored as the comma string
        shown = cli("show", str(scan.pk), "--format", "json").data
        assert shown["schedule"]["trigger"] == SENTENCE
        assert AuditEntry.objects.get(schedule=scan).source == "cli"

    @pytest.mark.parametrize(
        ("change", "replacement", "field", "text"),
        [
            ("calendar_time: '09:30'", "calendar_time: 12:30", "calendar_time", "in quotes"),
            ("calendar_time: '09:30'", "calendar_time: '9.30'", "calendar_time", "time of day"),
            ("calendar_time: '09:30'", "calendar_time: null", "calendar_time", "needs a time"),
            ("calendar_every: 2", "calendar_every: 0", "calendar_every", "greater than or equal"),
            ("calendar_unit: week", "calendar_unit: year", "calendar_unit", "not a valid choice"),
            ("calendar_unit: week", "calendar_unit: day", "calendar_weekdays", "only to a"),
            ("[thu, mon]", "[thu, funday]", "calendar_weekdays", "unknown weekday 'funday'"),
            ("[thu, mon]", "{mon: 1}", "calendar_weekdays", "must be weekdays"),
        ],
    )
    def test_a_bad_calendar_field_names_the_entry_and_the_field(
        self, world, tmp_path, change, replacement, field, text
    ):
        text_of_file = CALENDAR_ENTRY.replace(change, replacement)
        path = write(tmp_path, text_of_file)
        result = cli("import", path, "--format", "json")
        assert result.code == 2
        assert result.data["applied"] is False
        assert not PeriodicScan.objects.filter(name="Fortnightly").exists()
        errors = [e for e in result.data["errors"] if e["field"] == field]
        assert errors, result.data["errors"]
        line = 1 + next(
            n for n, ln in enumerate(text_of_file.splitlines()) if ln.startswith(f"  {field}:")
        )
        for error in errors:
            where = (error["index"], error["line"], error["tenant"], error["kind"], error["name"])
            assert where == (0, line, "acme", "scan", "Fortnightly")
        assert any(text in error["message"] for error in errors), errors
        table = cli("validate", path)
        assert table.code == 2
        assert f"schedules[0], line {line}, acme/scan/Fortnightly: {field}: " in table.out

    def test_legacy_day_rule_is_not_a_field_of_a_file(self, world, tmp_path):
        text = CALENDAR_ENTRY + "  legacy_day_rule: true\n"
        data = cli("import", write(tmp_path, text), "--format", "json").data
        [error] = data["errors"]
        assert (error["field"], error["message"]) == ("legacy_day_rule", "unknown field for a scan")

    def test_an_import_that_changes_a_schedule_on_the_old_day_rule_adopts_crons(
        self, first_monday, tmp_path
    ):
        target = str(tmp_path / "acme.yaml")
        cli("export", "--tenant", "acme", "-o", target)
        with open(target) as file:
            text = file.read()
        assert "legacy_day_rule" not in text
        # Unchanged, it is not saved: it keeps the old rule.
        summary = cli("import", target, "--format", "json").data["summary"]
        assert (summary["update"], summary["unchanged"]) == (0, 4)
        first_monday.refresh_from_db()
        assert first_monday.legacy_day_rule is True

        changed = text.replace("name: First Monday\n", "name: First Monday\n  description: d\n")
        result = cli("import", write(tmp_path, changed, "changed.yaml"), "--format", "json")

        assert result.code == 0, result.out
        [change] = result.data["changes"]
        assert (change["action"], change["changes"]) == ("update", {"description": ["", "d"]})
        first_monday.refresh_from_db()
        assert first_monday.legacy_day_rule is False
        assert "old rule" not in cli("show", str(first_monday.pk), "--format", "json").out
