"""``scheduling status --check`` (issue 18): a probe that exits 1 with the reason when unhealthy."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from scheduling.checks import check_scheduler
from scheduling.models import SchedulerLease
from tests.factories import make_membership, make_user
from tests.scheduling.cli.conftest import cli

pytestmark = pytest.mark.django_db


def lease(**fields) -> SchedulerLease:
    now = timezone.now()
    values = {
        "name": "default",
        "holder": "host:1:abc",
        "renewed_at": now - timedelta(seconds=2),
        "expires_at": now + timedelta(seconds=13),
    }
    values.update(fields)
    return SchedulerLease.objects.create(**values)


def test_without_any_scheduler_it_exits_1_with_the_reason(db):
    result = cli("status", "--check")
    assert (result.code, result.out) == (1, "")
    assert result.err == "Scheduler not healthy: no scheduler has ever run against this database."


def test_a_live_leader_exits_0_with_one_line(db):
    lease()
    result = cli("status", "--check")
    assert result.code == 0, result.err
    assert result.out.startswith("Scheduler healthy: leader host:1:abc, heartbeat 2.")
    assert len(result.out.splitlines()) == 1


def test_a_stale_heartbeat_fails_once_it_is_older_than_the_setting(db, settings):
    settings.SCHEDULING_HEALTH_MAX_HEARTBEAT_AGE = 30
    now = timezone.now()
    lease(renewed_at=now, expires_at=now + timedelta(hours=1))
    with time_machine.travel(now + timedelta(seconds=29), tick=False):
        assert cli("status", "--check").code == 0
    with time_machine.travel(now + timedelta(seconds=45), tick=False):
        result = cli("status", "--check")
    assert result.code == 1
    assert result.err == (
        "Scheduler not healthy: the leader's heartbeat is 45 s old "
        "(SCHEDULING_HEALTH_MAX_HEARTBEAT_AGE is 30 s)."
    )


def test_an_expired_or_released_lease_has_no_leader(db):
    now = timezone.now()
    lease(renewed_at=now - timedelta(seconds=20), expires_at=now - timedelta(seconds=5))
    result = cli("status", "--check")
    assert (result.code, result.err) == (
        1,
        "Scheduler not healthy: no scheduler holds the lease.",
    )


def test_json_prints_the_status_and_still_exits_1(db):
    result = cli("status", "--check", "--format", "json")
    assert result.code == 1
    assert result.data["healthy"] is False
    assert result.data["problem"] == "no scheduler has ever run against this database"


def test_a_tenant_member_sees_health_but_not_the_host(world):
    lease()
    make_membership(user=make_user(username="vera"), tenant=world.acme, role="viewer")
    result = cli("status", "--check", "--user", "vera")
    assert result.code == 0
    assert "host" not in result.out.replace("heartbeat", "")


def test_the_check_and_the_system_check_give_the_same_reason(db):
    lease(expires_at=timezone.now() - timedelta(seconds=1))
    [warning] = check_scheduler()
    reason = cli("status", "--check").err.removeprefix("Scheduler not healthy: ").rstrip(".")
    assert reason in warning.msg


def test_without_check_an_unhealthy_scheduler_is_shown_with_the_reason_and_exits_0(db):
    result = cli("status")
    assert result.code == 0
    assert "NOT healthy" in result.out
    assert "no scheduler has ever run against this database" in result.out
