from __future__ import annotations

import threading

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from scheduling.checks import check_admin_index, check_database, check_settings, sqlite_warnings


def ids(errors) -> set[str]:
    return {e.id for e in errors}


def test_default_settings_pass():
    assert check_settings() == []
    assert check_database() == []


@pytest.mark.parametrize(
    ("setting", "value", "check_id"),
    [
        ("SCHEDULING_TENANT_MODEL", "no-dot", "scheduling.E001"),
        ("SCHEDULING_TENANT_MODEL", "missing.Model", "scheduling.E001"),
        ("SCHEDULING_EXECUTOR", "fork-bomb", "scheduling.E002"),
        ("SCHEDULING_SYNC_INTERVAL", 0, "scheduling.E003"),
        ("SCHEDULING_SYNC_INTERVAL", "1", "scheduling.E003"),
        ("SCHEDULING_FULL_SYNC_INTERVAL", -5, "scheduling.E004"),
        ("SCHEDULING_LEASE_TTL", 0, "scheduling.E005"),
        ("SCHEDULING_LEASE_RENEW_INTERVAL", 0, "scheduling.E006"),
        ("SCHEDULING_SHUTDOWN_GRACE", -1, "scheduling.E007"),
        ("SCHEDULING_MIN_INTERVAL", 0, "scheduling.E008"),
        ("SCHEDULING_DEFAULT_TIMEOUT", 0, "scheduling.E009"),
        ("SCHEDULING_DEFAULT_MISFIRE_GRACE", -1, "scheduling.E010"),
        ("SCHEDULING_MAX_RETRY_BACKOFF", 0, "scheduling.E011"),
        ("SCHEDULING_MAX_WORKERS", 0, "scheduling.E012"),
        ("SCHEDULING_MAX_WORKERS", True, "scheduling.E012"),
        ("SCHEDULING_SCAN_TIMEOUT", 0, "scheduling.E013"),
        ("SCHEDULING_CLEANUP_BATCH_SIZE", 0, "scheduling.E014"),
        ("SCHEDULING_EXECUTOR_OVERRIDES", {"scan": "nope"}, "scheduling.E015"),
        ("SCHEDULING_EXECUTOR_OVERRIDES", {"widget": "thread"}, "scheduling.E015"),
        ("SCHEDULING_SCAN_DENY_NETWORKS", ["10.0.0.0/33"], "scheduling.E017"),
        ("SCHEDULING_SCAN_ALLOW_NETWORKS", ["localhost"], "scheduling.E018"),
        ("SCHEDULING_TENANT_RESOLVER", "no.such.Resolver", "scheduling.E019"),
        ("SCHEDULING_LEASE_NAME", "", "scheduling.E020"),
        ("SCHEDULING_REPORT_FROM_EMAIL", "", "scheduling.E021"),
        ("SCHEDULING_JOB_SIGNING_KEY", 42, "scheduling.E021"),
        ("SCHEDULING_CLAIM_AHEAD", -0.1, "scheduling.E035"),
        ("SCHEDULING_CLAIM_AHEAD", "0.25", "scheduling.E035"),
        ("SCHEDULING_CLAIM_AHEAD", 30, "scheduling.E036"),
    ],
)
def test_bad_setting_is_reported_with_a_hint(setting, value, check_id):
    with override_settings(**{setting: value}):
        errors = check_settings()
    assert check_id in ids(errors)
    assert all(e.hint for e in errors)
    assert any(setting in e.msg for e in errors)


@override_settings(SCHEDULING_LEASE_TTL=4, SCHEDULING_LEASE_RENEW_INTERVAL=3)
def test_renewal_slower_than_half_the_ttl_is_an_error():
    assert "scheduling.E016" in ids(check_settings())


def test_sqlite_without_wal_and_immediate_transactions_warns():
    warnings = sqlite_warnings(
        {"ENGINE": "django.db.backends.sqlite3", "NAME": "x.sqlite3", "OPTIONS": {}}
    )
    assert ids(warnings) == {"scheduling.W001"}
    assert "IMMEDIATE" in warnings[0].hint and "WAL" in warnings[0].hint


@pytest.mark.django_db
def test_check_command_runs_the_checks():
    call_command("check")
    with override_settings(SCHEDULING_EXECUTOR="bogus"), pytest.raises(SystemCheckError) as info:
        call_command("check")
    assert "scheduling.E002" in str(info.value)


def test_loading_the_apps_starts_no_scheduler():
    # django.setup() ran ready() of every app: nothing may have started a scheduler thread.
    names = [t.name for t in threading.enumerate()]
    assert not any("APScheduler" in n or n.startswith("scheduling-") for n in names)


APP_TEMPLATES_ONLY = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]


def test_admin_index_with_the_dashboard_link_passes():
    assert check_admin_index() == []


def test_admin_listed_before_scheduling_warns_that_the_dashboard_link_is_missing():
    with override_settings(TEMPLATES=APP_TEMPLATES_ONLY):
        (warning,) = check_admin_index()
    assert warning.id == "scheduling.W004"
    assert "before 'django.contrib.admin'" in warning.hint
