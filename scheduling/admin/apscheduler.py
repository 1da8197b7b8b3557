"""Keep django-apscheduler's own admins off the site.

django-apscheduler registers ``DjangoJobAdmin`` and ``DjangoJobExecutionAdmin``. The first
unpickles ``job_state`` with a stock ``DjangoJobStore`` (no signature check: a row written
straight into the table runs code in the web process) and its "Run the selected django jobs"
action runs jobs inside the web request. Our rows are signed, so on a genuine row the action
is a 500 anyway. The app's own admins show what matters instead: each schedule's next run
(``Schedule.next_run_at``, kept in step with the job store) and every execution.
``scheduling.W007`` warns if the two come back.
"""

from __future__ import annotations

from django.apps import apps
from django.contrib import admin

APSCHEDULER_MODELS = ("django_apscheduler.DjangoJob", "django_apscheduler.DjangoJobExecution")


def unregister_apscheduler_admins(site: admin.AdminSite = admin.site) -> None:
    """Unregister django-apscheduler's admins from ``site``, whatever the app order."""
    if not apps.is_installed("django_apscheduler"):
        return
    # Import its admin module now: it registers its admins once, on import. Listed after
    # this app in INSTALLED_APPS, autodiscover would otherwise register them later.
    import django_apscheduler.admin  # noqa: F401

    for label in APSCHEDULER_MODELS:
        model = apps.get_model(label)
        if site.is_registered(model):
            site.unregister(model)
