"""The operator's other everyday verbs (issue 18): remove, enable, disable, cancel, retry,
``list --enabled/--disabled/--failing``, and a schedule picked by its name."""

from __future__ import annotations

import io

import pytest

from scheduling.admin.figures import build_dashboard
from scheduling.cli import SchedulingCLI
from scheduling.models import AuditEntry, Execution, Schedule, Status
from tests.factories import make_execution, make_membership, make_report, make_user
from tests.scheduling.cli.conftest import cli, echo_scan

pytestmark = pytest.mark.django_db


class Terminal(io.StringIO):
    """Input typed at a terminal: what ``remove`` may ask on."""

    def isatty(self) -> bool:
        return True


def member(world, role: str, username: str) -> str:
    make_membership(user=make_user(username=username), tenant=world.acme, role=role)
    return username


class TestRemove:
    def test_yes_removes_it_keeps_its_history_and_the_audit_trail(self, world):
        execution = make_execution(schedule=world.scan)
        result = cli("remove", str(world.scan.pk), "--yes")
        assert result.code == 0, result.err
        assert result.out.strip() == f"Removed acme/scan/Homepage ({world.scan.pk})."
        assert not Schedule.objects.filter(pk=world.scan.pk).exists()
        execution.refresh_from_db()
        assert (execution.schedule_id, execution.schedule_name) == (None, "Homepage")
        audit = AuditEntry.objects.get(action="delete")
        assert (audit.schedule_name, audit.source) == ("Homepage", "cli")

    def test_without_a_terminal_it_needs_yes(self, world, monkeypatch):
        # A pipe, as in CI: even a "y" waiting on it is no confirmation.
        monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))
        result = cli("remove", str(world.scan.pk))
        assert (result.code, result.err) == (
            2,
            "Not removed: give --yes to remove without a terminal to confirm on.",
        )
        assert Schedule.objects.filter(pk=world.scan.pk).exists()

    @pytest.mark.parametrize(("answer", "removed"), [("y\n", True), ("\n", False), ("no\n", False)])
    def test_on_a_terminal_it_asks_first(self, world, answer, removed):
        out, err = io.StringIO(), io.StringIO()
        command = SchedulingCLI(stdout=out, stderr=err, stdin=Terminal(answer))
        assert command.remove(world.scan.pk) == 0
        assert err.getvalue() == (
            f"Remove acme/scan/Homepage ({world.scan.pk})? Its history is kept. [y/N] "
        )
        assert Schedule.objects.filter(pk=world.scan.pk).exists() is not removed
        assert ("Removed" if removed else "Nothing was removed.") in out.getvalue()

    def test_json_prints_what_was_removed(self, world):
        data = cli("remove", "acme/report/Nightly", "-y", "--format", "json").data
        assert (data["removed"]["id"], data["removed"]["name"]) == (world.report.pk, "Nightly")

    def test_a_schedule_declared_in_code_is_not_removed(self, world):
        Schedule.objects.filter(pk=world.scan.pk).update(declared=True)
        result = cli("remove", str(world.scan.pk), "--yes")
        assert result.code == 2
        assert "declared in code" in result.err and "\n" not in result.err
        assert Schedule.objects.filter(pk=world.scan.pk).exists()

    def test_only_an_admin_removes_and_another_tenants_schedule_is_not_found(self, world):
        otto = member(world, "operator", "otto")
        refused = cli("remove", str(world.scan.pk), "--yes", "--user", otto)
        assert refused.err == "Your role in tenant 'acme' does not allow remove."
        ada = member(world, "admin", "ada")
        hidden = cli("remove", str(world.other.pk), "--yes", "--user", ada)
        assert (hidden.code, hidden.err) == (2, f"Schedule {world.other.pk} not found.")
        assert cli("remove", str(world.scan.pk), "--yes", "--user", ada).code == 0
        assert Schedule.objects.count() == 3


class TestEnableDisable:
    def test_disable_then_enable_each_audited_once(self, world):
        assert "Disabled acme/scan/Homepage" in cli("disable", str(world.scan.pk)).out
        assert not Schedule.objects.get(pk=world.scan.pk).enabled
        again = cli("disable", str(world.scan.pk))
        assert again.out.strip() == f"acme/scan/Homepage ({world.scan.pk}) is disabled already."
        data = cli("enable", str(world.scan.pk), "--format", "json").data
        assert data["schedule"]["state"] == "enabled"
        actions = list(
            AuditEntry.objects.filter(schedule=world.scan)
            .order_by("pk")
            .values_list("action", "source")
        )
        assert actions == [("disable", "cli"), ("enable", "cli")]

    def test_enable_makes_a_disabled_schedule_resumable(self, world):
        Schedule.objects.filter(pk=world.report.pk).update(enabled=False)
        assert cli("resume", str(world.report.pk)).code == 2  # resume only ends a pause
        assert cli("enable", str(world.report.pk)).code == 0
        assert Schedule.objects.get(pk=world.report.pk).enabled

    def test_an_operator_may_pause_but_not_disable(self, world):
        otto = member(world, "operator", "otto")
        result = cli("disable", str(world.scan.pk), "--user", otto)
        assert (result.code, result.err) == (
            2,
            "Your role in tenant 'acme' does not allow disable.",
        )
        assert Schedule.objects.get(pk=world.scan.pk).enabled
        ada = member(world, "admin", "ada")
        assert cli("disable", str(world.scan.pk), "--user", ada).code == 0


class TestCancelRetry:
    def test_an_operator_cancels_a_queued_execution_and_retries_a_failed_one(self, world):
        otto = member(world, "operator", "otto")
        queued = make_execution(schedule=world.scan, status=Status.QUEUED, started_at=None)
        result = cli("cancel", str(queued.pk), "--user", otto)
        assert result.code == 0, result.err
        assert result.out.startswith(f"Cancelled execution {queued.pk} of Homepage")
        queued.refresh_from_db()
        assert (queued.status, queued.error) == (Status.CANCELLED, "Cancelled by otto.")

        failed = make_execution(schedule=world.scan, status=Status.FAILED, error="boom")
        data = cli("retry", str(failed.pk), "--user", otto, "--format", "json").data
        attempt = Execution.objects.get(pk=data["execution"]["id"])
        assert (attempt.scheduled_for, attempt.attempt) == (failed.scheduled_for, 2)
        assert attempt.status == Status.QUEUED
        actions = set(AuditEntry.objects.values_list("action", "source", "user__username"))
        assert actions == {("cancel", "cli", "otto"), ("retry", "cli", "otto")}

    def test_a_viewer_may_not_and_another_tenants_execution_is_not_found(self, world):
        vera = member(world, "viewer", "vera")
        queued = make_execution(schedule=world.scan, status=Status.QUEUED, started_at=None)
        refused = cli("cancel", str(queued.pk), "--user", vera)
        assert refused.err == "Your role in tenant 'acme' does not allow cancel."
        theirs = make_execution(schedule=world.other, status=Status.FAILED)
        hidden = cli("retry", str(theirs.pk), "--user", vera)
        assert (hidden.code, hidden.err) == (2, f"Execution {theirs.pk} not found.")
        assert Execution.objects.filter(status=Status.QUEUED).count() == 1


class TestListFilters:
    @pytest.fixture
    def states(self, world):
        Schedule.objects.filter(pk=world.report.pk).update(enabled=False)
        Schedule.objects.filter(pk=world.scan.pk).update(last_status=Status.FAILED)
        Schedule.objects.filter(pk=world.other.pk).update(last_status=Status.SUCCEEDED)
        # Its last occurrence was skipped, but it failed twice since its last success.
        Schedule.objects.filter(pk=world.cleanup.pk).update(
            last_status=Status.SKIPPED, consecutive_failures=2
        )
        return world

    def names(self, *args: str) -> list[str]:
        result = cli("list", "--format", "json", *args)
        assert result.code == 0, result.err
        return [row["name"] for row in result.data["schedules"]]

    def test_enabled_disabled_and_failing(self, states):
        # Ordered by tenant, kind and name: acme's cleanup, acme's scan, umbrella's scan.
        assert self.names("--enabled") == ["Old rows", "Homepage", "Umbrella scan"]
        assert self.names("--disabled") == ["Nightly"]
        assert self.names("--failing") == ["Old rows", "Homepage"]
        assert self.names("--failing", "--disabled") == []
        assert self.names("--failing", "--tenant", "umbrella") == []

    def test_failing_is_what_the_dashboard_lists(self, states):
        root = make_user(username="root", is_superuser=True)
        dashboard = build_dashboard(root)
        assert sorted(self.names("--failing")) == sorted(s.name for s in dashboard.failing)

    def test_enabled_and_disabled_together_is_bad_input(self, world):
        result = cli("list", "--enabled", "--disabled")
        assert result.code == 2
        assert "not allowed with argument" in result.err


class TestPickByName:
    def test_tenant_slash_name_tenant_kind_name_and_name_within_tenant(self, world):
        for ref in ("acme/Homepage", "acme/scan/Homepage", str(world.acme.pk) + "/Homepage"):
            data = cli("show", ref, "--format", "json").data
            assert data["schedule"]["id"] == world.scan.pk, ref
        data = cli("show", "Homepage", "--tenant", "acme", "--format", "json").data
        assert data["schedule"]["id"] == world.scan.pk
        paused = cli("pause", "acme/report/Nightly", "--format", "json").data
        assert paused["schedule"]["id"] == world.report.pk

    def test_name_takes_slashes_and_digits_literally(self, world):
        odd = echo_scan(world.acme, name="eu/west")
        digits = echo_scan(world.acme, name="2024")
        assert cli("show", "--name", "eu/west", "--format", "json").data["schedule"]["id"] == (
            odd.pk
        )
        data = cli("show", "--name", "2024", "--tenant", "acme", "--format", "json").data
        assert data["schedule"]["id"] == digits.pk
        assert cli("show", "acme/eu/west", "--format", "json").data["schedule"]["id"] == odd.pk

    def test_an_ambiguous_name_lists_the_candidates_in_one_line(self, world):
        report = make_report(tenant=world.acme, name="Homepage")
        result = cli("disable", "acme/Homepage")
        assert result.code == 2
        assert result.err == (
            f"'acme/Homepage' names 2 schedules: acme/report/Homepage ({report.pk}), "
            f"acme/scan/Homepage ({world.scan.pk}); give its id, or narrow it with "
            "TENANT/KIND/NAME, --tenant or --kind."
        )
        assert Schedule.objects.filter(enabled=False).count() == 0
        assert cli("disable", "acme/Homepage", "--kind", "report").code == 0
        assert not Schedule.objects.get(pk=report.pk).enabled

    def test_unknown_and_other_tenants_names_are_not_found(self, world):
        assert cli("show", "acme/Nothing").err == "Schedule 'acme/Nothing' not found."
        assert cli("show", "nowhere/Homepage").err == "Schedule 'nowhere/Homepage' not found."
        vera = member(world, "viewer", "vera")
        # umbrella's schedule exists, but not for vera: not found, never "forbidden".
        result = cli("show", "umbrella/Umbrella scan", "--user", vera)
        assert (result.code, result.err) == (2, "Schedule 'umbrella/Umbrella scan' not found.")

    def test_what_the_user_cannot_see_does_not_make_a_name_ambiguous(self, world):
        echo_scan(world.umbrella, name="Homepage")
        assert "names 2 schedules" in cli("show", "Homepage").err
        vera = member(world, "viewer", "vera")
        data = cli("show", "Homepage", "--user", vera, "--format", "json").data
        assert data["schedule"]["id"] == world.scan.pk

    def test_history_takes_a_name_too(self, world):
        execution = make_execution(schedule=world.scan)
        make_execution(schedule=world.report)
        data = cli("history", "--schedule", "acme/Homepage", "--format", "json").data
        assert [e["id"] for e in data["executions"]] == [execution.pk]
