"""Settings of the processes that the ``django_tasks`` executor's end-to-end tests start.

The test settings, with the ``django_tasks`` executor on django-tasks-db's ``DatabaseBackend``
(queue ``scheduling``, worked by ``manage.py db_worker --queue-name scheduling``) and quick
clocks. The database is the test database (``SCHEDULING_DB_PATH``, as for the other process
tests); the knobs that differ between tests come from the environment.
"""

import os

import django

from tests.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "django_tasks_db"]  # noqa: F405
if django.VERSION < (6, 0):
    # The backport (Django 6 has django.tasks built in): its checks and log lines.
    INSTALLED_APPS.append("django_tasks")

TASKS = {
    "default": {
        "BACKEND": "django_tasks_db.DatabaseBackend",
        "QUEUES": ["default", "scheduling"],
    }
}

SCHEDULING_EXECUTOR = "django_tasks"
SCHEDULING_TASKS_QUEUE = "scheduling"
SCHEDULING_TASKS_REQUEUE_AFTER = float(os.environ.get("TASKS_REQUEUE_AFTER", "300"))
# The workers' heartbeat (shared with the celery executor's workers): a killed worker's
# executions are interrupted about this long after its last beat.
SCHEDULING_CELERY_HEARTBEAT_TTL = float(os.environ.get("TASKS_HEARTBEAT_TTL", "2"))
SCHEDULING_LEASE_RENEW_INTERVAL = 1.0

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(process)d %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "scheduling": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "django_tasks_db": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}
