"""Abuse limits of the domain (issue 17): one queued manual run, capped sizes, bounded audit."""

from __future__ import annotations

import threading

import pytest
from django.core.exceptions import ValidationError
from django.db import connection

from scheduling import services
from scheduling.exceptions import StateConflict
from scheduling.kinds import clean_run_options
from scheduling.models import AuditEntry, Execution, Report, Status, TriggerKind
from scheduling.validators import (
    AUDIT_ENTRY_MAX_BYTES,
    AUDIT_VALUE_MAX_BYTES,
    DESCRIPTION_MAX_LENGTH,
    MAX_RECIPIENTS,
    OPTIONS_MAX_BYTES,
    json_size,
)
from tests.factories import make_report, make_scan, make_task, make_tenant

pytestmark = pytest.mark.django_db


def manual_runs(schedule):
    return Execution.objects.filter(schedule=schedule, trigger=TriggerKind.MANUAL)


def test_run_now_returns_the_manual_run_still_queued_instead_of_queueing_another(tenant):
    scan = make_scan(tenant=tenant, scan_type="test_echo")
    first, created = services.queue_run(schedule=scan, source="api")
    assert created
    for _ in range(30):
        again, created = services.queue_run(schedule=scan, source="api")
        assert (again.pk, created) == (first.pk, False)
    assert services.run_now(schedule=scan).pk == first.pk
    assert manual_runs(scan).count() == 1
    # Only the run that was queued is in the audit trail.
    assert AuditEntry.objects.filter(schedule=scan, action="run").count() == 1


def test_run_now_queues_again_once_the_queued_run_has_started(tenant):
    scan = make_scan(tenant=tenant, scan_type="test_echo")
    first = services.run_now(schedule=scan)
    assert first.mark_started(worker="test")
    second = services.run_now(schedule=scan)
    assert second.pk != first.pk
    assert manual_runs(scan).filter(status=Status.QUEUED).get() == second


def test_run_now_ignores_queued_runs_of_other_triggers_and_schedules(tenant):
    scan = make_scan(tenant=tenant, scan_type="test_echo")
    other = make_scan(tenant=tenant, scan_type="test_echo")
    retry = Execution.for_occurrence(scan, scan.created_at, trigger=TriggerKind.RETRY)
    retry.save()
    services.run_now(schedule=other)
    _, created = services.queue_run(schedule=scan)
    assert created


def test_run_now_dedupes_only_runs_with_the_same_options(tenant):
    task = make_task(tenant=tenant)
    plain = services.run_now(schedule=task)
    five = services.run_now(schedule=task, options={"a": 5})
    assert five.pk != plain.pk
    assert services.run_now(schedule=task, options={"a": 5}).pk == five.pk
    assert services.run_now(schedule=task, options={}).pk == plain.pk  # {} is no options
    assert services.run_now(schedule=task, options={"a": 6}).pk not in (plain.pk, five.pk)


def test_run_now_refuses_more_than_ten_queued_manual_runs(tenant):
    task = make_task(tenant=tenant)
    for a in range(services.MAX_QUEUED_RUNS):
        services.run_now(schedule=task, options={"a": a})
    with pytest.raises(StateConflict, match="10 manual runs of .* are queued already"):
        services.run_now(schedule=task, options={"a": 99})
    # One of them, with the same options, is still returned.
    assert services.run_now(schedule=task, options={"a": 3}).options == {"a": 3}
    assert manual_runs(task).count() == services.MAX_QUEUED_RUNS


@pytest.mark.django_db(transaction=True)
def test_concurrent_run_now_queue_one_execution():
    scan = make_scan(tenant=make_tenant(), scan_type="test_echo")
    threads = 4
    barrier = threading.Barrier(threads)
    results: list[tuple[int, bool]] = []
    errors: list[BaseException] = []

    def press() -> None:
        try:
            barrier.wait()
            execution, created = services.queue_run(schedule=scan, source="api")
            results.append((execution.pk, created))
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)
        finally:
            connection.close()

    workers = [threading.Thread(target=press) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    assert not errors
    assert manual_runs(scan).count() == 1
    assert len({pk for pk, _ in results}) == 1
    assert sorted(created for _, created in results) == [False] * (threads - 1) + [True]


def test_description_is_capped(tenant):
    scan = make_scan(tenant=tenant, scan_type="test_echo")
    scan.description = "x" * DESCRIPTION_MAX_LENGTH
    services.validate_schedule(scan)
    scan.description += "x"
    with pytest.raises(ValidationError) as info:
        services.validate_schedule(scan)
    assert info.value.message_dict == {
        "description": ["Ensure this value has at most 2000 characters (it has 2001)."]
    }


def test_report_recipients_are_capped(tenant):
    report = make_report(tenant=tenant)
    report.recipients = ", ".join(f"r{n}@example.com" for n in range(MAX_RECIPIENTS))
    services.validate_schedule(report)
    report.recipients += "\nlast@example.com"
    with pytest.raises(ValidationError) as info:
        services.validate_schedule(report)
    assert info.value.message_dict["recipients"] == [
        "A report may have at most 50 recipients (this has 51)."
    ]
    report.recipients = "," * 20_000  # no addresses, but a huge text
    with pytest.raises(ValidationError, match="at most 12750 characters"):
        services.validate_schedule(report)


def test_options_are_capped_for_every_kind_with_every_error_per_field(tenant):
    big = {"a": 1, "b": "x" * OPTIONS_MAX_BYTES}
    task = make_task(tenant=tenant)
    task.options = big
    task.description = "x" * (DESCRIPTION_MAX_LENGTH + 1)
    with pytest.raises(ValidationError) as info:
        services.validate_schedule(task)
    errors = info.value.message_dict
    assert set(errors) == {"options", "description"}
    assert errors["options"] == [
        f"Options may take at most 16384 bytes as JSON; these take {json_size(big)}."
    ]
    for schedule in (make_scan(tenant=tenant, scan_type="test_echo"), make_report(tenant=tenant)):
        schedule.options = big
        with pytest.raises(ValidationError, match="at most 16384 bytes"):
            services.validate_schedule(schedule)


def test_run_options_are_capped(tenant):
    task = make_task(tenant=tenant)
    with pytest.raises(ValidationError) as info:
        clean_run_options(task, {"b": "x" * OPTIONS_MAX_BYTES})
    assert "at most 16384 bytes" in info.value.message_dict["options"][0]


def test_audit_entry_cuts_long_values_with_a_marker_and_stays_under_its_limit(tenant):
    report = make_report(tenant=tenant)
    long = "y" * (AUDIT_VALUE_MAX_BYTES * 2)
    entry = services.record_audit(
        schedule=report, action="change", changes={"description": ["short", long]}
    )
    old, new = entry.changes["description"]
    assert old == "short"
    assert new.startswith('"yyyy')
    assert new.endswith(f"… [truncated: {json_size(long)} bytes]")
    assert json_size(new) <= AUDIT_VALUE_MAX_BYTES

    # Many fields each under the value limit: the largest are cut until the entry fits.
    changes = {f"field{n}": [None, "z" * (AUDIT_VALUE_MAX_BYTES - 100)] for n in range(10)}
    entry = services.record_audit(schedule=report, action="change", changes=changes)
    entry.refresh_from_db()
    assert json_size(entry.changes) <= AUDIT_ENTRY_MAX_BYTES
    assert set(entry.changes) == set(changes)
    assert any("[truncated:" in str(value) for _, value in entry.changes.values())
    assert any(value == changes[name][1] for name, (_, value) in entry.changes.items())


def test_update_audits_values_under_the_limits_unchanged(tenant):
    report = Report.objects.get(pk=make_report(tenant=tenant).pk)
    report.description = "d" * DESCRIPTION_MAX_LENGTH
    report.save()
    services.update_schedule(schedule=report, data={"description": "e" * DESCRIPTION_MAX_LENGTH})
    entry = AuditEntry.objects.filter(schedule=report).latest("pk")
    assert entry.changes["description"][1] == "e" * DESCRIPTION_MAX_LENGTH  # under the limits
    assert json_size(entry.changes) <= AUDIT_ENTRY_MAX_BYTES


def test_import_reports_each_capped_field_on_one_line(tmp_path):
    from tests.scheduling.cli.conftest import cli

    make_tenant(slug="acme")
    target = tmp_path / "big.yaml"
    target.write_text(
        "version: 1\n"
        "schedules:\n"
        "- tenant: acme\n"
        "  kind: report\n"
        "  name: Loud\n"
        "  report_type: execution_summary\n"
        "  trigger_type: interval\n"
        "  interval_seconds: 3600\n"
        f"  description: {'d' * (DESCRIPTION_MAX_LENGTH + 1)}\n"
        f"  recipients: {','.join(f'r{n}@example.com' for n in range(MAX_RECIPIENTS + 1))}\n"
    )
    result = cli("import", str(target))
    assert result.code == 2
    lines = [line for line in result.out.splitlines() if "Loud" in line or "schedules[0]" in line]
    assert any("description: Ensure this value has at most 2000 characters" in ln for ln in lines)
    assert any("recipients: A report may have at most 50 recipients" in ln for ln in lines)
    assert not Report.objects.exists()
