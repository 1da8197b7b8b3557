"""Helpers of the CLI tests: call the command in-process and read its exit code and output."""

from __future__ import annotations

import json
from dataclasses import dataclass
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.factories import make_cleanup, make_report, make_scan, make_tenant


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def data(self) -> Any:
        return json.loads(self.out)


def cli(*args: str) -> Result:
    """Run ``manage.py scheduling *args`` in this process; errors become exit codes."""
    out, err = StringIO(), StringIO()
    try:
        call_command("scheduling", *args, stdout=out, stderr=err)
    except CommandError as exc:
        return Result(exc.returncode, out.getvalue(), str(exc))
    return Result(0, out.getvalue(), err.getvalue())


def echo_scan(tenant: Any, **fields: Any) -> Any:
    fields.setdefault("scan_type", "test_echo")
    fields.setdefault("target", "x")
    return make_scan(tenant=tenant, **fields)


@dataclass
class World:
    acme: Any
    umbrella: Any
    scan: Any
    report: Any
    cleanup: Any
    other: Any


@pytest.fixture
def world(db) -> World:
    """Two tenants; acme has one schedule of each kind, umbrella one scan."""
    acme = make_tenant(name="Acme", slug="acme", timezone="Europe/Berlin")
    umbrella = make_tenant(name="Umbrella", slug="umbrella")
    return World(
        acme=acme,
        umbrella=umbrella,
        scan=echo_scan(acme, name="Homepage", interval_seconds=300),
        report=make_report(
            tenant=acme,
            name="Nightly",
            trigger_type="cron",
            cron_expression="@daily",
            interval_seconds=None,
            options={"period_hours": 24},  # as validation stores it
        ),
        cleanup=make_cleanup(tenant=acme, name="Old rows", retain_days=7),
        other=echo_scan(umbrella, name="Umbrella scan"),
    )
