"""Blackout windows in the admin: weekdays by name, the tenant's time zone by default, times
shown like every other time of the admin."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse

from scheduling.models import BlackoutWindow
from tests.factories import make_tenant
from tests.scheduling.admin.test_policies_admin import blackout_form, make_window

pytestmark = pytest.mark.django_db

ADD_URL = reverse("admin:scheduling_blackoutwindow_add")
LIST_URL = reverse("admin:scheduling_blackoutwindow_changelist")


def test_weekdays_are_picked_by_name_and_stored_as_numbers(superuser_client, tenant_a):
    form = superuser_client.get(ADD_URL).context["adminform"].form
    for name in ("start_weekday", "end_weekday"):
        assert list(form.fields[name].choices) == [
            ("", "---------"),
            ("0", "Monday"),
            ("1", "Tuesday"),
            ("2", "Wednesday"),
            ("3", "Thursday"),
            ("4", "Friday"),
            ("5", "Saturday"),
            ("6", "Sunday"),
        ]
    page = superuser_client.get(ADD_URL).content.decode()
    assert '<select name="start_weekday"' in page
    assert "0 = Monday" not in page

    response = superuser_client.post(
        ADD_URL, blackout_form(tenant_a, start_weekday="4", end_weekday="0")
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    window = BlackoutWindow.objects.get()
    assert (window.start_weekday, window.end_weekday) == (4, 0)
    change = superuser_client.get(
        reverse("admin:scheduling_blackoutwindow_change", args=[window.pk])
    )
    assert '<option value="4" selected>Friday</option>' in change.content.decode()
    assert "Fri 22:00 to Mon 06:00" in superuser_client.get(LIST_URL).content.decode()


def test_a_weekday_that_is_not_one_is_a_form_error(superuser_client, tenant_a):
    response = superuser_client.post(ADD_URL, blackout_form(tenant_a, start_weekday="7"))
    assert response.status_code == 200
    assert (
        "Select a valid choice. 7 is not one of the available choices."
        in response.context["adminform"].form.errors["start_weekday"]
    )
    response = superuser_client.post(ADD_URL, blackout_form(tenant_a, end_weekday=""))
    assert response.context["adminform"].form.errors["end_weekday"] == [
        "A weekly window needs this field."
    ]
    assert not BlackoutWindow.objects.exists()


def test_the_zone_of_a_new_window_is_its_tenants(staff_client, tenant_a):
    # The only tenant the user manages is chosen, with its time zone.
    client = staff_client({tenant_a: "admin"})
    form = client.get(ADD_URL).context["adminform"].form
    assert str(form.initial["tenant"]) == str(tenant_a.pk)
    assert form.initial["timezone"] == "Europe/Berlin"


def test_a_superuser_names_the_tenant_and_gets_its_zone(superuser_client, tenant_a, tenant_b):
    assert "timezone" not in superuser_client.get(ADD_URL).context["adminform"].form.initial
    form = superuser_client.get(f"{ADD_URL}?tenant={tenant_b.pk}").context["adminform"].form
    assert form.initial["timezone"] == "America/New_York"
    assert superuser_client.get(f"{ADD_URL}?tenant=%C2%B9").status_code == 200


def test_a_window_saved_without_a_zone_takes_its_tenants(superuser_client, tenant_b):
    response = superuser_client.post(ADD_URL, blackout_form(tenant_b, timezone=""))
    assert response.status_code == 302, response.context["adminform"].form.errors
    window = BlackoutWindow.objects.get()
    assert window.timezone == "America/New_York"
    # Saturday 22:00 in New York is Sunday 03:00 UTC.
    assert window.contains(dt.datetime(2026, 11, 29, 3, 30, tzinfo=dt.UTC))
    assert not window.contains(dt.datetime(2026, 11, 28, 22, 30, tzinfo=dt.UTC))


def test_a_window_created_in_code_without_a_zone_takes_its_tenants():
    tenant = make_tenant(timezone="Asia/Tokyo")
    window = BlackoutWindow(
        tenant=tenant,
        name="Nightly",
        kind="weekly",
        start_weekday=0,
        start_time=dt.time(1),
        end_weekday=0,
        end_time=dt.time(2),
    )
    window.full_clean()  # an empty zone is valid: it means the tenant's
    assert window.timezone == "Asia/Tokyo"
    created = BlackoutWindow.objects.create(
        tenant=tenant, name="Also", kind="dates", starts_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    )
    assert created.timezone == "Asia/Tokyo"
    utc_tenant = make_tenant()
    assert make_window(utc_tenant, timezone="").timezone == "UTC"
    assert make_window(utc_tenant, timezone="Europe/Paris").timezone == "Europe/Paris"


def test_a_date_window_lists_its_times_in_its_zone_with_the_zone_named(superuser_client, tenant_a):
    make_window(
        tenant_a,
        name="Migration",
        kind="dates",
        timezone="",
        starts_at=dt.datetime(2026, 3, 28, 23, 0, tzinfo=dt.UTC),
        ends_at=dt.datetime(2026, 3, 29, 4, 30, tzinfo=dt.UTC),
    )
    page = superuser_client.get(LIST_URL).content.decode()
    # Berlin changes to summer time in between.
    assert (
        '<span class="nowrap">2026-03-29 00:00:00 CET</span> to '
        '<span class="nowrap">2026-03-29 06:30:00 CEST</span>'
    ) in page
    assert "Europe/Berlin" in page
