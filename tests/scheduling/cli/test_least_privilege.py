"""Host names through the CLI are for the tenant's admins (issue 17, item 9)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from scheduling.models import SchedulerLease
from tests.factories import make_execution, make_membership, make_user
from tests.scheduling.cli.conftest import cli

pytestmark = pytest.mark.django_db

TRACEBACK = 'Traceback (most recent call last):\n  File "/srv/app/secret_module.py", line 3'
WORKER = "scan-host-7:4242"


@pytest.fixture
def failed(world):
    return make_execution(
        schedule=world.scan,
        status="failed",
        error="connection refused",
        traceback=TRACEBACK,
        worker=WORKER,
    )


def member(world, role, username):
    make_membership(user=make_user(username=username), tenant=world.acme, role=role)
    return username


def outputs(*args):
    """The table and the JSON of a read verb, each as text."""
    table = cli(*args)
    data = cli(*args, "--format", "json")
    assert (table.code, data.code) == (0, 0), (table.err, data.err)
    return table.out + data.out, data.data


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_members_below_admin_see_the_error_but_no_worker_or_traceback(world, failed, role):
    user = member(world, role, f"m-{role}")
    text, history = outputs("history", "--user", user)
    [row] = history["executions"]
    assert (row["error"], row["worker"]) == ("connection refused", None)
    shown, show = outputs("show", str(world.scan.pk), "--user", user)
    assert show["recent_executions"][0]["worker"] is None
    for secret in (WORKER, "scan-host", "secret_module", "/srv/app"):
        assert secret not in text + shown


@pytest.mark.parametrize("role", ["admin", "owner"])
def test_admins_and_owners_see_the_worker(world, failed, role):
    user = member(world, role, f"m-{role}")
    _text, history = outputs("history", "--user", user)
    assert history["executions"][0]["worker"] == WORKER
    _text, show = outputs("show", str(world.scan.pk), "--user", user)
    assert show["recent_executions"][0]["worker"] == WORKER


def test_without_user_the_shell_sees_the_worker(world, failed):
    _text, history = outputs("history")
    assert history["executions"][0]["worker"] == WORKER


def test_a_viewer_probing_another_tenants_schedule_is_not_found(world, failed):
    user = make_user(username="outsider")
    make_membership(user=user, tenant=world.umbrella, role="viewer")
    result = cli("show", str(world.scan.pk), "--user", "outsider")
    assert (result.code, result.err) == (2, f"Schedule {world.scan.pk} not found.")
    assert cli("history", "--user", "outsider", "--format", "json").data == {"executions": []}


@pytest.mark.parametrize("role", ["viewer", "admin", "owner"])
def test_the_lease_holder_is_only_for_who_sees_every_tenant(world, role):
    now = timezone.now()
    SchedulerLease.objects.create(
        name="default",
        holder="lease-host-9:77:ab12",
        renewed_at=now,
        expires_at=now + timedelta(seconds=10),
    )
    user = member(world, role, f"m-{role}")
    text, data = outputs("status", "--user", user)
    assert data["leader"] is None and data["leader_active"] is True
    assert "lease-host" not in text
    superuser = make_user(username="root", is_superuser=True)
    assert cli("status", "--user", superuser.username, "--format", "json").data["leader"] == (
        "lease-host-9:77:ab12"
    )
