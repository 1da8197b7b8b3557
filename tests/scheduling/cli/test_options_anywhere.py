"""The command as a shell runs it (issue 18): options before or after the verb, ``--settings``
included; ``status --check`` as a probe; ``remove`` in a script without a terminal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from scheduling.models import Schedule, SchedulerLease
from tests.factories import make_tenant
from tests.scheduling.cli.conftest import echo_scan

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[3]


def manage(*args: str, settings_in_env: bool = True) -> subprocess.CompletedProcess:
    """Run ``manage.py scheduling *args`` on the test database, with no terminal on stdin."""
    env = {**os.environ, "SCHEDULING_DB_PATH": connection.settings_dict["NAME"]}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    if settings_in_env:
        env["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    return subprocess.run(
        [sys.executable, "manage.py", "scheduling", *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def homepage():
    return echo_scan(make_tenant(slug="acme"), name="Homepage")


@pytest.mark.parametrize(
    "args",
    [
        # Without DJANGO_SETTINGS_MODULE, only --settings leads to the test database: manage.py
        # would otherwise open the demo project's.
        ("list", "--settings", "tests.settings", "--format", "json"),
        ("list", "--format", "json", "--settings=tests.settings"),
        ("--settings", "tests.settings", "list", "--format", "json"),
        ("--format", "json", "list", "--settings", "tests.settings", "--pythonpath", "."),
        ("--tenant", "acme", "--format", "json", "list", "--settings", "tests.settings"),
        ("list", "--settings", "tests.settings", "-v", "0", "--no-color", "--format", "json"),
    ],
)
def test_the_common_options_go_before_or_after_the_verb(homepage, args):
    process = manage(*args, settings_in_env=False)
    assert process.returncode == 0, process.stderr
    assert process.stderr == ""
    rows = json.loads(process.stdout)["schedules"]
    assert [(r["id"], r["tenant"]) for r in rows] == [(homepage.pk, "acme")]


def test_an_option_before_the_verb_is_not_reset_by_the_verb(homepage):
    echo_scan(make_tenant(slug="umbrella"), name="Other")
    process = manage("--tenant", "umbrella", "--kind", "scan", "list", "--format", "json")
    assert process.returncode == 0, process.stderr
    assert [r["name"] for r in json.loads(process.stdout)["schedules"]] == ["Other"]


def test_traceback_after_the_verb_shows_the_traceback(homepage):
    quiet = manage("show", "999999")
    assert (quiet.returncode, quiet.stderr) == (2, "Error: Schedule 999999 not found.\n")
    loud = manage("show", "999999", "--traceback")
    assert loud.returncode != 0
    assert "Traceback (most recent call last)" in loud.stderr


def test_status_check_is_a_probe():
    process = manage("status", "--check")
    assert process.returncode == 1
    assert process.stdout == ""
    assert process.stderr == (
        "Error: Scheduler not healthy: no scheduler has ever run against this database.\n"
    )
    now = timezone.now()
    SchedulerLease.objects.create(
        name="default", holder="host:1:abc", renewed_at=now, expires_at=now + timedelta(minutes=1)
    )
    healthy = manage("status", "--check")
    assert healthy.returncode == 0, healthy.stderr
    assert healthy.stdout.startswith("Scheduler healthy: leader host:1:abc")


def test_remove_in_a_script_needs_yes(homepage):
    refused = manage("remove", "acme/Homepage")
    assert refused.returncode == 2
    assert refused.stderr == (
        "Error: Not removed: give --yes to remove without a terminal to confirm on.\n"
    )
    assert Schedule.objects.filter(pk=homepage.pk).exists()
    removed = manage("remove", "acme/Homepage", "--yes")
    assert removed.returncode == 0, removed.stderr
    assert not Schedule.objects.filter(pk=homepage.pk).exists()


def test_add_with_errors_exits_2_without_a_traceback(homepage):
    process = manage(
        *("add", "--kind", "scan", "--tenant", "acme", "--name", "Homepage"),
        *("--type", "test_echo", "--target", "x", "--cron", "not cron"),
    )
    assert process.returncode == 2
    assert "Traceback" not in process.stdout + process.stderr
    assert process.stderr == "Error: 2 error(s); nothing was added.\n"
    assert len(process.stdout.splitlines()) == 2
    added = manage(
        *("add", "--kind", "scan", "--tenant", "acme", "--name", "Second"),
        *("--type", "test_echo", "--target", "x", "--every", "5m"),
    )
    assert added.returncode == 0, added.stderr
    second = Schedule.objects.get(name="Second")
    assert added.stdout == f"Added acme/scan/Second ({second.pk}): enabled, Every 5 minutes.\n"
