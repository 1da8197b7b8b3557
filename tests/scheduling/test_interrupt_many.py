"""Interrupting many executions at once (a shutdown's leftovers, a takeover's orphans).

Thousands may come at once when a scheduler stops behind its queue: they are written in
batches, each one still ends only if it is active, is counted once, announced once, and
gets its schedule's retry policy, as one interrupted alone would.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from scheduling import runner, signals
from scheduling.models import CounterSeries, Execution, ExecutionCounter, Kind, Status
from tests.factories import make_execution, make_scan, make_tenant

pytestmark = pytest.mark.django_db

REASON = "The scheduler stopped before this started."


def queued(schedule, count: int, start) -> list[Execution]:
    return [
        make_execution(
            schedule=schedule,
            scheduled_for=start + timedelta(seconds=n),
            status=Status.QUEUED,
            claimed_by="leader:1:x",
            started_at=None,
            finished_at=None,
            duration_ms=None,
        )
        for n in range(count)
    ]


def test_a_few_hundred_are_interrupted_in_batches_each_once():
    tenant = make_tenant()
    plain = make_scan(tenant=tenant, name="plain")
    retrying = make_scan(tenant=tenant, name="retrying", max_retries=1)
    start = timezone.now().replace(microsecond=0) - timedelta(hours=1)
    many = queued(plain, runner.INTERRUPT_BATCH + 50, start)
    retried_ones = queued(retrying, 3, start)
    already_done = many[7]
    Execution.objects.filter(pk=already_done.pk).update(status=Status.SUCCEEDED)
    announced: list[int] = []

    def receiver(sender, execution, **kwargs):
        announced.append(execution.pk)

    signals.execution_finished.connect(receiver)
    try:
        with CaptureQueriesContext(connection) as queries:
            count = runner.interrupt(
                Execution.objects.filter(pk__in=[e.pk for e in many + retried_ones]).select_related(
                    "schedule"
                ),
                REASON,
            )
    finally:
        signals.execution_finished.disconnect(receiver)

    ended = len(many) - 1 + len(retried_ones)
    assert count == ended
    assert sorted(announced) == sorted(e.pk for e in many + retried_ones if e != already_done)
    assert Execution.objects.get(pk=already_done.pk).status == Status.SUCCEEDED
    rows = Execution.objects.filter(status=Status.INTERRUPTED)
    assert rows.count() == ended
    assert set(rows.values_list("error", flat=True)) == {REASON}
    assert all(r.finished_at is not None for r in rows)
    # Counted once each, in the batches' counter updates.
    assert (
        ExecutionCounter.objects.get(
            kind=Kind.SCAN, status=Status.INTERRUPTED, series=CounterSeries.EXECUTIONS, bucket=""
        ).value
        == ended
    )
    # The retry policy as for one alone: a second attempt of each of the retrying schedule's.
    retries = Execution.objects.filter(schedule=retrying, attempt=2, status=Status.QUEUED)
    assert retries.count() == len(retried_ones)
    plain.refresh_from_db()
    assert plain.last_status == Status.INTERRUPTED
    assert plain.consecutive_failures == len(many) - 1
    # Its own row and its schedule's state per execution; the rest once per batch.
    assert len(queries) <= 2 * ended + 30, len(queries)
