"""Members and blackout windows in a real browser: adding a viewer takes a handful of clicks,
the new member sees their role, and a weekly window's start and end line up."""

from __future__ import annotations

import pytest

pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is not installed (.[test] extra)"
)

from django.urls import reverse  # noqa: E402
from playwright.sync_api import expect  # noqa: E402

from tenants.models import Membership  # noqa: E402
from tests.browser.conftest import PASSWORD, Operator, log_in, message  # noqa: E402
from tests.factories import make_membership, make_tenant, make_user  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.timeout(60)]


def test_a_tenant_owner_adds_a_viewer_in_a_few_clicks_and_the_viewer_sees_their_role(
    page, transactional_db, screenshot
):
    acme = make_tenant(name="Acme", slug="acme", timezone="Europe/Berlin")
    owner = make_user(username="olivia", password=PASSWORD, is_staff=True)
    make_membership(user=owner, tenant=acme, role="owner")
    bob = make_user(username="bob", password=PASSWORD, is_staff=False)
    log_in(page, owner)
    expect(page.locator("#user-tools")).to_contain_text("Acme: Owner")

    op = Operator(page)
    op.click(page.locator("tr.model-membership").get_by_role("link", name="Add"))
    expect(page.get_by_role("heading", name="Add member")).to_be_visible()
    op.fill(page.get_by_label("User:"), "bob")
    screenshot("form")
    op.click(page.get_by_role("button", name="Save", exact=True))

    expect(message(page)).to_contain_text("was added successfully")
    screenshot("added")
    op.assert_at_most(6)
    membership = Membership.objects.get(user=bob)
    assert (membership.tenant_id, membership.role) == (acme.pk, "viewer")
    expect(page.get_by_role("row").filter(has_text="bob")).to_contain_text("Viewer")

    page.get_by_role("button", name="Log out").click()
    log_in(page, bob)
    expect(page.locator("#user-tools")).to_contain_text("Your roles: Acme: Viewer.")


def test_a_superuser_adds_a_viewer_from_the_tenants_page(page, superuser):
    make_tenant(name="Globex", slug="globex")
    acme = make_tenant(name="Acme", slug="acme", timezone="Europe/Berlin")
    carol = make_user(username="carol", email="carol@example.com", is_staff=False)
    log_in(page, superuser)

    op = Operator(page)
    op.click(page.locator("tr.model-tenant").get_by_role("link", name="Tenants"))
    op.click(page.get_by_role("link", name="Acme", exact=True))
    op.click(page.get_by_role("link", name="Add member"))
    op.fill(page.get_by_label("User:"), "carol@example.com")
    op.select(page.get_by_label("Role:"), label="Viewer")
    op.click(page.get_by_role("button", name="Save", exact=True))

    expect(message(page)).to_contain_text("was added successfully")
    op.assert_at_most(6)
    assert Membership.objects.get(user=carol).tenant_id == acme.pk


def test_a_weekly_windows_start_and_end_fields_line_up(page, superuser, screenshot):
    make_tenant(name="Acme", slug="acme", timezone="Europe/Berlin")
    log_in(page, superuser)
    page.goto(reverse("admin:scheduling_blackoutwindow_add"))
    page.get_by_label("Start weekday:").select_option(label="Saturday")
    page.get_by_label("End weekday:").select_option(label="Sunday")

    def box(selector: str) -> dict:
        found = page.locator(selector).bounding_box()
        assert found is not None, selector
        return found

    def assert_columns_line_up() -> None:
        start_day, end_day = box("#id_start_weekday"), box("#id_end_weekday")
        start_time, end_time = box("#id_start_time"), box("#id_end_time")
        assert start_day["x"] == end_day["x"]
        assert start_day["width"] == end_day["width"]
        assert start_time["x"] == end_time["x"]
        assert start_time["y"] < end_time["y"]  # start above end, each on its own row
        # Day and time on one row: their middles level.
        middle = lambda found: found["y"] + found["height"] / 2  # noqa: E731
        assert abs(middle(start_day) - middle(start_time)) < 2
        assert abs(middle(end_day) - middle(end_time)) < 2

    assert_columns_line_up()
    # An error in one row (no start time) does not shift the columns either.
    page.locator("#id_name").fill("Weekend")
    page.get_by_label("Kind:").select_option(label="Every week")
    page.locator("#id_end_time").fill("06:00")
    page.get_by_role("button", name="Save and continue editing").click()
    expect(page.locator(".errornote")).to_be_visible()
    expect(page.locator(".field-start_time .errorlist")).to_contain_text("needs this field")
    screenshot("start-time-missing")
    assert_columns_line_up()
