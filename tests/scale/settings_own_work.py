"""Settings of the processes that ``test_own_work.py`` starts: the scale settings, plus
django-tasks-db, the executor and one declared schedule from the environment.

``SCHEDULING_EXECUTOR`` names the executor (``thread``, ``process``, ``celery`` or
``django_tasks``); ``OWN_WORK_DECLARED`` holds ``SCHEDULING_DECLARED_SCHEDULES`` as JSON (none
when unset). The database and the broker come from ``DATABASE_URL`` and ``CELERY_BROKER_URL``
(``tests.scale.harness.Cluster``).
"""

import importlib.util
import json
import os

import django

from tests.scale.settings import *  # noqa: F403

if importlib.util.find_spec("django_tasks_db") is not None:
    # Without it only the django_tasks executor's test cannot run (it says so); the others can.
    INSTALLED_APPS = [*INSTALLED_APPS, "django_tasks_db"]  # noqa: F405
    if django.VERSION < (6, 0):
        INSTALLED_APPS.append("django_tasks")  # the backport's checks and log lines
    TASKS = {
        "default": {
            "BACKEND": "django_tasks_db.DatabaseBackend",
            "QUEUES": ["default", "scheduling"],
        }
    }
    SCHEDULING_TASKS_QUEUE = "scheduling"

SCHEDULING_DECLARED_SCHEDULES = json.loads(os.environ.get("OWN_WORK_DECLARED") or "[]")

# One line per execution: the logs of a failed test show what ran where.
LOGGING = {
    **LOGGING,  # noqa: F405
    "loggers": {
        **LOGGING["loggers"],  # noqa: F405
        "scheduling.runner": {"level": "INFO"},
        "django_tasks_db": {"handlers": ["console"], "level": "INFO"},
    },
}
