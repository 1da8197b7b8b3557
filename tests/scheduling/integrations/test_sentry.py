"""Sentry, with the real sentry-sdk sending its envelopes to a loopback HTTP server: a handler's
exception is one event with the schedule's tags and fingerprint; with
SCHEDULING_SENTRY_MONITORS each run checks in to its schedule's monitor, whose config follows
the schedule."""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.core.checks import run_checks
from django.test import override_settings

from scheduling.integrations.sentry import monitor_config
from scheduling.models import Status
from scheduling.registry import task_type, task_types
from tests.factories import make_scan, make_task, make_tenant, run_once

sentry_sdk = pytest.importorskip("sentry_sdk", reason="sentry-sdk is not installed (.[test])")

pytestmark = pytest.mark.django_db


class Envelopes:
    """A loopback Sentry: it keeps the items of every envelope it receives."""

    def __init__(self) -> None:
        self.items: list[tuple[dict[str, Any], Any]] = []
        store = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802  # the name http.server calls
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                store.items.extend(parse_envelope(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def dsn(self) -> str:
        return f"http://public@127.0.0.1:{self.server.server_address[1]}/1"

    def of_type(self, kind: str) -> list[Any]:
        sentry_sdk.flush(timeout=10)
        return [payload for header, payload in self.items if header.get("type") == kind]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def parse_envelope(body: bytes) -> list[tuple[dict[str, Any], Any]]:
    """Return (item header, payload) of each item of an envelope (Sentry's wire format)."""
    _header, _, rest = body.partition(b"\n")
    items = []
    while rest.strip():
        line, _, rest = rest.partition(b"\n")
        header = json.loads(line)
        if "length" in header:
            payload, rest = rest[: header["length"]], rest[header["length"] + 1 :]
        else:
            payload, _, rest = rest.partition(b"\n")
        items.append((header, json.loads(payload) if payload else None))
    return items


@pytest.fixture
def sentry() -> Iterator[Envelopes]:
    envelopes = Envelopes()
    # Only the SDK itself: the logging integration would add the outcome line as an event.
    sentry_sdk.init(dsn=envelopes.dsn, default_integrations=False, auto_enabling_integrations=False)
    try:
        yield envelopes
    finally:
        client = sentry_sdk.get_client()
        client.close(timeout=5)
        sentry_sdk.get_global_scope().set_client(None)
        envelopes.close()


@pytest.fixture
def flaky_task() -> Iterator[str]:
    @task_type("test_flaky", label="Test: flaky")
    def flaky(task, context):
        if context.options.get("fail"):
            raise ConnectionError("the feed is down")
        return {"ok": True}

    yield "test_flaky"
    task_types.unregister("test_flaky")


def test_a_handlers_exception_is_one_event_with_the_schedules_tags(sentry, flaky_task):
    tenant = make_tenant(slug="acme")
    task = make_task(tenant=tenant, task_type=flaky_task, options={"fail": True}, max_retries=0)
    execution = run_once(task)
    assert execution.status == Status.FAILED

    [event] = sentry.of_type("event")
    [exception] = event["exception"]["values"]
    assert exception["type"] == "ConnectionError"
    assert exception["value"] == "the feed is down"
    assert event["tags"] == {
        "scheduling.tenant": str(tenant.pk),
        "scheduling.schedule": str(task.pk),
        "scheduling.kind": "task",
        "scheduling.type": "test_flaky",
    }
    assert event["fingerprint"] == ["scheduling", str(task.pk), "ConnectionError"]
    assert event["contexts"]["scheduling"]["execution_id"] == execution.pk


def test_a_success_sends_no_event_and_no_monitor_without_the_setting(sentry, flaky_task):
    run_once(make_task(tenant=make_tenant(), task_type=flaky_task, options={}))
    assert sentry.of_type("event") == []
    assert sentry.of_type("check_in") == []


def test_without_sentry_set_up_nothing_is_sent_and_runs_are_unchanged(flaky_task):
    assert not sentry_sdk.get_client().is_active()
    task = make_task(tenant=make_tenant(), task_type=flaky_task, options={"fail": True})
    assert run_once(task).status == Status.FAILED


@override_settings(SCHEDULING_SENTRY_MONITORS=True)
def test_each_run_checks_in_to_its_schedules_monitor(sentry, flaky_task):
    tenant = make_tenant(slug="acme", timezone="Europe/Berlin")
    task = make_task(
        tenant=tenant,
        task_type=flaky_task,
        options={},
        trigger_type="cron",
        cron_expression="*/15 8-18 * * 1-5",
        timeout_seconds=300,
        misfire_grace_seconds=90,
    )
    run_once(task)
    type(task).objects.filter(pk=task.pk).update(options={"fail": True}, max_retries=0)
    task.refresh_from_db()
    run_once(task)

    check_ins = sentry.of_type("check_in")
    assert [(c["monitor_slug"], c["status"]) for c in check_ins] == [
        (f"schedule-{task.pk}", "in_progress"),
        (f"schedule-{task.pk}", "ok"),
        (f"schedule-{task.pk}", "in_progress"),
        (f"schedule-{task.pk}", "error"),
    ]
    # Start and end of one run share a check-in id; the end has the duration.
    assert check_ins[0]["check_in_id"] == check_ins[1]["check_in_id"]
    assert check_ins[1]["check_in_id"] != check_ins[2]["check_in_id"]
    assert check_ins[1]["duration"] >= 0
    # Sentry creates the monitor from its config, kept in step with the schedule.
    assert check_ins[0]["monitor_config"] == {
        "schedule": {"type": "crontab", "value": "*/15 8-18 * * 1-5"},
        "timezone": "Europe/Berlin",
        "checkin_margin": 2,  # 90 s of misfire grace, in whole minutes
        "max_runtime": 5,  # the 300 s timeout
    }


@pytest.mark.parametrize(
    ("fields", "schedule"),
    [
        (
            {"trigger_type": "interval", "interval_seconds": 600},
            {"type": "interval", "value": 10, "unit": "minute"},
        ),
        (
            {"trigger_type": "interval", "interval_seconds": 7200},
            {"type": "interval", "value": 2, "unit": "hour"},
        ),
        (
            {"trigger_type": "interval", "interval_seconds": 86400},
            {"type": "interval", "value": 1, "unit": "day"},
        ),
        ({"trigger_type": "interval", "interval_seconds": 90}, None),  # no whole minutes
        ({"trigger_type": "interval", "interval_seconds": 30}, None),
        ({"trigger_type": "cron", "cron_expression": "0 9 L * *"}, None),  # cron's own L
        ({"trigger_type": "cron", "cron_expression": "0 9 * * 5#2"}, None),
        ({"trigger_type": "once", "run_at": None}, None),
    ],
)
def test_the_monitor_config_describes_what_sentry_can(fields, schedule):
    scan = make_scan(tenant=make_tenant(), scan_type="test_echo", target="x")
    for name, value in fields.items():
        setattr(scan, name, value)
    config = monitor_config(scan)
    assert (config["schedule"] if config else None) == schedule


def test_a_schedule_sentry_cannot_describe_checks_in_nowhere(sentry, flaky_task):
    with override_settings(SCHEDULING_SENTRY_MONITORS=True):
        task = make_task(
            tenant=make_tenant(), task_type=flaky_task, options={}, interval_seconds=45
        )
        assert run_once(task).status == Status.SUCCEEDED
    assert sentry.of_type("check_in") == []


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_a_non_bool_setting_is_a_check_error(value):
    with override_settings(SCHEDULING_SENTRY_MONITORS=value):
        assert "scheduling.E063" in [e.id for e in run_checks()]
