"""The tenants app's admin pages open for a superuser (they use the scheduling admin's helpers)."""

from __future__ import annotations

import pytest
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
