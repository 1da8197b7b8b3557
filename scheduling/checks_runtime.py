"""Checks of the running system rather than of the code: is a scheduler alive?

``check_scheduler`` is a deployment check (``manage.py check --deploy``): it reads the lease
from the database, and a development machine or a CI job without a running scheduler must not
be warned by every ``manage.py`` command. Run ``check --deploy`` after a deployment, once the
``runscheduler`` process should be up, to catch a scheduler that never started or has died.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from django.core.checks import CheckMessage, Warning
from django.core.checks import register as register_check
from django.db import DatabaseError

from .conf import conf

if TYPE_CHECKING:
    from django.apps import AppConfig


def check_scheduler(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: object
) -> list[CheckMessage]:
    """Warn (scheduling.W002) when no scheduler holds the lease with a fresh heartbeat."""
    from .status import get_lease, lease_health

    try:
        lease = get_lease()
    except DatabaseError as exc:
        return [
            Warning(
                f"Could not read the scheduler lease from the database: {exc}.",
                hint="Run `manage.py migrate` and check the database settings.",
                id="scheduling.W003",
            )
        ]
    health = lease_health(lease)
    if health["healthy"]:
        return []
    if lease is None:
        detail = "no scheduler has ever run against this database"
    elif not health["leader_active"]:
        detail = "no scheduler holds the lease"
    else:
        detail = (
            f"the leader's heartbeat is {health['heartbeat_age_seconds']:.0f} s old "
            f"(SCHEDULING_HEALTH_MAX_HEARTBEAT_AGE is {health['max_heartbeat_age_seconds']:g} s)"
        )
    return [
        Warning(
            f"No scheduler is running: {detail} (lease {conf.LEASE_NAME!r}).",
            hint="Start `python manage.py runscheduler` (one or more replicas) and keep it "
            "running under a process supervisor; schedules do not fire without it.",
            id="scheduling.W002",
        )
    ]


def register() -> None:
    """Register the runtime checks as deployment checks (called from ``AppConfig.ready``)."""
    # Not tagged "database": Django runs those only with --database, and this check exists
    # to be run by a plain `check --deploy`.
    register_check(check_scheduler, "scheduling", deploy=True)
