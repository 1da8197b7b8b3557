"""``scheduling add`` (issue 18): a schedule from flags, validated as the API validates it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from scheduling.models import AuditEntry, PeriodicScan, Report, Schedule, ScheduledTask
from tests.factories import make_membership, make_user
from tests.scheduling.cli.conftest import cli

pytestmark = pytest.mark.django_db

SCAN = ("add", "--kind", "scan", "--tenant", "acme")


def test_a_scan_from_flags_is_created_audited_and_printed_with_its_id(world):
    result = cli(
        *SCAN,
        *("--name", "Site check", "--type", "http", "--target", "http://127.0.0.1:8080/health"),
        *("--every", "1h30m", "--timezone", "Europe/Paris", "--description", "The shop"),
        *("--option", "expected_status=204", "--option", "keyword=ok"),
        *("--set", "max_retries=3", "--set", "coalesce=false"),
    )
    assert result.code == 0, result.err
    scan = PeriodicScan.objects.get(tenant=world.acme, name="Site check")
    assert result.out.strip() == (
        f"Added acme/scan/Site check ({scan.pk}): enabled, Every 90 minutes."
    )
    assert (scan.scan_type, scan.target, scan.description) == (
        "http",
        "http://127.0.0.1:8080/health",
        "The shop",
    )
    assert (scan.trigger_type, scan.interval_seconds, scan.timezone) == (
        "interval",
        5400,
        "Europe/Paris",
    )
    assert (scan.max_retries, scan.coalesce, scan.enabled) == (3, False, True)
    assert scan.options["expected_status"] == 204  # read as JSON: a number
    assert scan.options["keyword"] == "ok"
    audit = AuditEntry.objects.get(schedule=scan)
    assert (audit.action, audit.source, audit.user) == ("create", "cli", None)


def test_json_prints_the_new_schedule(world):
    result = cli(
        *SCAN,
        *("--name", "Ping", "--type", "test_echo", "--target", "x", "--cron", "*/5 * * * *"),
        *("--disabled", "--format", "json"),
    )
    assert result.code == 0, result.err
    data = result.data["schedule"]
    scan = PeriodicScan.objects.get(pk=data["id"])
    assert (data["tenant"], data["kind"], data["name"]) == ("acme", "scan", "Ping")
    assert (data["trigger_type"], data["state"]) == ("cron", "disabled")
    assert (scan.cron_expression, scan.enabled) == ("*/5 * * * *", False)


def test_a_time_without_an_offset_is_in_the_schedules_zone(world):
    result = cli(
        *SCAN,
        *("--name", "Once", "--type", "test_echo", "--target", "x"),
        *("--at", "2099-07-01T12:00", "--timezone", "Europe/Berlin"),
    )
    assert result.code == 0, result.err
    scan = PeriodicScan.objects.get(name="Once")
    assert scan.trigger_type == "once"
    assert scan.run_at == datetime(2099, 7, 1, 10, 0, tzinfo=UTC)
    # Without --timezone: the tenant's (acme is in Europe/Berlin), as in a schedules file.
    cli(
        *SCAN,
        *("--name", "Tenant zone", "--type", "test_echo", "--target", "x"),
        *("--at", "2099-01-01T12:00"),
    )
    assert PeriodicScan.objects.get(name="Tenant zone").run_at == datetime(
        2099, 1, 1, 11, 0, tzinfo=UTC
    )


def test_a_report_takes_its_own_fields_with_set_and_its_dependencies(world):
    result = cli(
        *("add", "--kind", "report", "--tenant", "acme", "--name", "Weekly"),
        *("--type", "execution_summary", "--cron", "@weekly"),
        *("--set", "format=csv", "--set", "recipients=ops@example.com"),
        *("--set", "calendar_weekdays=mon", "--set", "priority=-2"),
        *("--depends-on", "scan/Homepage", "--depends-on", "Nightly"),
    )
    assert result.code == 0, result.err
    report = Report.objects.get(name="Weekly")
    assert (report.format, report.recipients, report.priority) == ("csv", "ops@example.com", -2)
    assert {(d.kind, d.name) for d in report.depends_on.all()} == {
        ("scan", "Homepage"),
        ("report", "Nightly"),
    }


def test_every_problem_is_one_line_and_nothing_is_created(world):
    result = cli(
        *SCAN,
        *("--name", "Homepage", "--type", "nope", "--every", "30s"),
        *("--timezone", "Mars/Base", "--set", "max_retries=many", "--set", "colour=red"),
        *("--depends-on", "report/Missing"),
    )
    assert result.code == 2
    assert result.err == "7 error(s); nothing was added."
    lines = result.out.splitlines()
    assert lines == [
        "acme/scan/Homepage: max_retries: “many” value must be an integer.",
        "acme/scan/Homepage: colour: a scan has no field 'colour'",
        "acme/scan/Homepage: depends_on: depends on report/Missing, which does not exist",
        "acme/scan/Homepage: timezone: Mars/Base is not a known IANA time zone (for example "
        "Europe/Berlin).",
        "acme/scan/Homepage: target: This field cannot be blank.",
        "acme/scan/Homepage: scan_type: Unknown scan type 'nope'; registered: dns, http, tcp, "
        "test_echo, test_sleep, test_slow_first_attempt, tls.",
        "acme/scan/Homepage: name: A periodic scan named Homepage already exists for this tenant.",
    ]
    assert "Traceback" not in result.out + result.err
    assert list(PeriodicScan.objects.filter(tenant=world.acme)) == [world.scan]
    assert not AuditEntry.objects.exists()


def test_json_lists_the_problems_by_field(world):
    result = cli(
        *SCAN,
        *("--name", "Bad", "--type", "test_echo", "--target", "x", "--cron", "61 * * * *"),
        *("--set", "timeout_seconds=-1", "--format", "json"),
    )
    assert result.code == 2
    data = result.data
    assert data["schedule"] is None
    fields = {p["field"] for p in data["errors"]}
    assert {"cron_expression", "timeout_seconds"} <= fields
    assert all(p["tenant"] == "acme" and p["name"] == "Bad" for p in data["errors"])
    assert not Schedule.objects.filter(name="Bad").exists()


def test_a_flag_and_set_of_the_same_field_is_a_problem(world):
    result = cli(
        *SCAN,
        *("--name", "Twice", "--type", "test_echo", "--target", "x"),
        *("--every", "30s", "--set", "interval_seconds=60"),
    )
    assert result.code == 2
    assert "interval_seconds: given twice: by its own flag and by --set" in result.out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("add", "--tenant", "acme", "--name", "x"), "add needs --kind: one of"),
        (("add", "--kind", "scan", "--name", "x"), "add needs --tenant SLUG, or --system"),
        (
            ("add", "--kind", "scan", "--tenant", "acme", "--system", "--name", "x"),
            "add needs --tenant SLUG, or --system",
        ),
        (("add", "--kind", "scan", "--tenant", "nowhere", "--name", "x"), "Unknown tenant"),
        (("add", "--kind", "scan", "--tenant", "acme", "--name", "x", "--set", "x"), "FIELD=V"),
    ],
)
def test_missing_or_bad_arguments_exit_2_with_one_line(world, args, message):
    result = cli(*args)
    assert result.code == 2
    assert message in result.err and "\n" not in result.err
    assert Schedule.objects.count() == 4


class TestRoles:
    def test_an_admin_adds_and_is_recorded_but_an_operator_may_not(self, world):
        make_membership(user=make_user(username="ada"), tenant=world.acme, role="admin")
        make_membership(user=make_user(username="otto"), tenant=world.acme, role="operator")
        args = (*SCAN, "--name", "Mine", "--type", "test_echo", "--target", "x", "--every", "1m")
        refused = cli(*args, "--user", "otto")
        assert (refused.code, refused.err) == (
            2,
            "Your role in tenant 'acme' does not allow add.",
        )
        assert cli(*args, "--user", "ada").code == 0
        assert AuditEntry.objects.get(action="create").user.username == "ada"

    def test_another_tenant_is_unknown_to_its_non_members(self, world):
        make_membership(user=make_user(username="ada"), tenant=world.acme, role="owner")
        result = cli(
            *("add", "--kind", "scan", "--tenant", "umbrella", "--name", "x", "--user", "ada")
        )
        assert (result.code, result.err) == (2, "Unknown tenant 'umbrella'.")

    def test_system_schedules_are_for_superusers(self, world):
        make_membership(user=make_user(username="ada"), tenant=world.acme, role="owner")
        make_user(username="root", is_superuser=True)
        args = ("add", "--kind", "task", "--system", "--name", "Sys", "--type", "test_add")
        args = (*args, "--every", "1d", "--option", "a=2")
        refused = cli(*args, "--user", "ada")
        assert (refused.code, refused.err) == (2, "Only superusers may add system schedules.")
        assert cli(*args, "--user", "root").code == 0
        task = ScheduledTask.objects.get(name="Sys")
        assert (task.tenant, task.options["a"]) == (None, 2)
