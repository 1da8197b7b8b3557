from __future__ import annotations

import pytest


@pytest.fixture
def tenant(db):
    from tests.factories import make_tenant

    return make_tenant(name="Acme", slug="acme", timezone="Europe/Berlin")
