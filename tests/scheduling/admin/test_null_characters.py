"""Null characters in admin list and search parameters are a 400 on every database.

PostgreSQL cannot hold or compare text with U+0000; without the guard such a URL is a 500 there.
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.factories import make_scan

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "query",
    [{"q": "a\x00b"}, {"last_status__exact": "\x00"}, {"name\x00": "x"}],
    ids=["search", "filter value", "parameter name"],
)
@pytest.mark.parametrize(
    "model", ["periodicscan", "execution", "auditentry", "blackoutwindow", "alertrule"]
)
def test_changelists_answer_400(superuser_client, tenant_a, model, query):
    make_scan(tenant=tenant_a, name="Homepage")
    response = superuser_client.get(reverse(f"admin:scheduling_{model}_changelist"), query)
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("model", "field"), [("periodicscan", "tenant"), ("periodicscan", "depends_on")]
)
def test_autocomplete_answers_400(superuser_client, tenant_a, model, field):
    make_scan(tenant=tenant_a, name="Homepage")
    response = superuser_client.get(
        reverse("admin:autocomplete"),
        {"app_label": "scheduling", "model_name": model, "field_name": field, "term": "\x00"},
    )
    assert response.status_code == 400


def test_tenant_changelist_search_answers_400(superuser_client, tenant_a):
    response = superuser_client.get(reverse("admin:tenants_tenant_changelist"), {"q": "\x00"})
    assert response.status_code == 400
