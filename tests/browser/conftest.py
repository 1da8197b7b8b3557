"""Browser tests: Playwright's sync API drives Debian's Chromium against the live server.

Playwright cannot download its own browser builds here, so the tests launch the system
Chromium (``scripts/install_browser.sh`` installs it; ``scripts/test.sh`` runs that first).
Without Chromium or the ``playwright`` package the tests skip and say which one is missing.

Each test saves a screenshot of its last page as ``test-output/screenshots/<test>.png`` (and
more with the ``screenshot`` fixture), whether it passed or not.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"
# Every wait (navigation, locator, expect) gives up after this long.
TIMEOUT_MS = 10_000
PASSWORD = "browser-test-password"


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    """One headless Chromium for the tests of this package, closed after the last of them.

    Not for the whole session: while Playwright runs, Django's ORM needs the async-unsafe
    escape hatch below, which the rest of the suite must run without.

    Playwright starts it with a fresh temporary profile (user-data-dir) and deletes it on close.
    """
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed; bash scripts/install_browser.sh installs it")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="the playwright package is not installed (.[test] extra)"
    )
    with pytest.MonkeyPatch.context() as patch:
        # Playwright's sync API keeps an asyncio loop running in this thread while it is
        # started, and Django refuses ORM calls from a thread with a running loop. The test's
        # own ORM calls (factories, runner.execute) are plain synchronous code, so allow them
        # for as long as Playwright runs; the live server answers from its own thread.
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        sync_api.expect.set_options(timeout=TIMEOUT_MS)
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM),
                headless=True,
                args=CHROMIUM_ARGS,
                timeout=3 * TIMEOUT_MS,
            )
            try:
                yield browser
            finally:
                browser.close()


def _file_name(name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", name).strip("_")


@pytest.fixture
def dialogs() -> list[str]:
    """Messages of every JavaScript dialog (alert, confirm, prompt) the page opened."""
    return []


@pytest.fixture
def page(browser: Any, live_server: Any, dialogs: list[str], request: Any) -> Iterator[Any]:
    """A tab in a fresh browser context on the live server; dialogs are recorded, dismissed."""
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    context.set_default_navigation_timeout(TIMEOUT_MS)
    page = context.new_page()

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    server_errors: list[str] = []
    page.on(
        "response",
        lambda response: (
            server_errors.append(f"{response.status} {response.url}")
            if response.status >= 500
            else None
        ),
    )
    try:
        yield page
    finally:
        try:
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            path = SCREENSHOTS / f"{_file_name(request.node.name)}.png"
            page.screenshot(path=path, full_page=True)
        finally:
            context.close()
    # Whatever the test clicked, the server never answered with an error page.
    assert server_errors == []


@pytest.fixture
def screenshot(page: Any, request: Any) -> Callable[[str], Path]:
    """Save the page now as ``<test>-<label>.png`` and return the path."""

    def save(label: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{_file_name(request.node.name)}-{_file_name(label)}.png"
        page.screenshot(path=path, full_page=True)
        return path

    return save


@pytest.fixture
def superuser(transactional_db: Any) -> Any:
    from tests.factories import make_user

    return make_user(username="operator", password=PASSWORD, is_staff=True, is_superuser=True)


def log_in(page: Any, user: Any, *, password: str = PASSWORD) -> None:
    """Log in through the admin's login form and land on the admin index."""
    from playwright.sync_api import expect

    page.goto("/admin/login/?next=/admin/")
    page.get_by_label("Username").fill(user.get_username())
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Site administration")).to_be_visible()


def run_action(page: Any, row_text: str, action: str) -> None:
    """Tick the changelist row showing ``row_text``; run the action whose label starts so."""
    page.get_by_role("row").filter(has_text=row_text).get_by_role("checkbox").check()
    select = page.get_by_role("combobox", name="Action")
    labels = select.locator("option").all_inner_texts()
    select.select_option(label=next(label for label in labels if label.startswith(action)))
    # Django 5.2 labels the button "Go", Django 6 "Run".
    page.locator(".actions").get_by_role("button", name=re.compile("^(Go|Run)$")).click()


def message(page: Any) -> Any:
    """The admin's messages ("1 schedule resumed.") at the top of the page."""
    return page.locator("ul.messagelist")


class Operator:
    """An operator's hands on a page: every click and every field typed or picked is counted.

    The task tests do their work only through these methods (navigation by URL counts as one
    click: the operator followed a link or a bookmark), so ``actions`` is what the task cost.
    """

    def __init__(self, page: Any) -> None:
        self.page = page
        self.actions = 0
        self.log: list[str] = []

    def _count(self, what: str) -> None:
        self.actions += 1
        self.log.append(what)

    def goto(self, url: str) -> None:
        self._count(f"open {url}")
        self.page.goto(url)

    def click(self, locator: Any) -> None:
        self._count(f"click {locator}")
        locator.click()

    def fill(self, locator: Any, text: str) -> None:
        self._count(f"type {text!r}")
        locator.fill(text)

    def select(self, locator: Any, **option: str) -> None:
        self._count(f"pick {option}")
        locator.select_option(**option)

    def check(self, locator: Any) -> None:
        self._count(f"tick {locator}")
        locator.check()

    def assert_at_most(self, limit: int) -> None:
        assert self.actions <= limit, (
            f"{self.actions} clicks and typed fields (at most {limit}): {self.log}"
        )
