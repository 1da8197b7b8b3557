"""django-apscheduler's own admins stay off the site (they unpickle unsigned job state and run
jobs in the web request); scheduling.W007 warns if they come back."""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib import admin
from django.core.management import call_command
from django_apscheduler.models import DjangoJob, DjangoJobExecution

from scheduling.admin.apscheduler import unregister_apscheduler_admins
from scheduling.checks import check_apscheduler_admin

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.django_db
def test_the_job_admin_and_its_run_action_are_gone(superuser_client, tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    DjangoJob.objects.create(id="evil", next_run_time=None, job_state=pickle.dumps(Exploit()))
    for url in (
        "/admin/django_apscheduler/djangojob/",
        "/admin/django_apscheduler/djangojobexecution/",
        "/admin/django_apscheduler/",
    ):
        assert superuser_client.get(url).status_code == 404, url
    response = superuser_client.post(
        "/admin/django_apscheduler/djangojob/",
        {"action": "run_selected_jobs", "_selected_action": ["evil"]},
    )
    assert response.status_code == 404
    assert not marker.exists()
    index = superuser_client.get("/admin/")
    assert b"django_apscheduler" not in index.content


def test_no_warning_while_they_are_unregistered():
    assert check_apscheduler_admin() == []


@pytest.mark.parametrize("model", [DjangoJob, DjangoJobExecution])
def test_registering_one_again_warns(model):
    admin.site.register(model)
    try:
        (warning,) = check_apscheduler_admin()
        assert warning.id == "scheduling.W007"
        assert model._meta.label in warning.msg
        assert "web request" in warning.hint
        err = io.StringIO()
        call_command("check", stdout=io.StringIO(), stderr=err)
        assert "scheduling.W007" in err.getvalue()
    finally:
        admin.site.unregister(model)


def test_unregister_leaves_a_site_without_them_alone():
    site = admin.AdminSite(name="other")
    unregister_apscheduler_admins(site)  # nothing registered: no NotRegistered
    site.register(DjangoJob)
    unregister_apscheduler_admins(site)
    assert not site.is_registered(DjangoJob)


APP_ORDER = """
import django
from django.conf import settings
import tests.settings as base

apps = [a for a in base.INSTALLED_APPS if a != "django_apscheduler"]
apps.insert({position}, "django_apscheduler")
values = {{k: getattr(base, k) for k in dir(base) if k.isupper()}}
values["INSTALLED_APPS"] = apps
settings.configure(**values)
django.setup()
from django.contrib import admin
from django_apscheduler.models import DjangoJob, DjangoJobExecution
from scheduling.checks import check_apscheduler_admin
print(apps.index("django_apscheduler") < apps.index("scheduling"),
      admin.site.is_registered(DjangoJob), admin.site.is_registered(DjangoJobExecution),
      check_apscheduler_admin())
"""


@pytest.mark.parametrize("position", [0, 999])
def test_they_stay_unregistered_whatever_the_app_order(position):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    result = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", APP_ORDER.format(position=position)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    before = "True" if position == 0 else "False"
    assert result.stdout.split() == [before, "False", "False", "[]"]
