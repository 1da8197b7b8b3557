"""A real ``runscheduler`` process fires ``L``, ``nL``, ``n#k`` and calendar schedules on their day.

The process is started through a launcher that puts its clock (``time_machine``, ticking) ten
seconds before 09:00 in Berlin on Friday 30 April 2027: the last day of April, its last Friday
and its fifth Friday, and the second Friday of a fortnightly series from 16 April. The schedules
are created in the test database before it starts; the test waits (bounded, polling the
database) for the occurrences that must fire, then gives the process a few more seconds and
checks that none of the others fired. The process is killed in ``finally``.
"""

from __future__ import annotations

import subprocess
import time
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from scheduling.models import Execution, Schedule, Status
from tests.factories import make_scan, make_tenant
from tests.scheduling.processes import start_scheduler, stop, wait_for

pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
BERLIN = ZoneInfo("Europe/Berlin")
FIRE = datetime(2027, 4, 30, 7, 0, tzinfo=UTC)  # 09:00 CEST
LEAD = timedelta(seconds=10)

# Django is set up before the clock moves (imports are the slow part of starting), so the
# scheduler itself starts about LEAD before the occurrence, whatever the machine's speed.
LAUNCHER = """
import sys
from datetime import datetime

import django

django.setup()

import time_machine
from django.core.management import execute_from_command_line

time_machine.travel(datetime.fromisoformat(sys.argv[1]), tick=True).start()
execute_from_command_line(["manage.py", "runscheduler", *sys.argv[2:]])
"""


def start_traveling_scheduler(destination: datetime, *args: str, log: Path) -> subprocess.Popen:
    return start_scheduler(*args, log=log, launcher=["-c", LAUNCHER, destination.isoformat()])


def cron(tenant, expression: str) -> Schedule:
    return make_scan(
        tenant=tenant,
        name=f"cron {expression}",
        scan_type="test_echo",
        target="x",
        trigger_type="cron",
        cron_expression=expression,
        timezone="Europe/Berlin",
    )


def fortnightly(tenant, first_friday: datetime, weekdays: str) -> Schedule:
    return make_scan(
        tenant=tenant,
        name=f"every 2 weeks from {first_friday:%d %B}",
        scan_type="test_echo",
        target="x",
        trigger_type="calendar",
        calendar_every=2,
        calendar_unit="week",
        calendar_weekdays=weekdays,
        calendar_time=dtime(9, 0),
        start_at=first_friday,
        timezone="Europe/Berlin",
    )


def test_runscheduler_fires_last_day_last_friday_fifth_friday_and_the_fortnight(tmp_path):
    tenant = make_tenant(timezone="Europe/Berlin")
    must_fire = [
        cron(tenant, "0 9 L * *"),  # the last day of the month
        cron(tenant, "0 9 * * 5L"),  # the last Friday
        cron(tenant, "0 9 * * 5#5"),  # the fifth Friday
        # Every 2 weeks on Friday from Friday 16 April: 16 and 30 April.
        fortnightly(tenant, datetime(2027, 4, 16, tzinfo=BERLIN), "fri"),
    ]
    must_not = {
        # Two days before the last: 28 April, then 29 May.
        cron(tenant, "0 9 L-2 * *"): datetime(2027, 5, 29, 7, 0, tzinfo=UTC),
        # The 1st or a Monday: the next is Saturday 1 May.
        cron(tenant, "0 9 1 * 1"): datetime(2027, 5, 1, 7, 0, tzinfo=UTC),
        # Every 2 weeks from Friday 23 April (its weekday): 23 April, then 7 May.
        fortnightly(tenant, datetime(2027, 4, 23, tzinfo=BERLIN), ""): datetime(
            2027, 5, 7, 7, 0, tzinfo=UTC
        ),
    }
    assert not Execution.objects.exists()
    log = tmp_path / "scheduler.log"
    # --max-seconds bounds the process even if the test dies before its finally.
    process = start_traveling_scheduler(FIRE - LEAD, "--max-seconds", "40", log=log)
    try:

        def fired() -> bool:
            return Execution.objects.filter(
                schedule__in=must_fire, scheduled_for=FIRE, status=Status.SUCCEEDED
            ).count() == len(must_fire)

        assert wait_for(fired, timeout=25), (
            list(Execution.objects.values_list("schedule__name", "scheduled_for", "status")),
            log.read_text()[-3000:],
        )
        # Meanwhile the other schedules had their chance: give the process a few more seconds.
        time.sleep(3)
        assert process.poll() is None, log.read_text()[-3000:]
    finally:
        stop(process)

    rows = list(
        Execution.objects.values_list("schedule_id", "scheduled_for", "attempt", "started_at")
    )
    # Exactly one execution per schedule that must fire, at 09:00 in Berlin, and nothing else.
    assert sorted((pk, when, attempt) for pk, when, attempt, _s in rows) == sorted(
        (schedule.pk, FIRE, 1) for schedule in must_fire
    ), log.read_text()[-3000:]
    # The process ran on the travelled clock: it started them on 30 April 2027, at their time.
    assert {started >= FIRE for *_x, started in rows} == {True}
    assert {started.date() for *_x, started in rows} == {FIRE.date()}
    # The full sync at start gave the others their next run, not this morning's.
    for schedule, following in must_not.items():
        schedule.refresh_from_db()
        assert schedule.next_run_at == following, schedule.name
        assert schedule.last_run_at is None, schedule.name
