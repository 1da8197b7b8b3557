"""The lease's job count follows the schedules within a sync pass, not at the next full sync."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from scheduling.models import Schedule, SchedulerLease
from scheduling.scheduler.service import SchedulerService
from tests.factories import make_scan, make_tenant, make_user
from tests.scheduling.loops import hand_driven_loop

pytestmark = pytest.mark.django_db


class Hold:
    def submit(self, execution, **kwargs):
        pass


@pytest.fixture
def service():
    service = SchedulerService(install_signal_handlers=False)
    hand_driven_loop(service, Hold())
    now = timezone.now()
    SchedulerLease.objects.create(
        name=service.lease.name,
        holder=service.identity,
        acquired_at=now,
        renewed_at=now,
        expires_at=now + timedelta(minutes=5),
    )
    return service


def job_count(service):
    return SchedulerLease.objects.get(name=service.lease.name).job_count


def echo_scan(tenant, **fields):
    return make_scan(tenant=tenant, scan_type="test_echo", target="x", **fields)


def test_added_and_disabled_schedules_count_after_the_next_incremental_pass(service):
    tenant = make_tenant()
    first = echo_scan(tenant)
    service._full_sync()
    assert job_count(service) == 1

    echo_scan(tenant)
    echo_scan(tenant)
    service._incremental_sync()
    assert job_count(service) == 3

    Schedule.objects.filter(pk=first.pk).update(enabled=False, updated_at=timezone.now())
    service._incremental_sync()
    assert job_count(service) == 2


def test_a_pass_between_polls_that_changed_jobs_records_the_count(service):
    tenant = make_tenant()
    echo_scan(tenant)
    service._full_sync()

    echo_scan(tenant)
    # The cheap pass after a commit (``record=False``) changed the store: it says so too.
    service._incremental_sync(record=False)

    assert job_count(service) == 2


def test_an_idle_pass_does_not_count_the_jobs(service):
    echo_scan(make_tenant())
    service._full_sync()

    with CaptureQueriesContext(connection) as captured:
        service._incremental_sync()

    assert not [q for q in captured if "django_apscheduler_djangojob" in q["sql"].lower()]
    assert job_count(service) == 1


def test_the_dashboard_shows_a_new_schedules_job_before_the_full_sync(client, service):
    tenant = make_tenant()
    echo_scan(tenant)
    service._full_sync()
    echo_scan(tenant, name="added a moment ago")
    service._incremental_sync()
    client.force_login(make_user(is_staff=True, is_superuser=True))

    response = client.get(reverse("admin:scheduling_dashboard"))

    assert response.context["health"]["job_count"] == 2
