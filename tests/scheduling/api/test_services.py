"""The service functions the API is built on (the admin and the CLI can call them too)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.core.exceptions import ValidationError

from scheduling import services
from scheduling.models import AuditEntry, PeriodicScan
from tests.factories import make_scan, make_tenant, make_user

pytestmark = pytest.mark.django_db


def test_validate_dependencies_names_the_cycle_from_the_schedule_being_changed(tenant):
    a, b, c = (make_scan(tenant=tenant, name=n, scan_type="test_echo") for n in "ABC")
    b.depends_on.set([a])
    c.depends_on.set([b])
    with pytest.raises(ValidationError) as info:
        services.validate_dependencies(a, [c])
    assert info.value.message_dict["depends_on"] == [
        "This creates a dependency cycle: A -> C -> B -> A."
    ]
    services.validate_dependencies(c, [a, b])  # a diamond is not a cycle


def test_validate_dependencies_rejects_self_and_other_tenants(tenant):
    scan = make_scan(tenant=tenant, scan_type="test_echo")
    foreign = make_scan(tenant=make_tenant(), name="foreign", scan_type="test_echo")
    with pytest.raises(ValidationError, match="itself"):
        services.validate_dependencies(scan, [scan])
    with pytest.raises(ValidationError, match="another tenant"):
        services.validate_dependencies(scan, [foreign])


def test_check_quota_uses_the_tenant_field_then_the_setting(tenant, settings):
    make_scan(tenant=tenant, scan_type="test_echo")
    settings.SCHEDULING_MAX_SCHEDULES_PER_TENANT = 1
    with pytest.raises(ValidationError, match="limit of 1 schedules"):
        services.check_quota(tenant)
    tenant.max_schedules = 2
    services.check_quota(tenant)


def test_create_update_delete_record_the_audit_trail_when_given_a_source(tenant):
    user = make_user()
    scan = services.create_schedule(
        model=PeriodicScan,
        tenant=tenant,
        user=user,
        source="cli",
        name="probe",
        scan_type="test_echo",
        target="x",
        interval_seconds=60,
    )
    assert scan.kind == "scan"
    assert scan.timezone == "Europe/Berlin"  # the tenant's
    services.update_schedule(schedule=scan, data={"priority": 5}, user=user, source="cli")
    services.delete_schedule(schedule=scan, user=user, source="cli")
    entries = AuditEntry.objects.order_by("pk")
    assert [(e.action, e.source, e.user) for e in entries] == [
        ("create", "cli", user),
        ("change", "cli", user),
        ("delete", "cli", user),
    ]
    assert entries[1].changes == {"priority": [0, 5]}


def test_actions_without_a_source_record_nothing(tenant):
    """Callers that record their own audit entries (bulk admin actions) are not doubled."""
    scan = make_scan(tenant=tenant, scan_type="test_echo")
    services.run_now(schedule=scan)
    services.pause_schedule(schedule=scan, until=datetime(2099, 1, 1, tzinfo=UTC))
    services.resume_schedule(schedule=scan)
    assert not AuditEntry.objects.exists()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("interval_seconds", 10**12),
        ("timeout_seconds", 10**9),
        ("start_at", datetime(9500, 1, 1, tzinfo=UTC)),
        ("run_at", datetime(1, 1, 2, tzinfo=UTC)),
    ],
)
def test_values_the_scheduler_cannot_compute_with_are_rejected(tenant, field, value):
    scan = PeriodicScan(
        tenant=tenant, name="big", scan_type="test_echo", target="x", interval_seconds=60
    )
    setattr(scan, field, value)
    with pytest.raises(ValidationError) as info:
        services.validate_schedule(scan)
    assert field in info.value.message_dict


def test_the_builtin_history_retention_does_not_count_towards_the_quota(tenant):
    from scheduling.retention import ensure_retention_schedule

    ensure_retention_schedule(tenant)
    tenant.max_schedules = 1
    services.check_quota(tenant)
    make_scan(tenant=tenant, scan_type="test_echo")
    with pytest.raises(ValidationError, match="limit of 1"):
        services.check_quota(tenant)
