"""The executions list on a 1400 px screen: every column on screen, the error cut, not lost."""

from __future__ import annotations

from datetime import timedelta

import pytest

pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is not installed (.[test] extra)"
)

from django.urls import reverse  # noqa: E402
from django.utils import timezone  # noqa: E402
from playwright.sync_api import expect  # noqa: E402

from scheduling.models import Status  # noqa: E402
from tests.browser.conftest import log_in  # noqa: E402
from tests.factories import make_execution, make_scan, make_tenant  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.timeout(60)]

SCREEN = 1400
ERROR = (
    "ConnectionError: HTTPSConnectionPool(host='status.internal.example.com', port=443): "
    "Max retries exceeded with url: /health/deep?include=database,cache,queue "
    "(Caused by NewConnectionError: Failed to establish a new connection: [Errno 111] "
    "Connection refused)"
)


def right_edge(locator) -> float:
    box = locator.bounding_box()
    assert box is not None, locator
    return box["x"] + box["width"]


def test_every_column_fits_a_1400_px_screen_with_both_sidebars(page, superuser, screenshot):
    tenant = make_tenant(name="Acme Logistics Europe", slug="acme", timezone="Europe/Berlin")
    scan = make_scan(tenant=tenant, name="Production API deep health check (eu-central-1)")
    now = timezone.now()
    failed = make_execution(
        schedule=scan,
        status=Status.TIMED_OUT,
        scheduled_for=now - timedelta(minutes=5),
        started_at=now - timedelta(minutes=5) + timedelta(seconds=2, milliseconds=300),
        finished_at=now,
        duration_ms=297_700,
        attempt=3,
        error=ERROR,
    )
    make_execution(schedule=scan, status=Status.SUCCEEDED)
    page.set_viewport_size({"width": SCREEN, "height": 900})
    log_in(page, superuser)

    page.goto(reverse("admin:scheduling_execution_changelist"))

    expect(page.locator("#nav-sidebar")).to_be_visible()
    expect(page.locator("#changelist-filter")).to_be_visible()
    row = page.locator("#result_list tbody tr").filter(has_text="Timed out")
    badge = row.locator("td.field-status_attempt .scheduling-badge")
    cells = [
        badge,
        row.locator("td.field-duration"),
        row.locator("td.field-lateness"),
        row.locator("td.field-short_error"),
    ]
    for cell in cells:
        expect(cell).to_be_visible()
        assert right_edge(cell) <= SCREEN, cell
    # Nothing scrolls sideways: the list is as wide as the screen at most.
    assert page.evaluate("document.documentElement.scrollWidth") <= SCREEN
    expect(row.locator("td.field-duration")).to_have_text("4 min 57 s")
    expect(row.locator("td.field-lateness")).to_have_text("2.3 s")
    expect(row.locator("td.field-scheduled_for_time")).to_have_text(
        timezone.localtime(failed.scheduled_for, timezone=scan_zone(scan)).strftime(
            "%Y-%m-%d %H:%M:%S %Z"
        )
    )
    error = row.locator("td.field-short_error .scheduling-error")
    # Cut on screen, whole on hover.
    assert error.evaluate("e => e.scrollWidth > e.clientWidth")
    expect(error).to_have_attribute("title", ERROR)
    screenshot("1400px")


def scan_zone(scan):
    from zoneinfo import ZoneInfo

    return ZoneInfo(scan.effective_timezone)


def test_the_dashboards_failing_schedules_fit_a_1280_px_screen(page, superuser, screenshot):
    tenant = make_tenant(name="Acme Logistics Europe", slug="acme", timezone="Europe/Berlin")
    for n in range(3):
        scan = make_scan(tenant=tenant, name=f"Production API deep health check {n} (eu-central)")
        make_execution(schedule=scan, status=Status.FAILED, error=ERROR * 3)
        type(scan).objects.filter(pk=scan.pk).update(
            last_status=Status.FAILED, consecutive_failures=3
        )
    page.set_viewport_size({"width": 1280, "height": 900})
    log_in(page, superuser)
    page.goto(reverse("admin:scheduling_dashboard"))
    screenshot("failing")

    rows = page.locator("#failing-schedules tbody tr")
    expect(rows).to_have_count(3)
    # Nothing to scroll sideways; the error is cut to the table, its text kept on hover.
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 1280
    table = page.locator("#failing-schedules table")
    error = rows.first.locator("td.sd-latest-error")
    assert right_edge(error) <= right_edge(table) + 1
    title = error.locator("a").get_attribute("title")
    assert title is not None and title.startswith(ERROR)
