"""The host project's own work: task schedules, ``django.tasks`` tasks, async handlers, run
options, cancel and retry, and system schedules (no tenant)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest
from django.core.exceptions import ValidationError
from django.db import connection

from scheduling import kinds, runner
from scheduling.exceptions import StateConflict
from scheduling.models import AuditEntry, Execution, ScheduledTask, Status, TriggerKind
from tests.factories import make_membership, make_task, make_tenant, make_user
from tests.scheduling.api.conftest import client_for
from tests.scheduling.cli.conftest import cli

NOW = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)


def run_claimed(schedule, when=NOW, **kwargs) -> Execution:
    execution = runner.claim(schedule, when, claimed_by="test", **kwargs)
    assert execution is not None
    runner.execute(execution.pk)
    execution.refresh_from_db()
    return execution


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


@pytest.mark.django_db
class TestTaskTypes:
    def test_a_task_schedule_runs_its_registered_function_with_its_options(self):
        tenant = make_tenant()
        task = make_task(tenant=tenant, task_type="test_add", options={"a": 2, "b": 5})
        execution = run_claimed(task)
        assert execution.status == Status.SUCCEEDED
        assert execution.result["sum"] == 7
        assert execution.result["tenant"] == tenant.pk

    def test_an_unknown_task_type_is_a_field_error_naming_the_registered_ones(self):
        task = ScheduledTask(
            tenant=make_tenant(), name="x", task_type="nope", interval_seconds=60, options={}
        )
        with pytest.raises(ValidationError) as info:
            task.full_clean()
        message = " ".join(info.value.message_dict["task_type"])
        assert "nope" in message and "test_add" in message

    def test_options_are_validated_by_the_types_form(self):
        task = ScheduledTask(
            tenant=make_tenant(),
            name="x",
            task_type="test_add",
            interval_seconds=60,
            options={"a": "many", "c": 1},
        )
        with pytest.raises(ValidationError) as info:
            task.full_clean()
        assert "Unknown option(s): c" in " ".join(info.value.message_dict["options"])

    def test_a_stored_unknown_key_fails_its_run_with_a_clear_error(self):
        task = make_task(tenant=make_tenant())
        ScheduledTask.objects.filter(pk=task.pk).update(task_type="gone")
        execution = run_claimed(ScheduledTask.objects.get(pk=task.pk))
        assert execution.status == Status.FAILED
        assert "Unknown task type 'gone'" in execution.error

    def test_the_task_kind_is_in_the_table_of_kinds(self):
        spec = kinds.get_kind("task")
        assert (spec.model, spec.type_field, spec.api_prefix) == (
            ScheduledTask,
            "task_type",
            "tasks",
        )


@pytest.mark.django_db
class TestDjangoTasks:
    def test_a_registered_django_task_is_called_with_the_options_as_keyword_arguments(self):
        task = make_task(
            tenant=make_tenant(), task_type="test_refresh_feed", options={"url": "https://x"}
        )
        execution = run_claimed(task)
        assert execution.status == Status.SUCCEEDED, execution.error
        # limit: the form's initial value, stored with the options.
        assert execution.result == {"url": "https://x", "limit": 10}

    def test_a_coroutine_task_is_awaited_and_a_non_dict_result_is_wrapped(self):
        task = make_task(
            tenant=make_tenant(), task_type="test_shout", options={"url": "ab", "limit": 2}
        )
        execution = run_claimed(task)
        assert execution.status == Status.SUCCEEDED, execution.error
        assert execution.result == {"return_value": "ABAB"}

    def test_register_task_refuses_what_is_not_a_task(self):
        from scheduling.registry import register_task

        with pytest.raises(TypeError, match="django.tasks task"):
            register_task(lambda: None, key="plain_function")


@pytest.mark.django_db
class TestAsyncHandlers:
    def test_an_async_handler_is_awaited(self):
        task = make_task(tenant=make_tenant(), task_type="test_async", options={"seconds": 0.01})
        execution = run_claimed(task)
        assert execution.status == Status.SUCCEEDED
        assert execution.result == {"slept": 0.01}

    def test_the_timeout_cancels_the_coroutine(self, tmp_path):
        marker = tmp_path / "cancelled"
        task = make_task(
            tenant=make_tenant(),
            task_type="test_async",
            timeout_seconds=1,
            options={"seconds": 60, "marker": str(marker)},
        )
        started = time.monotonic()
        execution = run_claimed(task)
        assert time.monotonic() - started < 30  # not the 60 s the coroutine asked for
        assert execution.status == Status.TIMED_OUT
        assert "Timed out" in execution.error
        assert marker.read_text() == "cancelled"  # really cancelled, not abandoned


@pytest.mark.django_db(transaction=True)
def test_an_async_handler_may_use_the_orm_through_sync_to_async():
    tenant = make_tenant()
    make_task(tenant=tenant, name="other")
    task = make_task(tenant=tenant, task_type="test_async", options={"count_schedules": True})
    execution = run_claimed(task)
    assert execution.status == Status.SUCCEEDED, execution.error
    assert execution.result["schedules"] == 2


@pytest.mark.django_db
class TestRunOptions:
    def test_run_options_are_merged_over_the_schedules_for_that_run_only(self):
        task = make_task(tenant=make_tenant(), options={"a": 1, "b": 1})
        options = kinds.clean_run_options(task, {"b": 40})
        execution = run_claimed(task, trigger=TriggerKind.MANUAL, options=options)
        assert execution.options == {"b": 40}
        assert execution.result["sum"] == 41
        task.refresh_from_db()
        assert task.options == {"a": 1, "b": 1}
        assert run_claimed(task, NOW.replace(hour=13)).result["sum"] == 2

    @pytest.mark.parametrize(
        ("options", "message"),
        [
            ({"c": 1}, "Unknown option(s): c"),
            ({"b": "two"}, "b: Enter a whole number"),
            (["b"], "Options must be a JSON object"),
        ],
    )
    def test_bad_run_options_are_refused_naming_the_option(self, options, message):
        task = make_task(tenant=make_tenant())
        with pytest.raises(ValidationError) as info:
            kinds.clean_run_options(task, options)
        assert message in " ".join(info.value.message_dict["options"])

    def test_the_api_queues_a_run_with_options_and_refuses_bad_ones(self):
        tenant = make_tenant()
        user = make_user()
        make_membership(user=user, tenant=tenant, role="operator")
        task = make_task(tenant=tenant, options={"a": 1})
        client = client_for(user)
        response = client.post(f"/api/tasks/{task.pk}/run/", {"options": {"b": 9}}, "json")
        assert response.status_code == 202
        assert response.data["options"] == {"b": 9}
        assert Execution.objects.get(pk=response.data["id"]).options == {"b": 9}
        bad = client.post(f"/api/tasks/{task.pk}/run/", {"options": {"zz": 1}}, "json")
        assert bad.status_code == 400
        assert "zz" in str(bad.data["options"])
        extra = client.post(f"/api/tasks/{task.pk}/run/", {"option": {}}, "json")
        assert extra.status_code == 400
        assert Execution.objects.filter(schedule=task).count() == 1

    @pytest.mark.django_db(transaction=True)
    def test_the_cli_runs_with_options(self):
        task = make_task(tenant=make_tenant(), options={"a": 1})
        result = cli("run", str(task.pk), "--option", "b=41", "--format", "json")
        assert result.code == 0, result.err
        execution = Execution.objects.get(schedule=task)
        assert execution.options == {"b": 41} and execution.result["sum"] == 42

    def test_the_cli_refuses_a_bad_option_with_one_line_and_runs_nothing(self):
        task = make_task(tenant=make_tenant(), options={"a": 1})
        result = cli("run", str(task.pk), "--option", "zz=1")
        assert result.code == 2
        assert "zz" in result.err and "\n" not in result.err.strip()
        assert not Execution.objects.filter(schedule=task).exists()


@pytest.mark.django_db
class TestCancel:
    def test_a_queued_execution_is_cancelled_and_never_starts(self):
        task = make_task(tenant=make_tenant())
        execution = runner.claim(task, NOW, claimed_by="test")
        runner.cancel(execution, by=make_user(username="olga"))
        runner.execute(execution.pk)
        execution.refresh_from_db()
        assert execution.status == Status.CANCELLED
        assert execution.started_at is None
        assert execution.error == "Cancelled by olga."
        task.refresh_from_db()
        assert task.last_status == Status.CANCELLED and task.run_count == 0

    def test_a_finished_execution_cannot_be_cancelled(self):
        execution = run_claimed(make_task(tenant=make_tenant()))
        with pytest.raises(StateConflict, match="already finished"):
            runner.cancel(execution)
        execution.refresh_from_db()
        assert execution.status == Status.SUCCEEDED

    def test_a_cancelled_execution_is_not_retried_by_policy(self):
        task = make_task(tenant=make_tenant(), max_retries=3)
        runner.cancel(runner.claim(task, NOW, claimed_by="test"))
        assert Execution.objects.filter(schedule=task).count() == 1


@pytest.mark.django_db(transaction=True)
class TestCancelRunning:
    def _run_in_thread(self, execution_id: int) -> threading.Thread:
        def target() -> None:
            try:
                runner.execute(execution_id)
            finally:
                connection.close()

        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        return thread

    def test_a_running_handler_sees_context_cancelled_and_its_late_result_is_discarded(
        self, tmp_path
    ):
        started = tmp_path / "started"
        task = make_task(
            tenant=make_tenant(),
            task_type="test_until_cancelled",
            options={"seconds": 30, "started": str(started)},
        )
        execution = runner.claim(task, NOW, claimed_by="test")
        thread = self._run_in_thread(execution.pk)
        try:
            wait_for(started.exists)
            runner.cancel(Execution.objects.get(pk=execution.pk))
            thread.join(10)
            assert not thread.is_alive()  # the handler polled context.cancelled and returned
        finally:
            thread.join(30)
        execution.refresh_from_db()
        assert execution.status == Status.CANCELLED
        assert execution.result is None  # {"stopped": "cancelled"} came too late: discarded

    def test_a_running_coroutine_is_cancelled(self, tmp_path):
        marker = tmp_path / "cancelled"
        task = make_task(
            tenant=make_tenant(),
            task_type="test_async",
            options={"seconds": 60, "marker": str(marker)},
        )
        execution = runner.claim(task, NOW, claimed_by="test")
        thread = self._run_in_thread(execution.pk)
        try:
            wait_for(lambda: Execution.objects.get(pk=execution.pk).status == Status.RUNNING)
            runner.cancel(Execution.objects.get(pk=execution.pk))
            thread.join(15)
            assert not thread.is_alive()
        finally:
            thread.join(30)
        assert marker.read_text() == "cancelled"
        assert Execution.objects.get(pk=execution.pk).status == Status.CANCELLED

    @pytest.mark.process
    def test_the_process_executor_terminates_a_cancelled_child(self, tmp_path, monkeypatch):
        # The spawned child sets Django up afresh: point it at the test database.
        monkeypatch.setenv("SCHEDULING_DB_PATH", connection.settings_dict["NAME"])
        from scheduling.executors.process import run_in_child

        started = tmp_path / "started"
        task = make_task(
            tenant=make_tenant(),
            task_type="test_until_cancelled",
            options={"seconds": 120, "started": str(started)},
        )
        execution = runner.claim(task, NOW, claimed_by="test")
        result: dict = {}

        def target() -> None:
            try:
                result["exit"] = run_in_child(execution.pk, timeout=120)
            finally:
                connection.close()

        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        try:
            wait_for(started.exists, timeout=60)
            runner.cancel(Execution.objects.get(pk=execution.pk))
            thread.join(30)
            assert not thread.is_alive()
        finally:
            thread.join(60)
        # Killed by its parent: the handler would have returned within a second (it polls).
        assert result["exit"] != 0
        assert Execution.objects.get(pk=execution.pk).status == Status.CANCELLED


@pytest.mark.django_db
class TestRetry:
    def test_a_failed_execution_is_retried_as_the_next_attempt_of_the_same_occurrence(self):
        task = make_task(tenant=make_tenant(), options={"a": 1})
        failed = runner.claim(task, NOW, claimed_by="test", options={"b": 2})
        failed.mark_failed("boom")
        retry = runner.retry(failed, by=make_user())
        assert (retry.attempt, retry.scheduled_for, retry.trigger) == (2, NOW, TriggerKind.RETRY)
        assert retry.status == Status.QUEUED and retry.options == {"b": 2}
        with pytest.raises(StateConflict, match="Attempt 2 of this occurrence exists already"):
            runner.retry(failed)

    @pytest.mark.parametrize("status", [Status.SUCCEEDED, Status.QUEUED, Status.CANCELLED])
    def test_only_failures_can_be_retried(self, status):
        task = make_task(tenant=make_tenant())
        execution = runner.claim(task, NOW, claimed_by="test", status=status)
        with pytest.raises(StateConflict):
            runner.retry(execution)
        assert Execution.objects.filter(schedule=task).count() == 1


@pytest.mark.django_db
class TestCancelRetryAPI:
    @pytest.fixture
    def world(self):
        tenant, other = make_tenant(), make_tenant()
        users = {}
        for role in ("viewer", "operator"):
            users[role] = make_user(username=role)
            make_membership(user=users[role], tenant=tenant, role=role)
        task = make_task(tenant=tenant)
        return tenant, other, users, task

    def test_an_operator_cancels_a_queued_run_and_a_second_cancel_is_409(self, world):
        _tenant, _other, users, task = world
        execution = runner.claim(task, NOW, claimed_by="test")
        client = client_for(users["operator"])
        response = client.post(f"/api/executions/{execution.pk}/cancel/")
        assert response.status_code == 200
        assert response.data["status"] == Status.CANCELLED
        again = client.post(f"/api/executions/{execution.pk}/cancel/")
        assert again.status_code == 409
        assert "already finished (cancelled)" in again.data["detail"]
        assert AuditEntry.objects.filter(schedule=task, action="cancel").count() == 1

    def test_a_viewer_may_not_cancel_nor_retry(self, world):
        _tenant, _other, users, task = world
        execution = runner.claim(task, NOW, claimed_by="test")
        client = client_for(users["viewer"])
        assert client.post(f"/api/executions/{execution.pk}/cancel/").status_code == 403
        assert client.post(f"/api/executions/{execution.pk}/retry/").status_code == 403
        execution.refresh_from_db()
        assert execution.status == Status.QUEUED

    def test_retry_answers_202_with_the_new_attempt_and_409_when_not_failed(self, world):
        _tenant, _other, users, task = world
        execution = runner.claim(task, NOW, claimed_by="test")
        client = client_for(users["operator"])
        assert client.post(f"/api/executions/{execution.pk}/retry/").status_code == 409
        execution.mark_finished(Status.TIMED_OUT, error="slow")
        response = client.post(f"/api/executions/{execution.pk}/retry/")
        assert response.status_code == 202
        assert response.data["attempt"] == 2 and response.data["status"] == Status.QUEUED

    def test_another_tenants_execution_is_404(self, world):
        _tenant, other, users, _task = world
        foreign = runner.claim(make_task(tenant=other), NOW, claimed_by="test")
        client = client_for(users["operator"])
        assert client.post(f"/api/executions/{foreign.pk}/cancel/").status_code == 404
        assert client.post(f"/api/executions/{foreign.pk}/retry/").status_code == 404
        foreign.refresh_from_db()
        assert foreign.status == Status.QUEUED

    def test_the_cli_cancels_and_retries(self, world):
        _tenant, _other, _users, task = world
        execution = runner.claim(task, NOW, claimed_by="test")
        assert cli("cancel", str(execution.pk)).code == 0
        result = cli("cancel", str(execution.pk))
        assert result.code == 2 and "already finished" in result.err
        assert cli("retry", str(execution.pk)).code == 2
        failed = runner.claim(task, NOW.replace(hour=14), claimed_by="test")
        failed.mark_failed("boom")
        result = cli("retry", str(failed.pk), "--format", "json")
        assert result.code == 0
        assert Execution.objects.filter(scheduled_for=failed.scheduled_for, attempt=2).exists()
        assert cli("cancel", "999999").code == 2


@pytest.mark.django_db
class TestSystemSchedules:
    @pytest.fixture
    def world(self):
        tenant = make_tenant()
        admin = make_user(username="tenant-admin")
        make_membership(user=admin, tenant=tenant, role="owner")
        root = make_user(username="root", is_superuser=True, is_staff=True)
        system = make_task(tenant=None, name="Nightly maintenance")
        return tenant, admin, root, system

    def test_a_system_schedule_runs_and_its_execution_has_no_tenant(self, world):
        *_, system = world
        execution = run_claimed(system)
        assert execution.status == Status.SUCCEEDED
        assert execution.tenant_id is None and execution.result["tenant"] is None

    def test_a_tenants_user_never_sees_system_schedules_or_their_executions(self, world):
        tenant, admin, _root, system = world
        make_task(tenant=tenant, name="mine")
        execution = run_claimed(system)
        client = client_for(admin)
        names = [row["name"] for row in client.get("/api/tasks/").data["results"]]
        assert names == ["mine"]
        assert client.get(f"/api/tasks/{system.pk}/").status_code == 404
        assert client.post(f"/api/tasks/{system.pk}/run/").status_code == 404
        assert client.get("/api/executions/").data["results"] == []
        assert client.get(f"/api/executions/{execution.pk}/").status_code == 404
        assert client.post(f"/api/executions/{execution.pk}/retry/").status_code == 404
        assert ScheduledTask.objects.visible_to(admin).filter(pk=system.pk).count() == 0

    def test_a_tenants_user_cannot_create_a_system_schedule(self, world):
        _tenant, admin, _root, _system = world
        response = client_for(admin).post(
            "/api/tasks/",
            {
                "tenant": None,
                "name": "sneaky",
                "interval_seconds": 60,
                "task_type": "test_add",
                "options": {"a": 1},
            },
            "json",
        )
        assert response.status_code == 400
        assert "tenant" in response.data
        assert not ScheduledTask.objects.filter(name="sneaky").exists()

    def test_a_superuser_sees_and_creates_system_schedules(self, world):
        _tenant, _admin, root, system = world
        client = client_for(root)
        assert client.get(f"/api/tasks/{system.pk}/").data["tenant"] is None
        response = client.post(
            "/api/tasks/",
            {
                "tenant": None,
                "name": "Backup",
                "interval_seconds": 3600,
                "task_type": "test_add",
                "options": {"a": 1},
            },
            "json",
        )
        assert response.status_code == 201, response.data
        assert ScheduledTask.objects.get(name="Backup").tenant_id is None
        duplicate = client.post(
            "/api/tasks/",
            {"tenant": None, "name": "Backup", "interval_seconds": 60, "task_type": "test_add",
             "options": {"a": 1}},
            "json",
        )  # fmt: skip
        assert duplicate.status_code == 400 and "name" in duplicate.data

    def test_the_system_permission_grants_system_schedules_without_superuser(self, world):
        from django.contrib.auth.models import Permission

        _tenant, admin, _root, system = world
        admin.user_permissions.add(Permission.objects.get(codename="manage_system_schedules"))
        client = client_for(type(admin).objects.get(pk=admin.pk))
        assert client.get(f"/api/tasks/{system.pk}/").status_code == 200
        assert client.post(f"/api/tasks/{system.pk}/pause/").status_code == 200

    def test_system_schedules_count_against_no_quota(self, world, settings):
        tenant, *_ = world
        settings.SCHEDULING_MAX_SCHEDULES_PER_TENANT = 1
        make_task(tenant=None, name="another system one")
        from scheduling.services import over_quota_limit

        assert over_quota_limit(tenant) is None

    def test_the_cli_lists_system_schedules_for_the_operator_and_hides_them_from_users(self, world):
        _tenant, admin, _root, system = world
        rows = cli("list", "--format", "json").data["schedules"]
        assert {"id": system.pk, "tenant": None}.items() <= next(
            r for r in rows if r["id"] == system.pk
        ).items()
        mine = cli("list", "--format", "json", "--user", admin.username).data["schedules"]
        assert system.pk not in [r["id"] for r in mine]
        assert cli("run", str(system.pk), "--user", admin.username).code == 2

    def test_export_leaves_system_schedules_out_and_import_explains_why(self, world, tmp_path):
        tenant, *_ = world
        make_task(tenant=tenant, name="mine")
        names = [e["name"] for e in cli("export", "--format", "json").data["schedules"]]
        assert names == ["mine"]
        path = tmp_path / "system.json"
        path.write_text(
            '{"version": 1, "schedules": [{"tenant": null, "kind": "task", "name": "x", '
            '"task_type": "test_add", "options": {"a": 1}, "interval_seconds": 60}]}'
        )
        result = cli("import", str(path))
        assert result.code == 2 and "system schedules" in result.out + result.err
        assert not ScheduledTask.objects.filter(name="x").exists()


@pytest.mark.django_db
def test_a_system_cleanup_purges_the_old_history_of_every_tenant():
    from datetime import timedelta

    from django.utils import timezone

    from tests.factories import make_cleanup, make_execution, make_scan

    old = timezone.now() - timedelta(days=90)
    kept = []
    for tenant in (make_tenant(), make_tenant()):
        scan = make_scan(tenant=tenant)
        make_execution(schedule=scan, finished_at=old)
        kept.append(make_execution(schedule=scan).pk)
        make_execution(schedule=scan, finished_at=old, status=Status.QUEUED)  # never purged
    system = make_cleanup(tenant=None, name="History", cleanup_target="executions", retain_days=30)
    execution = run_claimed(system)
    assert execution.status == Status.SUCCEEDED, execution.error
    assert execution.result["deleted"] == 2
    assert Execution.objects.filter(pk__in=kept).count() == 2
    assert Execution.objects.filter(status=Status.QUEUED).count() == 2
