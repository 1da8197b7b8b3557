"""Log lines about an execution carry its fields as record attributes, at the outcome's level;
a handler's own lines through ``context.logger`` carry them too. Written by a real JSON
formatter (python-json-logger), configured as the README shows."""

from __future__ import annotations

import io
import json
import logging
from datetime import timedelta

import pytest
from django.utils import timezone

from scheduling import runner
from scheduling.logs import FIELDS, OUTCOME_LEVELS, ExecutionLogger
from scheduling.models import Status
from scheduling.registry import task_type, task_types
from tests.factories import make_scan, make_task, make_tenant, run_once

pytestmark = pytest.mark.django_db

jsonlogger = pytest.importorskip(
    "pythonjsonlogger.json", reason="python-json-logger is not installed (.[test] extra)"
)


@pytest.fixture
def json_lines():
    """Lines of the "scheduling" loggers as the README's JSON formatter writes them."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    # The README's example: the message, the level, the logger, and every field.
    handler.setFormatter(jsonlogger.JsonFormatter("{message}{levelname}{name}", style="{"))
    loggers = [logging.getLogger(name) for name in ("scheduling.runner", "scheduling.task")]
    kept = [(logger.level, logger.propagate) for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        for logger, (level, propagate) in zip(loggers, kept, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)
            logger.propagate = propagate


@pytest.fixture
def chatty_task():
    """A task type whose handler logs a line of its own, with a field of its own."""

    @task_type("test_chatty", label="Test: chatty")
    def chatty(task, context):
        context.logger.info("fetched %d rows", 3, extra={"rows": 3})
        if context.options.get("fail"):
            raise RuntimeError("the feed is down")
        return {"rows": 3}

    yield "test_chatty"
    task_types.unregister("test_chatty")


def test_a_succeeded_run_logs_one_info_line_with_every_field(json_lines, chatty_task):
    tenant = make_tenant()
    task = make_task(tenant=tenant, task_type=chatty_task, options={})
    execution = run_once(task, late=timedelta(seconds=2))
    assert execution.status == Status.SUCCEEDED

    [outcome] = [line for line in json_lines() if line["name"] == "scheduling.runner"]
    assert outcome["levelname"] == "INFO"
    assert set(FIELDS) <= set(outcome)
    assert {key: outcome[key] for key in FIELDS} == {
        "execution_id": execution.pk,
        "schedule_id": task.pk,
        "tenant_id": tenant.pk,
        "kind": "task",
        "type_key": "test_chatty",
        "status": "succeeded",
        "trigger": "schedule",
        "attempt": 1,
        "scheduled_for": execution.scheduled_for.isoformat(),
        "duration_ms": execution.duration_ms,
        "lateness_ms": round(execution.lateness.total_seconds() * 1000),
        "worker": "host:1",
    }
    assert outcome["lateness_ms"] >= 2000  # claimed two seconds after its time
    assert f"Execution {execution.pk} of {task.name!r}" in outcome["message"]


def test_the_handlers_own_lines_carry_the_executions_fields_and_its_own(json_lines, chatty_task):
    tenant = make_tenant()
    task = make_task(tenant=tenant, task_type=chatty_task, options={})
    execution = run_once(task)

    [line] = [line for line in json_lines() if line["name"] == "scheduling.task"]
    assert line["message"] == "fetched 3 rows"
    assert line["rows"] == 3  # the handler's own field, kept
    assert line["execution_id"] == execution.pk
    assert line["schedule_id"] == task.pk
    assert line["tenant_id"] == tenant.pk
    assert line["type_key"] == "test_chatty"
    assert line["status"] == "running"  # written while it ran


def test_a_failure_is_an_error_line_with_the_error(json_lines, chatty_task):
    task = make_task(tenant=make_tenant(), task_type=chatty_task, options={"fail": True})
    task.max_retries = 0
    task.save()
    execution = run_once(task)
    assert execution.status == Status.FAILED

    [outcome] = [line for line in json_lines() if line["name"] == "scheduling.runner"]
    assert outcome["levelname"] == "ERROR"
    assert outcome["status"] == "failed"
    assert "RuntimeError: the feed is down" in outcome["message"]


def test_an_interrupted_run_is_a_warning_line(json_lines):
    scan = make_scan(tenant=make_tenant(), scan_type="test_echo", target="x")
    execution = runner.claim(scan, timezone.now(), claimed_by="test")
    assert execution is not None
    assert runner.interrupt([execution], "The worker was lost.") == 1

    [outcome] = [line for line in json_lines() if line["name"] == "scheduling.runner"]
    assert outcome["levelname"] == "WARNING"
    assert outcome["status"] == "interrupted"
    assert outcome["type_key"] == "test_echo"
    assert outcome["lateness_ms"] is None  # it never started


def test_every_outcome_has_a_level():
    finished = {status for status in Status if status not in (Status.QUEUED, Status.RUNNING)}
    assert set(OUTCOME_LEVELS) == finished
    assert OUTCOME_LEVELS[Status.SUCCEEDED] == logging.INFO
    assert OUTCOME_LEVELS[Status.TIMED_OUT] == logging.ERROR
    assert OUTCOME_LEVELS[Status.MISSED] == logging.WARNING


def test_a_deleted_schedules_late_outcome_still_logs_its_fields(json_lines):
    scan = make_scan(tenant=make_tenant(), scan_type="test_echo", target="x")
    execution = runner.claim(scan, timezone.now(), claimed_by="test")
    assert execution is not None
    scan.delete()
    execution.refresh_from_db()
    runner.interrupt([execution], "The worker was lost.")

    [outcome] = [line for line in json_lines() if line["name"] == "scheduling.runner"]
    assert outcome["schedule_id"] is None
    assert outcome["type_key"] == ""
    assert outcome["kind"] == "scan"


def test_a_logger_built_with_its_fields_keeps_them():
    # Built from an execution, the fields are read when first needed; given as a mapping,
    # as LoggerAdapter takes them, they are used as they are.
    adapter = ExecutionLogger(logging.getLogger("scheduling.task"), {"execution_id": 7})
    assert adapter.extra == {"execution_id": 7}
    _msg, kwargs = adapter.process("fetched", {"extra": {"rows": 1, "execution_id": 8}})
    assert kwargs["extra"] == {"execution_id": 8, "rows": 1}  # the call's own keys win
