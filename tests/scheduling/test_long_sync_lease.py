"""A full sync that outlasts the lease keeps it, chunk by chunk, and stops when it is taken.

At a million schedules a full sync lasts minutes, far longer than the lease's TTL: left to
expire meanwhile, the lease fenced every fire, and a standby took over only to outlast the
lease with its own first sync.
"""

from __future__ import annotations

import pytest
from django_apscheduler.models import DjangoJob

from scheduling import signals
from scheduling.models import SchedulerLease
from scheduling.scheduler import sync as sync_module
from scheduling.scheduler.lease import Lease, LeaseLost
from scheduling.scheduler.service import FULL_SYNC_SHARE, SchedulerService
from scheduling.scheduler.sync import JobSync
from tests.factories import make_scan, make_tenant

pytestmark = pytest.mark.django_db(transaction=True)

SCHEDULES = 5


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    monkeypatch.setattr(sync_module, "FULL_SYNC_CHUNK", 2)  # 5 schedules: 3 chunks


@pytest.fixture
def scans():
    tenant = make_tenant()
    return [
        make_scan(tenant=tenant, name=f"s{i}", scan_type="test_echo", target="x")
        for i in range(SCHEDULES)
    ]


def renewals(monkeypatch, *, taken_at: int | None = None) -> list[str]:
    """Record each renewal's holder; at the ``taken_at``-th, another scheduler holds the row."""
    calls: list[str] = []
    original = Lease.renew

    def renew(lease: Lease) -> bool:
        calls.append(lease.holder)
        if len(calls) == taken_at:
            SchedulerLease.objects.filter(name=lease.name).update(holder="another:1:x")
        return original(lease)

    monkeypatch.setattr(Lease, "renew", renew)
    return calls


def test_every_chunk_is_followed_by_the_callback(scans, job_store):
    seen: list[int] = []
    sync = JobSync(job_store._scheduler, job_store, between_chunks=lambda: seen.append(1))
    sync.full()

    assert len(seen) >= 3  # one per chunk of schedules (and per page of orphan ids)
    assert DjangoJob.objects.count() == SCHEDULES


def test_a_leader_renews_its_lease_between_the_chunks_of_its_first_sync(scans, monkeypatch):
    calls = renewals(monkeypatch)
    service = SchedulerService(install_signal_handlers=False, renew_interval=0.0, max_seconds=3)
    assert service.lease.acquire()
    try:
        service._become_leader()
        assert service.leader and service.scheduler.running
        # Once as it became leader, then after each of the three chunks at least.
        assert len(calls) >= 4
        assert DjangoJob.objects.count() == SCHEDULES
    finally:
        service._lose_leadership("the test ends")


def test_a_lease_taken_during_the_first_sync_stops_it_and_the_scheduler_steps_down(
    scans, monkeypatch
):
    calls = renewals(monkeypatch, taken_at=3)  # after the first chunk's renewal
    changes: list[bool] = []

    def record(sender, holder, leader, **kwargs):
        changes.append(leader)

    signals.leadership_changed.connect(record)
    service = SchedulerService(install_signal_handlers=False, renew_interval=0.0, max_seconds=2)
    try:
        # The other holder's lease does not expire within the run: this one stays standby.
        assert service.run() == 0
    finally:
        signals.leadership_changed.disconnect(record)

    # Never announced as the leader (its first sync did not finish); announced as not.
    assert changes == [False]
    assert not service.leader and service.scheduler is None
    assert len(calls) == 3  # no renewal after the one that failed
    # The sync stopped where the lease was lost: not every schedule got its job.
    assert DjangoJob.objects.count() < SCHEDULES
    assert SchedulerLease.objects.get(name=service.lease.name).holder == "another:1:x"


def test_renewing_a_lease_another_scheduler_holds_raises(scans):
    service = SchedulerService(install_signal_handlers=False, renew_interval=0.0)
    assert service.lease.acquire()
    service.leader = True
    SchedulerLease.objects.filter(name=service.lease.name).update(holder="another:1:x")
    with pytest.raises(LeaseLost):
        service._renew_if_due()


@pytest.mark.parametrize("took", [0.0, 2.0, 30.0, 75.0, 600.0])
def test_periodic_full_syncs_take_at_most_their_share_of_the_time(took):
    service = SchedulerService(install_signal_handlers=False, full_sync_interval=300)
    gap = service._next_full_sync(1000.0, took) - 1000.0
    assert gap >= 300  # never sooner than the setting says
    assert took / (took + gap) <= FULL_SYNC_SHARE + 1e-9
    if took <= 30:
        assert gap == 300  # a sync that fits its share keeps the interval
