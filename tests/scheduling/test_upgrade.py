"""An upgrade keeps the job store: rows written before the package move still load and fire.

``OLD_ROWS`` are job-store rows (next run time, signed job state) as the full sync of the
flat layout wrote them (commit befabca, whose ``sync`` and ``jobstore`` were top-level
modules) for the two schedules ``old_schedules`` builds, at ``NOW``, with ``SIGNING_KEY``. The
pickled state names the job function ``scheduling.runner:fire`` and the trigger classes by
their import paths; those paths must keep resolving.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
import time_machine
from django.test import override_settings
from django_apscheduler.models import DjangoJob

from scheduling import runner
from scheduling.models import Execution, PeriodicScan
from scheduling.scheduler.service import SchedulerService
from tests.factories import make_tenant
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
