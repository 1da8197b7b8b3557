"""The executor interface: the table of names, and the service talking only to the interface."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from scheduling import runner
from scheduling.executors import EXECUTORS, get_executor_class
from scheduling.executors.base import BaseExecutor, ExecutorContext, Leftovers
from scheduling.executors.choice import check_executors, executor_name, kinds_run_by, selected
from scheduling.models import Execution, Status
from scheduling.scheduler.recorder import Recorder
from scheduling.scheduler.service import SchedulerService
from tests.factories import make_scan, make_tenant

NOW = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)


class InlineExecutor(BaseExecutor):
    """An executor added by a host project: it runs each execution at once, in this thread."""

    name = "inline"
    submitted: list[tuple[int, int, float, float | None, bool]] = []
    shut_down: list[float] = []

    def submit(self, execution, *, priority, timeout, not_before=None, track=False):
        type(self).submitted.append((execution.pk, priority, timeout, not_before, track))
        runner.execute(execution.pk, worker=self.context.worker, writer=self.context.writer)
        if track:
            self.context.on_done(execution.pk)

    def shutdown(self, *, grace):
        type(self).shut_down.append(grace)
        return Leftovers()


class LeavesWork(BaseExecutor):
    """An executor that never runs anything: at shutdown, all it got is left over."""

    name = "leaves_work"

    def __init__(self, context: ExecutorContext) -> None:
        super().__init__(context)
        self.got: list[int] = []

    def submit(self, execution, *, priority, timeout, not_before=None, track=False):
        self.got.append(execution.pk)

    def shutdown(self, *, grace):
        return Leftovers(never_started=list(self.got))


@pytest.fixture
def extra_executors(monkeypatch):
    monkeypatch.setitem(EXECUTORS, "inline", f"{__name__}.InlineExecutor")
    monkeypatch.setitem(EXECUTORS, "leaves_work", f"{__name__}.LeavesWork")
    InlineExecutor.submitted, InlineExecutor.shut_down = [], []


def echo_scan(tenant, **fields):
    return make_scan(tenant=tenant, scan_type="test_echo", target="x", **fields)


@pytest.mark.parametrize("name", sorted(EXECUTORS))
def test_every_executor_of_the_table_is_a_base_executor_named_as_in_the_table(name):
    executor = get_executor_class(name)
    assert issubclass(executor, BaseExecutor)
    assert executor.name == name


@override_settings(SCHEDULING_EXECUTOR="process", SCHEDULING_EXECUTOR_OVERRIDES={"scan": "celery"})
def test_overrides_choose_the_executor_of_each_kind():
    assert executor_name("scan") == "celery"
    assert executor_name("report") == executor_name("cleanup") == "process"
    assert kinds_run_by("celery") == ["scan"]
    assert selected() == ["celery", "process"]


@pytest.mark.django_db
@pytest.mark.usefixtures("extra_executors")
@override_settings(SCHEDULING_EXECUTOR="inline")
def test_an_executor_added_to_the_table_runs_what_the_service_hands_over():
    service = SchedulerService(install_signal_handlers=False)
    service.lease.valid_until = float("inf")
    service._start_executors(runner.DIRECT)
    assert [type(e) for e in service.executors.values()] == [InlineExecutor]
    scan = echo_scan(make_tenant(), priority=7, timeout_seconds=30)
    execution = runner.claim(scan, NOW, claimed_by=service.identity)

    service._submit(execution, scan.priority)

    assert InlineExecutor.submitted == [(execution.pk, 7, 30, NOW.timestamp(), False)]
    execution.refresh_from_db()
    assert execution.status == Status.SUCCEEDED
    assert execution.worker == service.worker


@pytest.mark.django_db(transaction=True)  # the shutdown closes the connection
@pytest.mark.usefixtures("extra_executors")
@override_settings(SCHEDULING_EXECUTOR="leaves_work")
def test_what_an_executor_leaves_at_shutdown_is_marked_interrupted():
    service = SchedulerService(install_signal_handlers=False, shutdown_grace=0)
    service.lease.valid_until = float("inf")
    service.leader = True
    service.recorder = Recorder()
    service._start_executors(service.recorder)
    scan = echo_scan(make_tenant())
    execution = runner.claim(scan, NOW, claimed_by=service.identity)
    service._submit(execution, 0)

    service._shutdown()

    execution.refresh_from_db()
    assert execution.status == Status.INTERRUPTED
    assert "stopped before this finished" in execution.error
    assert not service.executors


@pytest.mark.django_db
@pytest.mark.usefixtures("extra_executors")
@override_settings(SCHEDULING_EXECUTOR="inline")
def test_overlap_queue_runs_the_next_execution_when_the_executor_reports_the_first_done():
    service = SchedulerService(install_signal_handlers=False)
    service.lease.valid_until = float("inf")
    service._start_executors(runner.DIRECT)
    scan = echo_scan(make_tenant(), overlap="queue")
    first = runner.claim(scan, NOW, claimed_by=service.identity)
    second = runner.claim(scan, NOW.replace(minute=1), claimed_by=service.identity)

    service._submit(first, 0)
    service._submit(second, 0)

    # The second waited for the first; the executor's on_done released it.
    assert [pk for pk, *_rest in InlineExecutor.submitted] == [first.pk, second.pk]
    assert [track for *_rest, track in InlineExecutor.submitted] == [True, True]
    assert set(Execution.objects.values_list("status", flat=True)) == {Status.SUCCEEDED}


def check_ids(**settings):
    with override_settings(**settings):
        return {message.id for message in check_executors()}


def test_the_process_executor_needs_a_settings_module_its_children_can_import(monkeypatch):
    assert check_ids(SCHEDULING_EXECUTOR="process") == set()
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE")
    assert check_ids(SCHEDULING_EXECUTOR="process") == {"scheduling.E037"}
    assert check_ids(SCHEDULING_EXECUTOR="thread") == set()


@pytest.mark.django_db  # the check command runs every check, some read the database
def test_an_executor_that_cannot_be_imported_is_a_check_error_naming_it(monkeypatch):
    monkeypatch.setitem(EXECUTORS, "missing", "tests.no_such_module.Executor")
    with override_settings(SCHEDULING_EXECUTOR_OVERRIDES={"report": "missing"}):
        [message] = check_executors()
        assert message.id == "scheduling.E038"
        assert "missing executor" in message.msg
        with pytest.raises(SystemCheckError, match="scheduling.E038"):
            call_command("check")
