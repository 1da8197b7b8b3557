"""The command as a shell runs it: exit codes and a single line on stderr, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from tests.factories import make_tenant
from tests.scheduling.cli.conftest import echo_scan

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[3]


def manage(*args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "SCHEDULING_DB_PATH": connection.settings_dict["NAME"],
    }
    return subprocess.run(
        [sys.executable, "manage.py", "scheduling", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("list", "--format", "xml"), "invalid choice: 'xml'"),
        (("show", "twelve"), "Schedule 'twelve' not found."),
        (("show", "0"), "'0' must be greater than zero"),
        (("show", "acme/nothing", "--name", "x"), "Give the schedule once"),
        (("enable",), "Give the schedule: its id, TENANT/NAME"),
        (("add", "--kind", "scan"), "the following arguments are required: --name"),
        (("add", "--name", "x", "--every", "soon"), "'soon' is not a duration"),
        ((), "the following arguments are required: VERB"),
        (("explode",), "invalid choice: 'explode'"),
        (("list", "--tenant", "nowhere"), "Unknown tenant 'nowhere'."),
        (("show", "999999"), "Schedule 999999 not found."),
        (("import", "/nonexistent/schedules.yaml"), "Cannot read /nonexistent/schedules.yaml"),
    ],
)
def test_bad_input_exits_2_with_one_line_on_stderr(args, message):
    make_tenant(slug="acme")
    process = manage(*args)
    assert process.returncode == 2, process.stderr
    lines = process.stderr.splitlines()
    assert len(lines) == 1, process.stderr
    assert lines[0].startswith("Error: ")
    assert message in lines[0]
    assert "Traceback" not in process.stderr


def test_a_failed_run_exits_1_and_a_good_one_0():
    tenant = make_tenant(slug="acme")
    good = echo_scan(tenant, name="good")
    bad = echo_scan(tenant, name="bad", scan_type="test_sleep", options={"fail": True})

    ok = manage("run", str(good.pk), "--tenant", "acme")
    assert ok.returncode == 0, ok.stderr
    assert "succeeded" in ok.stdout
    assert ok.stderr == ""

    failed = manage("run", str(bad.pk))
    assert failed.returncode == 1
    assert "failed" in failed.stdout
    assert len(failed.stderr.splitlines()) == 1
    assert "bad failed on purpose" in failed.stderr


def test_json_output_is_a_single_document_on_stdout():
    echo_scan(make_tenant(slug="acme"), name="Homepage")
    process = manage("list", "--format", "json")
    assert process.returncode == 0
    assert process.stderr == ""
    assert process.stdout.startswith("{") and process.stdout.rstrip().endswith("}")
