"""Tenants through the API: who may create and change them, isolation, (de)activation, 400s."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from scheduling.models import AuditEntry, Schedule
from scheduling.triggers import PAUSED_INDEFINITELY
from tenants.models import Tenant
from tests.factories import make_scan, make_user
from tests.scheduling.api.conftest import ROLES, client_for, tenant_state

pytestmark = pytest.mark.django_db

NEW = {"name": "Gamma", "slug": "gamma", "timezone": "Europe/Berlin"}


def with_permissions(user, *codenames: str):
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="tenants", codename__in=codenames)
    )
    return user


@pytest.fixture
def superuser():
    return make_user(username="root", is_superuser=True, is_staff=True)


def test_a_superuser_creates_a_tenant(superuser):
    response = client_for(superuser).post("/api/tenants/", NEW, format="json")
    assert response.status_code == 201, response.data
    tenant = Tenant.objects.get(slug="gamma")
    assert (tenant.name, tenant.timezone, tenant.is_active) == ("Gamma", "Europe/Berlin", True)
    assert response.data["id"] == tenant.pk
    assert response.data["role"] == "owner"
    assert response.data["schedule_count"] == 0


def test_the_add_permission_lets_a_user_create_a_tenant(world_a):
    user = with_permissions(make_user(), "add_tenant")
    response = client_for(user).post("/api/tenants/", NEW, format="json")
    assert response.status_code == 201, response.data
    assert Tenant.objects.filter(slug="gamma").exists()


@pytest.mark.parametrize("role", ROLES)
def test_without_the_permissions_every_role_reads_but_cannot_create_or_change(world_a, role):
    client = world_a.client(role)
    tenant = world_a.tenant
    assert client.get(f"/api/tenants/{tenant.pk}/").status_code == 200
    assert client.post("/api/tenants/", NEW, format="json").status_code == 403
    response = client.patch(f"/api/tenants/{tenant.pk}/", {"name": "Renamed"}, format="json")
    assert response.status_code == 403
    assert (
        client.patch(f"/api/tenants/{tenant.pk}/", {"is_active": False}, format="json").status_code
        == 403
    )
    assert client.delete(f"/api/tenants/{tenant.pk}/").status_code == 405
    tenant.refresh_from_db()
    assert (tenant.name, tenant.is_active) == ("Tenant A", True)
    assert not Tenant.objects.filter(slug="gamma").exists()


def test_tenants_are_deactivated_not_deleted(superuser, world_a):
    response = client_for(superuser).delete(f"/api/tenants/{world_a.tenant.pk}/")
    assert response.status_code == 405
    assert Tenant.objects.filter(pk=world_a.tenant.pk).exists()


def test_a_tenant_admin_with_the_permission_changes_their_tenant_only(world_a, world_b):
    user = with_permissions(world_a.users["admin"], "change_tenant")
    client = client_for(user)

    response = client.patch(
        f"/api/tenants/{world_a.tenant.pk}/", {"name": "A renamed"}, format="json"
    )
    assert response.status_code == 200, response.data
    assert response.data["name"] == "A renamed"

    before = tenant_state(world_b.tenant)
    for body in ({"name": "hijacked"}, {"is_active": False}):
        response = client.patch(f"/api/tenants/{world_b.tenant.pk}/", body, format="json")
        assert response.status_code == 404
    world_b.tenant.refresh_from_db()
    assert (world_b.tenant.name, world_b.tenant.is_active) == ("Tenant B", True)
    assert tenant_state(world_b.tenant) == before


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_the_change_permission_needs_the_role_admin_in_the_tenant(world_a, role):
    user = with_permissions(world_a.users[role], "change_tenant")
    response = client_for(user).patch(
        f"/api/tenants/{world_a.tenant.pk}/", {"name": "Renamed"}, format="json"
    )
    assert response.status_code == 403
    assert "admin or owner" in response.data["detail"]


def test_quotas_are_set_by_users_who_see_every_tenant(world_a, superuser):
    admin = with_permissions(world_a.users["owner"], "change_tenant")
    url = f"/api/tenants/{world_a.tenant.pk}/"
    response = client_for(admin).patch(url, {"max_schedules": 1000}, format="json")
    assert response.status_code == 400
    assert response.data == {"max_schedules": ["This field is read-only."]}
    response = client_for(superuser).patch(url, {"max_schedules": 1000}, format="json")
    assert response.status_code == 200
    world_a.tenant.refresh_from_db()
    assert world_a.tenant.max_schedules == 1000


def test_bad_input_is_a_400_naming_every_wrong_field_at_once(superuser, world_a):
    body = {
        "name": "",
        "slug": "not a slug!",
        "timezone": "Mars/Olympus_Mons",
        "max_schedules": -1,
        "colour": "blue",
    }
    response = client_for(superuser).post("/api/tenants/", body, format="json")
    assert response.status_code == 400
    assert set(response.data) == {"name", "slug", "timezone", "max_schedules", "colour"}
    assert "IANA" in str(response.data["timezone"])

    taken = {"name": "Copy", "slug": world_a.tenant.slug, "timezone": "Europe/Berlin"}
    response = client_for(superuser).post("/api/tenants/", taken, format="json")
    assert response.status_code == 400
    assert set(response.data) == {"slug"}
    assert Tenant.objects.count() == 1


def test_a_change_of_timezone_is_validated(superuser, world_a):
    url = f"/api/tenants/{world_a.tenant.pk}/"
    response = client_for(superuser).patch(url, {"timezone": "Europe/Berlinn"}, format="json")
    assert response.status_code == 400
    assert "Europe/Berlin" in str(response.data["timezone"])  # did you mean
    response = client_for(superuser).patch(url, {"timezone": "Asia/Tokyo"}, format="json")
    assert response.status_code == 200
    world_a.tenant.refresh_from_db()
    assert world_a.tenant.timezone == "Asia/Tokyo"


def test_deactivating_pauses_the_schedules_and_reactivating_resumes_those_it_paused(
    superuser, world_a, world_b
):
    tenant = world_a.tenant
    by_hand = make_scan(tenant=tenant, name="paused by hand", paused_until=PAUSED_INDEFINITELY)
    until = timezone.now() + timedelta(days=3)
    timed = make_scan(tenant=tenant, name="paused for three days", paused_until=until)
    running = [world_a.scan, world_a.report, world_a.cleanup, world_a.task]
    client = client_for(superuser)
    url = f"/api/tenants/{tenant.pk}/"

    response = client.patch(url, {"is_active": False}, format="json")
    assert response.status_code == 200, response.data
    assert response.data["is_active"] is False
    tenant.refresh_from_db()
    assert tenant.is_active is False
    for schedule in [*running, timed, by_hand]:
        schedule.refresh_from_db()
        assert schedule.paused_until == PAUSED_INDEFINITELY, schedule.name
    assert not Schedule.objects.filter(tenant=world_b.tenant, paused_until__isnull=False).exists()
    paused = AuditEntry.objects.filter(tenant=tenant, action="pause", source="api", user=superuser)
    assert sorted(paused.values_list("schedule_id", flat=True)) == sorted(
        s.pk for s in [*running, timed]
    )

    response = client.patch(url, {"is_active": True}, format="json")
    assert response.status_code == 200
    for schedule in running:
        schedule.refresh_from_db()
        assert schedule.paused_until is None, schedule.name
    timed.refresh_from_db()
    by_hand.refresh_from_db()
    assert timed.paused_until == until
    assert by_hand.paused_until == PAUSED_INDEFINITELY
    resumed = AuditEntry.objects.filter(tenant=tenant, action="resume", source="api")
    assert resumed.count() == 5
