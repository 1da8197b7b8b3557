"""Settings of the processes the scale tests start: the test settings, Celery and quick clocks.

The database and the broker come from ``DATABASE_URL`` and ``CELERY_BROKER_URL``.
"""

import os

from tests.settings import *  # noqa: F403

SCHEDULING_EXECUTOR = os.environ.get("SCHEDULING_EXECUTOR", "celery")
SCHEDULING_LEASE_RENEW_INTERVAL = 1.0
SCHEDULING_CELERY_HEARTBEAT_TTL = float(os.environ.get("SCALE_HEARTBEAT_TTL", "4"))
SCHEDULING_CELERY_HARD_TIMEOUT_GRACE = 2.0
SCHEDULING_CELERY_REQUEUE_AFTER = float(os.environ.get("SCALE_REQUEUE_AFTER", "30"))
SCHEDULING_FULL_SYNC_INTERVAL = 30.0
SCHEDULING_MAX_SCHEDULES_PER_TENANT = 10_000

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(process)d %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "scheduling": {"handlers": ["console"], "level": "INFO"},
        # One line per execution is too much at a hundred a second.
        "scheduling.runner": {"level": "WARNING"},
    },
}
