"""Deactivating a tenant in the admin pauses its schedules; activating it again resumes the
ones that pause took, not those an operator had paused before. Its zone is a choice of names."""

from __future__ import annotations

import pytest
from django.urls import reverse

from scheduling.models import AuditEntry, AuditSource
from scheduling.triggers import PAUSED_INDEFINITELY
from tests.factories import make_scan, make_tenant, make_user
from tests.tenants.test_admin import tenant_form

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:tenants_tenant_changelist")


@pytest.fixture
def superuser_client(client):
    client.force_login(make_user(is_staff=True, is_superuser=True))
    return client


@pytest.fixture
def acme():
    return make_tenant(name="Acme", slug="acme", timezone="Europe/Berlin")


def test_unticking_active_pauses_the_schedules_and_ticking_resumes_them(superuser_client, acme):
    running = make_scan(tenant=acme, name="running", scan_type="test_echo", target="x")
    held = make_scan(tenant=acme, name="held", scan_type="test_echo", target="x")
    held.paused_until = PAUSED_INDEFINITELY  # paused until someone resumes it
    held.save(update_fields=["paused_until"])
    held_until = held.paused_until
    url = reverse("admin:tenants_tenant_change", args=[acme.pk])

    data = tenant_form(acme)
    del data["is_active"]
    response = superuser_client.post(url, data, follow=True)

    assert response.status_code == 200
    assert "Acme: deactivated; 1 schedule paused." in response.content.decode()
    acme.refresh_from_db()
    running.refresh_from_db()
    assert not acme.is_active
    assert running.paused_until is not None
    entry = AuditEntry.objects.get(schedule_id=running.pk)
    assert entry.source == AuditSource.ADMIN

    response = superuser_client.post(url, tenant_form(acme), follow=True)

    assert "Acme: active again; 1 schedule resumed." in response.content.decode()
    running.refresh_from_db()
    held.refresh_from_db()
    assert running.paused_until is None
    assert held.paused_until == held_until  # the operator's own pause stays


def test_the_changelist_actions_deactivate_and_activate(superuser_client, acme):
    scan = make_scan(tenant=acme, name="running", scan_type="test_echo", target="x")
    other = make_tenant(name="Globex", slug="globex")
    untouched = make_scan(tenant=other, name="other", scan_type="test_echo", target="x")

    response = superuser_client.post(
        CHANGELIST,
        {"action": "deactivate_tenants", "_selected_action": [acme.pk]},
        follow=True,
    )

    assert "Acme: deactivated; 1 schedule paused." in response.content.decode()
    scan.refresh_from_db()
    untouched.refresh_from_db()
    assert scan.paused_until is not None
    assert untouched.paused_until is None

    response = superuser_client.post(
        CHANGELIST,
        {"action": "activate_tenants", "_selected_action": [acme.pk, other.pk]},
        follow=True,
    )

    assert "Acme: active again; 1 schedule resumed." in response.content.decode()
    scan.refresh_from_db()
    assert scan.paused_until is None


def test_a_tenant_member_has_no_activation_actions(client, acme):
    from tests.factories import make_membership

    owner = make_user(is_staff=True)
    make_membership(user=owner, tenant=acme, role="owner")
    client.force_login(owner)

    response = client.get(CHANGELIST)

    assert response.status_code == 200
    assert b"deactivate_tenants" not in response.content
    response = client.post(
        CHANGELIST, {"action": "deactivate_tenants", "_selected_action": [acme.pk]}
    )
    acme.refresh_from_db()
    assert acme.is_active


def test_the_time_zone_is_a_choice_of_iana_names_in_any_case(superuser_client, acme):
    url = reverse("admin:tenants_tenant_change", args=[acme.pk])

    page = superuser_client.get(url).content.decode()
    assert '<select name="timezone"' in page
    assert '<option value="America/New_York">America/New York</option>' in page

    superuser_client.post(url, tenant_form(acme, timezone="america/new_york"))
    acme.refresh_from_db()
    assert acme.timezone == "America/New_York"

    response = superuser_client.post(url, tenant_form(acme, timezone="Mars/Olympus"))
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    acme.refresh_from_db()
    assert acme.timezone == "America/New_York"
