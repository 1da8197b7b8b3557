"""A resolver's request_tenant_ids(request) limits the admin and the API of a request to the
tenant of its domain (as on django-tenants): whoever logs in, even a superuser, sees that
tenant's schedules only, and no system schedules; elsewhere nothing changes."""

from __future__ import annotations

import pytest
from django.test import override_settings
from django.urls import reverse
from rest_framework.test import APIClient

from scheduling.tenancy import MembershipResolver
from tenants.models import Tenant
from tests.factories import make_scan, make_tenant, make_user

pytestmark = pytest.mark.django_db

HERE = "tests.scheduling.test_request_scope"


class DomainResolver(MembershipResolver):
    """The tenant of a request is the one named by its host's first label (acme.example)."""

    def request_tenant_ids(self, request):
        slug = request.get_host().split(":")[0].split(".")[0]
        tenant = Tenant.objects.filter(slug=slug).first()
        return None if tenant is None else {tenant.pk}


@pytest.fixture
def superuser():
    return make_user(username="root", is_superuser=True, is_staff=True)


@pytest.fixture
def superuser_client(client, superuser):
    client.force_login(superuser)
    return client


@pytest.fixture
def schedules():
    acme, globex = make_tenant(slug="acme"), make_tenant(slug="globex")
    return {
        "acme": make_scan(tenant=acme, name="acme's scan"),
        "globex": make_scan(tenant=globex, name="globex's scan"),
        "system": make_scan(tenant=None, name="system scan"),
    }


def listed(response) -> set[str]:
    return {
        name
        for name in ("acme's scan", "globex's scan", "system scan")
        if name.replace("'", "&#x27;") in response.content.decode()
    }


@override_settings(SCHEDULING_TENANT_RESOLVER=f"{HERE}.DomainResolver", ALLOWED_HOSTS=["*"])
def test_on_a_tenants_domain_the_admin_shows_that_tenant_only(superuser_client, schedules):
    changelist = reverse("admin:scheduling_periodicscan_changelist")
    assert listed(superuser_client.get(changelist, HTTP_HOST="acme.example")) == {"acme's scan"}
    assert listed(superuser_client.get(changelist, HTTP_HOST="admin.example")) == {
        "acme's scan",
        "globex's scan",
        "system scan",
    }
    # Another tenant's page is not found there, like any row the user may not see.
    other = reverse("admin:scheduling_periodicscan_change", args=[schedules["globex"].pk])
    response = superuser_client.get(other, HTTP_HOST="acme.example")
    assert response.status_code == 404
    dashboard = superuser_client.get(
        reverse("admin:scheduling_dashboard"), HTTP_HOST="acme.example"
    )
    assert dashboard.context["dashboard"].counts["total"] == 1


@override_settings(SCHEDULING_TENANT_RESOLVER=f"{HERE}.DomainResolver", ALLOWED_HOSTS=["*"])
def test_on_a_tenants_domain_the_api_shows_that_tenant_only(superuser, schedules):
    client = APIClient()
    client.force_authenticate(user=superuser)
    names = {
        row["name"] for row in client.get("/api/scans/", HTTP_HOST="acme.example").json()["results"]
    }
    assert names == {"acme's scan"}
    globex = schedules["globex"].pk
    assert client.get(f"/api/scans/{globex}/", HTTP_HOST="acme.example").status_code == 404
    assert client.get(f"/api/scans/{globex}/", HTTP_HOST="admin.example").status_code == 200
