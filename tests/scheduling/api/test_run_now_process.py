"""Run-now through the API is picked up by a real ``runscheduler`` process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

from scheduling.models import Execution
from tests.factories import make_membership, make_scan, make_tenant, make_token, make_user

ROOT = Path(__file__).resolve().parents[3]
FINISHED = {"succeeded", "failed", "timed_out", "skipped", "missed", "interrupted"}


@pytest.mark.process
@pytest.mark.django_db(transaction=True)
def test_run_now_is_executed_by_the_scheduler_and_visible_through_the_api(tmp_path):
    from rest_framework.test import APIClient

    tenant = make_tenant(slug="acme")
    user = make_user()
    make_membership(user=user, tenant=tenant, role="operator")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {make_token(user=user)}")
    # Due only in an hour: the one execution that runs is the manual one.
    scan = make_scan(tenant=tenant, name="echo", scan_type="test_echo", interval_seconds=3600)

    log = tmp_path / "scheduler.log"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "SCHEDULING_DB_PATH": connection.settings_dict["NAME"],
        "PYTHONUNBUFFERED": "1",
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "runscheduler", "--max-seconds", "20", "-v", "2"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        response = client.post(f"/api/scans/{scan.pk}/run/")
        assert response.status_code == 202, response.data
        assert response.data["status"] == "queued"
        url = f"/api/executions/{response.data['id']}/"

        data = response.data
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and data["status"] not in FINISHED:
            time.sleep(0.2)
            data = client.get(url).data
        assert data["status"] == "succeeded", (data, log.read_text()[-3000:])
        assert data["trigger"] == "manual"
        assert data["triggered_by"] == user.username
        assert data["result"] == {"name": "echo", "attempt": 1}
        assert data["started_at"] and data["finished_at"]
        assert data["worker"] is None  # a host name: not for an operator (issue 17, item 9)
        worker = Execution.objects.get(pk=data["id"]).worker
        assert worker  # host:pid of the scheduler, not of this (web) process
        assert not worker.endswith(f":{os.getpid()}")
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
