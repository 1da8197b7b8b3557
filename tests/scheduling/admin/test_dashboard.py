"""The admin's scheduling dashboard: scoping, counts, ordering, health, escaping, queries."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from scheduling.models import Execution, Schedule, SchedulerLease, Status
from tests.factories import make_execution, make_membership, make_scan, make_tenant, make_user

pytestmark = pytest.mark.django_db

NOW = datetime(2025, 3, 10, 12, 30, tzinfo=UTC)
XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture
def url():
    return reverse("admin:scheduling_dashboard")


@pytest.fixture
def superuser():
    return make_user(is_staff=True, is_superuser=True)


@pytest.fixture
def tenants():
    return make_tenant(name="Tenant A"), make_tenant(name="Tenant B")


def staff_of(tenant, role="viewer"):
    user = make_user(is_staff=True)
    make_membership(user=user, tenant=tenant, role=role)
    return user


def upcoming(schedule, at):
    """Give ``schedule`` the next run the scheduler would have stored."""
    Schedule.objects.filter(pk=schedule.pk).update(next_run_at=at)
    return schedule


def get(client, user, url, **params):
    client.force_login(user)
    response = client.get(url, params)
    assert response.status_code == 200
    return response.content.decode()


def section(html, section_id):
    match = re.search(
        rf'<div class="module sd-section" id="{section_id}">(.*?)\n</div>', html, re.S
    )
    assert match, section_id
    return match.group(1)


def hourly_rows(html):
    """{hour start (ISO, UTC): (succeeded, failed, other)} from the chart's table."""
    rows = re.findall(
        r'<tr data-hour="([^"]+)"><td>[^<]*</td><td>(\d+)</td><td>(\d+)</td><td>(\d+)</td></tr>',
        html,
    )
    return {hour: (int(ok), int(failed), int(other)) for hour, ok, failed, other in rows}


def test_superuser_sees_every_tenants_upcoming_runs(client, superuser, url, tenants):
    a, b = tenants
    now = timezone.now()
    upcoming(make_scan(tenant=a, name="alpha hourly", interval_seconds=3600), now)
    upcoming(make_scan(tenant=b, name="bravo hourly", interval_seconds=3600), now)

    html = get(client, superuser, url)

    timeline = section(html, "upcoming-runs")
    assert "alpha hourly" in timeline
    assert "bravo hourly" in timeline
    assert "<svg" in timeline
    # An hourly schedule fires 24 times within the next 24 hours.
    assert timeline.count('class="sd-dot"') == 48
    assert "cdn" not in html.lower()
    assert "<script" not in section(html, "upcoming-runs") + section(html, "hourly-outcomes")


def test_timeline_leaves_out_disabled_schedules_and_runs_beyond_24_hours(
    client, superuser, url, tenant
):
    now = timezone.now()
    upcoming(make_scan(tenant=tenant, name="every six hours", interval_seconds=6 * 3600), now)
    upcoming(make_scan(tenant=tenant, name="switched off", enabled=False), now)
    upcoming(make_scan(tenant=tenant, name="the day after", interval_seconds=86_400), now)
    Schedule.objects.filter(name="the day after").update(next_run_at=now + timedelta(hours=30))

    timeline = section(get(client, superuser, url), "upcoming-runs")

    assert "every six hours" in timeline
    assert timeline.count('class="sd-dot"') == 4
    assert "switched off" not in timeline
    assert "the day after" not in timeline


def test_tenant_staff_sees_only_their_tenants(client, url, tenants):
    a, b = tenants
    now = timezone.now()
    own = upcoming(make_scan(tenant=a, name="alpha scan"), now)
    other = upcoming(make_scan(tenant=b, name="bravo secret scan"), now)
    Schedule.objects.filter(pk__in=[own.pk, other.pk]).update(
        last_status=Status.FAILED, consecutive_failures=2
    )
    make_execution(schedule=own, finished_at=now, status=Status.SUCCEEDED)
    for _i in range(3):
        make_execution(schedule=other, finished_at=now, status=Status.FAILED)

    html = get(client, staff_of(a), url)

    assert "alpha scan" in section(html, "upcoming-runs")
    assert "alpha scan" in section(html, "failing-schedules")
    assert "bravo secret scan" not in html
    assert "Tenant B" not in html
    assert sum(ok for ok, _f, _o in hourly_rows(html).values()) == 1
    assert sum(failed for _ok, failed, _o in hourly_rows(html).values()) == 0


def test_tenant_filter_narrows_the_superusers_dashboard(client, superuser, url, tenants):
    a, b = tenants
    now = timezone.now()
    upcoming(make_scan(tenant=a, name="alpha scan"), now)
    upcoming(make_scan(tenant=b, name="bravo scan"), now)

    html = get(client, superuser, url, tenant=b.pk)

    assert "bravo scan" in html
    assert "alpha scan" not in html
    assert f'<option value="{b.pk}" selected>' in html


@pytest.mark.parametrize("value", ["other-tenant", "not-a-number", "999999"])
def test_tenant_filter_refuses_a_tenant_the_user_cannot_see(client, url, tenants, value):
    a, b = tenants
    now = timezone.now()
    upcoming(make_scan(tenant=a, name="alpha scan"), now)
    upcoming(make_scan(tenant=b, name="bravo secret scan"), now)
    raw = str(b.pk) if value == "other-tenant" else value

    html = get(client, staff_of(a), url, tenant=raw)

    assert "Unknown tenant" in html
    assert "alpha scan" in html  # the user's own tenants instead
    assert "bravo secret scan" not in html
    assert "Tenant B" not in html


def test_staff_without_membership_sees_an_empty_dashboard(client, url, tenants):
    a, b = tenants
    now = timezone.now()
    scans = [upcoming(make_scan(tenant=t, name=f"scan of {t.name}"), now) for t in (a, b)]
    Schedule.objects.filter(pk__in=[s.pk for s in scans]).update(consecutive_failures=4)
    make_execution(schedule=scans[0], finished_at=now)

    html = get(client, make_user(is_staff=True), url)

    assert "scan of" not in html
    assert "Tenant A" not in html
    assert "No runs in the next 24 hours." in html
    assert "No failing schedules." in html
    assert all(counts == (0, 0, 0) for counts in hourly_rows(html).values())


def test_non_staff_is_sent_to_the_login_page(client, url):
    client.force_login(make_user())
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_dashboard_is_read_only(client, superuser, url):
    client.force_login(superuser)
    assert client.post(url).status_code == 405


def test_hourly_counts_per_outcome(client, superuser, url, tenants):
    a, b = tenants
    with time_machine.travel(NOW, tick=False):
        scan_a, scan_b = make_scan(tenant=a), make_scan(tenant=b)
        at = {
            "10:05": datetime(2025, 3, 10, 10, 5, tzinfo=UTC),
            "10:59": datetime(2025, 3, 10, 10, 59, 59, tzinfo=UTC),
            "12:10": datetime(2025, 3, 10, 12, 10, tzinfo=UTC),
            "13h ago": datetime(2025, 3, 9, 23, 0, tzinfo=UTC),
            "too old": datetime(2025, 3, 9, 12, 59, tzinfo=UTC),  # before the first hour
        }
        for status, when, schedule in [
            (Status.SUCCEEDED, "10:05", scan_a),
            (Status.SUCCEEDED, "10:59", scan_b),
            (Status.FAILED, "10:59", scan_a),
            (Status.TIMED_OUT, "12:10", scan_a),
            (Status.INTERRUPTED, "12:10", scan_b),
            (Status.SKIPPED, "12:10", scan_a),
            (Status.MISSED, "13h ago", scan_a),
            (Status.SUCCEEDED, "too old", scan_a),
        ]:
            make_execution(schedule=schedule, status=status, finished_at=at[when])
        # Still running: no outcome yet.
        make_execution(schedule=scan_a, status=Status.RUNNING, finished_at=None)

        rows = hourly_rows(get(client, superuser, url))

    assert len(rows) == 24
    assert next(iter(rows)) == "2025-03-09T13:00:00+00:00"
    assert rows["2025-03-10T10:00:00+00:00"] == (2, 1, 0)
    assert rows["2025-03-10T12:00:00+00:00"] == (0, 2, 1)
    assert rows["2025-03-09T23:00:00+00:00"] == (0, 0, 1)
    assert sum(sum(counts) for counts in rows.values()) == 7


def test_failing_schedules_come_first_worst_first(client, superuser, url, tenant):
    names = {"flaky": 1, "broken": 5, "just failed": 0, "healthy": 0}
    for name, failures in names.items():
        scan = make_scan(tenant=tenant, name=name)
        status = Status.SUCCEEDED if name == "healthy" else Status.FAILED
        Schedule.objects.filter(pk=scan.pk).update(
            last_status=status, consecutive_failures=failures
        )

    html = get(client, superuser, url)

    failing = section(html, "failing-schedules")
    assert "healthy" not in failing
    positions = [failing.index(f">{name}</a>") for name in ("broken", "flaky", "just failed")]
    assert positions == sorted(positions)
    scan = Schedule.objects.get(name="broken")
    assert reverse("admin:scheduling_periodicscan_change", args=[scan.pk]) in failing
    # The failing schedules come before the charts on the page.
    assert html.index('id="failing-schedules"') < html.index('id="hourly-outcomes"')


def test_health_shows_leader_heartbeat_age_and_sync_lag(client, superuser, url, tenant):
    now = timezone.now()
    SchedulerLease.objects.create(
        name="default",
        holder="sched-host:4242:ab12",
        acquired_at=now - timedelta(minutes=5),
        renewed_at=now - timedelta(seconds=3),
        expires_at=now + timedelta(seconds=20),
        last_sync_at=now - timedelta(seconds=1),
        sync_lag_ms=37,
        job_count=12,
    )

    health = section(get(client, superuser, url), "scheduler-health")

    assert "sched-host:4242:ab12" in health
    assert "healthy" in health
    assert re.search(r"<td>3\.\d s \(limit \d+ s\)</td>", health)
    assert "37 ms" in health

    staff_health = section(get(client, staff_of(tenant), url), "scheduler-health")
    assert "sched-host" not in staff_health  # host names are for superusers
    assert "active" in staff_health
    assert "37 ms" in staff_health


def test_health_without_a_scheduler_says_so(client, superuser, url):
    health = section(get(client, superuser, url), "scheduler-health")
    assert "unhealthy" in health
    assert "no heartbeat yet" in health


def test_user_supplied_names_are_escaped(client, superuser, url):
    tenant = make_tenant(name=f"tenant {XSS}")
    scan = upcoming(make_scan(tenant=tenant, name=XSS), timezone.now())
    Schedule.objects.filter(pk=scan.pk).update(last_status=Status.FAILED, consecutive_failures=1)

    html = get(client, superuser, url)

    assert XSS not in html
    assert escape(XSS) in section(html, "upcoming-runs")
    assert escape(XSS) in section(html, "failing-schedules")
    assert f"tenant {escape(XSS)}" in html


def test_admin_index_links_to_the_dashboard(client, superuser, url, tenant):
    client.force_login(superuser)
    html = client.get(reverse("admin:index")).content.decode()
    assert f'<a href="{url}">Scheduling dashboard</a>' in html

    client.force_login(staff_of(tenant))
    html = client.get(reverse("admin:index")).content.decode()
    assert f'<a href="{url}">Scheduling dashboard</a>' in html


def _fill(tenant, n):
    now = timezone.now()
    for i in range(n):
        scan = make_scan(tenant=tenant, name=f"scan {n}-{i}", interval_seconds=600)
        Schedule.objects.filter(pk=scan.pk).update(
            next_run_at=now + timedelta(minutes=i % 60),
            last_status=Status.FAILED if i % 3 == 0 else Status.SUCCEEDED,
            consecutive_failures=i % 4,
        )
        make_execution(schedule=scan, finished_at=now - timedelta(minutes=i))


def _queries(client, user, url):
    client.force_login(user)
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured)


@pytest.mark.parametrize("as_superuser", [True, False], ids=["superuser", "tenant-staff"])
def test_query_count_does_not_grow_with_schedules(
    client, url, tenant, as_superuser, django_assert_max_num_queries
):
    user = make_user(is_staff=True, is_superuser=True) if as_superuser else staff_of(tenant)
    _fill(tenant, 5)
    few = _queries(client, user, url)
    _fill(tenant, 195)
    assert Execution.objects.count() == 200
    with django_assert_max_num_queries(few):
        client.get(url)
    assert 6 <= few <= 16  # the capture works, and the page stays small
