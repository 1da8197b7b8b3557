"""Fixtures of the API tests: two tenants with one user per role, and objects of every kind."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from rest_framework.test import APIClient

from scheduling.registry import cleanup_target, cleanup_targets, report_type, report_types
from tests.factories import (
    make_artifact,
    make_cleanup,
    make_execution,
    make_membership,
    make_report,
    make_scan,
    make_task,
    make_tenant,
    make_user,
)

ROLES = ("viewer", "operator", "admin", "owner")
# Keys registered for these tests only, so they do not depend on the built-ins.
REPORT_TYPE = "api_test_report"
CLEANUP_TARGET = "api_test_cleanup"


@pytest.fixture(autouse=True)
def api_task_types():
    """Register a report type and a cleanup target for the duration of each test."""
    added = []
    if REPORT_TYPE not in report_types:
        report_type(REPORT_TYPE, label="API test report")(lambda report, context: {"ok": True})
        added.append((report_types, REPORT_TYPE))
    if CLEANUP_TARGET not in cleanup_targets:
        cleanup_target(
            CLEANUP_TARGET,
            label="API test cleanup",
            model="scheduling.Execution",
            datetime_field="finished_at",
        )
        added.append((cleanup_targets, CLEANUP_TARGET))
    yield
    for registry, key in added:
        registry.unregister(key)


def client_for(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user=user)
    return client


@dataclass
class TenantWorld:
    """One tenant, a user per role, and one object of each kind with history."""

    tenant: Any
    users: dict[str, Any] = field(default_factory=dict)
    scan: Any = None
    report: Any = None
    cleanup: Any = None
    task: Any = None
    execution: Any = None
    artifact: Any = None

    def client(self, role: str = "admin") -> APIClient:
        return client_for(self.users[role])

    def schedule(self, kind: str) -> Any:
        return {
            "scans": self.scan,
            "reports": self.report,
            "cleanups": self.cleanup,
            "tasks": self.task,
        }[kind]


def build_world(name: str) -> TenantWorld:
    tenant = make_tenant(name=f"Tenant {name}", slug=f"tenant-{name.lower()}")
    world = TenantWorld(tenant=tenant)
    for role in ROLES:
        user = make_user(username=f"{name.lower()}-{role}")
        make_membership(user=user, tenant=tenant, role=role)
        world.users[role] = user
    world.scan = make_scan(tenant=tenant, name=f"{name} scan", scan_type="test_echo", target="x")
    world.report = make_report(tenant=tenant, name=f"{name} report", report_type=REPORT_TYPE)
    world.cleanup = make_cleanup(
        tenant=tenant, name=f"{name} cleanup", cleanup_target=CLEANUP_TARGET
    )
    world.task = make_task(tenant=tenant, name=f"{name} task")
    world.execution = make_execution(schedule=world.report)
    world.artifact = make_artifact(execution=world.execution)
    return world


@pytest.fixture
def world_a(db) -> TenantWorld:
    return build_world("A")


@pytest.fixture
def world_b(db) -> TenantWorld:
    return build_world("B")


SCHEDULE_KINDS = ("scans", "reports", "cleanups", "tasks")


def valid_payload(kind: str, tenant: Any, /, **overrides: Any) -> dict[str, Any]:
    """A body that creates a schedule of ``kind`` in ``tenant``."""
    base: dict[str, Any] = {
        "tenant": getattr(tenant, "slug", tenant),
        "name": f"new {kind}",
        "trigger_type": "interval",
        "interval_seconds": 300,
    }
    base.update(
        {
            "scans": {"scan_type": "test_echo", "target": "example"},
            "reports": {"report_type": REPORT_TYPE, "format": "csv"},
            "cleanups": {"cleanup_target": CLEANUP_TARGET, "retain_days": 7},
            "tasks": {"task_type": "test_add", "options": {"a": 2, "b": 3}},
        }[kind]
    )
    base.update(overrides)
    return base


def tenant_state(tenant: Any) -> dict[str, Any]:
    """Everything of ``tenant`` that a request through the API could change."""
    from scheduling.models import AuditEntry, Execution, ReportArtifact, Schedule

    return {
        "schedules": list(Schedule.objects.filter(tenant=tenant).order_by("pk").values()),
        "deps": list(
            Schedule.depends_on.through.objects.filter(from_schedule__tenant=tenant)
            .order_by("pk")
            .values_list("from_schedule_id", "to_schedule_id")
        ),
        "executions": list(Execution.objects.filter(tenant=tenant).order_by("pk").values()),
        "artifacts": ReportArtifact.objects.filter(tenant=tenant).count(),
        "audit": AuditEntry.objects.filter(tenant=tenant).count(),
    }
