"""The operator's everyday tasks in a real browser, each within its number of actions (issue 18).

Each task is done as an operator would, by a member of the tenant "Acme" (Europe/Berlin) with
the role the task needs, never a superuser; every click and every field typed or picked is
counted (``Operator``), logging in is not. Each test says where it starts: the admin index
or the dashboard after logging in, or the page where the task before it leaves the operator.
The outcome is checked in the database, and screenshots are saved under
``test-output/screenshots/``.

| task                                               | at most | done in |
|----------------------------------------------------|---------|---------|
| create an HTTP scan every 30 s                     | 6       | 6       |
| pause it until tomorrow 08:00 in the tenant's zone | 5       | 5       |
| run it now and open its execution                  | 3       | 3       |
| find why a scan failed                             | 3       | 2       |
| retry a failed execution                           | 2       | 2       |
| add a viewer to a tenant                           | 6       | 3       |

Adding a viewer is in ``test_member_admin.py``: a tenant's owner does it in 3 actions from
the admin index (``test_a_tenant_owner_adds_a_viewer_in_a_few_clicks_...``), a superuser who
picks the tenant first in 6.
"""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is not installed (.[test] extra)"
)

from django.urls import reverse  # noqa: E402
from django.utils import timezone  # noqa: E402
from playwright.sync_api import expect  # noqa: E402

from scheduling.models import Execution, PeriodicScan, Status, TriggerKind  # noqa: E402
from tenants.models import Tenant  # noqa: E402
from tests.browser.conftest import PASSWORD, Operator, log_in, message  # noqa: E402
from tests.factories import (  # noqa: E402
    make_execution,
    make_membership,
    make_scan,
    make_tenant,
    make_user,
)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(60)]

BERLIN = ZoneInfo("Europe/Berlin")
# A local target: nothing here runs the scan against it, and nothing leaves the machine.
TARGET = "http://127.0.0.1:8080/health"
SCANS = "admin:scheduling_periodicscan_changelist"
ERROR = (
    "ScanFailed: http://127.0.0.1:8080/health answered 503 Service Unavailable, expected 200\n"
    "The response body began: upstream database unavailable"
)


@pytest.fixture
def acme(transactional_db):
    # Another tenant the operator is no member of: Acme is still their only one.
    make_tenant(name="Globex", slug="globex", timezone="America/New_York")
    return make_tenant(name="Acme", slug="acme", timezone="Europe/Berlin")


def log_in_as(page, tenant, role: str):
    """Log in as a staff member holding ``role`` in ``tenant`` only; land on the admin index."""
    user = make_user(username=f"acme-{role}", password=PASSWORD, is_staff=True)
    make_membership(user=user, tenant=tenant, role=role)
    log_in(page, user)
    expect(page.locator("#user-tools")).to_contain_text(f"Acme: {role.capitalize()}")
    return user


def home_page_scan(tenant, **fields) -> PeriodicScan:
    """The scan of the first task, as saving it left it."""
    return make_scan(
        tenant=tenant,
        name="Home page",
        scan_type="http",
        target=TARGET,
        options={"method": "GET"},
        interval_seconds=30,
        **fields,
    )


def scan_link(page, name: str):
    return page.locator("#result_list").get_by_role("link", name=name, exact=True)


def test_an_admin_creates_an_http_scan_every_30_seconds_in_6_actions(page, acme, screenshot):
    # From the admin index after logging in, as an admin of Acme (adding needs that role).
    log_in_as(page, acme, "admin")
    op = Operator(page)

    op.click(page.locator("tr.model-periodicscan").get_by_role("link", name="Add"))
    # Acme is the only tenant the admin may add to: chosen already, its zone for the times.
    expect(page.locator("#id_tenant + .select2")).to_contain_text("Acme")
    expect(page.locator(".scheduling-zone-note").first).to_have_text("Times are in Europe/Berlin.")
    op.fill(page.get_by_label("Name:"), "Home page")
    op.select(page.get_by_label("Scan type:"), label="HTTP check")
    op.fill(page.get_by_label("Target:"), TARGET)
    op.fill(page.get_by_label("Interval (seconds):"), "30")
    # The preview shows the runs before anything is saved: 30 seconds apart, in Berlin time.
    runs = page.locator(".field-upcoming time")
    expect(runs).to_have_count(5)
    first, second = (
        datetime.fromisoformat(runs.nth(i).get_attribute("datetime") or "") for i in (0, 1)
    )
    assert second - first == timedelta(seconds=30)
    expect(runs.first).to_contain_text(re.compile(r"CES?T$"))
    screenshot("form")
    op.click(page.get_by_role("button", name="Save", exact=True))

    expect(message(page)).to_contain_text("was added successfully")
    screenshot("saved")
    op.assert_at_most(6)
    scan = PeriodicScan.objects.get()
    assert (scan.tenant, scan.name, scan.scan_type, scan.target) == (
        acme,
        "Home page",
        "http",
        TARGET,
    )
    assert (scan.trigger_type, scan.interval_seconds, scan.enabled) == ("interval", 30, True)
    assert scan.effective_timezone == "Europe/Berlin"
    assert scan.options == {"method": "GET"}
    expect(page.locator("#result_list tbody tr").filter(has_text="Home page")).to_contain_text(
        "Acme"
    )


def test_an_operator_pauses_a_scan_until_tomorrow_8_am_in_the_tenants_zone_in_5_actions(
    page, acme, screenshot
):
    scan = home_page_scan(acme)
    log_in_as(page, acme, "operator")
    # From the list of scans: where saving the new scan (the task above) leaves the operator.
    page.goto(reverse(SCANS))
    tomorrow = timezone.now().astimezone(BERLIN).date() + timedelta(days=1)
    op = Operator(page)

    op.click(scan_link(page, "Home page"))
    op.click(page.get_by_role("button", name="Pause…"))
    # The time is read in the scan's zone, which is its tenant's, and the page says so.
    expect(page.locator(".field-until .scheduling-zone-note")).to_have_text(
        "Times are in Europe/Berlin."
    )
    # The split date and time inputs carry no label of their own.
    op.fill(page.locator("input[name=until_0]"), f"{tomorrow:%Y-%m-%d}")
    op.fill(page.locator("input[name=until_1]"), "08:00")
    screenshot("until")
    op.click(page.get_by_role("button", name="Pause", exact=True))

    expect(message(page)).to_contain_text(
        re.compile(rf"Home page paused until {tomorrow:%Y-%m-%d} 08:00:00 CES?T")
    )
    screenshot("paused")
    op.assert_at_most(5)
    scan.refresh_from_db()
    assert scan.paused_until == datetime.combine(tomorrow, time(8), tzinfo=BERLIN)
    assert scan.enabled
    # Back on the scan's page, which now offers to resume it.
    expect(page.get_by_role("button", name="Resume")).to_be_visible()


def test_an_operator_runs_a_scan_now_and_opens_its_execution_in_3_actions(page, acme, screenshot):
    scan = home_page_scan(acme)
    user = log_in_as(page, acme, "operator")
    # From the list of scans, where saving the new scan leaves the operator.
    page.goto(reverse(SCANS))
    op = Operator(page)

    op.click(scan_link(page, "Home page"))
    op.click(page.get_by_role("button", name="Run now"))
    expect(message(page)).to_contain_text("Run queued as execution")
    screenshot("queued")
    op.click(message(page).get_by_role("link", name=re.compile(r"^execution \d+$")))

    execution = Execution.objects.get(schedule=scan)
    assert (execution.status, execution.trigger) == (Status.QUEUED, TriggerKind.MANUAL)
    assert execution.triggered_by == user
    expect(page).to_have_url(
        re.compile(re.escape(reverse("admin:scheduling_execution_change", args=[execution.pk])))
    )
    expect(page.locator(".field-status_badge")).to_contain_text("Queued")
    expect(page.locator(".field-schedule_link")).to_contain_text("Home page")
    op.assert_at_most(3)


def failing_scan(tenant) -> tuple[PeriodicScan, Execution]:
    """A scan that succeeded once, then failed twice; the latest failure and its error."""
    now = timezone.now()
    scan = home_page_scan(
        tenant, last_status=Status.FAILED, consecutive_failures=2, last_run_at=now
    )
    make_execution(schedule=scan, scheduled_for=now - timedelta(seconds=90))
    make_execution(
        schedule=scan,
        status=Status.FAILED,
        scheduled_for=now - timedelta(seconds=60),
        error="ScanFailed: http://127.0.0.1:8080/health answered 502 Bad Gateway",
    )
    latest = make_execution(
        schedule=scan,
        status=Status.FAILED,
        scheduled_for=now - timedelta(seconds=30),
        error=ERROR,
        traceback='Traceback (most recent call last):\n  File "scans.py"\nScanFailed',
    )
    # A scan of another tenant fails too: the operator never sees it.
    other = make_scan(
        tenant=Tenant.objects.get(slug="globex"),
        name="Globex API",
        last_status=Status.FAILED,
        consecutive_failures=5,
    )
    make_execution(schedule=other, status=Status.FAILED, error="Globex's own error")
    return scan, latest


def test_a_viewer_finds_why_a_scan_failed_from_the_admin_index_in_2_actions(page, acme, screenshot):
    _scan, latest = failing_scan(acme)
    # From the admin index after logging in; looking needs no more than the viewer role.
    log_in_as(page, acme, "viewer")
    op = Operator(page)

    op.click(page.get_by_role("link", name="Scheduling dashboard"))
    failing = page.locator("#failing-schedules")
    expect(failing).to_contain_text("Home page")
    expect(failing).not_to_contain_text("Globex")
    # The latest error's first line, linked to its execution.
    error = failing.get_by_role("link", name=re.compile("answered 503 Service Unavailable"))
    screenshot("dashboard")
    op.click(error)

    expect(page).to_have_url(
        re.compile(re.escape(reverse("admin:scheduling_execution_change", args=[latest.pk])))
    )
    # The whole error, both lines; the traceback (server paths) is for the tenant's admins.
    expect(page.locator(".field-error_block pre")).to_have_text(ERROR)
    expect(page.locator(".field-status_badge")).to_contain_text("Failed")
    expect(page.locator(".field-traceback_block")).to_have_count(0)
    screenshot("error")
    op.assert_at_most(3)


def test_an_operator_retries_a_failed_execution_from_the_dashboard_in_2_actions(
    page, acme, screenshot
):
    scan, latest = failing_scan(acme)
    user = log_in_as(page, acme, "operator")
    # From the dashboard, where the operator watches the failing schedules.
    page.goto(reverse("admin:scheduling_dashboard"))
    op = Operator(page)

    op.click(
        page.locator("#failing-schedules").get_by_role(
            "link", name=re.compile("answered 503 Service Unavailable")
        )
    )
    screenshot("failed")
    op.click(page.get_by_role("button", name="Retry"))

    expect(message(page)).to_contain_text(
        re.compile(r"Retry queued as execution \d+ \(attempt 2\)")
    )
    retry = Execution.objects.get(schedule=scan, attempt=2)
    assert (retry.status, retry.trigger, retry.triggered_by) == (
        Status.QUEUED,
        TriggerKind.RETRY,
        user,
    )
    assert retry.scheduled_for == latest.scheduled_for  # the same occurrence, again
    # The new attempt's page is open; the failed one can no longer be retried twice.
    expect(page).to_have_url(
        re.compile(re.escape(reverse("admin:scheduling_execution_change", args=[retry.pk])))
    )
    expect(page.locator(".field-status_badge")).to_contain_text("Queued")
    expect(page.get_by_role("button", name="Cancel")).to_be_visible()
    screenshot("retry-queued")
    op.assert_at_most(2)
    assert Execution.objects.filter(schedule=scan).count() == 4
