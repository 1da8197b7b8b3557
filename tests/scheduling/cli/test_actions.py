"""The changing verbs: run (in the foreground), pause and resume; audit trail and roles."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from scheduling.models import AuditEntry, Execution, Schedule, Status, TriggerKind
from tests.factories import make_membership, make_tenant, make_user
from tests.scheduling.cli.conftest import cli, echo_scan


class TestRun:
    # The execution runs in a worker thread with its own connection: it must see committed
    # rows, so these tests do not wrap in a transaction.
    pytestmark = pytest.mark.django_db(transaction=True)

    def test_a_successful_run_exits_0_and_prints_the_outcome(self):
        scan = echo_scan(make_tenant(slug="acme"), name="Homepage")
        result = cli("run", str(scan.pk))
        assert result.code == 0, result.err
        assert "succeeded" in result.out
        assert '"name": "Homepage"' in result.out  # the handler's result
        execution = Execution.objects.get(schedule=scan)
        assert (execution.status, execution.trigger) == (Status.SUCCEEDED, TriggerKind.MANUAL)
        assert execution.claimed_by.startswith("cli:")
        assert Schedule.objects.get(pk=scan.pk).run_count == 1
        audit = AuditEntry.objects.get(schedule=scan)
        assert (audit.action, audit.source) == ("run", "cli")
        assert audit.changes == {"execution": [None, execution.pk]}

    def test_a_failed_run_exits_1_with_one_line(self):
        scan = echo_scan(
            make_tenant(), name="Broken", scan_type="test_sleep", options={"fail": True}
        )
        result = cli("run", str(scan.pk), "--format", "json")
        assert result.code == 1
        assert result.data["execution"]["status"] == "failed"
        assert "Broken failed on purpose" in result.data["execution"]["error"]
        assert "\n" not in result.err
        assert result.err.startswith(f"Execution {result.data['execution']['id']} failed:")

    def test_a_run_past_its_timeout_is_timed_out_and_exits_1(self):
        scan = echo_scan(
            make_tenant(),
            scan_type="test_sleep",
            options={"seconds": 2.5},
            timeout_seconds=1,
        )
        result = cli("run", str(scan.pk), "--format", "json")
        assert result.code == 1
        assert result.data["execution"]["status"] == "timed_out"

    def test_running_another_tenants_schedule_is_not_found(self):
        make_tenant(slug="acme")
        other = echo_scan(make_tenant(slug="other"))
        result = cli("run", str(other.pk), "--tenant", "acme")
        assert (result.code, result.err) == (2, f"Schedule {other.pk} not found.")
        assert not Execution.objects.exists()

    def test_a_viewer_may_not_run(self):
        tenant = make_tenant(slug="acme")
        scan = echo_scan(tenant)
        make_membership(user=make_user(username="vera"), tenant=tenant, role="viewer")
        result = cli("run", str(scan.pk), "--user", "vera")
        assert result.code == 2
        assert result.err == "Your role in tenant 'acme' does not allow run."
        assert not Execution.objects.exists()


@pytest.mark.django_db
class TestPauseResume:
    def test_pause_until_a_time_then_resume(self, world):
        until = (timezone.now() + timedelta(hours=3)).replace(microsecond=0)
        result = cli("pause", str(world.scan.pk), "--until", until.isoformat())
        assert result.code == 0, result.err
        assert "Paused acme/scan/Homepage" in result.out
        world.scan.refresh_from_db()
        assert (world.scan.enabled, world.scan.paused_until) == (True, until)

        data = cli("resume", str(world.scan.pk), "--format", "json").data
        assert data["schedule"]["state"] == "enabled"
        world.scan.refresh_from_db()
        assert world.scan.paused_until is None
        actions = list(
            AuditEntry.objects.filter(schedule=world.scan)
            .order_by("pk")
            .values_list("action", "source")
        )
        assert actions == [("pause", "cli"), ("resume", "cli")]

    def test_pause_without_until_pauses_until_resumed(self, world):
        data = cli("pause", str(world.report.pk), "--format", "json").data
        assert data["schedule"]["state"] == "paused"
        assert data["schedule"]["paused_until"] == "8000-01-01T00:00:00+00:00"
        report = Schedule.objects.get(pk=world.report.pk)
        assert report.enabled and report.is_paused_indefinitely()
        assert "paused until resumed." in cli("pause", str(world.report.pk)).out
        validated = cli("validate", "--format", "json").data
        assert validated["warnings"] == []  # paused until resumed is not "never fires again"
        assert "Resumed" in cli("resume", str(world.report.pk)).out
        report.refresh_from_db()
        assert report.enabled and report.paused_until is None

    def test_resume_of_a_disabled_schedule_exits_2_and_leaves_it_disabled(self, world):
        Schedule.objects.filter(pk=world.report.pk).update(enabled=False)
        result = cli("resume", str(world.report.pk))
        assert result.code == 2
        assert (
            result.err == "Nightly is disabled; resume only ends a pause: an admin must enable it."
        )
        assert Schedule.objects.get(pk=world.report.pk).enabled is False
        assert not AuditEntry.objects.exists()

    def test_a_naive_until_is_in_the_time_zone_setting(self, world, settings):
        settings.TIME_ZONE = "Europe/Berlin"
        cli("pause", str(world.scan.pk), "--until", "2099-07-01T12:00")
        world.scan.refresh_from_db()
        assert world.scan.paused_until.isoformat() == "2099-07-01T10:00:00+00:00"

    def test_an_until_with_a_far_offset_is_stored_in_utc(self, world):
        # Python accepts -21:00; PostgreSQL would reject it beyond 15:59.
        cli("pause", str(world.scan.pk), "--until", "2099-07-01T12:00-21:00")
        world.scan.refresh_from_db()
        assert world.scan.paused_until.isoformat() == "2099-07-02T09:00:00+00:00"

    def test_until_in_the_past_is_bad_input(self, world):
        result = cli("pause", str(world.scan.pk), "--until", "2001-01-01T00:00:00+00:00")
        assert result.code == 2
        assert "not in the future" in result.err
        assert not AuditEntry.objects.exists()

    @pytest.mark.parametrize(
        "args",
        [
            ("pause", "abc"),
            ("pause", "0"),
            ("pause", "1", "--until", "tomorrow"),
            ("resume",),
            ("resume", "1", "--format", "xml"),
        ],
    )
    def test_bad_arguments_exit_2_with_one_line(self, world, args):
        result = cli(*args)
        assert result.code == 2
        assert result.err and "\n" not in result.err

    def test_an_operator_may_pause_but_not_in_another_tenant(self, world):
        user = make_user(username="otto")
        make_membership(user=user, tenant=world.acme, role="operator")
        assert cli("pause", str(world.scan.pk), "--user", "otto").code == 0
        entry = AuditEntry.objects.get(action="pause")
        assert entry.user == user
        result = cli("pause", str(world.other.pk), "--user", "otto")
        assert (result.code, result.err) == (2, f"Schedule {world.other.pk} not found.")
