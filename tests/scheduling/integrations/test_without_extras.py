"""The app works without its optional integrations' packages: sentry-sdk, OpenTelemetry, the
tenancy packages (only a setting that names an adapter needs its package)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

# Each package blocked: importing it raises ImportError, as when it is not installed.
BLOCKED = ["sentry_sdk", "opentelemetry", "django_scopes", "django_multitenant", "organizations"]

SCRIPT = f"""
import sys
for name in {BLOCKED!r}:
    sys.modules[name] = None
import django
django.setup()
from django.core.management import call_command
from scheduling import runner
from scheduling.integrations import otel, sentry
from scheduling.models import Execution

assert not sentry.active()
execution = Execution(pk=1, schedule_name="x", schedule_kind="scan")
with otel.execution_span(execution) as outcome:
    outcome("succeeded", "")
otel.record_exception(RuntimeError("x"))
sentry.capture_failure(execution, RuntimeError("x"))
call_command("check")
print("OK")
"""


def test_the_app_loads_runs_and_checks_without_the_optional_packages():
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("OK")
