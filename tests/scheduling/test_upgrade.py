"""An upgrade keeps the job store: rows written before the package move still load and fire.

``OLD_ROWS`` are job-store rows (next run time, signed job state) as the full sync of the
flat layout wrote them (commit befabca, whose ``sync`` and ``jobstore`` were top-level
modules) for the two schedules ``old_schedules`` builds, at ``NOW``, with ``SIGNING_KEY``. The
pickled state names the job function ``scheduling.runner:fire`` and the trigger classes by
their import paths; those paths must keep resolving.
"""

from __future__ import annotations

import base64
import contextlib
import pickle
from collections.abc import Iterator
from datetime import UTC, date, datetime
from unittest import mock
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import override_settings
from django_apscheduler.models import DjangoJob

from scheduling import runner
from scheduling.models import Execution, PeriodicScan, Schedule
from scheduling.scheduler.jobs import make_job
from scheduling.scheduler.jobstore import sign_state, verify_state
from scheduling.scheduler.service import SchedulerService
from scheduling.triggers import ZonedCronTrigger, cron_meaning_changed
from tests.factories import make_scan, make_tenant
from tests.scheduling.loops import hand_driven_loop

SIGNING_KEY = "upgrade-test-signing-key"
CREATED = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
OLD_ROWS = {
    4242: (
        "2026-06-02T07:00:00+00:00",
        (
            "U0oxDM1U9TL0wNKRwV0cDbCcKVdd/vW295JgLBZGTINHRo1NXlcXzNEj9yFRDi9V2I96gAWVigIAAAAAAAB9lCiM"
            "B3ZlcnNpb26USwGMAmlklIwNc2NoZWR1bGU6NDI0MpSMBGZ1bmOUjBZzY2hlZHVsaW5nLnJ1bm5lcjpmaXJllIwH"
            "dHJpZ2dlcpSME3NjaGVkdWxpbmcudHJpZ2dlcnOUjBBab25lZENyb25UcmlnZ2VylJOUKYGUfZQojApleHByZXNz"
            "aW9ulIwLMCA5ICogKiAxLTWUjAZvZmZzZXSUSwCMBmZpZWxkc5R9lCiMBm1pbnV0ZZSMATCUjARob3VylIwBOZSM"
            "A2RheZSMASqUjAVtb250aJRoFowLZGF5X29mX3dlZWuUjBNtb24sdHVlLHdlZCx0aHUsZnJplHWMAnR6lIwNRXVy"
            "b3BlL0JlcmxpbpSMCmdhcF9wb2xpY3mUjBZydW5fYXRfbmV4dF92YWxpZF90aW1llIwLZm9sZF9wb2xpY3mUjARv"
            "bmNllIwKc3RhcnRfZGF0ZZROjAhlbmRfZGF0ZZROjAZqaXR0ZXKUTnVijAhleGVjdXRvcpSMB2RlZmF1bHSUjARh"
            "cmdzlE2SEIWUjAZrd2FyZ3OUfZSMC2ZpbmdlcnByaW50lIwgNGQ1ZTU3MTdjY2QxMjNmNzIxNTEwZTJmNTVkODhm"
            "N2GUc4wEbmFtZZSMDXNjYW46b2xkLTQyNDKUjBJtaXNmaXJlX2dyYWNlX3RpbWWUSzyMCGNvYWxlc2NllIiMDW1h"
            "eF9pbnN0YW5jZXOUSwGMDW5leHRfcnVuX3RpbWWUjAhkYXRldGltZZSMCGRhdGV0aW1llJOUQwoH6gYCBwAAAAAA"
            "lGgxjAh0aW1lem9uZZSTlGgxjAl0aW1lZGVsdGGUk5RLAEsASwCHlFKUhZRSlIaUUpR1Lg=="
        ),
    ),
    4243: (
        "2026-06-01T12:00:00+00:00",
        (
            "U0oxbHYIEffjEiBJCutVbpzR6jSJa6Z0zJ+mrwrC9z39hjKi2CD8433rH+m/EE1gNEjFgAWV/QEAAAAAAAB9lCiM"
            "B3ZlcnNpb26USwGMAmlklIwNc2NoZWR1bGU6NDI0M5SMBGZ1bmOUjBZzY2hlZHVsaW5nLnJ1bm5lcjpmaXJllIwH"
            "dHJpZ2dlcpSMHWFwc2NoZWR1bGVyLnRyaWdnZXJzLmludGVydmFslIwPSW50ZXJ2YWxUcmlnZ2VylJOUKYGUfZQo"
            "aAFLAowIdGltZXpvbmWUjAhkYXRldGltZZSMCHRpbWV6b25llJOUaA2MCXRpbWVkZWx0YZSTlEsASwBLAIeUUpSF"
            "lFKUjApzdGFydF9kYXRllGgNjAhkYXRldGltZZSTlEMKB+oBBQgFAAAAAJRoFYaUUpSMCGVuZF9kYXRllE6MCGlu"
            "dGVydmFslGgRSwBNLAFLAIeUUpSMBmppdHRlcpROdWKMCGV4ZWN1dG9ylIwHZGVmYXVsdJSMBGFyZ3OUTZMQhZSM"
            "Bmt3YXJnc5R9lIwLZmluZ2VycHJpbnSUjCBhMmQ4MjBmY2UzN2RlYjFmZTliZjEwNGQ2MDM0NDhjNZRzjARuYW1l"
            "lIwNc2NhbjpvbGQtNDI0M5SMEm1pc2ZpcmVfZ3JhY2VfdGltZZRLPIwIY29hbGVzY2WUiIwNbWF4X2luc3RhbmNl"
            "c5RLAYwNbmV4dF9ydW5fdGltZZRoGEMKB+oGAQwAAAAAAJRoFYaUUpR1Lg=="
        ),
    ),
}


def old_schedules():
    tenant = make_tenant()
    fields = {
        4242: {
            "trigger_type": "cron",
            "cron_expression": "0 9 * * 1-5",
            "timezone": "Europe/Berlin",
        },
        4243: {"trigger_type": "interval", "interval_seconds": 300, "timezone": "UTC"},
    }
    for pk, trigger in fields.items():
        PeriodicScan.objects.create(
            pk=pk, tenant=tenant, name=f"old-{pk}", scan_type="test_echo", target="x", **trigger
        )
    PeriodicScan.objects.update(created_at=CREATED)  # auto_now_add: set afterwards
    for pk, (next_run_time, state) in OLD_ROWS.items():
        DjangoJob.objects.create(
            id=f"schedule:{pk}",
            next_run_time=datetime.fromisoformat(next_run_time),
            job_state=base64.b64decode("".join(state)),
        )


@pytest.mark.django_db
@override_settings(SCHEDULING_JOB_SIGNING_KEY=SIGNING_KEY)
def test_job_rows_of_the_flat_layout_load_stay_and_fire():
    submitted = []

    class Collect:
        def submit(self, execution, **kwargs):
            submitted.append(execution)

    service = SchedulerService(install_signal_handlers=False)
    scheduler = hand_driven_loop(service, Collect())
    with time_machine.travel(NOW, tick=False) as clock:
        old_schedules()
        job = service.store.lookup_job("schedule:4242")
        assert job.func is runner.fire
        assert job.next_run_time == datetime(2026, 6, 2, 7, 0, tzinfo=UTC)  # 09:00 in Berlin

        # The fingerprints match: the sync keeps the stored jobs as they are.
        result = service.sync.full()
        assert (result.written, result.unchanged) == (0, 2)

        scheduler._process_jobs()
        clock.move_to(datetime(2026, 6, 2, 7, 0, tzinfo=UTC))
        scheduler._process_jobs()

    # Both fire at the run times the old rows hold.
    handed = [(e.schedule_id, e.scheduled_for) for e in submitted]
    assert handed == [(4243, NOW), (4242, datetime(2026, 6, 2, 7, 0, tzinfo=UTC))]
    assert Execution.objects.filter(schedule_id=4242).count() == 1


# -- the cron day rule (migration 0006) -------------------------------------------------------

BEFORE_CRON_RULE = ("scheduling", "0005_tasks_system_cancel")
CRON_RULE = ("scheduling", "0006_cron_rule_calendar")
BERLIN = ZoneInfo("Europe/Berlin")


@pytest.mark.django_db(transaction=True)
def test_migration_0006_flags_exactly_the_cron_schedules_whose_days_change():
    tenant = make_tenant()
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    try:
        executor.migrate([BEFORE_CRON_RULE])
        executor.loader.build_graph()
        old_schedule = executor.loader.project_state([BEFORE_CRON_RULE]).apps.get_model(
            "scheduling", "Schedule"
        )

        def old_row(**trigger: object) -> int:
            return old_schedule.objects.create(
                tenant_id=tenant.pk, kind="scan", name=f"old {trigger}", timezone="UTC", **trigger
            ).pk

        expected = {
            old_row(trigger_type="cron", cron_expression=expression): flagged
            for expression, flagged in [
                ("0 0 1 * 1", True),  # the 1st or a Monday now; a Monday the 1st before
                ("0 0 1-7 * mon", True),  # the first Monday before; every Monday and 1-7 now
                ("0 0 * * 1", False),
                ("0 0 */2 * 1", False),  # the day field starts with *: cron ANDs too
                ("0 0 1 * *", False),
                ("0 0 last * *", True),  # a token only the old reading accepted
            ]
        }
        expected[old_row(trigger_type="interval", interval_seconds=300)] = False

        executor = MigrationExecutor(connection)
        executor.migrate([CRON_RULE])
        flags = dict(Schedule.objects.values_list("pk", "legacy_day_rule"))
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(latest)
    assert flags == expected


@contextlib.contextmanager
def pickling_as_before(state: dict) -> Iterator[None]:
    """Make ``pickle`` write a ZonedCronTrigger as the previous version did: its class, then
    ``state`` (that version's ``__getstate__``)."""
    with mock.patch.object(ZonedCronTrigger, "__getstate__", lambda self: state):
        yield


def pickled_before(state: dict) -> bytes:
    trigger = ZonedCronTrigger(state["expression"], tz=str(state["tz"]))
    with pickling_as_before(state):
        return pickle.dumps(trigger)


def old_state(expression: str, day_of_week: str) -> dict:
    """The state the previous version pickled: APScheduler's fields, the zone by name."""
    minute, hour, day, month, _dow = expression.split()
    return {
        "expression": expression,
        "offset": 0,
        "fields": {
            "minute": minute,
            "hour": hour,
            "day": day,
            "month": month,
            "day_of_week": day_of_week,  # the old parse_cron named the weekdays
        },
        "tz": "Europe/Berlin",
        "gap_policy": "run_at_next_valid_time",
        "fold_policy": "once",
        "start_date": None,
        "end_date": None,
        "jitter": None,
    }


def walk(trigger, start: datetime, count: int) -> list[datetime]:
    times, fire = [], trigger.get_next_fire_time(None, start)
    while fire is not None and len(times) < count:
        times.append(fire.astimezone(UTC))
        fire = trigger.get_next_fire_time(fire, fire)
    return times


START = datetime(2027, 1, 20, 12, 0, tzinfo=UTC)


def test_a_trigger_pickled_before_the_cron_rule_keeps_its_old_days():
    trigger = pickle.loads(pickled_before(old_state("0 0 1 * 1", "mon")))  # noqa: S301
    assert isinstance(trigger, ZonedCronTrigger)
    assert trigger.legacy is True and cron_meaning_changed("0 0 1 * 1")
    assert "fields" not in trigger.__getstate__()
    old_days = [t.astimezone(BERLIN) for t in walk(trigger, START, 4)]
    # Only the Mondays that are the 1st, at midnight in Berlin.
    assert [t.date() for t in old_days] == [
        date(2027, 2, 1),
        date(2027, 3, 1),
        date(2027, 11, 1),
        date(2028, 5, 1),
    ]
    assert {t.hour for t in old_days} == {0}
    # Pickled again by this version, it stays old; built anew, it follows cron's rule.
    again = pickle.loads(pickle.dumps(trigger))  # noqa: S301 - our own bytes
    assert again.legacy is True
    assert walk(again, START, 4) == walk(trigger, START, 4)
    new = ZonedCronTrigger("0 0 1 * 1", tz="Europe/Berlin")
    assert [t.astimezone(BERLIN).date() for t in walk(new, START, 3)] == [
        date(2027, 1, 25),
        date(2027, 2, 1),
        date(2027, 2, 8),
    ]


def test_a_trigger_pickled_before_the_cron_rule_whose_days_did_not_change_is_as_before():
    for expression, day_of_week in [("0 0 * * 1", "mon"), ("0 0 */2 * 1", "mon")]:
        trigger = pickle.loads(pickled_before(old_state(expression, day_of_week)))  # noqa: S301
        assert trigger.legacy is False
        fresh = ZonedCronTrigger(expression, tz="Europe/Berlin")
        assert walk(trigger, START, 20) == walk(fresh, START, 20)
    # And a row the flat layout really wrote (OLD_ROWS: 0 9 * * 1-5, Berlin).
    _fingerprint, pickled = verify_state(base64.b64decode("".join(OLD_ROWS[4242][1])), SIGNING_KEY)
    stored = pickle.loads(pickled)["trigger"]  # noqa: S301 - the test's own bytes
    assert stored.legacy is False
    fresh = ZonedCronTrigger("0 9 * * 1-5", tz="Europe/Berlin")
    # Across the spring transition of 2027 (28 March).
    start = datetime(2027, 3, 20, tzinfo=UTC)
    assert walk(stored, start, 12) == walk(fresh, start, 12)


@pytest.mark.django_db
def test_a_job_row_pickled_before_the_cron_rule_fires_on_the_old_days_in_the_loop():
    handed = []

    class Collect:
        def submit(self, execution, **kwargs):
            handed.append(execution.scheduled_for)

    service = SchedulerService(install_signal_handlers=False)
    scheduler = hand_driven_loop(service, Collect())
    with time_machine.travel(START, tick=False) as clock:
        schedule = make_scan(
            tenant=make_tenant(),
            scan_type="test_echo",
            target="x",
            trigger_type="cron",
            cron_expression="0 0 1 * 1",
            timezone="Europe/Berlin",
            overlap="allow",
            max_instances=100,
        )
        # The row as the previous version wrote it: its trigger state, its fingerprint.
        first = datetime(2027, 1, 31, 23, 0, tzinfo=UTC)  # Monday 1 February, 00:00 in Berlin
        # The fingerprint the previous version gave the row: what this version gives the row
        # once migration 0006 flagged it (a flagged schedule keeps its fingerprint).
        row = Schedule.objects.get(pk=schedule.pk)
        row.legacy_day_rule = True
        fingerprint = row.trigger_fingerprint()
        job = make_job(scheduler, schedule, START, next_run_time=first, fingerprint=fingerprint)
        with pickling_as_before(old_state("0 0 1 * 1", "mon")):
            blob = sign_state(job.__getstate__(), fingerprint)
        DjangoJob.objects.create(id=job.id, next_run_time=first, job_state=blob)

        def run_until(until: datetime) -> None:
            while True:
                due = DjangoJob.objects.values_list("next_run_time", flat=True).get(id=job.id)
                if due > until:
                    return
                clock.move_to(due)
                scheduler._process_jobs()

        run_until(datetime(2027, 2, 15, tzinfo=UTC))
        # Fired from the old row; written back by this version, still with the old reading.
        assert service.store.lookup_job(job.id).trigger.legacy is True

        # Migration 0006 flags the schedule: after the sync its job still has the old reading.
        Schedule.objects.filter(pk=schedule.pk).update(legacy_day_rule=True)
        result = service.sync.full()
        # Left as it is: its stored next run time (a pending occurrence) is not recomputed.
        assert (result.errors, result.written, result.unchanged) == ({}, 0, 1)
        assert service.store.lookup_job(job.id).trigger.legacy is True
        run_until(datetime(2027, 11, 15, tzinfo=UTC))
    assert [when.astimezone(BERLIN).date() for when in handed] == [
        date(2027, 2, 1),
        date(2027, 3, 1),
        date(2027, 11, 1),
    ]
    assert Execution.objects.filter(schedule=schedule).count() == 3
