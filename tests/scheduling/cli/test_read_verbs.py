"""The reading verbs: list, show, history, status; scoping by tenant, kind and user."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from scheduling.models import SchedulerLease, Status
from tests.factories import make_execution, make_membership, make_user
from tests.scheduling.cli.conftest import cli, echo_scan

pytestmark = pytest.mark.django_db


class TestList:
    def test_table_lists_every_schedule_with_its_trigger(self, world):
        result = cli("list")
        assert result.code == 0, result.err
        for name in ("Homepage", "Nightly", "Old rows", "Umbrella scan"):
            assert name in result.out
        assert "Every 5 minutes" in result.out

    def test_json_has_the_documented_keys(self, world):
        result = cli("list", "--format", "json")
        assert result.code == 0
        rows = result.data["schedules"]
        assert {r["name"] for r in rows} == {"Homepage", "Nightly", "Old rows", "Umbrella scan"}
        homepage = next(r for r in rows if r["name"] == "Homepage")
        assert set(homepage) == {
            "id", "tenant", "kind", "name", "type", "trigger_type", "trigger", "timezone",
            "enabled", "paused_until", "state", "next_run_at", "last_run_at", "last_status",
            "run_count", "consecutive_failures",
        }  # fmt: skip
        assert homepage["tenant"] == "acme"
        assert homepage["type"] == "test_echo"
        assert homepage["state"] == "enabled"

    def test_tenant_and_kind_narrow_the_list(self, world):
        rows = cli("list", "--tenant", "acme", "--kind", "scan", "--format", "json").data
        assert [r["name"] for r in rows["schedules"]] == ["Homepage"]
        by_id = cli("list", "--tenant", str(world.umbrella.pk), "--format", "json").data
        assert [r["name"] for r in by_id["schedules"]] == ["Umbrella scan"]

    def test_a_paused_schedule_says_until_when(self, world):
        world.scan.paused_until = timezone.now() + timedelta(hours=2)
        world.scan.save()
        row = next(
            r for r in cli("list", "--format", "json").data["schedules"] if r["id"] == world.scan.pk
        )
        assert row["state"] == "paused"
        assert row["paused_until"] is not None

    def test_an_empty_list_says_so(self, db):
        assert "No schedules." in cli("list").out
        assert cli("list", "--format", "json").data == {"schedules": []}


class TestShow:
    def test_table_shows_configuration_and_next_runs(self, world):
        result = cli("show", str(world.report.pk))
        assert result.code == 0
        assert "Nightly" in result.out
        assert "execution_summary" in result.out
        assert "next runs" in result.out

    def test_json_holds_the_config_entry_next_runs_and_recent_executions(self, world):
        make_execution(schedule=world.scan, status=Status.FAILED, error="boom")
        world.report.depends_on.set([world.scan])
        data = cli("show", str(world.scan.pk), "--format", "json").data
        assert data["schedule"]["id"] == world.scan.pk
        assert data["schedule"]["config"]["scan_type"] == "test_echo"
        assert data["schedule"]["config"]["interval_seconds"] == 300
        assert data["schedule"]["dependents"] == [{"kind": "report", "name": "Nightly"}]
        assert len(data["next_runs"]) == 5
        assert [e["error"] for e in data["recent_executions"]] == ["boom"]

    def test_another_tenants_id_is_not_found(self, world):
        result = cli("show", str(world.other.pk), "--tenant", "acme")
        assert result.code == 2
        assert result.err == f"Schedule {world.other.pk} not found."

    def test_an_id_of_another_kind_is_not_found(self, world):
        assert cli("show", str(world.scan.pk), "--kind", "report").code == 2


class TestHistory:
    @pytest.fixture
    def executions(self, world):
        now = timezone.now()
        return {
            "old": make_execution(schedule=world.scan, scheduled_for=now - timedelta(days=3)),
            "failed": make_execution(
                schedule=world.scan,
                status=Status.FAILED,
                error="kaput",
                scheduled_for=now - timedelta(hours=1),
            ),
            "report": make_execution(schedule=world.report, scheduled_for=now - timedelta(hours=2)),
            "other": make_execution(schedule=world.other, scheduled_for=now - timedelta(hours=1)),
        }

    def test_table_lists_executions_newest_first(self, executions):
        result = cli("history")
        assert result.code == 0
        assert "kaput" in result.out
        assert result.out.index("Homepage") < result.out.index("Nightly")

    def test_json_filters_by_schedule_status_and_time(self, world, executions):
        def ids(*args: str) -> list[int]:
            data = cli("history", "--format", "json", *args).data
            return [e["id"] for e in data["executions"]]

        assert ids("--schedule", str(world.scan.pk)) == [
            executions["failed"].pk,
            executions["old"].pk,
        ]
        assert ids("--status", "failed") == [executions["failed"].pk]
        since = (timezone.now() - timedelta(days=1)).isoformat()
        assert executions["old"].pk not in ids("--since", since)
        until = (timezone.now() - timedelta(days=1)).isoformat()
        assert ids("--until", until) == [executions["old"].pk]
        assert ids("--tenant", "umbrella") == [executions["other"].pk]
        assert ids("--kind", "report") == [executions["report"].pk]
        assert len(ids("--limit", "2")) == 2

    def test_json_execution_has_the_documented_keys(self, executions):
        row = cli("history", "--format", "json", "--limit", "1").data["executions"][0]
        assert set(row) == {
            "id", "tenant", "schedule_id", "schedule_name", "kind", "scheduled_for", "attempt",
            "trigger", "status", "queued_at", "started_at", "finished_at", "duration_ms",
            "worker", "error", "result", "options",
        }  # fmt: skip

    def test_a_schedule_of_another_tenant_is_not_found(self, world, executions):
        result = cli("history", "--tenant", "acme", "--schedule", str(world.other.pk))
        assert (result.code, result.err) == (2, f"Schedule {world.other.pk} not found.")

    def test_a_bad_status_is_bad_input(self, executions):
        result = cli("history", "--status", "exploded")
        assert result.code == 2
        assert "invalid choice" in result.err and "\n" not in result.err


class TestStatus:
    def test_without_a_scheduler_it_is_not_healthy(self, world):
        result = cli("status")
        assert result.code == 0
        assert "NOT healthy" in result.out
        data = cli("status", "--format", "json").data
        assert data["healthy"] is False
        assert data["leader"] is None

    def test_reports_leader_heartbeat_sync_jobs_and_next_fires(self, world):
        now = timezone.now()
        SchedulerLease.objects.create(
            name="default",
            holder="host:1:abc",
            renewed_at=now - timedelta(seconds=2),
            expires_at=now + timedelta(seconds=10),
            last_sync_at=now,
            sync_lag_ms=12,
            job_count=4,
        )
        for n, schedule in enumerate((world.scan, world.report, world.other), start=1):
            type(schedule).objects.filter(pk=schedule.pk).update(
                next_run_at=now + timedelta(minutes=n)
            )
        data = cli("status", "--format", "json").data
        assert data["healthy"] is True
        assert data["leader"] == "host:1:abc"
        assert 1 < data["heartbeat_age_seconds"] < 10
        assert (data["sync_lag_ms"], data["job_count"]) == (12, 4)
        assert [f["name"] for f in data["next_fires"]] == ["Homepage", "Nightly", "Umbrella scan"]

        scoped = cli("status", "--tenant", "umbrella", "--format", "json").data
        assert [f["name"] for f in scoped["next_fires"]] == ["Umbrella scan"]
        assert scoped["job_count"] == 1  # that tenant's enabled schedules
        table = cli("status", "--next", "1").out
        assert "healthy" in table and "host:1:abc" in table and "Homepage" in table
        assert "Nightly" not in table


class TestUserScope:
    def test_a_user_sees_only_their_tenants(self, world):
        user = make_user(username="vera")
        make_membership(user=user, tenant=world.umbrella, role="viewer")
        data = cli("list", "--user", "vera", "--format", "json").data
        assert [r["name"] for r in data["schedules"]] == ["Umbrella scan"]

    def test_another_tenants_slug_is_an_unknown_tenant(self, world):
        make_user(username="vera")
        result = cli("list", "--user", "vera", "--tenant", "acme")
        assert (result.code, result.err) == (2, "Unknown tenant 'acme'.")
        assert cli("list", "--tenant", "no-such-tenant").err == "Unknown tenant 'no-such-tenant'."
        assert cli("list", "--tenant", "999999").code == 2

    def test_an_unknown_user_is_bad_input(self, world):
        assert cli("list", "--user", "nobody").err == "Unknown user 'nobody'."


def test_list_and_history_take_the_same_queries_for_many_rows(world, django_assert_num_queries):
    from tests.factories import make_execution

    def count(*args: str) -> int:
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as queries:
            assert cli(*args).code == 0
        return len(queries)

    few = (count("list", "--format", "json"), count("history", "--format", "json"))
    for n in range(10):
        scan = echo_scan(world.acme, name=f"extra {n}")
        make_execution(schedule=scan)
    many = (count("list", "--format", "json"), count("history", "--format", "json"))
    assert many == few
    assert few[0] <= 2


def test_djangos_options_also_work_after_the_verb(world):
    assert cli("list", "-v", "0", "--no-color").code == 0
    assert cli("-v", "0", "list").code == 0
