"""The leader lease under clock skew between replicas.

The lease row's times, and every comparison with them, are the database's clock: a replica
whose own clock is minutes off (``time_machine`` moves this process's wall clock, not the
database's) must neither take a live lease nor make a lease it holds look longer or shorter
than its TTL to the others.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from django.db import connection
from django.db.models.functions import Now
from django.utils import timezone

from scheduling.models import Execution, SchedulerLease
from scheduling.scheduler.lease import Lease
from tests.factories import make_scan, make_tenant
from tests.scheduling.processes import start_scheduler, stop, wait_for

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]

TTL = 10
SKEWS = [timedelta(minutes=5), timedelta(minutes=-5)]


def database_now() -> datetime:
    """Return the database server's current time."""
    return SchedulerLease.objects.annotate(now=Now()).values_list("now", flat=True).get()


def lease_row(name: str = "g") -> SchedulerLease:
    return SchedulerLease.objects.get(name=name)


def expire_on_the_database_clock(name: str = "g") -> None:
    """The holder stopped renewing and its TTL has passed, by the database's clock."""
    SchedulerLease.objects.filter(name=name).update(expires_at=Now() - timedelta(seconds=1))


def skewed(by: timedelta) -> time_machine.travel:
    """This process's wall clock ``by`` off (and running), as on a misconfigured replica."""
    return time_machine.travel(timezone.now() + by, tick=True)


@pytest.mark.parametrize("skew", SKEWS, ids=["ahead", "behind"])
def test_a_replica_whose_clock_is_minutes_off_never_takes_a_live_lease(skew):
    leader = Lease(name="g", holder="leader", ttl=TTL)
    replica = Lease(name="g", holder="replica", ttl=TTL)
    assert leader.acquire()

    with skewed(skew):
        assert not replica.acquire()
        assert not replica.valid()

    assert leader.renew() and leader.valid()
    assert lease_row().holder == "leader"


@pytest.mark.parametrize("skew", SKEWS, ids=["ahead", "behind"])
def test_a_leader_whose_clock_is_minutes_off_holds_the_lease_for_its_ttl_on_the_database_clock(
    skew,
):
    leader = Lease(name="g", holder="leader", ttl=TTL)
    replica = Lease(name="g", holder="replica", ttl=TTL)
    with skewed(skew):
        assert leader.acquire()
        assert leader.renew()
    remaining = lease_row().expires_at - database_now()
    # Neither already expired for the others (clock behind) nor held minutes too long after
    # the leader dies (clock ahead).
    assert timedelta(seconds=TTL - 5) < remaining <= timedelta(seconds=TTL)
    assert not replica.acquire()
    assert lease_row().holder == "leader"


@pytest.mark.parametrize("skew", SKEWS, ids=["ahead", "behind"])
def test_a_skewed_leader_that_failed_to_renew_in_time_loses_the_lease_and_stops(skew):
    leader = Lease(name="g", holder="leader", ttl=TTL)
    replica = Lease(name="g", holder="replica", ttl=TTL)
    with skewed(skew):
        assert leader.acquire()
    expire_on_the_database_clock()  # e.g. the leader stalled past its TTL

    assert replica.acquire() and replica.valid()

    with skewed(skew):
        assert not leader.renew()
        assert not leader.valid()  # fenced: it fires nothing more
        assert not leader.acquire()  # and it cannot take the live lease back
    assert lease_row().holder == "replica"


def test_a_released_lease_is_free_at_once_for_a_replica_whose_clock_is_behind():
    leader = Lease(name="g", holder="leader", ttl=TTL)
    assert leader.acquire()
    leader.release()
    with skewed(-SKEWS[0]):
        assert Lease(name="g", holder="replica", ttl=TTL).acquire()


# A runscheduler whose wall clock is ``sys.argv[1]`` minutes off (the database's is not).
SKEWED_RUNSCHEDULER = """
import sys
from datetime import UTC, datetime, timedelta

import time_machine
from django.core.management import execute_from_command_line

skew = timedelta(minutes=float(sys.argv[1]))
with time_machine.travel(datetime.now(UTC) + skew, tick=True):
    execute_from_command_line(["manage.py", "runscheduler", *sys.argv[2:]])
"""


@pytest.mark.process
@pytest.mark.django_db(transaction=True)
def test_a_runscheduler_whose_clock_is_minutes_ahead_stays_standby(tmp_path):
    ticker = make_scan(tenant=make_tenant(), scan_type="test_echo", target="x", interval_seconds=1)
    leader_log, skewed_log = tmp_path / "leader.log", tmp_path / "skewed.log"
    leader = start_scheduler("--lease-ttl", "3", "--max-seconds", "30", log=leader_log)
    skewed = None
    try:
        assert wait_for(lambda: Execution.objects.filter(schedule=ticker).exists(), 30), (
            leader_log.read_text()[-3000:]
        )
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "SCHEDULING_DB_PATH": connection.settings_dict["NAME"],
            "PYTHONUNBUFFERED": "1",
        }
        with skewed_log.open("ab") as handle:
            skewed = subprocess.Popen(
                [sys.executable, "-c", SKEWED_RUNSCHEDULER, "5"]
                + ["-v", "2", "--lease-ttl", "3", "--max-seconds", "8"],
                cwd=ROOT,
                env=env,
                stdout=handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        assert skewed.wait(timeout=60) == 0, skewed_log.read_text()[-3000:]
        assert leader.poll() is None, leader_log.read_text()[-3000:]
        before = Execution.objects.filter(schedule=ticker).count()
        # The leader kept firing throughout.
        assert wait_for(
            lambda: Execution.objects.filter(schedule=ticker).count() >= before + 2, 15
        ), leader_log.read_text()[-3000:]
    finally:
        stop(leader)
        if skewed is not None:
            stop(skewed)
    assert "is the leader" not in skewed_log.read_text()
    assert "lost the lease" not in leader_log.read_text()
    claimers = set(Execution.objects.filter(schedule=ticker).values_list("claimed_by", flat=True))
    assert len(claimers) == 1
    assert f":{leader.pid}:" in claimers.pop()
