"""The dashboard drills down: every number and bar links to the list of what it counts, and
each failing schedule shows its latest error with links to the schedule and that execution."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html import unescape
from urllib.parse import parse_qs, urlsplit

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils.html import escape

from scheduling.models import Schedule, Status
from tests.factories import (
    make_execution,
    make_membership,
    make_report,
    make_scan,
    make_tenant,
    make_user,
)
from tests.scheduling.admin.test_dashboard import section

pytestmark = pytest.mark.django_db

NOW = datetime(2025, 3, 10, 12, 30, tzinfo=UTC)
XSS = "<img src=x onerror=alert(1)>"
URL = "admin:scheduling_dashboard"


def dashboard(client, **params) -> str:
    response = client.get(reverse(URL), params)
    assert response.status_code == 200
    return response.content.decode()


def card(html: str, key: str) -> str:
    match = re.search(rf'<div class="sd-tile" id="count-{key}">(.*?)</div>', html, re.S)
    assert match, key
    return match.group(1)


def links(html: str) -> list[str]:
    return [unescape(href) for href in re.findall(r'<a href="([^"]+)"', html)]


def follow(client, url: str):
    """The list a link leads to: (its rows, its response)."""
    response = client.get(url)
    assert response.status_code == 200, url
    return list(response.context["cl"].result_list), response


def finished(schedule, status, at, **fields):
    return make_execution(schedule=schedule, status=status, finished_at=at, **fields)


@pytest.fixture
def superuser(client):
    client.force_login(make_user(is_staff=True, is_superuser=True))
    return client


class TestExecutionCards:
    def test_failed_in_24_h_lists_exactly_the_failures_it_counts(self, superuser, tenant):
        scan = make_scan(tenant=tenant)
        with time_machine.travel(NOW, tick=False):
            counted = {
                finished(scan, Status.FAILED, NOW - timedelta(hours=2)).pk,
                finished(scan, Status.TIMED_OUT, NOW - timedelta(hours=5)).pk,
                finished(scan, Status.INTERRUPTED, NOW - timedelta(minutes=1)).pk,
            }
            finished(scan, Status.FAILED, NOW - timedelta(hours=30))  # before the window
            finished(scan, Status.SUCCEEDED, NOW - timedelta(hours=1))
            make_execution(schedule=scan, status=Status.RUNNING, finished_at=None)

            html = dashboard(superuser)
            [url] = links(card(html, "failed"))
            rows, _response = follow(superuser, url)

        assert "<strong>3</strong>" in card(html, "failed")
        assert {row.pk for row in rows} == counted

    def test_succeeded_in_24_h_links_to_the_status_filter(self, superuser, tenant):
        scan = make_scan(tenant=tenant)
        with time_machine.travel(NOW, tick=False):
            ok = finished(scan, Status.SUCCEEDED, NOW - timedelta(hours=1))
            finished(scan, Status.SKIPPED, NOW - timedelta(hours=1))

            [url] = links(card(dashboard(superuser), "succeeded"))
            rows, response = follow(superuser, url)

        assert [row.pk for row in rows] == [ok.pk]
        # The status filter shows its choice; the time is the "finished at" filter's.
        assert parse_qs(urlsplit(url).query)["status__exact"] == ["succeeded"]
        assert response.context["cl"].has_active_filters


class TestScheduleCards:
    def test_each_kind_has_its_share_linked_to_its_list(self, superuser, tenant):
        now = datetime.now(UTC)
        scans = [make_scan(tenant=tenant) for _ in range(3)]
        reports = [make_report(tenant=tenant) for _ in range(2)]
        make_scan(tenant=tenant, enabled=False)
        Schedule.objects.filter(pk=scans[0].pk).update(paused_until=now + timedelta(hours=1))
        Schedule.objects.filter(pk__in=[scans[1].pk, reports[0].pk]).update(
            last_status=Status.FAILED, consecutive_failures=2
        )

        html = dashboard(superuser)

        expected = {
            "total": {"scheduling_periodicscan": 4, "scheduling_report": 2},
            "enabled": {"scheduling_periodicscan": 3, "scheduling_report": 2},
            "failing": {"scheduling_periodicscan": 1, "scheduling_report": 1},
        }
        for key, per_list in expected.items():
            shares = {}
            for url in links(card(html, key)):
                rows, _response = follow(superuser, url)
                model = "scheduling_" + urlsplit(url).path.strip("/").split("/")[-1]
                shares[model] = len(rows)
            assert shares == per_list, key
        assert re.findall(r">(\d+ [a-z ]+)</a>", card(html, "failing")) == [
            "1 periodic scan",
            "1 report",
        ]
        assert "2 reports" in card(html, "total")

    def test_a_card_of_one_kind_links_its_number(self, superuser, tenant):
        paused = make_scan(tenant=tenant)
        make_scan(tenant=tenant)
        make_report(tenant=tenant)
        Schedule.objects.filter(pk=paused.pk).update(
            paused_until=datetime.now(UTC) + timedelta(days=1)
        )

        tile = card(dashboard(superuser), "paused")

        [url] = links(tile)
        assert re.search(r'<a href="[^"]+"><strong>1</strong>', tile)
        rows, _response = follow(superuser, url)
        assert [row.pk for row in rows] == [paused.pk]

    def test_a_disabled_schedule_is_not_in_the_failing_list_it_links_to(self, superuser, tenant):
        failing = make_scan(tenant=tenant)
        disabled = make_scan(tenant=tenant, enabled=False)
        Schedule.objects.filter(pk__in=[failing.pk, disabled.pk]).update(last_status=Status.FAILED)

        [url] = links(card(dashboard(superuser), "failing"))

        rows, _response = follow(superuser, url)
        assert [row.pk for row in rows] == [failing.pk]


class TestChart:
    def test_each_segment_lists_that_hours_executions_of_its_outcome(self, superuser, tenant):
        scan = make_scan(tenant=tenant)
        with time_machine.travel(NOW, tick=False):
            ten = datetime(2025, 3, 10, 10, 0, tzinfo=UTC)
            failed = finished(scan, Status.FAILED, ten + timedelta(minutes=5))
            timed_out = finished(scan, Status.TIMED_OUT, ten + timedelta(minutes=59))
            ok = finished(scan, Status.SUCCEEDED, ten + timedelta(minutes=30))
            finished(scan, Status.FAILED, ten + timedelta(hours=1))  # the next hour
            finished(scan, Status.FAILED, ten - timedelta(seconds=1))  # the hour before

            chart = section(dashboard(superuser), "hourly-outcomes")
            bar = next(
                b
                for b in re.findall(r'<g class="sd-bar">(.*?)</g>', chart, re.S)
                if b.startswith("<title>2025-03-10 10:00:00 UTC –")
            )
            failed_url = unescape(re.search(r'<a href="([^"]+)"><rect class="sd-failed"', bar)[1])
            hour_url = unescape(re.search(r'<a href="([^"]+)"><rect class="sd-hour"', bar)[1])
            failed_rows, _response = follow(superuser, failed_url)
            hour_rows, _response = follow(superuser, hour_url)

        assert {row.pk for row in failed_rows} == {failed.pk, timed_out.pk}
        assert {row.pk for row in hour_rows} == {failed.pk, timed_out.pk, ok.pk}

    def test_an_empty_hour_links_nowhere(self, superuser, tenant):
        with time_machine.travel(NOW, tick=False):
            chart = section(dashboard(superuser), "hourly-outcomes")
        assert "<a " not in chart


class TestScope:
    def test_links_keep_the_dashboards_tenant(self, superuser, tenant):
        other = make_tenant(name="Other")
        own_scan, other_scan = make_scan(tenant=tenant), make_scan(tenant=other)
        with time_machine.travel(NOW, tick=False):
            own = finished(own_scan, Status.FAILED, NOW - timedelta(hours=1))
            finished(other_scan, Status.FAILED, NOW - timedelta(hours=1))

            html = dashboard(superuser, tenant=tenant.pk)
            [url] = links(card(html, "failed"))
            rows, _response = follow(superuser, url)
            [total_url] = links(card(html, "total"))
            schedules, _response = follow(superuser, total_url)

        assert [row.pk for row in rows] == [own.pk]
        assert [s.pk for s in schedules] == [own_scan.pk]

    def test_a_tenant_member_follows_links_to_their_own_rows_only(self, client, tenant):
        other = make_tenant(name="Other")
        own_scan, other_scan = make_scan(tenant=tenant), make_scan(tenant=other)
        user = make_user(is_staff=True)
        make_membership(user=user, tenant=tenant, role="viewer")
        client.force_login(user)
        with time_machine.travel(NOW, tick=False):
            own = finished(own_scan, Status.FAILED, NOW - timedelta(hours=1))
            finished(other_scan, Status.FAILED, NOW - timedelta(hours=1))

            [url] = links(card(dashboard(client), "failed"))
            rows, _response = follow(client, url)

        assert [row.pk for row in rows] == [own.pk]


class TestFailingList:
    def test_shows_the_latest_error_escaped_and_cut_with_links(self, superuser, tenant):
        scan = make_scan(tenant=tenant, name="api")
        Schedule.objects.filter(pk=scan.pk).update(
            last_status=Status.FAILED, consecutive_failures=2
        )
        older = make_execution(
            schedule=scan,
            status=Status.FAILED,
            scheduled_for=NOW - timedelta(hours=2),
            error="old error",
        )
        latest_error = f"Connection refused {XSS} " + "y" * 400 + "\nTraceback line"
        latest = make_execution(
            schedule=scan,
            status=Status.FAILED,
            scheduled_for=NOW - timedelta(hours=1),
            error=latest_error,
        )
        make_execution(schedule=scan, status=Status.SKIPPED, scheduled_for=NOW)

        failing = section(dashboard(superuser), "failing-schedules")

        assert XSS not in failing
        [title] = re.findall(r'title="([^"]*)"', failing)
        assert unescape(title) == latest_error[:500]
        shown = re.sub(r'title="[^"]*"', "", failing)
        assert escape(f"Connection refused {XSS}") in shown
        assert "old error" not in shown and "Traceback line" not in shown
        hrefs = links(failing)
        assert reverse("admin:scheduling_periodicscan_change", args=[scan.pk]) in hrefs
        assert reverse("admin:scheduling_execution_change", args=[latest.pk]) in hrefs
        assert reverse("admin:scheduling_execution_change", args=[older.pk]) not in hrefs

    def test_an_error_less_failure_shows_its_status(self, superuser, tenant):
        scan = make_scan(tenant=tenant)
        Schedule.objects.filter(pk=scan.pk).update(last_status=Status.INTERRUPTED)
        make_execution(schedule=scan, status=Status.INTERRUPTED, error="")

        failing = section(dashboard(superuser), "failing-schedules")

        assert re.search(r'<span class="sd-error-text">Interrupted</span>', failing)

    def test_last_run_reads_in_the_schedules_zone(self, superuser, tenant):
        scan = make_scan(tenant=tenant, timezone="Asia/Tokyo")
        Schedule.objects.filter(pk=scan.pk).update(
            last_status=Status.FAILED, last_run_at=datetime(2025, 7, 1, 9, 0, 5, tzinfo=UTC)
        )

        failing = section(dashboard(superuser), "failing-schedules")

        assert re.search(r"<td[^>]*>2025-07-01 18:00:05 JST</td>", failing)

    def test_the_page_does_not_grow_with_failing_schedules(
        self, superuser, tenant, django_assert_max_num_queries
    ):
        def fail(n):
            for _ in range(n):
                scan = make_scan(tenant=tenant)
                Schedule.objects.filter(pk=scan.pk).update(last_status=Status.FAILED)
                make_execution(schedule=scan, status=Status.FAILED, error="boom")

        fail(2)
        with CaptureQueriesContext(connection) as few:
            dashboard(superuser)
        fail(40)
        with django_assert_max_num_queries(len(few)):
            failing = section(dashboard(superuser), "failing-schedules")
        assert failing.count('class="sd-error-text"') == 20
