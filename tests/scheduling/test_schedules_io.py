"""Schedules as code: export, validate and import files (``scheduling.schedules_io``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from scheduling import schedules_io
from scheduling.models import (
    AuditEntry,
    CleanupConfig,
    PeriodicScan,
    Report,
    Schedule,
    ScheduleDeletion,
)
from scheduling.schedules_io.values import export_value, import_value
from tenants.models import Tenant
from tests.factories import make_tenant

pytestmark = pytest.mark.django_db


def create(model: type[Schedule], tenant: Any, **fields: Any) -> Any:
    """Create a schedule the way the admin and the API do: validated, options cleaned."""
    depends_on = fields.pop("depends_on", [])
    schedule = model(tenant=tenant, **fields)
    schedule.full_clean()
    schedule.save()
    schedule.depends_on.set(depends_on)
    return schedule


# The configuration of each kind, written out by hand: independent of the exporter's own
# list, so that a field the exporter forgets fails the round trip. State (next_run_at,
# counters), identity (tenant, kind, name) and legacy_day_rule (an upgrade's state, cleared
# by the next save) are not configuration.
COMMON_CONFIGURATION = [
    "description",
    "enabled",
    "paused_until",
    "trigger_type",
    "interval_seconds",
    "cron_expression",
    "calendar_every",
    "calendar_unit",
    "calendar_time",
    "calendar_weekdays",
    "run_at",
    "start_at",
    "end_at",
    "timezone",
    "jitter_seconds",
    "dst_gap_policy",
    "dst_fold_policy",
    "timeout_seconds",
    "max_retries",
    "retry_backoff_seconds",
    "overlap",
    "max_instances",
    "misfire_grace_seconds",
    "coalesce",
    "priority",
    "stagger",
    "max_executions",
    "ping_url",
    "ping_style",
]
CONFIGURATION = {
    PeriodicScan: [*COMMON_CONFIGURATION, "scan_type", "target", "options"],
    Report: [*COMMON_CONFIGURATION, "report_type", "format", "recipients", "options"],
    CleanupConfig: [
        *COMMON_CONFIGURATION,
        "cleanup_target",
        "retain_days",
        "batch_size",
        "options",
    ],
}


# What each kind needs besides its defaults to be valid.
REQUIRED = {
    PeriodicScan: {"scan_type": "test_echo", "target": "x", "interval_seconds": 60},
    Report: {"report_type": "execution_summary", "interval_seconds": 60},
    CleanupConfig: {"cleanup_target": "executions", "interval_seconds": 60},
}


def state() -> dict[tuple[str, str, str], dict[str, Any]]:
    """Every configuration field of every schedule, keyed by tenant slug, kind and name."""
    result = {}
    for model, names in CONFIGURATION.items():
        for row in model.objects.select_related("tenant").prefetch_related("depends_on"):
            values = {name: getattr(row, name) for name in names}
            values["depends_on"] = sorted((d.kind, d.name) for d in row.depends_on.all())
            result[(row.tenant.slug, row.kind, row.name)] = values
    return result


def plan(text: str, *, file_format: str = "yaml", **kwargs: Any) -> schedules_io.ImportPlan:
    document = schedules_io.parse(text, file_format=file_format)
    return schedules_io.plan_import(document, tenants=Tenant.objects.all(), **kwargs)


def apply(text: str, **kwargs: Any) -> schedules_io.ImportPlan:
    result = plan(text, **kwargs)
    assert result.valid, [str(p) for p in result.errors]
    schedules_io.apply_plan(result)
    return result


@pytest.fixture
def rich_set():
    """Schedules of every kind that use nearly every field, across two tenants."""
    acme = make_tenant(name="Acme", slug="acme", timezone="Europe/Berlin")
    umbrella = make_tenant(name="Umbrella", slug="umbrella")
    scan = create(
        PeriodicScan,
        acme,
        name="Homepage: check",
        description="Two lines\nof description",
        scan_type="test_sleep",
        target="example",
        options={"seconds": 0.5, "fail": False},
        trigger_type="cron",
        cron_expression="*/5 9-17 * * 1-5",
        timezone="America/New_York",
        jitter_seconds=30,
        stagger=True,
        dst_gap_policy="skip",
        dst_fold_policy="twice",
        start_at=datetime(2026, 1, 1, 8, 0, tzinfo=UTC),
        end_at=datetime(2031, 1, 1, 8, 0, 0, 123456, tzinfo=UTC),
        paused_until=datetime(2030, 6, 1, tzinfo=UTC),
        timeout_seconds=90,
        max_retries=3,
        retry_backoff_seconds=15,
        overlap="allow",
        max_instances=3,
        misfire_grace_seconds=0,
        coalesce=False,
        priority=-5,
        max_executions=1000,
    )
    cleanup = create(
        CleanupConfig,
        acme,
        name="Artifacts",
        cleanup_target="report_artifacts",
        retain_days=14,
        batch_size=500,
        trigger_type="interval",
        interval_seconds=3600,
    )
    create(
        Report,
        acme,
        name="Nightly",
        report_type="execution_summary",
        format="csv",
        recipients="ops@example.com, cto@example.com",
        options={"period_hours": 48},
        trigger_type="cron",
        cron_expression="@daily",
        depends_on=[scan, cleanup],
    )
    create(
        PeriodicScan,
        acme,
        name="yes",  # YAML 1.1 would read an unquoted yes as true
        scan_type="test_echo",
        target="1.0",
        trigger_type="once",
        run_at=datetime(2027, 3, 1, 12, 30, 15, 250000, tzinfo=UTC),
        enabled=False,
    )
    create(
        PeriodicScan,
        umbrella,
        name="Homepage: check",
        scan_type="test_echo",
        target="x",
        trigger_type="interval",
        interval_seconds=60,
    )
    create(
        CleanupConfig,
        umbrella,
        name="Fortnightly",
        cleanup_target="executions",
        retain_days=90,
        trigger_type="calendar",
        calendar_every=2,
        calendar_unit="week",
        calendar_time=time(6, 30),
        calendar_weekdays="mon,thu",
        timezone="Asia/Tokyo",
    )
    return acme, umbrella


class TestRoundTrip:
    @pytest.mark.parametrize("file_format", ["yaml", "json"])
    def test_export_wipe_import_restores_an_identical_set(self, rich_set, file_format):
        before = state()
        text = schedules_io.dump(schedules_io.export_schedules(Schedule.objects.all()), file_format)
        Schedule.objects.all().delete()
        assert state() == {}

        result = apply(text, file_format=file_format)

        assert result.summary()["create"] == 6
        assert state() == before

    @pytest.mark.parametrize("model", CONFIGURATION)
    def test_an_entry_holds_exactly_the_configuration_of_its_kind(self, model):
        schedule = create(model, make_tenant(), name="Defaults", **REQUIRED[model])
        entry = schedules_io.export_entry(schedule, include_defaults=True)
        assert list(entry)[:3] == ["tenant", "kind", "name"]
        assert set(entry) - {"tenant", "kind", "name", "depends_on"} == set(CONFIGURATION[model])
        assert "legacy_day_rule" not in entry

    def test_importing_the_export_again_changes_nothing(self, rich_set):
        text = schedules_io.dump(schedules_io.export_schedules(Schedule.objects.all()))
        stamps = dict(Schedule.objects.values_list("pk", "updated_at"))
        audits = AuditEntry.objects.count()

        result = apply(text)

        assert result.summary() == {"create": 0, "update": 0, "delete": 0, "unchanged": 6}
        assert dict(Schedule.objects.values_list("pk", "updated_at")) == stamps
        assert AuditEntry.objects.count() == audits

    def test_export_is_readable_yaml_keyed_by_tenant_kind_and_name(self, rich_set):
        text = schedules_io.dump(
            schedules_io.export_schedules(Schedule.objects.filter(kind="report"))
        )
        assert text.startswith("version: 1\nschedules:\n- tenant: acme\n  kind: report\n")
        assert "  name: Nightly\n" in text
        assert "  - kind: scan\n    name: 'Homepage: check'\n" in text
        assert "max_retries" not in text  # at its default
        assert "next_run_at" not in text and "run_count" not in text


VALID = """\
version: 1
schedules:
- tenant: acme
  kind: scan
  name: One
  scan_type: test_echo
  target: x
  trigger_type: interval
  interval_seconds: 600
- tenant: acme
  kind: scan
  name: Two
  scan_type: test_echo
  target: x
  trigger_type: cron
  cron_expression: 0 6 * * *
  depends_on: [One]
"""


class TestImport:
    @pytest.fixture
    def acme(self):
        return make_tenant(name="Acme", slug="acme")

    def test_creates_and_updates_by_tenant_kind_and_name(self, acme):
        apply(VALID)
        one = PeriodicScan.objects.get(name="One")
        two = PeriodicScan.objects.get(name="Two")
        assert list(two.depends_on.all()) == [Schedule.objects.get(pk=one.pk)]
        assert one.timezone == "UTC"  # the tenant's

        result = apply(VALID.replace("interval_seconds: 600", "interval_seconds: 900"))

        assert result.summary() == {"create": 0, "update": 1, "delete": 0, "unchanged": 1}
        assert result.of("update")[0].changes == {"interval_seconds": [600, 900]}
        assert PeriodicScan.objects.get(pk=one.pk).interval_seconds == 900
        audit = AuditEntry.objects.filter(action="change").get()
        assert (audit.schedule_id, audit.source) == (one.pk, "cli")
        assert audit.changes == {"interval_seconds": [600, 900]}
        assert AuditEntry.objects.filter(action="create").count() == 2

    def test_a_field_left_out_goes_back_to_its_default(self, acme):
        apply(
            VALID.replace(
                "  interval_seconds: 600\n", "  interval_seconds: 600\n  max_retries: 4\n"
            )
        )
        assert PeriodicScan.objects.get(name="One").max_retries == 4
        apply(VALID)
        assert PeriodicScan.objects.get(name="One").max_retries == 0

    def test_one_bad_entry_changes_nothing(self, acme):
        apply(VALID)
        before = state()
        stamps = dict(Schedule.objects.values_list("pk", "updated_at"))
        text = (
            VALID.replace("interval_seconds: 600", "interval_seconds: 900")
            + "- tenant: acme\n  kind: scan\n  name: Three\n  scan_type: test_echo\n"
            "  target: x\n  trigger_type: cron\n  cron_expression: 61 * * * *\n"
        )

        result = plan(text, prune=True)

        assert not result.valid
        [error] = result.errors
        assert (error.index, error.line, error.field) == (2, 24, "cron_expression")
        assert str(error).startswith("schedules[2], line 24, acme/scan/Three: cron_expression:")
        with pytest.raises(schedules_io.ScheduleFileError):
            schedules_io.apply_plan(result)
        assert state() == before
        assert dict(Schedule.objects.values_list("pk", "updated_at")) == stamps

    @pytest.mark.parametrize(
        ("entry", "field"),
        [
            ({"name": "Th\u0000ree"}, "name"),
            ({"description": "nul \u0000"}, "description"),
            ({"options": {"k\u0000": 1}}, "options"),
        ],
        ids=["name", "description", "options key"],
    )
    def test_null_characters_are_an_error_not_a_crash(self, acme, entry, field):
        apply(VALID)
        before = state()
        document = {
            "version": 1,
            "schedules": [
                {
                    "tenant": "acme",
                    "kind": "scan",
                    "name": "Three",
                    "scan_type": "test_echo",
                    "target": "x",
                    "trigger_type": "interval",
                    "interval_seconds": 600,
                    **entry,
                }
            ],
        }
        result = plan(json.dumps(document), file_format="json")
        assert not result.valid
        assert [(e.field, e.message) for e in result.errors] == [
            (field, "Null characters are not allowed.")
        ]
        assert state() == before

    def test_every_error_is_reported_with_its_position(self, acme):
        text = """\
version: 1
schedules:
- tenant: acme
  kind: scan
  name: A
  scan_type: no_such_type
  target: x
  trigger_type: interval
  interval_seconds: 60
- tenant: ghost
  kind: scan
  name: B
- tenant: acme
  kind: widget
  name: C
- tenant: acme
  kind: report
  name: D
  colour: blue
  report_type: execution_summary
  trigger_type: interval
  interval_seconds: 60
- tenant: acme
  kind: scan
  name: A
  scan_type: test_echo
  target: x
  trigger_type: interval
  interval_seconds: 60
"""
        result = plan(text)
        found = {(p.index, p.line, p.field) for p in result.errors}
        assert found == {
            (0, 6, "scan_type"),
            (1, 10, "tenant"),
            (2, 14, "kind"),
            (3, 19, "colour"),
            (4, 25, "name"),  # the same schedule as schedules[0]
        }
        assert "registered" in next(p.message for p in result.errors if p.index == 0)

    def test_json_errors_name_the_entry_index(self, acme):
        text = (
            '{"version": 1, "schedules": [{"tenant": "acme", "kind": "scan", "name": "X", '
            '"scan_type": "test_echo", "target": "x", "trigger_type": "interval"}]}'
        )
        result = plan(text, file_format="json")
        [error] = result.errors
        assert (error.index, error.line, error.field) == (0, None, "interval_seconds")

    def test_dependency_cycles_and_unknown_names_are_errors(self, acme):
        cyclic = VALID.replace(
            "  interval_seconds: 600\n", "  interval_seconds: 600\n  depends_on: [Two]\n"
        )
        result = plan(cyclic)
        assert [p.message for p in result.errors] == [
            "dependency cycle: scan/One -> scan/Two -> scan/One"
        ]
        assert result.errors[0].field == "depends_on"

        unknown = VALID.replace("depends_on: [One]", "depends_on: [{kind: report, name: Nope}]")
        [error] = plan(unknown).errors
        assert error.message == "depends on report/Nope, which does not exist"

    def test_a_cycle_through_a_schedule_only_in_the_database_is_found(self, acme):
        apply(VALID)
        extra = create(
            PeriodicScan, acme, name="Three", scan_type="test_echo", target="x",
            trigger_type="interval", interval_seconds=60,
            depends_on=[Schedule.objects.get(name="Two")],
        )  # fmt: skip
        text = VALID.replace(
            "  interval_seconds: 600\n", "  interval_seconds: 600\n  depends_on: [Three]\n"
        )
        result = plan(text)
        assert not result.valid
        assert "scan/Three" in result.errors[0].message
        assert extra.pk  # untouched

    def test_prune_deletes_what_the_file_no_longer_has_within_its_tenants(self, acme, settings):
        settings.SCHEDULING_RETENTION_SCHEDULE = True
        from scheduling.retention import ensure_retention_schedule

        ensure_retention_schedule(acme)
        apply(VALID)
        gone = create(
            Report, acme, name="Old report", report_type="execution_summary",
            trigger_type="interval", interval_seconds=60,
        )  # fmt: skip
        elsewhere = create(
            PeriodicScan, make_tenant(slug="beta"), name="Kept", scan_type="test_echo",
            target="x", trigger_type="interval", interval_seconds=60,
        )  # fmt: skip

        preview = plan(VALID, prune=True)
        assert [(c.action, c.identity) for c in preview.of("delete")] == [
            ("delete", "acme/report/Old report")
        ]
        assert Schedule.objects.filter(pk=gone.pk).exists()  # planning writes nothing

        apply(VALID, prune=True)

        assert not Schedule.objects.filter(pk=gone.pk).exists()
        assert Schedule.objects.filter(pk=elsewhere.pk).exists()
        assert CleanupConfig.objects.filter(tenant=acme, name="History retention").exists()
        assert ScheduleDeletion.objects.filter(schedule_id=gone.pk).exists()
        assert AuditEntry.objects.filter(action="delete", schedule_name="Old report").exists()

    def test_only_tenant_and_only_kind_apply_part_of_the_file(self, acme):
        beta = make_tenant(slug="beta")
        text = VALID + VALID.split("schedules:\n", 1)[1].replace("tenant: acme", "tenant: beta")
        apply(text, only_tenant=beta)
        assert set(Schedule.objects.values_list("tenant__slug", flat=True)) == {"beta"}
        assert not plan(text, only_kind="report").changes

    def test_a_naive_datetime_is_read_in_the_entrys_time_zone(self, acme):
        text = VALID.replace(
            "  trigger_type: interval\n  interval_seconds: 600\n",
            "  trigger_type: once\n  run_at: 2030-07-01 09:00\n  timezone: Europe/Berlin\n",
        )
        apply(text)
        run_at = PeriodicScan.objects.get(name="One").run_at
        assert run_at == datetime(2030, 7, 1, 7, 0, tzinfo=UTC)

    def test_a_schedule_that_will_never_fire_again_is_a_warning_not_an_error(self, acme):
        text = VALID.replace(
            "  trigger_type: interval\n  interval_seconds: 600\n",
            "  trigger_type: once\n  run_at: '2020-01-01T00:00:00+00:00'\n",
        )
        result = plan(text)
        assert result.valid
        assert [(w.index, w.message) for w in result.warnings] == [
            (0, "enabled, but its trigger will never fire again")
        ]

    def test_the_quota_counts_what_the_file_creates(self, acme):
        acme.max_schedules = 1
        acme.save()
        result = plan(VALID)
        assert any("limit is 1" in p.message for p in result.errors)

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("schedules: [\n", "line 2"),
            ("- just a list\n", "must be a mapping"),
            ("version: 2\nschedules: []\n", "unsupported version"),
        ],
    )
    def test_unreadable_files_say_why(self, acme, text, message):
        try:
            result = plan(text)
        except schedules_io.ScheduleFileError as exc:
            assert message in str(exc)
        else:
            assert any(message in p.message for p in result.errors)


class TestValidateDatabase:
    def test_finds_unknown_keys_bad_cron_cycles_and_dead_schedules(self):
        acme = make_tenant(slug="acme")
        ok = create(
            PeriodicScan, acme, name="ok", scan_type="test_echo", target="x",
            trigger_type="interval", interval_seconds=60,
        )  # fmt: skip
        unknown = create(
            PeriodicScan, acme, name="unknown", scan_type="test_echo", target="x",
            trigger_type="interval", interval_seconds=60, depends_on=[ok],
        )  # fmt: skip
        PeriodicScan.objects.filter(pk=unknown.pk).update(scan_type="uninstalled")
        cron = create(
            Report, acme, name="cron", report_type="execution_summary", trigger_type="cron",
            cron_expression="0 0 * * *",
        )  # fmt: skip
        Schedule.objects.filter(pk=cron.pk).update(cron_expression="0 25 * * *")
        ok.depends_on.add(unknown)  # ok -> unknown -> ok
        create(
            PeriodicScan, acme, name="dead", scan_type="test_echo", target="x",
            trigger_type="once", run_at=timezone.now() - timedelta(days=1),
        )  # fmt: skip

        errors, warnings = schedules_io.validate_database(Schedule.objects.all())

        found = {(p.name, p.field) for p in errors}
        assert found == {
            ("unknown", "scan_type"),
            ("cron", "cron_expression"),
            ("ok", "depends_on"),
        }
        assert "dependency cycle: scan/ok -> scan/unknown -> scan/ok" in [p.message for p in errors]
        assert [(p.name, p.level) for p in warnings] == [("dead", "warning")]
        assert all(p.schedule_id for p in errors if p.field != "depends_on")


class TestCalendarValues:
    """A calendar schedule's wall-clock time and weekdays between the file and the model."""

    def test_a_time_is_written_as_text_and_read_back(self):
        field = Schedule._meta.get_field("calendar_time")
        assert export_value(time(9, 30)) == "09:30:00"
        assert export_value(time(9, 30, 5, 250000)) == "09:30:05.250000"
        for text, expected in [
            ("9:30", time(9, 30)),
            ("09:30:00", time(9, 30)),
            ("09:30:05.250000", time(9, 30, 5, 250000)),
        ]:
            assert import_value(field, text, zone="UTC") == expected
        assert import_value(field, time(6), zone="UTC") == time(6)

    @pytest.mark.parametrize(
        ("value", "text"),
        [(750, "in quotes"), ("24:00", "time of day"), ("09:30+02:00", "time of day"), ([], "")],
    )
    def test_a_bad_time_is_refused(self, value, text):
        field = Schedule._meta.get_field("calendar_time")
        with pytest.raises(ValidationError) as caught:
            import_value(field, value, zone="UTC")
        assert text in " ".join(caught.value.messages)

    def test_weekdays_are_read_from_text_or_a_list_in_the_stored_order(self):
        field = Schedule._meta.get_field("calendar_weekdays")
        assert import_value(field, "thu, Monday", zone="UTC") == "mon,thu"
        assert import_value(field, ["sun", "mon"], zone="UTC") == "mon,sun"
        assert import_value(field, "mon,funday", zone="UTC") == "mon,funday"  # the model says why
        with pytest.raises(ValidationError):
            import_value(field, {"mon": True}, zone="UTC")

    def test_yaml_quotes_text_that_a_reader_could_take_for_a_base_60_number(self):
        document = {"times": ["12:30", "09:30:00", "1:02:03.5", "127.0.0.1:80", "a:1"]}
        text = schedules_io.dump(document)
        assert "- '12:30'\n- '09:30:00'\n- '1:02:03.5'\n- 127.0.0.1:80\n- a:1\n" in text
        assert schedules_io.parse(text, file_format="yaml").data == document
