"""Report types and report production: numbers, formats, tenant isolation, e-mail."""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ValidationError
from django.test import override_settings

from scheduling import runner
from scheduling.context import ExecutionContext
from scheduling.kinds.report import produce_report
from scheduling.models import Report, ReportArtifact, Status
from tests.factories import make_execution, make_report, make_scan, make_tenant

pytestmark = pytest.mark.django_db

T = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
XSS = "<img src=x onerror=alert(1)>"


def at(hours_before: float) -> datetime:
    return T - timedelta(hours=hours_before)


def ran(schedule, status, duration_ms, hours_before):
    finished = at(hours_before) + timedelta(milliseconds=duration_ms)
    return make_execution(
        schedule=schedule,
        status=status,
        scheduled_for=at(hours_before),
        started_at=at(hours_before),
        finished_at=finished,
        duration_ms=duration_ms,
    )


@pytest.fixture
def history(tenant):
    """Known executions of ``tenant`` in the 24 hours before T, plus noise around them."""
    fast = make_scan(tenant=tenant, name="fast")
    slow = make_scan(tenant=tenant, name="slow")
    xss = make_scan(tenant=tenant, name=XSS)
    ran(fast, Status.SUCCEEDED, 100, 1)
    ran(fast, Status.SUCCEEDED, 200, 2)
    ran(slow, Status.SUCCEEDED, 300, 3)
    ran(slow, Status.SUCCEEDED, 400, 4)
    ran(slow, Status.FAILED, 500, 5)
    ran(xss, Status.TIMED_OUT, 1000, 6)
    # Never ran: counted by status, left out of durations and failure rates.
    make_execution(schedule=fast, status=Status.SKIPPED, scheduled_for=at(7), duration_ms=0)
    make_execution(
        schedule=slow,
        status=Status.RUNNING,
        scheduled_for=at(0.5),
        finished_at=None,
        duration_ms=None,
    )
    # Outside [T - 24 h, T): too old, and at T itself.
    ran(fast, Status.FAILED, 99_000, 25)
    ran(fast, Status.FAILED, 99_000, 0)
    # Another tenant, inside the window: never counted.
    other = make_scan(tenant=make_tenant(), name="other tenant scan")
    for hours in (1, 2, 3):
        ran(other, Status.FAILED, 50_000, hours)
    return {"fast": fast, "slow": slow, "xss": xss}


_attempts = itertools.count(1)


def context_for(report: Report, *, scheduled_for: datetime = T) -> ExecutionContext:
    execution = make_execution(
        schedule=report,
        attempt=next(_attempts),  # a report produced twice in a test: another attempt
        status=Status.RUNNING,
        scheduled_for=scheduled_for,
        finished_at=None,
        duration_ms=None,
    )
    return ExecutionContext(
        execution=execution,
        schedule=report,
        tenant=report.tenant,
        scheduled_for=scheduled_for,
        timeout=60,
    )


def produce(report: Report) -> tuple[dict, ReportArtifact]:
    result = produce_report(report, context_for(report))
    return result, ReportArtifact.objects.get(pk=result["artifact_id"])


def test_json_summary_has_counts_failure_rate_and_percentiles(tenant, history):
    report = make_report(tenant=tenant, name="daily", format="json")
    result, artifact = produce(report)
    data = json.loads(artifact.content)

    assert data["total"] == 8
    assert data["by_status"] == {
        "queued": 0,
        "running": 1,
        "succeeded": 4,
        "failed": 1,
        "timed_out": 1,
        "skipped": 1,
        "missed": 0,
        "interrupted": 0,
        "cancelled": 0,
    }
    assert data["ran"] == 6
    assert data["failures"] == 2
    assert data["failure_rate"] == pytest.approx(2 / 6, abs=1e-4)
    assert data["duration_ms"] == {
        "count": 6,
        "min": 100,
        "max": 1000,
        "avg": pytest.approx(416.7),
        "p50": 300,
        "p95": 1000,
        "p99": 1000,
    }
    assert data["period"] == {
        "start": "2025-03-09T12:00:00Z",
        "end": "2025-03-10T12:00:00Z",
        "hours": 24,
    }
    assert [row["name"] for row in data["slowest_schedules"]] == [XSS, "slow", "fast"]
    assert data["slowest_schedules"][1] == {
        "schedule_id": history["slow"].pk,
        "name": "slow",
        "kind": "scan",
        "runs": 3,
        "avg_ms": 400.0,
        "max_ms": 500,
    }
    # Equal failure counts: the most recent failure first.
    assert [
        (row["name"], row["failures"], row["runs"]) for row in data["most_failing_schedules"]
    ] == [
        ("slow", 1, 3),
        (XSS, 1, 1),
    ]
    assert data["most_failing_schedules"][0]["last_failure_at"] == "2025-03-10T07:00:00Z"

    assert artifact.tenant == tenant
    assert artifact.report == report
    assert artifact.format == "json"
    assert artifact.content_type == "application/json"
    assert artifact.filename == "acme-execution_summary-20250310T120000Z.json"
    assert artifact.size == len(artifact.content.encode())
    assert result == {
        "artifact_id": artifact.pk,
        "filename": artifact.filename,
        "format": "json",
        "size": artifact.size,
        "checksum": hashlib.sha256(artifact.content.encode()).hexdigest(),
        "recipients": 0,
    }


def test_json_output_is_stable_sorted_and_indented(tenant, history):
    _result, artifact = produce(make_report(tenant=tenant, format="json"))
    data = json.loads(artifact.content)
    assert artifact.content == json.dumps(data, sort_keys=True, indent=2) + "\n"


def test_other_tenants_executions_are_never_counted(tenant, history):
    _result, artifact = produce(make_report(tenant=tenant))
    content = artifact.content
    assert "other tenant scan" not in content
    assert "50000" not in content
    other_tenant = history["fast"].tenant.__class__.objects.exclude(pk=tenant.pk).get()
    _result, other_artifact = produce(make_report(tenant=other_tenant))
    data = json.loads(other_artifact.content)
    assert data["total"] == 3
    assert data["by_status"]["failed"] == 3
    assert data["failure_rate"] == 1.0


def test_period_hours_option_narrows_the_window(tenant, history):
    report = make_report(tenant=tenant, options={"period_hours": 2})
    _result, artifact = produce(report)
    data = json.loads(artifact.content)
    # 1 h and 2 h before T are inside [T - 2 h, T), and so is the running one at 0.5 h.
    assert data["total"] == 3
    assert data["duration_ms"]["count"] == 2
    assert data["period"]["hours"] == 2


def test_empty_period_has_no_rates_or_percentiles(tenant):
    _result, artifact = produce(make_report(tenant=tenant))
    data = json.loads(artifact.content)
    assert data["total"] == 0
    assert data["failure_rate"] is None
    assert data["duration_ms"]["p95"] is None
    assert data["slowest_schedules"] == []


def test_csv_summary_rows(tenant, history):
    report = make_report(tenant=tenant, format="csv")
    _result, artifact = produce(report)
    assert artifact.content_type == "text/csv"
    assert artifact.filename.endswith(".csv")
    rows = list(csv.reader(io.StringIO(artifact.content)))
    assert rows[0] == ["section", "schedule", "metric", "value"]
    assert ["period", "", "start", "2025-03-09T12:00:00+00:00"] in rows
    assert ["executions", "", "total", "8"] in rows
    assert ["executions", "", "timed_out", "1"] in rows
    assert ["executions", "", "failure_rate", "0.3333"] in rows
    assert ["duration_ms", "", "p50", "300"] in rows
    assert ["duration_ms", "", "p99", "1000"] in rows
    assert ["slowest", XSS, "max_ms", "1000"] in rows
    assert ["most_failing", "slow", "failures", "1"] in rows


def test_csv_neutralises_spreadsheet_formulas_in_names(tenant):
    scan = make_scan(tenant=tenant, name='=HYPERLINK("http://evil.example")')
    ran(scan, Status.FAILED, 10, 1)
    _result, artifact = produce(make_report(tenant=tenant, format="csv"))
    rows = list(csv.reader(io.StringIO(artifact.content)))
    names = {row[1] for row in rows if row[0] == "slowest"}
    assert names == {'\'=HYPERLINK("http://evil.example")'}


def test_html_summary_shows_numbers_and_escapes_names(tenant, history):
    report = make_report(tenant=tenant, name="Ops <b>daily</b>", format="html")
    _result, artifact = produce(report)
    html = artifact.content
    assert artifact.content_type == "text/html"
    assert artifact.filename.endswith(".html")
    assert '<td class="num" id="total">8</td>' in html
    assert '<td class="num" id="p50">300</td>' in html
    assert '<td class="num" id="p95">1000</td>' in html
    assert "33.33" in html
    assert XSS not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<b>daily</b>" not in html
    assert "Ops &lt;b&gt;daily&lt;/b&gt;" in html


def test_report_is_emailed_with_the_artifact_attached(tenant, history, mailoutbox):
    report = make_report(
        tenant=tenant,
        name="Weekly\nsummary",
        format="csv",
        recipients="ops@example.com,\n cto@example.com",
    )
    with override_settings(SCHEDULING_REPORT_FROM_EMAIL="reports@example.com"):
        result, artifact = produce(report)
    assert result["recipients"] == 2
    assert len(mailoutbox) == 1
    message = mailoutbox[0]
    assert message.to == ["ops@example.com", "cto@example.com"]
    assert message.from_email == "reports@example.com"
    assert message.subject == "Weekly summary: Execution summary for Acme"
    assert message.attachments == [(artifact.filename, artifact.content, "text/csv")]


@override_settings(DEFAULT_FROM_EMAIL="default@example.com")
def test_report_mail_falls_back_to_default_from_email(tenant, mailoutbox):
    produce(make_report(tenant=tenant, recipients="ops@example.com"))
    assert mailoutbox[0].from_email == "default@example.com"


def test_report_without_recipients_sends_nothing(tenant, mailoutbox):
    result, _artifact = produce(make_report(tenant=tenant))
    assert result["recipients"] == 0
    assert mailoutbox == []


def test_report_through_the_runner_stores_artifact_on_its_execution(tenant, history):
    report = make_report(tenant=tenant, format="json")
    execution = runner.claim(report, T)
    runner.execute(execution.pk)
    execution.refresh_from_db()
    assert execution.status == Status.SUCCEEDED, execution.error
    artifact = ReportArtifact.objects.get(execution=execution)
    assert execution.result["artifact_id"] == artifact.pk
    assert json.loads(artifact.content)["total"] == 8


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"period_hours": 0}, "period_hours"),
        ({"period_hours": 9000}, "period_hours"),
        ({"period_hours": "a day"}, "period_hours"),
        ({"hours": 5}, "hours"),
    ],
)
def test_invalid_report_options_name_the_option(tenant, options, message):
    report = Report(
        tenant=tenant,
        name="r",
        trigger_type="interval",
        interval_seconds=60,
        report_type="execution_summary",
        options=options,
    )
    with pytest.raises(ValidationError) as info:
        report.full_clean()
    assert message in " ".join(info.value.message_dict["options"])


def test_valid_report_options_are_cleaned(tenant):
    report = Report(
        tenant=tenant,
        name="r",
        trigger_type="interval",
        interval_seconds=60,
        report_type="execution_summary",
        options={"period_hours": "168"},
    )
    report.full_clean()
    assert report.options == {"period_hours": 168}


# -- scan_status -----------------------------------------------------------------------------


def test_scan_status_reports_the_latest_check_of_each_scan(tenant):
    up = make_scan(tenant=tenant, name="api", target="https://api.example/<health>")
    down = make_scan(tenant=tenant, name="db")
    make_scan(tenant=tenant, name="new")
    make_scan(tenant=tenant, name="off", enabled=False)
    ran(up, Status.FAILED, 10, 3)
    ran(up, Status.SUCCEEDED, 20, 2)
    make_execution(schedule=up, status=Status.SKIPPED, scheduled_for=at(1), duration_ms=0)
    make_execution(
        schedule=down,
        status=Status.FAILED,
        scheduled_for=at(1),
        duration_ms=30,
        error="ScanFailed: Connection to db port 5432 refused.",
    )
    ran(down, Status.SUCCEEDED, 5, -1)  # after the report's time: not yet known
    other = make_scan(tenant=make_tenant(), name="other tenant scan")
    ran(other, Status.SUCCEEDED, 5, 1)

    report = make_report(tenant=tenant, report_type="scan_status", format="json")
    _result, artifact = produce(report)
    data = json.loads(artifact.content)
    assert data["total"] == 3
    assert data["counts"] == {"up": 1, "down": 1, "unknown": 1}
    by_name = {row["name"]: row for row in data["scans"]}
    assert set(by_name) == {"api", "db", "new"}
    assert by_name["api"]["state"] == "up"
    assert by_name["api"]["duration_ms"] == 20
    assert by_name["db"]["state"] == "down"
    assert "refused" in by_name["db"]["error"]
    assert by_name["new"]["check_status"] is None

    report.format = "html"
    _result, artifact = produce(report)
    assert "https://api.example/&lt;health&gt;" in artifact.content
    assert "other tenant scan" not in artifact.content

    report.format = "csv"
    report.options = {"include_disabled": True}
    _result, artifact = produce(report)
    rows = list(csv.reader(io.StringIO(artifact.content)))
    assert rows[0][:3] == ["name", "scan_type", "target"]
    assert [row[0] for row in rows[1:]] == ["api", "db", "new", "off"]
