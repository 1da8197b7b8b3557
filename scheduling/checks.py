"""System checks: every ``SCHEDULING_*`` setting, the database, the executors, a live scheduler."""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import re
import zoneinfo
from collections.abc import Callable, Mapping, Sequence
from numbers import Real
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning
from django.core.checks import register as register_check
from django.db import DatabaseError
from django.urls import NoReverseMatch, reverse
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
# Settings of NUMBERS whose default is None (a value derived at run time).
NULLABLE = {"TENANT_CONCURRENCY"}
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
        if value is None and name in NULLABLE:
            continue
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
    errors.extend(_check_tenant_context())
    errors.extend(_check_sentry_monitors())
    errors.extend(_check_scopes_dimension())
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
    errors.extend(_check_throttle_rates())
    errors.extend(_check_monitoring())
    if not isinstance(conf.METRICS_PER_SCHEDULE, bool):
        errors.append(
            Error(
                f"SCHEDULING_METRICS_PER_SCHEDULE must be True or False; "
                f"got {conf.METRICS_PER_SCHEDULE!r}.",
                hint="True adds two series per enabled schedule to /metrics (its last success "
                "and next run, labelled by ids); False (the default) leaves them out.",
                id="scheduling.E059",
            )
        )
    return errors


def _check_monitoring() -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    token = getattr(settings, "SCHEDULING_MONITORING_TOKEN", None)
    if token is not None and not (isinstance(token, str) and token.strip() == token and token):
        errors.append(
            Error(
                "SCHEDULING_MONITORING_TOKEN must be a non-empty string without surrounding "
                "spaces, or None.",
                hint="A long random string, e.g. from `python -c 'import secrets; "
                "print(secrets.token_urlsafe(32))'`; Prometheus sends it as "
                "'authorization: {credentials: ...}'.",
                id="scheduling.E047",
            )
        )
    networks = getattr(settings, "SCHEDULING_MONITORING_ALLOW_NETWORKS", [])
    bad = [] if isinstance(networks, list | tuple) else [networks]
    for item in networks if isinstance(networks, list | tuple) else []:
        try:
            ipaddress.ip_network(item, strict=False)
        except (TypeError, ValueError):
            bad.append(item)
    if bad:
        errors.append(
            Error(
                f"SCHEDULING_MONITORING_ALLOW_NETWORKS has entries that are not networks: {bad!r}.",
                hint="A list of CIDR strings such as '10.0.0.0/8' or '::1/128'; empty (the "
                "default) answers every address.",
                id="scheduling.E048",
            )
        )
    return errors


_RATE = re.compile(r"[0-9]+/(s|m|h|d)[a-z]*")


def _check_throttle_rates() -> list[CheckMessage]:
    value = getattr(settings, "SCHEDULING_API_THROTTLE_RATES", {})
    if isinstance(value, dict) and all(
        isinstance(scope, str)
        and (rate is None or (isinstance(rate, str) and _RATE.fullmatch(rate)))
        for scope, rate in value.items()
    ):
        return []
    return [
        Error(
            f"SCHEDULING_API_THROTTLE_RATES must be a dict of scope to rate; got {value!r}.",
            hint="For example {'scheduling': '600/minute', 'scheduling_run': '60/minute'}: "
            "a number of requests per second, minute, hour or day, or None for no limit.",
            id="scheduling.E046",
        )
    ]


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


def _check_sentry_monitors() -> list[CheckMessage]:
    value = conf.SENTRY_MONITORS
    if not isinstance(value, bool):
        return [
            Error(
                f"SCHEDULING_SENTRY_MONITORS must be True or False; got {value!r}.",
                hint="True checks each run of a cron or interval schedule in to Sentry.",
                id="scheduling.E063",
            )
        ]
    if value and importlib.util.find_spec("sentry_sdk") is None:
        return [
            Error(
                "SCHEDULING_SENTRY_MONITORS is True, but sentry-sdk is not installed.",
                hint='pip install "django-tenant-scheduling[sentry]", and call sentry_sdk.init().',
                id="scheduling.E063",
            )
        ]
    return []


def _check_tenant_context() -> list[CheckMessage]:
    path = conf.TENANT_CONTEXT
    if path is None:
        return []
    hint = (
        "Give the dotted path of a callable that takes a tenant and returns a context manager "
        '("django_tenants.utils.tenant_context"), or remove the setting.'
    )
    if not isinstance(path, str) or not path:
        return [
            Error(
                "SCHEDULING_TENANT_CONTEXT must be a dotted path or None.",
                hint=hint,
                id="scheduling.E058",
            )
        ]
    try:
        target = import_string(path)
    except ImportError as exc:
        return [
            Error(
                f"SCHEDULING_TENANT_CONTEXT cannot be imported: {exc}.",
                hint=hint,
                id="scheduling.E058",
            )
        ]
    if not callable(target):
        return [
            Error(
                f"SCHEDULING_TENANT_CONTEXT names {path}, which is not callable.",
                hint=hint,
                id="scheduling.E058",
            )
        ]
    return []


def _check_scopes_dimension() -> list[CheckMessage]:
    dimension = conf.SCOPES_DIMENSION
    if isinstance(dimension, str) and dimension.isidentifier():
        return []
    return [
        Error(
            f"SCHEDULING_SCOPES_DIMENSION must be the name of a django-scopes dimension; "
            f"got {dimension!r}.",
            hint='The name your ScopedManager(...) declarations give the tenant, e.g. "tenant" '
            '(the default) for ScopedManager(tenant="organisation").',
            id="scheduling.E060",
        )
    ]


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
    return [
        Warning(
            f"No scheduler is running: {health['problem']} (lease {conf.LEASE_NAME!r}).",
            hint="Start `python manage.py runscheduler` (one or more replicas) and keep it "
            "running under a process supervisor; schedules do not fire without it.",
            id="scheduling.W002",
        )
    ]


# django-apscheduler's admins: DjangoJobAdmin unpickles job state without checking its
# signature and its action runs jobs in the web request. scheduling.admin unregisters both.
APSCHEDULER_ADMIN_MODELS = (
    "django_apscheduler.DjangoJob",
    "django_apscheduler.DjangoJobExecution",
)


def check_apscheduler_admin(**kwargs: object) -> list[CheckMessage]:
    """Warn (scheduling.W007) when django-apscheduler's admins are registered."""
    from django.apps import apps

    if not (apps.is_installed("django.contrib.admin") and apps.is_installed("django_apscheduler")):
        return []
    from django.contrib import admin

    registered = [
        label
        for label in APSCHEDULER_ADMIN_MODELS
        if admin.site.is_registered(apps.get_model(label))
    ]
    if not registered:
        return []
    return [
        Warning(
            f"django-apscheduler's admin is registered for {', '.join(registered)}.",
            hint="Unregister it (admin.site.unregister(...)): its 'Run the selected django jobs' "
            "action unpickles job state without checking the signature and runs jobs inside "
            "the web request. The scheduling admin (Schedules, Executions) shows next runs "
            "and history instead.",
            id="scheduling.W007",
        )
    ]


# Keys this project publishes (the demo settings' default, the deployment examples'
# placeholders): anyone can sign job state with them, and signed state is unpickled.
PUBLIC_SIGNING_KEYS = frozenset(
    {
        "demo-only-secret-key-change-me-in-production",
        "compose-only-secret-change-me",
        "change-me-to-a-long-random-string",
    }
)


# A deployment check (``manage.py check --deploy``), next to Django's security.W009 for
# SECRET_KEY: the job-signing key is what keeps a database row from running code.
def check_signing_key(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: object
) -> list[CheckMessage]:
    """Warn (scheduling.W008) when job state is signed with a published or weak key."""
    key: object = conf.JOB_SIGNING_KEY
    name = "SCHEDULING_JOB_SIGNING_KEY"
    if key is None:
        key, name = getattr(settings, "SECRET_KEY", ""), "SECRET_KEY"
    if isinstance(key, bytes):
        key = key.decode(errors="replace")
    if not isinstance(key, str):
        return []  # scheduling.E021 reports it
    if key in PUBLIC_SIGNING_KEYS:
        problem = "a key published with this project"
    elif key.startswith("django-insecure-") or len(key) < 50 or len(set(key)) < 5:
        problem = "short or guessable (fewer than 50 characters or 5 distinct ones)"
    else:
        return []
    return [
        Warning(
            f"Job state is signed with {name}, which is {problem}.",
            hint="Whoever knows the job-signing key can make the scheduler unpickle (run) "
            "anything written to the job table. Set a long random SECRET_KEY or "
            "SCHEDULING_JOB_SIGNING_KEY, e.g. from "
            "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`.",
            id="scheduling.W008",
        )
    ]


# A deployment check: /healthz and /metrics answer anyone who can reach them unless
# restricted; in front of a public site that is every tenant's totals to the internet.
def check_monitoring_access(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: object
) -> list[CheckMessage]:
    """Warn (scheduling.W009) when neither a token nor networks restrict the endpoints."""
    if conf.MONITORING_TOKEN or conf.MONITORING_ALLOW_NETWORKS:
        return []
    try:
        reverse("scheduling-metrics")
    except NoReverseMatch:
        return []  # the project does not route them
    return [
        Warning(
            "/healthz and /metrics answer every caller.",
            hint="Set SCHEDULING_MONITORING_TOKEN (a bearer token) or "
            "SCHEDULING_MONITORING_ALLOW_NETWORKS (the CIDRs of your probes and Prometheus), "
            "or do not include scheduling.urls where the public can reach it.",
            id="scheduling.W009",
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


# The apps whose tables the scheduler shares between tenants: under django-tenants they must
# live in the public schema, for every tenant's schedules at once.
SHARED_TABLE_APPS = ("scheduling", "django_apscheduler", "tenants")


def check_django_tenants(**kwargs: object) -> list[CheckMessage]:
    """Under django-tenants: the app's tables shared, its tenant theirs, handlers in schemas."""
    if "django_tenants" not in settings.INSTALLED_APPS:
        return []
    return django_tenants_problems(
        installed_apps=list(settings.INSTALLED_APPS),
        shared_apps=list(getattr(settings, "SHARED_APPS", [])),
        tenant_apps=list(getattr(settings, "TENANT_APPS", [])),
        tenant_model=getattr(settings, "TENANT_MODEL", None),
    )


def django_tenants_problems(
    *,
    installed_apps: Sequence[str],
    shared_apps: Sequence[str],
    tenant_apps: Sequence[str],
    tenant_model: str | None,
) -> list[CheckMessage]:
    """Return the problems of a django-tenants project's settings for this app."""
    problems: list[CheckMessage] = []
    for app in SHARED_TABLE_APPS:
        if app not in installed_apps:
            continue
        if app not in shared_apps or app in tenant_apps:
            problems.append(
                Error(
                    f"Under django-tenants, {app!r} must be in SHARED_APPS and not in TENANT_APPS.",
                    hint="The scheduler keeps every tenant's schedules, executions and jobs in "
                    "one set of tables in the public schema; in a tenant's schema they would "
                    "never be run.",
                    id="scheduling.E061",
                )
            )
    scheduling_tenant = getattr(settings, "SCHEDULING_TENANT_MODEL", "tenants.Tenant")
    if tenant_model and scheduling_tenant.lower() != tenant_model.lower():
        problems.append(
            Error(
                f"SCHEDULING_TENANT_MODEL is {scheduling_tenant!r}, but django-tenants' "
                f"TENANT_MODEL is {tenant_model!r}.",
                hint=f'Set SCHEDULING_TENANT_MODEL = "{tenant_model}" (before the first '
                "migrate): schedules belong to the tenants whose schemas their handlers run in.",
                id="scheduling.E062",
            )
        )
    if not conf.TENANT_CONTEXT:
        problems.append(
            Warning(
                "Under django-tenants, SCHEDULING_TENANT_CONTEXT is not set: handlers run in "
                "the public schema and read no tenant's rows.",
                hint='Set SCHEDULING_TENANT_CONTEXT = "django_tenants.utils.tenant_context".',
                id="scheduling.W010",
            )
        )
    return problems


CHECKS: list[Callable[..., list[CheckMessage]]] = [
    check_settings,
    check_django_tenants,
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
    register_check(check_apscheduler_admin, Tags.admin, Tags.security)
    register_check(check_signing_key, Tags.security, deploy=True)
    register_check(check_monitoring_access, Tags.security, deploy=True)
