"""Heartbeat pings: a schedule's ping_url hears each run start and end, in healthchecks.io's or
Cronitor's convention, through the target policy; a ping that fails never fails the run."""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.exceptions import ValidationError
from rest_framework.test import APIClient

from scheduling.models import Status
from scheduling.pings import FAILURE, START, SUCCESS, ping_url
from scheduling.registry import task_type, task_types
from tests.factories import make_membership, make_task, make_tenant, make_user, run_once

pytestmark = pytest.mark.django_db


class Heartbeats:
    """A loopback heartbeat service: it keeps (path, query, JSON body) of each ping."""

    def __init__(self, answer: int = 200) -> None:
        self.pings: list[tuple[str, dict[str, list[str]], dict[str, Any]]] = []
        store = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802  # the name http.server calls
                body = self.rfile.read(int(self.headers["Content-Length"]))
                parts = urlsplit(self.path)
                store.pings.append((parts.path, parse_qs(parts.query), json.loads(body)))
                self.send_response(answer)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def heartbeats() -> Iterator[Heartbeats]:
    service = Heartbeats()
    yield service
    service.close()


@pytest.fixture
def job() -> Iterator[str]:
    @task_type("test_job", label="Test: job")
    def run(task, context):
        if context.options.get("fail"):
            raise RuntimeError("the export broke")
        return {"ok": True}

    yield "test_job"
    task_types.unregister("test_job")


def test_healthchecks_hears_the_start_and_the_success(heartbeats, job):
    task = make_task(
        tenant=make_tenant(), task_type=job, options={}, ping_url=heartbeats.url("/ping/abc")
    )
    execution = run_once(task)
    assert execution.status == Status.SUCCEEDED

    assert [(path, body["event"], body["status"]) for path, _, body in heartbeats.pings] == [
        ("/ping/abc/start", "start", "running"),
        ("/ping/abc", "success", "succeeded"),
    ]
    assert heartbeats.pings[1][2]["execution_id"] == execution.pk


def test_healthchecks_hears_a_failure_with_its_error(heartbeats, job):
    task = make_task(
        tenant=make_tenant(),
        task_type=job,
        options={"fail": True},
        max_retries=0,
        ping_url=heartbeats.url("/ping/abc/"),
    )
    assert run_once(task).status == Status.FAILED

    [start, end] = heartbeats.pings
    assert start[0] == "/ping/abc/start"
    assert end[0] == "/ping/abc/fail"
    assert end[2]["error"] == "RuntimeError: the export broke"


def test_cronitor_pairs_the_start_and_the_end_of_a_run(heartbeats, job):
    task = make_task(
        tenant=make_tenant(),
        task_type=job,
        options={"fail": True},
        max_retries=0,
        ping_url=heartbeats.url("/p/key/nightly?env=prod"),
        ping_style="cronitor",
    )
    execution = run_once(task)

    queries = [query for _, query, _ in heartbeats.pings]
    assert [q["state"] for q in queries] == [["run"], ["fail"]]
    assert all(q["series"] == [str(execution.pk)] for q in queries)
    assert all(q["env"] == ["prod"] for q in queries)  # the URL's own query is kept
    assert queries[1]["message"] == ["RuntimeError: the export broke"]


def test_a_schedule_without_a_heartbeat_url_pings_nothing(heartbeats, job):
    run_once(make_task(tenant=make_tenant(), task_type=job, options={}))
    assert heartbeats.pings == []


def test_a_service_that_is_down_or_refuses_never_fails_the_run(job, caplog):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    task = make_task(
        tenant=make_tenant(), task_type=job, options={}, ping_url=f"http://127.0.0.1:{port}/x"
    )
    with caplog.at_level(logging.WARNING, logger="scheduling.pings"):
        execution = run_once(task)
    assert execution.status == Status.SUCCEEDED
    warnings = [r for r in caplog.records if r.name == "scheduling.pings"]
    assert len(warnings) == 2  # the start and the end
    assert "Heartbeat ping start" in warnings[0].getMessage()
    assert warnings[0].execution_id == execution.pk

    refusing = Heartbeats(answer=500)
    try:
        task.ping_url = refusing.url("/x")
        task.save()
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="scheduling.pings"):
            assert run_once(task).status == Status.SUCCEEDED
        assert "HTTP 500" in caplog.records[-1].getMessage()
    finally:
        refusing.close()


def test_a_heartbeat_url_must_pass_the_target_policy(job):
    task = make_task(tenant=make_tenant(), task_type=job, options={})
    task.ping_url = "http://10.1.2.3/ping"  # a private address, not allowed
    with pytest.raises(ValidationError) as info:
        task.full_clean()
    assert "ping_url" in info.value.message_dict


def test_the_api_takes_and_checks_the_heartbeat_url(job):
    tenant = make_tenant()
    owner = make_user(username="owner")
    make_membership(user=owner, tenant=tenant, role="owner")
    client = APIClient()
    client.force_authenticate(user=owner)
    task = make_task(tenant=tenant, task_type=job, options={})
    url = f"/api/tasks/{task.pk}/"

    bad = client.patch(url, {"ping_url": "http://10.1.2.3/x"}, format="json")
    assert bad.status_code == 400
    assert "ping_url" in bad.json()
    good = client.patch(
        url, {"ping_url": "http://127.0.0.1:9/abc", "ping_style": "cronitor"}, format="json"
    )
    assert good.status_code == 200, good.json()
    assert (good.json()["ping_url"], good.json()["ping_style"]) == (
        "http://127.0.0.1:9/abc",
        "cronitor",
    )


@pytest.mark.parametrize(
    ("url", "style", "event", "expected"),
    [
        ("https://hc-ping.com/u", "healthchecks", START, "https://hc-ping.com/u/start"),
        ("https://hc-ping.com/u/", "healthchecks", SUCCESS, "https://hc-ping.com/u"),
        (
            "https://hc-ping.com/u?rid=1",
            "healthchecks",
            FAILURE,
            "https://hc-ping.com/u/fail?rid=1",
        ),
        (
            "https://cronitor.link/p/k/job",
            "cronitor",
            START,
            "https://cronitor.link/p/k/job?state=run&series=7",
        ),
        (
            "https://cronitor.link/p/k/job",
            "cronitor",
            SUCCESS,
            "https://cronitor.link/p/k/job?state=complete&series=7",
        ),
    ],
)
def test_the_conventions_urls(url, style, event, expected):
    assert ping_url(url, style, event, series=7) == expected
