"""The tenant of a new schedule or rule: chosen already when the user has one choice (issue 18).

An admin of a single tenant may add only to it (no system rows for them): the add form
chooses it, and reads its times in that tenant's zone. ``?tenant=<id>`` chooses one of the
tenants the user manages; anything else in it is ignored, not an error page.
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.factories import make_tenant

pytestmark = pytest.mark.django_db

ADD_PAGES = [
    "admin:scheduling_periodicscan_add",
    "admin:scheduling_report_add",
    "admin:scheduling_cleanupconfig_add",
    "admin:scheduling_scheduledtask_add",
    "admin:scheduling_alertrule_add",
]
SCAN_ADD = "admin:scheduling_periodicscan_add"


def chosen_tenant(response) -> str | None:
    assert response.status_code == 200, response.status_code
    initial = response.context["adminform"].form.initial.get("tenant")
    return None if initial is None else str(initial)


def selected_option(tenant) -> str:
    return f'<option value="{tenant.pk}" selected>{tenant.name}</option>'


@pytest.mark.parametrize("url_name", ADD_PAGES)
def test_the_only_tenant_an_admin_manages_is_chosen_on_the_add_form(
    staff_client, tenant_a, tenant_b, url_name
):
    # A viewer elsewhere: Tenant B is visible, but nothing can be added to it.
    client = staff_client({tenant_a: "admin", tenant_b: "viewer"})

    response = client.get(reverse(url_name))

    assert chosen_tenant(response) == str(tenant_a.pk)
    page = response.content.decode()
    assert selected_option(tenant_a) in page
    assert f'<option value="{tenant_b.pk}"' not in page


def test_the_chosen_tenants_zone_is_the_zone_of_the_new_schedules_times(staff_client, tenant_a):
    response = staff_client({tenant_a: "admin"}).get(reverse(SCAN_ADD))

    assert response.context["adminform"].form.zone == "Europe/Berlin"
    assert "Times are in Europe/Berlin." in response.content.decode()


def test_an_admin_of_two_tenants_chooses_one(staff_client, tenant_a, tenant_b):
    client = staff_client({tenant_a: "admin", tenant_b: "owner"})

    assert chosen_tenant(client.get(reverse(SCAN_ADD))) is None


def test_a_superuser_chooses_even_the_only_tenant_as_no_tenant_is_a_choice_too(
    superuser_client, tenant_a
):
    # Empty is a system schedule, which a superuser may create: not a choice to make for them.
    assert chosen_tenant(superuser_client.get(reverse(SCAN_ADD))) is None


def test_the_tenant_in_the_address_is_chosen_if_the_user_manages_it(
    staff_client, tenant_a, tenant_b
):
    client = staff_client({tenant_a: "admin", tenant_b: "admin"})
    url = reverse(SCAN_ADD)

    response = client.get(f"{url}?tenant={tenant_b.pk}")

    assert chosen_tenant(response) == str(tenant_b.pk)
    assert response.context["adminform"].form.zone == "America/New_York"


def test_a_tenant_in_the_address_the_user_does_not_manage_is_not_chosen(
    staff_client, tenant_a, tenant_b
):
    client = staff_client({tenant_a: "admin", tenant_b: "viewer"})
    hidden = make_tenant(name="Hidden", slug="hidden")
    url = reverse(SCAN_ADD)

    # Their only tenant instead; the other is not offered.
    for other in (tenant_b, hidden):
        response = client.get(f"{url}?tenant={other.pk}")
        assert chosen_tenant(response) == str(tenant_a.pk)
        assert f'<option value="{other.pk}"' not in response.content.decode()


@pytest.mark.parametrize("value", ["abc", str(2**70), "", "1.5"])
def test_a_tenant_in_the_address_that_is_no_tenants_id_is_ignored(
    superuser_client, tenant_a, value
):
    response = superuser_client.get(f"{reverse(SCAN_ADD)}?tenant={value}")

    assert chosen_tenant(response) is None


def test_a_superuser_is_given_the_only_tenant_where_a_row_needs_one(superuser_client, tenant_a):
    # A blackout window always belongs to a tenant: with one tenant, that one.
    response = superuser_client.get(reverse("admin:scheduling_blackoutwindow_add"))

    assert chosen_tenant(response) == str(tenant_a.pk)
    assert response.context["adminform"].form.initial["timezone"] == "Europe/Berlin"
