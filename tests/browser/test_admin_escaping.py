"""User-supplied text renders as text on every admin page, in a real browser (no XSS)."""

from __future__ import annotations

from datetime import timedelta

import pytest

pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is not installed (.[test] extra)"
)

from django.urls import reverse  # noqa: E402
from django.utils import timezone  # noqa: E402
from playwright.sync_api import expect  # noqa: E402

from scheduling import runner, services  # noqa: E402
from scheduling.models import Execution, Status  # noqa: E402
from scheduling.registry import scan_type, scan_types  # noqa: E402
from tests.browser.conftest import log_in, message, run_action  # noqa: E402
from tests.factories import make_scan, make_tenant  # noqa: E402

# Each test is a few seconds; a hung page gives up after 10 s, a hung test after a minute.
pytestmark = [pytest.mark.browser, pytest.mark.timeout(60)]

NAME = "<img src=x onerror=alert(1)>"
TENANT = "Acme <svg onload=alert(6)>"
HTML_ERROR_TYPE = "browser_html_error"
ERROR_START = '<div class="error"><img src="x" onerror="alert(2)">'
END_MARK = "end of the 50 kB error"
ERROR_END = f"<b>{END_MARK}</b></div>"
PAYLOAD = '<script>alert(3)</script><img src="x" onerror="alert(4)"><a href="javascript:alert(5)">'
ERROR = ERROR_START + (PAYLOAD * 2000)[: 50_000 - len(ERROR_START) - len(ERROR_END)] + ERROR_END


@pytest.fixture
def html_error_type():
    """A scan type whose job raises a 50 kB HTML error message."""

    def raise_html(scan, context):
        raise RuntimeError(ERROR)

    scan_type(HTML_ERROR_TYPE, label="Browser test: HTML error")(raise_html)
    yield HTML_ERROR_TYPE
    scan_types.unregister(HTML_ERROR_TYPE)


def assert_rendered_as_text(page, dialogs: list[str], *texts: str) -> None:
    """The page shows ``texts`` literally, built no element from them and ran none of them."""
    content = page.locator("#content")
    for text in texts:
        expect(content).to_contain_text(text)
    assert page.locator('img[src="x"]').count() == 0
    handlers = page.evaluate(
        """() => [...document.querySelectorAll("*")].flatMap(
            element => [...element.attributes].filter(a => a.name.startsWith("on"))
                .map(a => `${element.tagName} ${a.name}=${a.value}`))"""
    )
    assert handlers == []
    assert page.locator('a[href^="javascript:"]').count() == 0
    scripts = page.locator("script").evaluate_all("nodes => nodes.map(n => n.textContent)")
    assert not [script for script in scripts if "alert(" in script]
    assert dialogs == []


def test_a_hostile_name_and_a_50_kb_html_error_render_escaped_on_every_admin_page(
    page, dialogs, superuser, html_error_type, screenshot
):
    # The checks can fail: the same markup, rendered as HTML, opens a dialog here.
    with page.expect_event("dialog"):
        page.set_content(f"<body>{NAME}</body>")
    assert dialogs == ["1"]
    dialogs.clear()

    tenant = make_tenant(name=TENANT, slug="acme")
    scan = make_scan(
        tenant=tenant,
        name=NAME,
        scan_type=html_error_type,
        target="x",
        interval_seconds=3600,
        next_run_at=timezone.now() + timedelta(minutes=30),
    )
    make_scan(tenant=tenant, name="Harmless echo", scan_type="test_echo", target="x")
    execution = services.run_now(schedule=scan)
    runner.execute(execution.pk)
    execution = Execution.objects.get(pk=execution.pk)
    assert execution.status == Status.FAILED
    assert execution.error.startswith(f"RuntimeError: {ERROR_START}")
    assert execution.error.endswith(ERROR_END)
    assert len(execution.error) > 50_000

    log_in(page, superuser)
    error_head = f"RuntimeError: {ERROR_START}"

    changelist = reverse("admin:scheduling_periodicscan_changelist")
    page.goto(changelist)
    assert_rendered_as_text(page, dialogs, NAME, TENANT)
    screenshot("scan-changelist")
    # A search for the name finds it and shows the query back as text.
    page.get_by_role("textbox", name="Search").fill(NAME)
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("textbox", name="Search")).to_have_value(NAME)
    assert_rendered_as_text(page, dialogs, NAME, "1 result")
    expect(page.locator("#result_list")).not_to_contain_text("Harmless echo")
    # Action pages and messages that name schedules name this one as text too.
    run_action(page, NAME, "Pause selected schedules")
    assert_rendered_as_text(page, dialogs, NAME, TENANT)
    page.goto(changelist)
    run_action(page, NAME, "Resume selected schedules")
    expect(message(page)).to_contain_text(NAME)
    assert_rendered_as_text(page, dialogs, NAME)
    run_action(page, NAME, "Duplicate selected schedules")
    expect(message(page)).to_contain_text(NAME)
    assert_rendered_as_text(page, dialogs, NAME)
    screenshot("actions")

    page.goto(reverse("admin:scheduling_periodicscan_change", args=[scan.pk]))
    expect(page.get_by_label("Name:")).to_have_value(NAME)
    assert_rendered_as_text(page, dialogs, NAME, error_head)
    # The inline of latest executions shows the error shortened, not 50 kB of it.
    expect(page.locator("#content")).not_to_contain_text(END_MARK)
    screenshot("scan-change")

    # Saving through the form keeps the name as typed and says so, escaped.
    page.get_by_role("button", name="Save and continue editing").click()
    expect(message(page)).to_contain_text(NAME)
    assert_rendered_as_text(page, dialogs, NAME)
    scan.refresh_from_db()
    assert scan.name == NAME

    page.goto(reverse("admin:scheduling_periodicscan_history", args=[scan.pk]))
    assert_rendered_as_text(page, dialogs, NAME)
    # Deleting asks first, listing the schedule and its execution by name.
    page.goto(reverse("admin:scheduling_periodicscan_delete", args=[scan.pk]))
    assert_rendered_as_text(page, dialogs, NAME)
    page.goto(reverse("admin:index"))
    expect(page.locator("#recent-actions-module")).to_contain_text(NAME)
    assert_rendered_as_text(page, dialogs)

    page.goto(reverse("admin:scheduling_execution_changelist"))
    assert_rendered_as_text(page, dialogs, NAME, TENANT, error_head)
    expect(page.locator("#content")).not_to_contain_text(END_MARK)
    screenshot("execution-changelist")

    page.goto(reverse("admin:scheduling_execution_change", args=[execution.pk]))
    # The detail shows the whole error, start to end, as text.
    assert_rendered_as_text(page, dialogs, NAME, error_head, PAYLOAD, ERROR_END)
    screenshot("execution-change")

    page.goto(reverse("admin:scheduling_dashboard"))
    assert_rendered_as_text(page, dialogs, NAME, TENANT)
