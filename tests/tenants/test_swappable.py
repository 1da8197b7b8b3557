"""A host project points SCHEDULING_TENANT_MODEL at its own model before the first migrate."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
from django.db import connection
from scheduling.models import PeriodicScan, Schedule
from scheduling.tenancy import get_tenant_model
from tests.testapp.models import Organization

assert get_tenant_model() is Organization
org = Organization.objects.create(title="Initech", slug="initech", timezone="Asia/Tokyo")
scan = PeriodicScan(tenant=org, name="ping", scan_type="test_echo", target="x",
                    trigger_type="interval", interval_seconds=60)
scan.full_clean()
scan.save()
assert scan.timezone == "Asia/Tokyo"
fk = Schedule._meta.get_field("tenant")
assert fk.related_model is Organization
tables = connection.introspection.table_names()
assert "tenants_tenant" not in tables, tables
with connection.cursor() as cursor:
    relations = connection.introspection.get_relations(cursor, "scheduling_schedule")
assert relations["tenant_id"][1] == "testapp_organization", relations
# A schedule that names no time zone takes its tenant's, from the host's model too.
from scheduling.scheduler.jobs import ScheduleRow
Schedule.objects.filter(pk=scan.pk).update(timezone="")
(row,) = ScheduleRow.load()
assert row.effective_timezone == "Asia/Tokyo", row
print("OK")
"""


@pytest.mark.process
def test_migrations_honour_a_swapped_tenant_model(scratch_database):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings_swapped",
        "SCHEDULING_DB_PATH": scratch_database,
    }
    run = [sys.executable, "manage.py"]
    migrate = subprocess.run(
        [*run, "migrate", "-v", "0"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert migrate.returncode == 0, migrate.stderr
    shell = subprocess.run(
        [*run, "shell", "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert shell.returncode == 0, shell.stderr
    assert shell.stdout.strip().endswith("OK")
