"""services.set_tenant_active: deactivating pauses a tenant's schedules, reactivating gives
back exactly the pauses they had, whatever operators did meanwhile."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from scheduling import services
from scheduling.models import AuditEntry
from scheduling.triggers import PAUSED_INDEFINITELY
from tests.factories import make_scan, make_tenant, make_user

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def paused_until(schedule):
    schedule.refresh_from_db()
    return schedule.paused_until


@pytest.fixture
def clock():
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


def test_deactivation_pauses_only_the_tenants_schedules_and_is_idempotent(clock):
    tenant, other = make_tenant(), make_tenant()
    mine = [make_scan(tenant=tenant), make_scan(tenant=tenant)]
    theirs = make_scan(tenant=other)

    assert services.set_tenant_active(tenant=tenant, active=False) == 2
    tenant.refresh_from_db()
    assert tenant.is_active is False
    assert [paused_until(s) for s in mine] == [PAUSED_INDEFINITELY] * 2
    assert paused_until(theirs) is None
    assert services.set_tenant_active(tenant=tenant, active=False) == 0

    assert services.set_tenant_active(tenant=tenant, active=True) == 2
    tenant.refresh_from_db()
    assert tenant.is_active is True
    assert [paused_until(s) for s in mine] == [None, None]
    assert services.set_tenant_active(tenant=tenant, active=True) == 0


def test_reactivation_leaves_the_pauses_operators_made_before(clock):
    tenant = make_tenant()
    by_hand = make_scan(tenant=tenant, paused_until=PAUSED_INDEFINITELY)
    for_a_day = make_scan(tenant=tenant, paused_until=T0 + timedelta(days=1))
    for_a_week = make_scan(tenant=tenant, paused_until=T0 + timedelta(days=7))
    ended = make_scan(tenant=tenant, paused_until=T0 - timedelta(hours=1))

    services.set_tenant_active(tenant=tenant, active=False)
    assert {paused_until(s) for s in (by_hand, for_a_day, for_a_week, ended)} == {
        PAUSED_INDEFINITELY
    }
    clock.move_to(T0 + timedelta(days=2))  # the one-day pause ends while the tenant is inactive
    services.set_tenant_active(tenant=tenant, active=True)

    assert paused_until(by_hand) == PAUSED_INDEFINITELY
    assert paused_until(for_a_day) is None
    assert paused_until(for_a_week) == T0 + timedelta(days=7)
    assert paused_until(ended) is None


def test_what_operators_do_while_the_tenant_is_inactive_is_kept(clock):
    tenant = make_tenant()
    resumed, paused_again, untouched = (make_scan(tenant=tenant) for _ in range(3))
    services.set_tenant_active(tenant=tenant, active=False)

    services.resume_schedule(schedule=resumed)
    services.pause_schedule(schedule=paused_again)  # until resumed: the operator's pause now
    services.set_tenant_active(tenant=tenant, active=True)

    assert paused_until(resumed) is None
    assert paused_until(paused_again) == PAUSED_INDEFINITELY
    assert paused_until(untouched) is None


def test_a_pause_edited_while_the_tenant_is_inactive_is_kept(clock):
    # An edit of the field (the admin's form, a PATCH) rather than the pause action.
    tenant = make_tenant()
    scan = make_scan(tenant=tenant)
    services.set_tenant_active(tenant=tenant, active=False)
    scan.refresh_from_db()
    services.update_schedule(schedule=scan, data={"paused_until": T0 + timedelta(days=5)})
    services.set_tenant_active(tenant=tenant, active=True)
    assert paused_until(scan) == T0 + timedelta(days=5)


def test_each_schedule_change_is_audited_with_who_and_why(clock):
    tenant = make_tenant()
    scan = make_scan(tenant=tenant)
    user = make_user()

    services.set_tenant_active(tenant=tenant, active=False, user=user, source="admin")
    services.set_tenant_active(tenant=tenant, active=True, user=user, source="admin")

    entries = AuditEntry.objects.filter(schedule=scan).order_by("pk")
    assert [(e.action, e.source, e.user) for e in entries] == [
        ("pause", "admin", user),
        ("resume", "admin", user),
    ]
    assert entries[0].changes == {
        "paused_until": [None, "8000-01-01T00:00:00Z"],
        "tenant_is_active": [True, False],
    }
    assert entries[1].changes["paused_until"] == ["8000-01-01T00:00:00Z", None]


def test_without_a_source_nothing_is_audited(clock):
    tenant = make_tenant()
    make_scan(tenant=tenant)
    services.set_tenant_active(tenant=tenant, active=False)
    assert not AuditEntry.objects.filter(tenant=tenant).exists()


@pytest.mark.parametrize("active", [False, True])
def test_the_queries_do_not_grow_with_the_schedules(clock, active):
    def queries(count: int) -> int:
        tenant = make_tenant(is_active=active)
        for _ in range(count):
            make_scan(tenant=tenant)
        services.set_tenant_active(tenant=tenant, active=not active)  # the first change
        with CaptureQueriesContext(connection) as captured:
            services.set_tenant_active(tenant=tenant, active=active, source="api")
        return len(captured)

    assert queries(2) == queries(20)
