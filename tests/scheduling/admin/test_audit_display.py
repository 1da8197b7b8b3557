"""The audit trail in the admin reads as words: sources by name, changes as "field: old → new"
with the fields' names, times as every admin page shows them (issue 18, item 10)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils.html import escape

from scheduling import services
from scheduling.models import AuditEntry, AuditSource, PeriodicScan
from tests.factories import make_scan

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
XSS = "<script>alert(1)</script>"


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def scan(tenant_a):
    # Tenant A reads in Europe/Berlin: 10:30 CET is NOW.
    return make_scan(
        tenant=tenant_a,
        name="nightly",
        scan_type="test_echo",
        target="x",
        trigger_type="cron",
        cron_expression="0 3 * * *",
        timezone="Europe/Berlin",
    )


def entry_page(client, entry):
    response = client.get(reverse("admin:scheduling_auditentry_change", args=[entry.pk]))
    assert response.status_code == 200
    return response.content.decode()


def changes_of(page):
    """The list of changes on an entry's page."""
    start = page.index('<ul class="scheduling-changes">')
    return page[start : page.index("</ul>", start) + len("</ul>")]


def test_a_change_reads_field_old_to_new_with_the_fields_names(superuser_client, scan):
    services.update_schedule(
        schedule=scan,
        data={"cron_expression": "0 4 * * *", "coalesce": False, "overlap": "queue"},
        source="cli",
    )
    entry = AuditEntry.objects.get(action="change")
    page = entry_page(superuser_client, entry)
    assert changes_of(page) == (
        '<ul class="scheduling-changes">'
        "<li><strong>Cron expression</strong>: <code>0 3 * * *</code> → <code>0 4 * * *</code></li>"
        "<li><strong>Overlap</strong>: Skip when still running → Queue after the running one</li>"
        "<li><strong>Coalesce missed runs</strong>: yes → no</li>"
        "</ul>"
    )
    assert '{"cron_expression"' not in page and "[&quot;0 3" not in page
    assert '<div class="readonly">CLI</div>' in page


def test_times_read_in_the_schedules_zone_and_paused_until_resumed_in_words(superuser_client, scan):
    services.pause_schedule(
        schedule=scan, until=datetime(2026, 3, 5, 7, 0, tzinfo=UTC), source="admin"
    )
    services.pause_schedule(schedule=scan, source="api")
    until_time, until_resumed = AuditEntry.objects.filter(action="pause").order_by("pk")
    assert changes_of(entry_page(superuser_client, until_time)) == (
        '<ul class="scheduling-changes"><li><strong>Paused until</strong>: '
        '<span class="quiet">(empty)</span> → 2026-03-05 08:00:00 CET</li></ul>'
    )
    page = entry_page(superuser_client, until_resumed)
    assert "2026-03-05 08:00:00 CET → until resumed" in changes_of(page)
    assert "8000" not in page
    # The entry's own time, like every time of the admin.
    assert '<div class="readonly">2026-03-02 10:30:00 CET</div>' in page


def test_a_run_links_the_execution_it_queued(superuser_client, scan):
    execution, _created = services.queue_run(schedule=scan, source="admin")
    entry = AuditEntry.objects.get(action="run")
    url = reverse("admin:scheduling_execution_change", args=[execution.pk])
    assert changes_of(entry_page(superuser_client, entry)) == (
        '<ul class="scheduling-changes"><li><strong>Execution</strong>: '
        f'<a href="{url}">{execution.pk}</a></li></ul>'
    )


def test_a_creation_lists_the_values_and_names_dependencies(superuser_client, tenant_a, scan):
    other = services.create_schedule(
        model=PeriodicScan,
        tenant=tenant_a,
        source="api",
        name="after nightly",
        scan_type="test_echo",
        target="x",
        trigger_type="interval",
        interval_seconds=3600,
        depends_on=[scan],
    )
    entry = AuditEntry.objects.get(action="create", schedule=other)
    changes = changes_of(entry_page(superuser_client, entry))
    assert "<li><strong>Name</strong>: <code>after nightly</code></li>" in changes
    assert "<li><strong>Trigger type</strong>: Interval</li>" in changes
    assert "<li><strong>Depends on</strong>: nightly</li>" in changes
    assert "<li><strong>Tenant</strong>: Tenant A</li>" in changes
    assert "→" not in changes


def test_a_deletion_lists_what_the_schedule_was(superuser_client, scan):
    services.delete_schedule(schedule=scan, source="admin")
    entry = AuditEntry.objects.get(action="delete")
    changes = changes_of(entry_page(superuser_client, entry))
    assert "<li><strong>Cron expression</strong>: <code>0 3 * * *</code></li>" in changes
    assert "→" not in changes


def test_recorded_values_are_escaped(superuser_client, scan):
    services.update_schedule(schedule=scan, data={"description": XSS}, source="api")
    page = entry_page(superuser_client, AuditEntry.objects.get(action="change"))
    assert XSS not in page
    assert f"<code>{escape(XSS)}</code>" in changes_of(page)


def test_the_list_names_sources_and_changed_fields(superuser_client, scan):
    services.update_schedule(schedule=scan, data={"cron_expression": "0 4 * * *"}, source="cli")
    services.pause_schedule(schedule=scan, source="admin")
    AuditEntry.objects.create(
        tenant=scan.tenant,
        schedule=scan,
        schedule_name=scan.name,
        schedule_kind=scan.kind,
        action="change",
        source="declared",
        changes={"timezone": ["UTC", "Europe/Berlin"]},
    )
    response = superuser_client.get(reverse("admin:scheduling_auditentry_changelist"))
    page = response.content.decode()
    for label in ("CLI", "Admin", "Declared in code"):
        assert f'<td class="field-source">{label}</td>' in page
    assert '<td class="field-changed_fields">Cron expression</td>' in page
    assert '<td class="field-changed_fields">Paused until</td>' in page
    assert '<th class="field-when">' in page and "2026-03-02 10:30:00 CET</a></th>" in page
    # The filter offers the sources by name too.
    for value, label in AuditSource.choices:
        assert f'<a href="?source__exact={value}">{label}</a>' in page


def test_the_list_costs_the_same_queries_for_more_entries(superuser_client, tenant_a):
    def count():
        with CaptureQueriesContext(connection) as queries:
            response = superuser_client.get(reverse("admin:scheduling_auditentry_changelist"))
        assert response.status_code == 200
        return len(queries)

    def add(n):
        for _ in range(n):
            scan = make_scan(tenant=tenant_a, scan_type="test_echo", target="x")
            services.update_schedule(schedule=scan, data={"description": "x"}, source="api")

    add(3)
    few = count()
    add(30)
    assert count() == few
