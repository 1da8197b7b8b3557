"""The schedule form in a real browser: the chosen type's options, the searchable time zone and
the times that follow it (issue 18, items 2 and 3)."""

from __future__ import annotations

import re
import zoneinfo
from datetime import UTC, datetime

import pytest

pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is not installed (.[test] extra)"
)

from playwright.sync_api import expect  # noqa: E402

from scheduling.models import PeriodicScan  # noqa: E402
from tests.browser.conftest import log_in, message  # noqa: E402
from tests.browser.test_admin_workflow import choose_tenant  # noqa: E402
from tests.factories import make_scan, make_tenant  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.timeout(60)]


def options_of(page, label: str):
    return page.locator("fieldset.scheduling-options").filter(
        has=page.get_by_role("heading", name=f"Options of {label}")
    )


def test_the_types_options_follow_the_choice_and_times_follow_the_zone(page, superuser, screenshot):
    make_tenant(name="Acme", slug="acme", timezone="Europe/Berlin")
    log_in(page, superuser)
    page.goto("/admin/scheduling/periodicscan/add/")
    choose_tenant(page, "Acme")
    page.get_by_label("Name:").fill("Home page")
    page.get_by_label("Target:").fill("https://example.com/")
    page.get_by_label("Interval (seconds):").fill("300")

    # No type chosen: no options shown. Choosing one shows its options, and only its.
    expect(page.locator("fieldset.scheduling-options:visible")).to_have_count(0)
    page.get_by_label("Scan type:").select_option(label="HTTP check")
    expect(options_of(page, "HTTP check")).to_be_visible()
    expect(page.locator("fieldset.scheduling-options:visible")).to_have_count(1)
    page.get_by_label("Expected status:").fill("204")
    page.get_by_label("Scan type:").select_option(label="Test: sleep")
    expect(options_of(page, "HTTP check")).to_be_hidden()
    expect(options_of(page, "Test: sleep")).to_be_visible()
    page.get_by_label("Scan type:").select_option(label="HTTP check")
    expect(page.get_by_label("Expected status:")).to_have_value("204")  # kept meanwhile

    # The time zone: the chosen tenant's until one is chosen (the server reads the times in it);
    # searched by part of its name, in any case; the notes follow it.
    notes = page.locator(".scheduling-zone-note")
    expect(notes.first).to_have_text("Times are in Europe/Berlin.")
    # The admin's own note ("You are 1 hour behind server time") would contradict it.
    expect(page.locator(".timezonewarning:visible")).to_have_count(0)
    page.locator("#id_timezone + .select2").get_by_role("combobox").click()
    page.locator(".select2-container--open").get_by_role("searchbox").fill("tokyo")
    page.get_by_role("option", name="Asia/Tokyo").click()
    expect(notes.first).to_have_text("Times are in Asia/Tokyo.")
    expect(notes).to_have_count(4)
    for note in notes.all():
        expect(note).to_have_text("Times are in Asia/Tokyo.")
    # The admin's "Now" gives the time in that zone, not in the server's or the browser's.
    page.locator(".field-start_at .datetimeshortcuts").nth(1).get_by_text("Now").click()
    typed = page.locator("#id_start_at_1").input_value()
    tokyo = datetime.now(UTC).astimezone(zoneinfo.ZoneInfo("Asia/Tokyo"))
    minutes = int(typed[:2]) * 60 + int(typed[3:5]) - (tokyo.hour * 60 + tokyo.minute)
    assert minutes % 1440 in (0, 1, 1439), (typed, tokyo)  # within a minute, midnight or not
    page.locator("#id_start_at_0").fill("2030-03-10")
    page.locator("#id_start_at_1").fill("08:00:00")
    screenshot("filled")
    page.get_by_role("button", name="Save and continue editing").click()

    expect(message(page)).to_contain_text("was added successfully")
    scan = PeriodicScan.objects.get(name="Home page")
    assert scan.scan_type == "http"
    assert scan.options == {"method": "GET", "expected_status": 204}
    assert scan.timezone == "Asia/Tokyo"
    assert scan.start_at == datetime(2030, 3, 9, 23, 0, tzinfo=UTC)
    expect(page.locator("#id_start_at_1")).to_have_value("08:00:00")
    expect(page.locator("#id_timezone + .select2")).to_contain_text(re.compile("Asia/Tokyo"))


def test_a_schedules_page_names_its_zone_once_without_the_admins_server_time_note(page, superuser):
    # The browser runs in UTC; the schedule's times read in Berlin's zone, which the page's
    # "Now" takes for the server's. The admin adds its "You are 1 hour behind server time"
    # beside each date and time; the page shows its own note instead.
    tenant = make_tenant(name="Acme", slug="acme", timezone="Europe/Berlin")
    scan = make_scan(tenant=tenant, name="Nightly")
    log_in(page, superuser)
    page.goto(f"/admin/scheduling/periodicscan/{scan.pk}/change/")
    expect(page.locator(".scheduling-zone-note").first).to_have_text("Times are in Europe/Berlin.")
    warnings = page.locator(".field-start_at .timezonewarning")
    expect(warnings.first).to_be_attached()
    expect(page.locator(".timezonewarning:visible")).to_have_count(0)
