"""The execution counters under concurrent outcomes: no deadlock between two writers.

Every outcome adds to a few shared ``ExecutionCounter`` rows in its own transaction. Two
outcomes that lock the same rows in different orders deadlock on PostgreSQL, and one of them
is lost until it is written again. Writers lock the rows in key order, so one that waits
for a row holds none that comes after it.
"""

from __future__ import annotations

import threading
import time

import pytest
from django.db import close_old_connections, connection, transaction

from scheduling.models import CounterSeries, Execution, ExecutionCounter, Kind, Status
from tests.ci import OTHER_RUN

pytestmark = pytest.mark.django_db(transaction=True)


def finished(kind: str) -> Execution:
    return Execution(schedule_kind=kind, status=Status.FAILED, attempt=1, trigger="manual")


def counter(kind: str) -> ExecutionCounter:
    return ExecutionCounter.objects.get(
        kind=kind, status=Status.FAILED, series=CounterSeries.EXECUTIONS, bucket=""
    )


def waiting_backends(probe) -> int:
    """Backends of the test database waiting for a lock (read outside any transaction:
    PostgreSQL keeps one snapshot of its activity statistics per transaction)."""
    return probe.execute(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE wait_event_type = 'Lock' AND datname = current_database()"
    ).fetchone()[0]


def test_a_writer_waiting_for_a_counter_row_holds_none_after_it():
    if connection.vendor != "postgresql":
        pytest.skip(f"{OTHER_RUN}row locks are PostgreSQL's; this run uses SQLite.")
    import psycopg

    # Physical order opposite to key order ("report" < "scan"): an UPDATE that reads the
    # table's pages in order (a bitmap scan, chosen for keys of several kinds) meets the
    # scan row first.
    for kind in (Kind.SCAN, Kind.REPORT):
        ExecutionCounter.objects.create(
            kind=kind, status=Status.FAILED, series=CounterSeries.EXECUTIONS, bucket=""
        )
    later_pk = counter(Kind.SCAN).pk
    errors: list[BaseException] = []

    def write_outcomes() -> None:
        try:
            with transaction.atomic():
                ExecutionCounter.objects.count_finished(
                    [finished(Kind.SCAN), finished(Kind.REPORT)]
                )
        except BaseException as exc:  # reported by the test's thread
            errors.append(exc)
        finally:
            close_old_connections()
            connection.close()

    writer = threading.Thread(target=write_outcomes)
    params = connection.get_connection_params()
    with psycopg.connect(**params, autocommit=True) as probe, transaction.atomic():
        # Another outcome holds the first row in key order.
        list(ExecutionCounter.objects.select_for_update().filter(kind=Kind.REPORT))
        writer.start()
        deadline = time.monotonic() + 30
        while waiting_backends(probe) == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert waiting_backends(probe) == 1, "the writer never waited for the locked row"
        # The row after it in key order is free: a third writer locking rows in key
        # order can never be waited for by the first while waiting for it.
        probe.execute(
            "SELECT 1 FROM scheduling_executioncounter WHERE id = %s FOR UPDATE NOWAIT",
            (later_pk,),
        )
    writer.join(timeout=30)
    assert not writer.is_alive()
    assert not errors, errors
    assert counter(Kind.REPORT).value == 1
    assert counter(Kind.SCAN).value == 1


def test_counter_rows_created_by_another_outcome_meanwhile_still_get_this_ones_share(
    monkeypatch,
):
    # First outcomes of a kind on a fresh database, from two workers at once: this one's
    # first statement finds no row; before it creates them, the other worker has. Its share
    # must still be added (it was once lost, and with nothing left to add an empty statement
    # failed the whole outcome).
    from scheduling.models import ExecutionCounterQuerySet

    original = ExecutionCounterQuerySet._increment
    calls = []

    def increment(self, totals):
        found = original(self, totals)
        if not calls:
            # Another worker creates the rows and counts its own outcome.
            ExecutionCounter.objects.bulk_create(
                [ExecutionCounter(kind=k, status=s, series=r, bucket=b) for k, s, r, b in totals],
                ignore_conflicts=True,
            )
            original(self, dict.fromkeys(totals, 1))
        calls.append(totals)
        return found

    monkeypatch.setattr(ExecutionCounterQuerySet, "_increment", increment)
    ExecutionCounter.objects.count_finished([finished(Kind.SCAN), finished(Kind.SCAN)])
    assert counter(Kind.SCAN).value == 3  # the other worker's one, and this one's two
