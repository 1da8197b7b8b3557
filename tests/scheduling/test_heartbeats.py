"""A queue worker (``executors.heartbeats.run_in_worker``) starts each execution at its time."""

from __future__ import annotations

import time
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.utils import timezone

from scheduling import runner
from scheduling.conf import conf
from scheduling.executors import heartbeats
from scheduling.models import Status
from tests.factories import make_scan, make_tenant


@pytest.fixture
def slept(monkeypatch):
    """The seconds ``run_in_worker`` sleeps, recorded instead of slept."""
    calls: list[float] = []
    monkeypatch.setattr(
        heartbeats, "time", SimpleNamespace(sleep=calls.append, monotonic=time.monotonic)
    )
    yield calls
    heartbeats.heartbeat.stop()  # this test process played a worker process


def queued(*, due_in: float):
    scan = make_scan(tenant=make_tenant(), scan_type="test_echo", target="x")
    when = timezone.now() + timedelta(seconds=due_in)
    execution = runner.claim(scan, when, claimed_by="leader:1:x")
    assert execution is not None
    return execution


@pytest.mark.django_db(transaction=True)
def test_a_due_execution_starts_at_once_without_a_sleep(slept):
    execution = queued(due_in=-5)

    heartbeats.run_in_worker(execution.pk, timeout=None, timeout_detail="")

    execution.refresh_from_db()
    assert execution.status == Status.SUCCEEDED
    assert slept == []


@pytest.mark.django_db(transaction=True)
def test_an_execution_handed_over_early_waits_for_its_time_at_most_claim_ahead(slept):
    execution = queued(due_in=60)

    heartbeats.run_in_worker(execution.pk, timeout=None, timeout_detail="")

    execution.refresh_from_db()
    assert execution.status == Status.SUCCEEDED
    assert slept == [conf.CLAIM_AHEAD]
