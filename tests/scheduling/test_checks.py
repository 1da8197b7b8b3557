from __future__ import annotations

import ast
import io
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import time_machine
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from scheduling.checks import (
    LEGACY_DAY_RULE_LISTED,
    check_admin_index,
    check_cron_day_rule,
    check_database,
    check_settings,
    check_signing_key,
    sqlite_warnings,
)
from scheduling.models import Schedule
from tests.factories import make_scan, make_tenant

ROOT = Path(__file__).resolve().parents[2]


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
        ("SCHEDULING_TENANT_CONCURRENCY", -1, "scheduling.E023"),
        ("SCHEDULING_TENANT_CONCURRENCY", "2", "scheduling.E023"),
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
    # django.setup() runs ready() of every app: nothing may start a scheduler thread. In a
    # fresh process: threads that earlier tests of this one started would blur the answer.
    script = (
        "import threading, django; django.setup(); print([t.name for t in threading.enumerate()])"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    names = ast.literal_eval(result.stdout.strip().splitlines()[-1])
    assert names == ["MainThread"]


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
    apps = [app for app in settings.INSTALLED_APPS if app != "scheduling"]
    admin_first = [*apps[: apps.index("django.contrib.admin") + 1], "scheduling"]
    admin_first += apps[len(admin_first) - 1 :]
    with override_settings(TEMPLATES=APP_TEMPLATES_ONLY, INSTALLED_APPS=admin_first):
        (warning,) = check_admin_index()
    assert warning.id == "scheduling.W004"
    assert "before 'django.contrib.admin'" in warning.hint


# -- W006: cron schedules that keep the old day rule ------------------------------------------

CHECKED_AT = datetime(2027, 1, 20, 12, 0, tzinfo=UTC)


def old_rule_schedules(count: int = 1, expression: str = "0 0 1 * 1") -> list[Schedule]:
    """Cron schedules as migration 0006 leaves those whose days change: flagged."""
    tenant = make_tenant()
    schedules = [
        make_scan(
            tenant=tenant,
            scan_type="test_echo",
            target="x",
            trigger_type="cron",
            cron_expression=expression,
            timezone="UTC",
        )
        for _ in range(count)
    ]
    Schedule.objects.filter(pk__in=[s.pk for s in schedules]).update(legacy_day_rule=True)
    return schedules


def day_rule_warnings() -> list:
    with time_machine.travel(CHECKED_AT, tick=False):
        return check_cron_day_rule()


@pytest.mark.django_db
class TestOldCronDayRuleCheck:
    def test_a_flagged_schedule_is_listed_with_its_next_runs_under_both_rules(self):
        (schedule,) = old_rule_schedules()
        (warning,) = day_rule_warnings()
        assert warning.id == "scheduling.W006"
        assert f"Schedule {schedule.pk} (scan {schedule.name!r})" in warning.msg
        assert "'0 0 1 * 1'" in warning.msg
        # The old rule: Mondays that are the 1st. Cron's: every Monday and every 1st.
        assert (
            "with the old rule, which it keeps until saved again: "
            "2027-02-01 00:00, 2027-03-01 00:00, 2027-11-01 00:00;" in warning.msg
        )
        assert "with cron's rule: 2027-01-25 00:00, 2027-02-01 00:00, 2027-02-08 00:00." in (
            warning.msg
        )
        assert "(UTC)" in warning.msg
        assert "save the schedule" in warning.hint

    def test_the_next_runs_are_in_the_schedules_time_zone(self):
        (schedule,) = old_rule_schedules()
        Schedule.objects.filter(pk=schedule.pk).update(timezone="Europe/Berlin")
        (warning,) = day_rule_warnings()
        assert "(Europe/Berlin)" in warning.msg
        assert "2027-02-01 00:00, 2027-03-01 00:00, 2027-11-01 00:00;" in warning.msg

    def test_no_warning_without_flagged_schedules(self):
        make_scan(
            tenant=make_tenant(),
            scan_type="test_echo",
            target="x",
            trigger_type="cron",
            cron_expression="0 0 1 * 1",  # created now: cron's rule, nothing to warn about
        )
        assert day_rule_warnings() == []

    def test_no_warning_once_the_schedule_is_saved_again(self):
        (schedule,) = old_rule_schedules()
        assert len(day_rule_warnings()) == 1
        schedule.refresh_from_db()
        schedule.save()
        assert day_rule_warnings() == []

    def test_beyond_twenty_the_rest_are_summed_up_in_one_warning(self):
        schedules = old_rule_schedules(LEGACY_DAY_RULE_LISTED + 3)
        warnings = day_rule_warnings()
        assert LEGACY_DAY_RULE_LISTED == 20
        assert len(warnings) == 21
        assert {w.id for w in warnings} == {"scheduling.W006"}
        listed = sorted(schedules, key=lambda s: s.pk)[:20]
        for warning, schedule in zip(warnings, listed, strict=False):
            assert warning.msg.startswith(f"Schedule {schedule.pk} ")
        assert warnings[-1].msg == "3 more schedules use the old cron day rule."

    def test_exactly_twenty_are_all_listed_without_a_summary(self):
        old_rule_schedules(LEGACY_DAY_RULE_LISTED)
        warnings = day_rule_warnings()
        assert len(warnings) == 20
        assert all(w.msg.startswith("Schedule ") for w in warnings)

    def test_a_token_only_the_old_rule_read_shows_no_runs_under_cron(self):
        old_rule_schedules(expression="0 0 last * *")
        (warning,) = day_rule_warnings()
        assert "2027-01-31 00:00, 2027-02-28 00:00, 2027-03-31 00:00;" in warning.msg
        assert "with cron's rule: none (" in warning.msg

    def test_a_time_zone_this_machine_does_not_know_is_named_not_raised(self):
        (schedule,) = old_rule_schedules()
        Schedule.objects.filter(pk=schedule.pk).update(timezone="Mars/Olympus")
        (warning,) = day_rule_warnings()
        assert "none (unknown time zone 'Mars/Olympus')" in warning.msg

    def test_a_plain_manage_py_check_shows_it(self):
        (schedule,) = old_rule_schedules()
        err = io.StringIO()
        with time_machine.travel(CHECKED_AT, tick=False):
            call_command("check", stdout=io.StringIO(), stderr=err)  # no --deploy
        assert "scheduling.W006" in err.getvalue()
        assert f"Schedule {schedule.pk} " in err.getvalue()


def test_the_day_rule_check_without_database_access_lists_nothing():
    assert check_cron_day_rule() == []


# -- W008: the job-signing key -----------------------------------------------------------------

DEMO_KEY = "demo-only-secret-key-change-me-in-production"
STRONG_KEY = "q4G7v0xW2pZr8LkN3sYb6TjH1mCe5RdA9uFi0oPl7KwXg2VnBz"


@pytest.mark.parametrize(
    ("secret_key", "signing_key", "named"),
    [
        (DEMO_KEY, None, "SECRET_KEY"),  # the demo's key signs the jobs
        (STRONG_KEY, DEMO_KEY, "SCHEDULING_JOB_SIGNING_KEY"),
        (STRONG_KEY, "change-me-to-a-long-random-string", "SCHEDULING_JOB_SIGNING_KEY"),
        (STRONG_KEY, "short-key", "SCHEDULING_JOB_SIGNING_KEY"),
        ("django-insecure-" + STRONG_KEY, None, "SECRET_KEY"),
    ],
)
def test_a_published_or_weak_signing_key_warns(secret_key, signing_key, named):
    with override_settings(SECRET_KEY=secret_key, SCHEDULING_JOB_SIGNING_KEY=signing_key):
        (warning,) = check_signing_key()
    assert warning.id == "scheduling.W008"
    assert named in warning.msg and "token_urlsafe" in warning.hint


@pytest.mark.parametrize(
    ("secret_key", "signing_key"), [(STRONG_KEY, None), (DEMO_KEY, STRONG_KEY)]
)
def test_a_strong_signing_key_passes(secret_key, signing_key):
    with override_settings(SECRET_KEY=secret_key, SCHEDULING_JOB_SIGNING_KEY=signing_key):
        assert check_signing_key() == []


@override_settings(SECRET_KEY=DEMO_KEY, SCHEDULING_JOB_SIGNING_KEY=None)
def test_the_signing_key_check_runs_with_check_deploy_only():
    err = io.StringIO()
    call_command("check", stdout=io.StringIO(), stderr=err)
    assert "scheduling.W008" not in err.getvalue()
    call_command("check", "--deploy", "--tag", "security", stdout=io.StringIO(), stderr=err)
    assert "scheduling.W008" in err.getvalue()
