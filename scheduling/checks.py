"""System checks: every ``SCHEDULING_*`` setting, the database, the executors, a live scheduler."""

from __future__ import annotations

import ipaddress
import os
import zoneinfo
from collections.abc import Callable, Mapping, Sequence
from numbers import Real
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning
from django.core.checks import register as register_check
from django.db import DatabaseError
from django.utils.module_loading import import_string

from .conf import conf
from .exceptions import InvalidTrigger
from .executors import EXECUTORS
from .executors.choice import check_executors
from .models import Kind, Schedule
from .schedules_io.declared import read_declarations
from .status import get_lease, lease_health
from .triggers import next_runs

if TYPE_CHECKING:
    from django.apps import AppConfig


# setting name -> (minimum, error id); all must be real numbers >= minimum.
NUMBERS: dict[str, tuple[float, str]] = {
    "SYNC_INTERVAL": (0.05, "scheduling.E003"),
    "FULL_SYNC_INTERVAL": (1, "scheduling.E004"),
    "LEASE_TTL": (1, "scheduling.E005"),
    "LEASE_RENEW_INTERVAL": (0.1, "scheduling.E006"),
    "SHUTDOWN_GRACE": (0, "scheduling.E007"),
    "MIN_INTERVAL": (1, "scheduling.E008"),
    "DEFAULT_TIMEOUT": (1, "scheduling.E009"),
    "DEFAULT_MISFIRE_GRACE": (0, "scheduling.E010"),
    "MAX_RETRY_BACKOFF": (1, "scheduling.E011"),
    "MAX_WORKERS": (1, "scheduling.E012"),
    "SCAN_TIMEOUT": (0.1, "scheduling.E013"),
    "CLEANUP_BATCH_SIZE": (1, "scheduling.E014"),
    "EXECUTION_RETENTION_DAYS": (1, "scheduling.E022"),
    "TENANT_CONCURRENCY": (0, "scheduling.E023"),
    "MAX_SCHEDULES_PER_TENANT": (1, "scheduling.E024"),
    "WEBHOOK_TIMEOUT": (0.1, "scheduling.E025"),
    "HEALTH_MAX_HEARTBEAT_AGE": (1, "scheduling.E026"),
    "API_MAX_NEXT_RUNS": (1, "scheduling.E028"),
    "CELERY_HEARTBEAT_TTL": (1, "scheduling.E029"),
    "CELERY_HARD_TIMEOUT_GRACE": (2, "scheduling.E030"),
    "CELERY_REQUEUE_AFTER": (1, "scheduling.E031"),
    "CLAIM_AHEAD": (0, "scheduling.E035"),
}
MAX_CLAIM_AHEAD = 5.0


def check_settings(**kwargs: object) -> list[CheckMessage]:
    """Check the ``SCHEDULING_*`` settings."""
    errors: list[CheckMessage] = []
    model = conf.TENANT_MODEL
    if not isinstance(model, str) or model.count(".") != 1:
        errors.append(
            Error(
                "SCHEDULING_TENANT_MODEL must be of the form 'app_label.ModelName'.",
                hint="For example SCHEDULING_TENANT_MODEL = 'tenants.Tenant'.",
                id="scheduling.E001",
            )
        )
    else:
        from django.apps import apps

        try:
            apps.get_model(model)
        except (LookupError, ValueError):
            errors.append(
                Error(
                    f"SCHEDULING_TENANT_MODEL refers to {model!r}, which is not installed.",
                    hint="Add its app to INSTALLED_APPS or point the setting at your model.",
                    id="scheduling.E001",
                )
            )
    if conf.EXECUTOR not in EXECUTORS:
        errors.append(
            Error(
                f"SCHEDULING_EXECUTOR is {conf.EXECUTOR!r}.",
                hint=f"Use one of {', '.join(EXECUTORS)}.",
                id="scheduling.E002",
            )
        )
    overrides = conf.EXECUTOR_OVERRIDES
    if not isinstance(overrides, dict) or any(
        k not in Kind.values or v not in EXECUTORS
        for k, v in (overrides.items() if isinstance(overrides, dict) else [])
    ):
        errors.append(
            Error(
                f"SCHEDULING_EXECUTOR_OVERRIDES must map kinds ({', '.join(Kind.values)}) to "
                "executors.",
                hint="For example {'scan': 'process'}; executors: " + ", ".join(EXECUTORS) + ".",
                id="scheduling.E015",
            )
        )
    for name, (minimum, check_id) in NUMBERS.items():
        value = getattr(conf, name)
        if isinstance(value, bool) or not isinstance(value, Real) or value < minimum:
            errors.append(
                Error(
                    f"SCHEDULING_{name} must be a number of at least {minimum}; got {value!r}.",
                    hint=f"Remove SCHEDULING_{name} to use the default.",
                    id=check_id,
                )
            )
    ahead = conf.CLAIM_AHEAD
    if isinstance(ahead, Real) and not isinstance(ahead, bool) and ahead > MAX_CLAIM_AHEAD:
        errors.append(
            Error(
                f"SCHEDULING_CLAIM_AHEAD must be at most {MAX_CLAIM_AHEAD:g} seconds; "
                f"got {ahead!r}.",
                hint="Claims made long ahead would miss pauses and overlap made meanwhile; "
                "0.25 s covers a burst of about a thousand due occurrences.",
                id="scheduling.E036",
            )
        )
    ttl, renew = conf.LEASE_TTL, conf.LEASE_RENEW_INTERVAL
    if isinstance(ttl, Real) and isinstance(renew, Real) and renew * 2 > ttl:
        errors.append(
            Error(
                "SCHEDULING_LEASE_RENEW_INTERVAL must be at most half of SCHEDULING_LEASE_TTL.",
                hint="A leader must be able to miss one renewal without losing the lease.",
                id="scheduling.E016",
            )
        )
    for name in ("SCAN_DENY_NETWORKS", "SCAN_ALLOW_NETWORKS"):
        errors.extend(_check_networks(name))
    errors.extend(_check_import("TENANT_RESOLVER", "scheduling.E019"))
    if not isinstance(conf.LEASE_NAME, str) or not conf.LEASE_NAME:
        errors.append(
            Error(
                "SCHEDULING_LEASE_NAME must be a non-empty string.",
                hint="Replicas that share a name elect one leader among them.",
                id="scheduling.E020",
            )
        )
    for name in ("REPORT_FROM_EMAIL", "ALERT_FROM_EMAIL", "JOB_SIGNING_KEY"):
        value = getattr(conf, name)
        if value is not None and not (isinstance(value, str) and value):
            errors.append(
                Error(
                    f"SCHEDULING_{name} must be a non-empty string or None.",
                    hint=f"Remove SCHEDULING_{name} to use the default.",
                    id="scheduling.E021",
                )
            )
    if not isinstance(conf.RETENTION_SCHEDULE, bool):
        errors.append(
            Error(
                f"SCHEDULING_RETENTION_SCHEDULE must be True or False; "
                f"got {conf.RETENTION_SCHEDULE!r}.",
                hint="True (the default) gives every tenant a daily 'History retention' "
                "cleanup of its execution history.",
                id="scheduling.E027",
            )
        )
    errors.extend(_check_file_cleanup_roots())
    return errors


def _check_file_cleanup_roots() -> list[CheckMessage]:
    roots = conf.FILE_CLEANUP_ROOTS
    if isinstance(roots, list | tuple) and all(
        isinstance(root, str | os.PathLike) and os.path.isabs(root) for root in roots
    ):
        return []
    return [
        Error(
            f"SCHEDULING_FILE_CLEANUP_ROOTS must be a list of absolute directory paths; "
            f"got {roots!r}.",
            hint="For example ['/var/tmp/exports']; the 'files' cleanup target deletes only "
            "below these directories, and refuses to run while the list is empty (the default).",
            id="scheduling.E045",
        )
    ]


def _check_networks(name: str) -> list[CheckMessage]:
    value = getattr(conf, name)
    bad = []
    for item in value if isinstance(value, list | tuple) else [value]:
        try:
            ipaddress.ip_network(item, strict=False)
        except (TypeError, ValueError):
            bad.append(item)
    if not bad:
        return []
    return [
        Error(
            f"SCHEDULING_{name} has entries that are not networks: {bad!r}.",
            hint="Use CIDR strings such as '10.0.0.0/8' or '::1/128'.",
            id="scheduling.E017" if name == "SCAN_DENY_NETWORKS" else "scheduling.E018",
        )
    ]


def _check_import(name: str, check_id: str) -> list[CheckMessage]:
    path = getattr(conf, name)
    try:
        import_string(path)
    except (ImportError, TypeError, ValueError) as exc:
        return [
            Error(
                f"SCHEDULING_{name} cannot be imported: {exc}.",
                hint="Give the dotted path of a class.",
                id=check_id,
            )
        ]
    return []


def check_database(**kwargs: object) -> list[CheckMessage]:
    """Warn when SQLite is not set up to share the database with a scheduler process."""
    return sqlite_warnings(settings.DATABASES.get("default", {}))


def sqlite_warnings(db: Mapping[str, Any]) -> list[CheckMessage]:
    """Return the W001 warning for a SQLite database settings dict that lacks WAL & co."""
    if "sqlite3" not in db.get("ENGINE", ""):
        return []
    options = db.get("OPTIONS", {})
    missing = []
    if str(options.get("transaction_mode", "")).upper() != "IMMEDIATE":
        missing.append('"transaction_mode": "IMMEDIATE"')
    if "wal" not in str(options.get("init_command", "")).lower():
        missing.append('"init_command": "PRAGMA journal_mode=WAL;"')
    if not options.get("timeout"):
        missing.append('"timeout": 20')
    if not missing:
        return []
    return [
        Warning(
            "The SQLite database is not configured for a concurrent scheduler process.",
            hint="Add to DATABASES['default']['OPTIONS']: " + ", ".join(missing) + ". Without "
            "them the scheduler's writes fail with 'database is locked' under load.",
            id="scheduling.W001",
        )
    ]


def check_admin_index(**kwargs: object) -> list[CheckMessage]:
    """Warn when the admin index is Django's own, without the link to the dashboard."""
    if "django.contrib.admin" not in settings.INSTALLED_APPS:
        return []
    from django.template import TemplateDoesNotExist
    from django.template.loader import get_template

    try:
        template = get_template("admin/index.html")
    except TemplateDoesNotExist:
        return []
    origin = str(getattr(getattr(template, "origin", None), "name", ""))
    if not origin.replace("\\", "/").endswith("django/contrib/admin/templates/admin/index.html"):
        return []  # ours, or the project's own override
    return [
        Warning(
            "The admin index does not link the scheduling dashboard.",
            hint="List 'scheduling' before 'django.contrib.admin' in INSTALLED_APPS, so that its "
            "admin/index.html (which extends Django's) is found first.",
            id="scheduling.W004",
        )
    ]


# A deployment check (``manage.py check --deploy``): it reads the lease from the database, and
# a development machine or a CI job without a running scheduler must not be warned by every
# ``manage.py`` command. Run ``check --deploy`` after a deployment, once the ``runscheduler``
# process should be up, to catch a scheduler that never started or has died.
def check_scheduler(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: object
) -> list[CheckMessage]:
    """Warn (scheduling.W002) when no scheduler holds the lease with a fresh heartbeat."""
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


# At most this many schedules are listed one by one by check_cron_day_rule.
LEGACY_DAY_RULE_LISTED = 20


def check_cron_day_rule(**kwargs: object) -> list[CheckMessage]:
    """List the cron schedules that still use the old day rule (``Schedule.legacy_day_rule``):
    their id, expression, and next runs under the old rule and under cron's (W006)."""
    try:
        flagged = list(
            Schedule.objects.filter(legacy_day_rule=True).order_by("pk")[
                : LEGACY_DAY_RULE_LISTED + 1
            ]
        )
        total = len(flagged)
        if total > LEGACY_DAY_RULE_LISTED:
            total = Schedule.objects.filter(legacy_day_rule=True).count()
    except (DatabaseError, RuntimeError):
        # No table yet (a command before ``migrate``), or no database access at all (a test
        # without one): nothing to list.
        return []
    messages: list[CheckMessage] = []
    for schedule in flagged[:LEGACY_DAY_RULE_LISTED]:
        try:
            zone = zoneinfo.ZoneInfo(schedule.effective_timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            zone = zoneinfo.ZoneInfo("UTC")  # next_runs says what is wrong

        def runs(legacy: bool, schedule: Schedule = schedule, zone: Any = zone) -> str:
            schedule.legacy_day_rule = legacy
            try:
                times = next_runs(schedule, 3)
            except InvalidTrigger as exc:
                return f"none ({exc})"
            return ", ".join(t.astimezone(zone).strftime("%Y-%m-%d %H:%M") for t in times) or (
                "none"
            )

        old, new = runs(True), runs(False)
        messages.append(
            Warning(
                f"Schedule {schedule.pk} ({schedule.kind} {schedule.name!r}) has the cron "
                f"expression {schedule.cron_expression!r}, whose days change under cron's rule. "
                f"Next runs ({schedule.effective_timezone}) with the old rule, which it keeps "
                f"until saved again: {old}; with cron's rule: {new}.",
                hint="Both day fields are restricted: cron runs a day that matches EITHER, "
                "the old rule required BOTH. Check the days, then save the schedule (admin, "
                "API, `manage.py scheduling`, or its declaration) to adopt cron's rule.",
                id="scheduling.W006",
            )
        )
    if total > LEGACY_DAY_RULE_LISTED:
        messages.append(
            Warning(
                f"{total - LEGACY_DAY_RULE_LISTED} more schedules use the old cron day rule.",
                hint="List them with Schedule.objects.filter(legacy_day_rule=True); the admin "
                "shows a notice on each.",
                id="scheduling.W006",
            )
        )
    return messages


# Hints of the checks of SCHEDULING_DECLARED_SCHEDULES, by id (its messages name the entry).
DECLARED_HINTS = {
    "scheduling.E050": "A list of dicts, one per schedule: {'kind': 'task', 'task_type': "
    "'crm_sync', 'name': 'CRM sync', 'trigger_type': 'cron', 'cron_expression': '0 3 * * *'}.",
    "scheduling.E051": "'kind' is scan, report, cleanup or task.",
    "scheduling.E052": "Give a registered key under the kind's type field (scan_type, "
    "report_type, cleanup_target, task_type) or under 'type'.",
    "scheduling.E053": "Every entry needs a 'name', unique per kind (and per_tenant).",
    "scheduling.E054": "Keys are kind, name, type, per_tenant, adopt and the kind's "
    "configuration fields (as in an exported schedules file).",
    "scheduling.E055": "The entry's fields are validated like a schedule saved in the admin.",
    "scheduling.E056": "Options are validated by the type's options form.",
    "scheduling.E057": "Remove or rename one of the two entries.",
}
# Not tagged "compatibility": runscheduler requires those, and a bad declaration must not
# keep the scheduler from starting (the sync skips and logs the entry). `manage.py check`
# runs every tag.
DECLARED_TAG = "scheduling_declared"


def check_declared_schedules(**kwargs: object) -> list[CheckMessage]:
    """Check SCHEDULING_DECLARED_SCHEDULES: each problem names its entry's index and name."""
    return [
        Error(str(problem), hint=DECLARED_HINTS.get(problem.check_id), id=problem.check_id)
        for problem in read_declarations().problems
    ]


CHECKS: list[Callable[..., list[CheckMessage]]] = [
    check_settings,
    check_database,
    check_executors,
    check_admin_index,
]


def register() -> None:
    """Register the app's checks (called from ``AppConfig.ready``)."""
    for check in CHECKS:
        register_check(check, Tags.compatibility)
    register_check(check_declared_schedules, DECLARED_TAG)
    register_check(check_cron_day_rule, "scheduling")
    # Not tagged "database": Django runs those only with --database, and this check exists
    # to be run by a plain `check --deploy`.
    register_check(check_scheduler, "scheduling", deploy=True)
