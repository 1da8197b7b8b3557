"""An operator's day in the admin, in a real browser: create, fix, run, pause, resume, watch."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is not installed (.[test] extra)"
)

from django.urls import reverse  # noqa: E402
from django.utils import timezone  # noqa: E402
from playwright.sync_api import expect  # noqa: E402

from scheduling import runner  # noqa: E402
from scheduling.models import Execution, PeriodicScan, Status  # noqa: E402
from tests.browser.conftest import log_in, message, run_action  # noqa: E402
from tests.factories import make_execution, make_scan, make_tenant  # noqa: E402

# Each test is a few seconds; a hung page gives up after 10 s, a hung test after a minute.
pytestmark = [pytest.mark.browser, pytest.mark.timeout(60)]


def fill_field(page, label: str, value: str) -> None:
    """Type into a text field or pick from a select, whichever the form renders."""
    field = page.get_by_label(label, exact=True)
    if field.evaluate("element => element.tagName") == "SELECT":
        field.select_option(value)
    else:
        field.fill(value)


def choose_tenant(page, name: str) -> None:
    """Pick the tenant in the autocomplete widget (or a plain select)."""
    field = page.locator("#id_tenant")
    if "admin-autocomplete" not in (field.get_attribute("class") or ""):
        field.select_option(label=name)
        return
    page.locator("#id_tenant + .select2").get_by_role("combobox").click()
    page.locator(".select2-container--open").get_by_role("searchbox").fill(name)
    page.get_by_role("option", name=name).click()
    expect(page.locator("#id_tenant + .select2")).to_contain_text(name)


def badge_colour(badge) -> str:
    colour = badge.evaluate("element => getComputedStyle(element).backgroundColor")
    assert colour not in ("", "transparent", "rgba(0, 0, 0, 0)")
    return colour


def test_cron_scan_with_an_invalid_expression_shows_the_error_then_the_next_runs(
    page, superuser, screenshot
):
    make_tenant(name="Acme", slug="acme", timezone="Europe/Berlin")
    log_in(page, superuser)
    page.get_by_role("link", name="Periodic scans").first.click()
    page.get_by_role("link", name=re.compile("Add periodic scan")).click()

    choose_tenant(page, "Acme")
    page.get_by_label("Name:").fill("Nightly echo")
    fill_field(page, "Scan type:", "test_echo")
    page.get_by_label("Target:").fill("echo.example")
    page.get_by_label("Trigger type:").select_option(label="Cron")
    page.get_by_label("Cron expression:").fill("61 25 * * *")
    preview = page.locator(".field-upcoming")
    # The preview answers while typing, before anything is saved: no runs, the reason why.
    expect(preview).to_contain_text(re.compile("invalid cron expression", re.IGNORECASE))
    expect(preview.locator("time")).to_have_count(0)
    page.get_by_role("button", name="Save and continue editing").click()

    expect(page.locator(".errornote")).to_be_visible()
    cron_row = page.locator(".field-cron_expression")
    expect(cron_row.locator(".errorlist")).to_contain_text(re.compile("cron", re.IGNORECASE))
    screenshot("invalid-cron")
    assert not PeriodicScan.objects.exists()

    page.get_by_label("Cron expression:").fill("30 2 * * *")
    runs = preview.locator("time")
    expect(runs).to_have_count(5)
    # Local to the tenant's time zone, UTC on hover.
    for run in runs.all():
        expect(run).to_contain_text(re.compile(r"\d{4}-\d{2}-\d{2} 02:30:00 CES?T"))
        expect(run).to_have_attribute("title", re.compile(r"0[01]:30:00 UTC$"))
    assert not PeriodicScan.objects.exists()
    screenshot("preview")
    page.get_by_role("button", name="Save and continue editing").click()

    expect(message(page)).to_contain_text("was added successfully")
    scan = PeriodicScan.objects.get(name="Nightly echo")
    assert scan.cron_expression == "30 2 * * *"
    assert scan.effective_timezone == "Europe/Berlin"
    expect(runs).to_have_count(5)
    expect(runs.first).to_contain_text("02:30:00")


def test_run_now_queues_an_execution_that_appears_with_its_status(page, superuser, screenshot):
    tenant = make_tenant(name="Acme", slug="acme")
    scan = make_scan(tenant=tenant, name="Hourly echo", scan_type="test_echo", target="x")
    log_in(page, superuser)
    page.goto(reverse("admin:scheduling_periodicscan_changelist"))

    run_action(page, "Hourly echo", "Run selected schedules now")

    expect(message(page)).to_contain_text("1 run queued")
    execution = Execution.objects.get(schedule=scan)
    assert execution.status == Status.QUEUED
    page.goto(reverse("admin:scheduling_execution_changelist"))
    row = page.get_by_role("row").filter(has_text="Hourly echo")
    expect(row).to_contain_text("Queued")
    queued_colour = badge_colour(row.get_by_text("Queued", exact=True))
    screenshot("queued")

    # What the scheduler process does with a queued run, done here in the test's thread.
    runner.execute(execution.pk)

    page.reload()
    expect(row).to_contain_text("Succeeded")
    # A badge: each status has its own colour.
    assert badge_colour(row.get_by_text("Succeeded", exact=True)) != queued_colour
    screenshot("succeeded")
    page.goto(reverse("admin:scheduling_periodicscan_change", args=[scan.pk]))
    expect(page.locator(".inline-group")).to_contain_text("Succeeded")


def test_pause_until_a_time_and_resume_from_the_changelist(page, superuser, screenshot):
    tenant = make_tenant(name="Acme", slug="acme")
    scan = make_scan(tenant=tenant, name="Paused echo", scan_type="test_echo", target="x")
    make_scan(tenant=tenant, name="Untouched echo", scan_type="test_echo", target="x")
    log_in(page, superuser)
    page.goto(reverse("admin:scheduling_periodicscan_changelist"))
    row = page.get_by_role("row").filter(has_text="Paused echo")
    other = page.get_by_role("row").filter(has_text="Untouched echo")

    run_action(page, "Paused echo", "Pause selected schedules")
    # An intermediate page asks until when, naming the schedules it pauses.
    expect(page.locator("#content")).to_contain_text("Paused echo")
    expect(page.locator("#content")).not_to_contain_text("Untouched echo")
    until = timezone.now() + timedelta(days=2)
    # The split date/time widget's inputs carry no label of their own.
    page.locator("input[name=until_0]").fill(f"{until:%Y-%m-%d}")
    page.locator("input[name=until_1]").fill("09:15:00")
    page.get_by_role("button", name="Pause", exact=True).click()

    expect(message(page)).to_contain_text(f"1 schedule paused until {until:%Y-%m-%d} 09:15")
    expect(row).to_contain_text(f"Paused until {until:%a %Y-%m-%d} 09:15:00")
    expect(other).to_contain_text("Enabled")
    scan.refresh_from_db()
    assert scan.paused_until == until.replace(hour=9, minute=15, second=0, microsecond=0)
    screenshot("paused")

    run_action(page, "Paused echo", "Resume selected schedules")

    expect(message(page)).to_contain_text("1 schedule resumed")
    expect(row).to_contain_text("Enabled")
    scan.refresh_from_db()
    assert scan.enabled
    assert scan.paused_until is None

    # Without a time the pause lasts until someone resumes it.
    run_action(page, "Paused echo", "Pause selected schedules")
    page.get_by_role("button", name="Pause", exact=True).click()
    expect(message(page)).to_contain_text("1 schedule paused until resumed")
    # A pause, not a disable: an operator's resume ends it (issue 17, item 6).
    expect(row).to_contain_text("Paused until resumed")
    scan.refresh_from_db()
    assert scan.enabled
    run_action(page, "Paused echo", "Resume selected schedules")
    expect(row).to_contain_text("Enabled")
    scan.refresh_from_db()
    assert scan.paused_until is None


def section(page, heading: str):
    """The dashboard's box under ``heading``."""
    return page.locator(".module").filter(has=page.get_by_role("heading", name=heading))


def test_dashboard_opens_from_the_admin_index(page, superuser, live_server):
    dashboard_url = reverse("admin:scheduling_dashboard")
    tenant = make_tenant(name="Acme", slug="acme")
    now = timezone.now()
    make_scan(
        tenant=tenant,
        name="Hourly echo",
        scan_type="test_echo",
        target="x",
        interval_seconds=3600,
        next_run_at=now + timedelta(minutes=10),
    )
    broken = make_scan(
        tenant=tenant,
        name="Broken echo",
        scan_type="test_echo",
        target="x",
        last_status=Status.FAILED,
        consecutive_failures=3,
    )
    make_execution(schedule=broken, status=Status.FAILED, error="boom", started_at=now)
    foreign = []
    page.on(
        "request",
        lambda request: (
            None if request.url.startswith(live_server.url) else foreign.append(request.url)
        ),
    )
    log_in(page, superuser)

    page.get_by_role("link", name=re.compile("dashboard", re.IGNORECASE)).first.click()

    expect(page).to_have_url(re.compile(re.escape(dashboard_url) + "$"))
    expect(page.get_by_role("heading", level=1)).to_contain_text(
        re.compile("dashboard", re.IGNORECASE)
    )
    failing = section(page, "Failing schedules")
    expect(failing).to_contain_text("Broken echo")
    expect(failing).not_to_contain_text("Hourly echo")
    expect(section(page, "Upcoming runs")).to_contain_text("Hourly echo")
    expect(page.get_by_role("img", name="Executions per hour by outcome")).to_be_visible()
    expect(page.get_by_role("img", name="Upcoming runs per schedule")).to_be_visible()
    # Charts and styles come from the server itself, never from a CDN.
    assert foreign == []
