"""The tenants app's admin pages open for a superuser (they use the scheduling admin's helpers)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.test import override_settings
from django.urls import reverse

from tests.factories import make_membership, make_tenant, make_user


@pytest.mark.django_db
def test_the_tenant_and_membership_pages_open_for_a_superuser(client):
    client.force_login(make_user(is_staff=True, is_superuser=True))
    tenant = make_tenant(name="Acme", slug="acme")
    membership = make_membership(user=make_user(username="ops"), tenant=tenant, role="operator")
    pages = [
        reverse("admin:tenants_tenant_changelist"),
        reverse("admin:tenants_tenant_change", args=[tenant.pk]),
        reverse("admin:tenants_membership_changelist"),
        reverse("admin:tenants_membership_change", args=[membership.pk]),
    ]
    for page in pages:
        response = client.get(page)
        assert response.status_code == 200, page
    assert b"ops" in client.get(reverse("admin:tenants_membership_changelist")).content


# -- the scan allow list: superusers only ------------------------------------------------------


class StaffSeeEveryTenant:
    """A host project's resolver under which staff members see every tenant."""

    def tenant_ids(self, user, *, min_role=None):
        return None if user.is_authenticated and user.is_staff else set()


def tenant_form(tenant, **overrides):
    data = {
        "name": tenant.name,
        "slug": tenant.slug,
        "timezone": tenant.timezone,
        "is_active": "on",
        "max_schedules": "",
        "max_concurrent_executions": "",
        "execution_retention_days": "",
        "scan_allow_networks": tenant.scan_allow_networks,
        "memberships-TOTAL_FORMS": "0",
        "memberships-INITIAL_FORMS": "0",
        "memberships-MIN_NUM_FORMS": "0",
        "memberships-MAX_NUM_FORMS": "1000",
    }
    data.update(overrides)
    return data


@pytest.mark.django_db
def test_a_superuser_sets_a_tenants_scan_allow_list(client):
    client.force_login(make_user(is_staff=True, is_superuser=True))
    tenant = make_tenant(name="Acme", slug="acme")
    change_url = reverse("admin:tenants_tenant_change", args=[tenant.pk])
    response = client.post(
        change_url, tenant_form(tenant, scan_allow_networks="10.20.0.0/16\n192.168.7.0/24")
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    tenant.refresh_from_db()
    assert tenant.scan_allow_networks == "10.20.0.0/16\n192.168.7.0/24"


@pytest.mark.django_db
def test_an_invalid_scan_allow_list_is_refused_naming_the_entry(client):
    client.force_login(make_user(is_staff=True, is_superuser=True))
    tenant = make_tenant(name="Acme", slug="acme")
    change_url = reverse("admin:tenants_tenant_change", args=[tenant.pk])
    response = client.post(
        change_url, tenant_form(tenant, scan_allow_networks="10.0.0.0/8, intranet, 169.254.0.0/16")
    )
    assert response.status_code == 200
    errors = " ".join(response.context["adminform"].form.errors["scan_allow_networks"])
    assert "&#x27;intranet&#x27; is not an IP network" in response.content.decode()
    assert "'intranet' is not an IP network" in errors
    assert "169.254.0.0/16 covers the cloud metadata address 169.254.169.254" in errors
    tenant.refresh_from_db()
    assert tenant.scan_allow_networks == ""


@pytest.mark.django_db
def test_staff_who_may_change_tenants_cannot_set_the_scan_allow_list(client):
    # Under a host's resolver a staff member with tenants.change_tenant changes every tenant;
    # the allow list still stays read-only for them, and a POST of it is ignored.
    user = make_user(is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="tenants", codename__in=["view_tenant", "change_tenant"]
        )
    )
    client.force_login(user)
    tenant = make_tenant(name="Acme", slug="acme", scan_allow_networks="10.20.0.0/16")
    change_url = reverse("admin:tenants_tenant_change", args=[tenant.pk])
    with override_settings(
        SCHEDULING_TENANT_RESOLVER="tests.tenants.test_admin.StaffSeeEveryTenant"
    ):
        page = client.get(change_url)
        assert page.status_code == 200
        form = page.context["adminform"].form
        assert "name" in form.fields
        assert "scan_allow_networks" not in form.fields
        assert "10.20.0.0/16" in page.content.decode()  # shown, read-only
        response = client.post(
            change_url, tenant_form(tenant, name="Acme Corp", scan_allow_networks="0.0.0.0/1")
        )
    assert response.status_code == 302, response.content.decode()[:2000]
    tenant.refresh_from_db()
    assert tenant.name == "Acme Corp"
    assert tenant.scan_allow_networks == "10.20.0.0/16"


@pytest.mark.django_db
def test_a_tenant_owner_cannot_change_the_scan_allow_list(client):
    owner = make_user(is_staff=True)
    tenant = make_tenant(name="Acme", slug="acme")
    make_membership(user=owner, tenant=tenant, role="owner")
    client.force_login(owner)
    change_url = reverse("admin:tenants_tenant_change", args=[tenant.pk])
    page = client.get(change_url)
    assert page.status_code == 200
    assert "scan_allow_networks" not in page.context["adminform"].form.fields
    response = client.post(change_url, tenant_form(tenant, scan_allow_networks="10.0.0.0/8"))
    assert response.status_code == 403
    tenant.refresh_from_db()
    assert tenant.scan_allow_networks == ""
