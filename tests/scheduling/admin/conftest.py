from __future__ import annotations

import pytest

from tests.factories import make_membership, make_tenant, make_user


@pytest.fixture
def superuser_client(client, db):
    client.force_login(make_user(is_staff=True, is_superuser=True))
    return client


@pytest.fixture
def tenant_a(db):
    return make_tenant(name="Tenant A", slug="tenant-a", timezone="Europe/Berlin")


@pytest.fixture
def tenant_b(db):
    return make_tenant(name="Tenant B", slug="tenant-b", timezone="America/New_York")


@pytest.fixture
def staff_client(client, db):
    """Return a function that logs in a staff member with the given roles: ``{tenant: role}``."""

    def login(roles: dict) -> object:
        user = make_user(is_staff=True)
        for tenant, role in roles.items():
            make_membership(user=user, tenant=tenant, role=role)
        client.force_login(user)
        client.user = user
        return client

    return login
