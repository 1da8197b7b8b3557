"""The executions list and page: times in the schedule's zone, lateness, the error, the
schedule filter; report artifacts and the lease with the same times."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html import unescape

import pytest
from django.contrib import admin
from django.urls import reverse
from django.utils import translation
from django.utils.html import escape

from scheduling.admin.base import status_label
from scheduling.admin.executions import ExecutionAdmin
from scheduling.admin.filters import SCHEDULE_CHOICES
from scheduling.models import Execution, Schedule, SchedulerLease, Status
from tests.factories import make_artifact, make_execution, make_report, make_scan

pytestmark = pytest.mark.django_db

XSS = "<img src=x onerror=alert(1)>"
# 09:00:00.250 UTC on a summer day: 11:00 in Berlin (CEST), 18:00 in Tokyo (JST).
AT = datetime(2025, 7, 1, 9, 0, 0, 250_000, tzinfo=UTC)
CHANGELIST = "admin:scheduling_execution_changelist"


def changelist(client, **params):
    response = client.get(reverse(CHANGELIST), params)
    assert response.status_code == 200
    return response


def cells(response, column):
    """The texts of ``column`` (a list_display name) in the list's rows, top to bottom."""
    html = response.content.decode()
    return [
        unescape(re.sub(r"<[^>]+>", "", text))
        for text in re.findall(rf'<td class="field-{column}[^"]*">(.*?)</td>', html, re.S)
    ]


def shown_ids(response):
    return [e.pk for e in response.context["cl"].result_list]


def filter_choices(response, title):
    [spec] = [f for f in response.context["cl"].filter_specs if str(f.title) == title]
    return [(value, str(label)) for value, label in spec.lookup_choices]


class TestTimes:
    def test_times_read_in_the_schedules_zone_with_seconds_and_its_label(
        self, superuser_client, tenant_a
    ):
        tokyo = make_scan(tenant=tenant_a, name="tokyo", timezone="Asia/Tokyo")
        berlin = make_scan(tenant=tenant_a, name="berlin")  # the tenant's zone
        make_execution(schedule=tokyo, scheduled_for=AT)
        make_execution(schedule=berlin, scheduled_for=AT - timedelta(seconds=1))

        times = cells(changelist(superuser_client), "scheduled_for_time")

        assert times == ["2025-07-01 18:00:00 JST", "2025-07-01 10:59:59 CEST"]

    def test_a_deleted_schedules_executions_read_in_its_tenants_zone(
        self, superuser_client, tenant_b
    ):
        scan = make_scan(tenant=tenant_b, timezone="Asia/Tokyo")
        make_execution(schedule=scan, scheduled_for=AT)
        scan.delete()

        assert cells(changelist(superuser_client), "scheduled_for_time") == [
            "2025-07-01 05:00:00 EDT"
        ]

    def test_the_change_page_shows_every_time_the_same_way(self, superuser_client, tenant_a):
        scan = make_scan(tenant=tenant_a, timezone="Asia/Tokyo")
        execution = make_execution(
            schedule=scan,
            status=Status.FAILED,
            scheduled_for=AT,
            queued_at=AT - timedelta(seconds=5),
            started_at=AT + timedelta(seconds=3),
            finished_at=AT + timedelta(minutes=2),
            run_after=AT,
        )

        page = superuser_client.get(
            reverse("admin:scheduling_execution_change", args=[execution.pk])
        ).content.decode()

        fields = {
            label: unescape(re.sub(r"<[^>]+>", "", value)).strip()
            for label, value in re.findall(
                r'<label>([^<:]+):</label>\s*<div class="readonly">(.*?)</div>', page, re.S
            )
        }
        assert {
            label: fields.get(label)
            for label in ("Scheduled for", "Queued at", "Started at", "Finished at", "Run after")
        } == {
            "Scheduled for": "2025-07-01 18:00:00 JST",
            "Queued at": "2025-07-01 17:59:55 JST",
            "Started at": "2025-07-01 18:00:03 JST",
            "Finished at": "2025-07-01 18:02:00 JST",
            "Run after": "2025-07-01 18:00:00 JST",
        }
        assert fields["Lateness"] == "3.0 s"
        assert " p.m." not in page and " a.m." not in page
        # Its title and breadcrumb too: the occurrence in the schedule's zone, not in UTC.
        title = re.search(r"<title>(.*?)</title>", page, re.S)
        assert title is not None
        assert unescape(title.group(1)).startswith(f"{scan.name} @ 2025-07-01 18:00:00 JST #1")
        assert "09:00:00" not in page

    def test_report_artifacts_read_in_their_reports_zone(self, superuser_client, tenant_a):
        report = make_report(tenant=tenant_a, timezone="Asia/Tokyo")
        artifact = make_artifact(execution=make_execution(schedule=report), created_at=AT)

        response = superuser_client.get(reverse("admin:scheduling_reportartifact_changelist"))
        assert cells(response, "created_at_time") == ["2025-07-01 18:00:00 JST"]
        page = superuser_client.get(
            reverse("admin:scheduling_reportartifact_change", args=[artifact.pk])
        ).content.decode()
        assert "2025-07-01 18:00:00 JST" in page

    def test_the_lease_shows_its_times_in_the_current_zone(self, superuser_client):
        SchedulerLease.objects.create(
            name="default", holder="h:1", renewed_at=AT, expires_at=AT, last_sync_at=AT
        )

        response = superuser_client.get(reverse("admin:scheduling_schedulerlease_changelist"))

        for column in ("renewed_at_time", "expires_at_time", "last_sync_at_time"):
            assert cells(response, column) == ["2025-07-01 09:00:00 UTC"]


class TestLateness:
    def test_lateness_is_the_start_after_the_scheduled_time_like_a_duration(
        self, superuser_client, tenant_a
    ):
        scan = make_scan(tenant=tenant_a)
        for seconds, minutes_ago in ((0.4, 1), (75, 2)):
            make_execution(
                schedule=scan,
                scheduled_for=AT - timedelta(minutes=minutes_ago),
                started_at=AT - timedelta(minutes=minutes_ago) + timedelta(seconds=seconds),
            )
        make_execution(
            schedule=scan, scheduled_for=AT, status=Status.QUEUED, started_at=None, finished_at=None
        )

        assert cells(changelist(superuser_client), "lateness") == ["-", "400 ms", "1 min 15 s"]

    def test_a_start_before_the_scheduled_time_says_early(self, superuser_client, tenant_a):
        make_execution(
            schedule=make_scan(tenant=tenant_a),
            scheduled_for=AT,
            started_at=AT - timedelta(seconds=2),
        )

        assert cells(changelist(superuser_client), "lateness") == ["2.0 s early"]

    def test_the_list_sorts_by_lateness(self, superuser_client, tenant_a):
        scan = make_scan(tenant=tenant_a)
        late = {
            seconds: make_execution(
                schedule=scan,
                scheduled_for=AT - timedelta(minutes=i),
                started_at=AT - timedelta(minutes=i) + timedelta(seconds=seconds),
            )
            for i, seconds in enumerate((5, 60, 1))
        }
        # The "o" parameter counts the columns after the action checkbox (index 0).
        index = ExecutionAdmin.list_display.index("lateness") + 1

        ascending = changelist(superuser_client, o=str(index))
        descending = changelist(superuser_client, o=f"-{index}")

        assert shown_ids(ascending) == [late[1].pk, late[5].pk, late[60].pk]
        assert shown_ids(descending) == [late[60].pk, late[5].pk, late[1].pk]


class TestError:
    def test_the_error_is_one_escaped_line_with_the_whole_text_on_hover(
        self, superuser_client, tenant_a
    ):
        error = f"Connection refused {XSS} " + "x" * 300 + "\nsecond line"
        make_execution(schedule=make_scan(tenant=tenant_a), status=Status.FAILED, error=error)

        html = changelist(superuser_client).content.decode()

        [cell] = re.findall(r'<td class="field-short_error">(.*?)</td>', html, re.S)
        assert XSS not in html
        assert f'title="{escape(error)}"' in cell
        shown = unescape(re.sub(r"<[^>]+>", "", cell))
        assert shown.startswith(f"Connection refused {XSS}")
        assert shown.endswith("…") and "second line" not in shown

    def test_no_error_shows_a_dash(self, superuser_client, tenant_a):
        make_execution(schedule=make_scan(tenant=tenant_a))
        assert cells(changelist(superuser_client), "short_error") == ["-"]


class TestScheduleFilter:
    def test_filters_by_schedule_whatever_its_kind(self, superuser_client, tenant_a):
        scan, report = make_scan(tenant=tenant_a), make_report(tenant=tenant_a)
        mine = make_execution(schedule=report)
        make_execution(schedule=scan)

        response = changelist(superuser_client, schedule=report.pk)

        assert shown_ids(response) == [mine.pk]
        assert (str(report.pk), f"{report.name} (Report, Tenant A)") in filter_choices(
            response, "schedule"
        )

    def test_offers_only_the_users_tenants_schedules(self, staff_client, tenant_a, tenant_b):
        own = make_scan(tenant=tenant_a, name="Alpha scan")
        other = make_scan(tenant=tenant_b, name="Bravo secret scan")
        make_execution(schedule=own)
        make_execution(schedule=other)
        client = staff_client({tenant_a: "viewer"})

        response = changelist(client)
        assert [value for value, _label in filter_choices(response, "schedule")] == [str(own.pk)]

        # Another tenant's id finds nothing and is not named, as an id that does not exist.
        for value in (str(other.pk), "999999", "x", "²", "9" * 30, ""):
            response = changelist(client, schedule=value)
            assert "Bravo" not in response.content.decode()
            if value:
                assert shown_ids(response) == []

    def test_the_tenant_filter_narrows_the_schedule_choices(
        self, superuser_client, tenant_a, tenant_b
    ):
        alpha, bravo = make_scan(tenant=tenant_a), make_scan(tenant=tenant_b)

        response = changelist(superuser_client, tenant=tenant_b.pk)

        choices = [value for value, _label in filter_choices(response, "schedule")]
        assert choices == [str(bravo.pk)]
        assert str(alpha.pk) not in choices

    def test_offers_the_schedules_that_ran_last_and_keeps_the_chosen_one(
        self, superuser_client, tenant_a
    ):
        now = datetime.now(UTC)
        scans = [
            make_scan(tenant=tenant_a, name=f"scan {i:02}") for i in range(SCHEDULE_CHOICES + 5)
        ]
        for i, scan in enumerate(scans):
            Schedule.objects.filter(pk=scan.pk).update(last_run_at=now - timedelta(minutes=i))
        oldest = scans[-1]

        response = changelist(superuser_client, schedule=oldest.pk)

        choices = [value for value, _label in filter_choices(response, "schedule")]
        assert len(choices) == SCHEDULE_CHOICES + 1
        assert str(oldest.pk) in choices and str(scans[-2].pk) not in choices


class TestRowMarkup:
    def test_each_rows_checkbox_is_the_admins_own(self, superuser_client, tenant_a):
        execution = make_execution(schedule=make_scan(tenant=tenant_a, name=XSS))
        model_admin = admin.site._registry[Execution]

        ours = model_admin.action_checkbox(execution)
        assert ours == admin.ModelAdmin.action_checkbox(model_admin, execution)
        assert escape(XSS) in ours and XSS not in ours
        # And the page's "select all" and actions still find it.
        html = changelist(superuser_client).content.decode()
        assert f'name="_selected_action" value="{execution.pk}" class="action-select"' in html

    @pytest.mark.parametrize("language", ["en", "fr"])
    def test_status_labels_are_the_fields_own(self, tenant_a, language):
        execution = make_execution(schedule=make_scan(tenant=tenant_a))
        with translation.override(language):
            for status in [*Status.values, "not-a-status"]:
                execution.status = status
                assert status_label(status) == execution.get_status_display()
