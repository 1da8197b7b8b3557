"""The HTML reports read as text for people: status labels, plurals, times with their zone."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from scheduling.models import Status
from tests.factories import make_execution, make_report, make_scan
from tests.scheduling.test_builtin_reports import at, produce, ran

pytestmark = pytest.mark.django_db


def text(html: str) -> str:
    """The page's words: tags dropped, white space collapsed."""
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def summary(tenant, **fields) -> str:
    report = make_report(tenant=tenant, format="html", **fields)
    _result, artifact = produce(report)
    return artifact.content


def status_cells(html: str) -> dict[str, int]:
    table = re.search(r'<table class="by-status">(.*?)</table>', html, re.S).group(1)
    return {
        label: int(count)
        for label, count in re.findall(
            r'<tr><td>([^<]+)</td><td class="num">(\d+)</td></tr>', table
        )
    }


def test_statuses_show_their_labels(tenant):
    scan = make_scan(tenant=tenant, name="api")
    ran(scan, Status.TIMED_OUT, 1000, 2)
    ran(scan, Status.SUCCEEDED, 10, 3)

    html = summary(tenant)

    cells = status_cells(html)
    assert cells["Timed out"] == 1 and cells["Succeeded"] == 1
    assert set(cells) == {str(status.label) for status in Status}
    assert "timed_out" not in text(html)


@pytest.mark.parametrize(
    ("hours", "period"), [(1, "(1 hour)"), (2, "(2 hours)"), (24, "(24 hours)")]
)
def test_the_period_says_hour_or_hours(tenant, hours, period):
    html = summary(tenant, options={"period_hours": hours})
    assert period in text(html)
    assert "(1 hours)" not in text(html)


def test_times_carry_seconds_and_the_reports_zone(tenant):
    # The report's time T is 12:00 UTC on 10 March 2025: 13:00 in Berlin (CET), 08:00 in
    # New York (EDT, since 9 March: the period starts on the day the clocks moved).
    scan = make_scan(tenant=tenant, name="api")
    ran(scan, Status.FAILED, 10, 3)

    berlin = text(summary(tenant))
    new_york = text(summary(tenant, timezone="America/New_York"))

    assert "from 2025-03-09 13:00:00 CET to 2025-03-10 13:00:00 CET (24 hours)" in berlin
    assert "2025-03-10 10:00:00 CET" in berlin  # the last failure
    assert "from 2025-03-09 08:00:00 EDT to 2025-03-10 08:00:00 EDT (24 hours)" in new_york
    assert re.search(r"generated \d{4}-\d\d-\d\d \d\d:\d\d:\d\d (CET|CEST)", berlin)


def test_kinds_show_their_labels(tenant):
    ran(make_scan(tenant=tenant, name="api"), Status.FAILED, 10, 3)
    html = summary(tenant)
    slowest = re.search(r'<table class="slowest">(.*?)</table>', html, re.S).group(1)
    assert "<td>Periodic scan</td>" in slowest
    assert "<td>scan</td>" not in slowest


def test_a_system_report_names_all_tenants_not_none(tenant):
    html = summary(None)
    assert "None" not in text(html)
    assert "all tenants" in text(html)


def test_scan_states_and_check_times_read_as_words(tenant):
    up, down = make_scan(tenant=tenant, name="api"), make_scan(tenant=tenant, name="db")
    make_scan(tenant=tenant, name="new")
    ran(up, Status.SUCCEEDED, 20, 2)
    make_execution(
        schedule=down,
        status=Status.TIMED_OUT,
        scheduled_for=at(1),
        started_at=at(1),
        finished_at=at(1) + timedelta(seconds=30),
        duration_ms=30_000,
    )

    html = text(summary(tenant, report_type="scan_status"))

    assert "3 scans as of 2025-03-10 13:00:00 CET" in html
    assert "Down (Timed out)" in html
    assert " Up " in html and "Not checked yet" in html
    assert "2025-03-10 12:00:30 CET" in html  # db's check finished at 11:00:30 UTC
