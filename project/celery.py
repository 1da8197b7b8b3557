"""The demo project's Celery app, for the ``celery`` executor (see docs/deployment.md).

Run workers with ``celery -A project worker -Q scheduling``. Settings come from Django's
``CELERY_*`` settings; ``scheduling.tasks`` is found by autodiscovery.
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

app = Celery("project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
