"""The one settings object of the app: every ``SCHEDULING_*`` setting, typed, read lazily.

Read settings through ``conf`` (``from scheduling.conf import conf``), never through
``django.conf.settings`` at import time, so that ``override_settings`` works in tests.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

from django.conf import settings
from django.utils.module_loading import import_string

_T = TypeVar("_T")

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser


class TenantResolver(Protocol):
    """What ``SCHEDULING_TENANT_RESOLVER`` names (``scheduling.tenancy.MembershipResolver``)."""

    def tenant_ids(
        self, user: AbstractBaseUser | AnonymousUser, *, min_role: str | None = None
    ) -> set[int] | None:
        """Return the ids of the tenants ``user`` holds at least ``min_role`` in (None: all)."""
        ...


class Settings:
    """Typed, lazy access to the ``SCHEDULING_*`` settings with their defaults.

    Each value is read from Django's settings once and kept while Django's settings object is
    the same: ``override_settings`` (and pytest-django's ``settings`` fixture) put another in
    place, and the values are read anew. The scheduler reads a few settings for every
    execution, and a setting left to its default was looked up through Django's lazy settings
    object and an ``AttributeError`` each time.
    """

    def __init__(self) -> None:
        self._values: dict[str, Any] = {}
        self._read_from: object = None

    def _get(self, name: str, default: _T) -> _T:
        # The property's annotation is the setting's type; the system checks (checks.py)
        # report a value of another type.
        holder = settings._wrapped  # type: ignore[misc]  # LazySettings, typed as Settings
        if holder is not self._read_from:
            self._values = {}
            self._read_from = holder
        try:
            return cast("_T", self._values[name])
        except KeyError:
            value = self._values[name] = getattr(settings, f"SCHEDULING_{name}", default)
            return value

    @property
    def TENANT_MODEL(self) -> str:
        return self._get("TENANT_MODEL", "tenants.Tenant")

    @property
    def TENANT_RESOLVER(self) -> str:
        return self._get("TENANT_RESOLVER", "scheduling.tenancy.MembershipResolver")

    def get_tenant_resolver(self) -> TenantResolver:
        """Import and instantiate the configured tenant resolver."""
        return import_string(self.TENANT_RESOLVER)()

    @property
    def TENANT_CONTEXT(self) -> str | None:
        """Dotted path of a callable ``(tenant) -> context manager`` that every handler of a
        tenant's schedule runs inside (``django_tenants.utils.tenant_context``); None: none."""
        return self._get("TENANT_CONTEXT", None)

    def get_tenant_context(self) -> Callable[[Any], AbstractContextManager[Any]] | None:
        """Import the configured tenant context callable, if one is configured."""
        path = self.TENANT_CONTEXT
        return import_string(path) if path else None

    @property
    def SCOPES_DIMENSION(self) -> str:
        """The django-scopes dimension that ``scheduling.integrations.scopes.tenant_context``
        sets to the tenant: the name the host's ``ScopedManager`` declarations use."""
        return self._get("SCOPES_DIMENSION", "tenant")

    @property
    def SENTRY_MONITORS(self) -> bool:
        """Check each run of a cron or interval schedule in to a Sentry cron monitor."""
        return self._get("SENTRY_MONITORS", False)

    @property
    def EXECUTOR(self) -> str:
        return self._get("EXECUTOR", "thread")

    @property
    def EXECUTOR_OVERRIDES(self) -> dict[str, str]:
        """Executor per schedule kind (``{"scan": "process"}``), overriding ``EXECUTOR``."""
        return self._get("EXECUTOR_OVERRIDES", {})

    @property
    def CELERY_QUEUE(self) -> str:
        """Celery queue the ``celery`` executor publishes to."""
        return self._get("CELERY_QUEUE", "scheduling")

    @property
    def CELERY_HEARTBEAT_TTL(self) -> float:
        """Seconds after its last heartbeat at which a Celery worker counts as lost."""
        return self._get("CELERY_HEARTBEAT_TTL", 30.0)

    @property
    def CELERY_HARD_TIMEOUT_GRACE(self) -> float:
        """Seconds past a schedule's timeout at which Celery kills the worker process."""
        return self._get("CELERY_HARD_TIMEOUT_GRACE", 30.0)

    @property
    def CELERY_REQUEUE_AFTER(self) -> float:
        """Seconds after which an execution still queued on Celery is published again."""
        return self._get("CELERY_REQUEUE_AFTER", 300.0)

    @property
    def TASKS_BACKEND(self) -> str:
        """Alias (in ``TASKS``) of the task backend the ``django_tasks`` executor enqueues to."""
        return self._get("TASKS_BACKEND", "default")

    @property
    def TASKS_QUEUE(self) -> str:
        """Queue of that backend (Django's ``DEFAULT_TASK_QUEUE_NAME`` by default)."""
        return self._get("TASKS_QUEUE", "default")

    @property
    def TASKS_REQUEUE_AFTER(self) -> float:
        """Seconds after which an execution still queued on the task backend is enqueued again."""
        return self._get("TASKS_REQUEUE_AFTER", 300.0)

    @property
    def MAX_WORKERS(self) -> int:
        return self._get("MAX_WORKERS", 8)

    @property
    def SYNC_INTERVAL(self) -> float:
        return self._get("SYNC_INTERVAL", 1.0)

    @property
    def FULL_SYNC_INTERVAL(self) -> float:
        return self._get("FULL_SYNC_INTERVAL", 300.0)

    @property
    def LEASE_NAME(self) -> str:
        return self._get("LEASE_NAME", "default")

    @property
    def LEASE_TTL(self) -> float:
        return self._get("LEASE_TTL", 15.0)

    @property
    def LEASE_RENEW_INTERVAL(self) -> float:
        return self._get("LEASE_RENEW_INTERVAL", 3.0)

    @property
    def CLAIM_AHEAD(self) -> float:
        """Seconds before an occurrence is due at which the scheduler claims it.

        The claim, the overlap check and the hand-over to the executor happen ahead; the
        executor starts the occurrence at its time. 0 claims at the due time.
        """
        return self._get("CLAIM_AHEAD", 0.5)

    @property
    def SHUTDOWN_GRACE(self) -> float:
        return self._get("SHUTDOWN_GRACE", 30.0)

    @property
    def MIN_INTERVAL(self) -> int:
        return self._get("MIN_INTERVAL", 60)

    @property
    def DEFAULT_TIMEOUT(self) -> int:
        return self._get("DEFAULT_TIMEOUT", 3600)

    @property
    def DEFAULT_MISFIRE_GRACE(self) -> int:
        return self._get("DEFAULT_MISFIRE_GRACE", 60)

    @property
    def MAX_RETRY_BACKOFF(self) -> int:
        return self._get("MAX_RETRY_BACKOFF", 3600)

    @property
    def SCAN_DENY_NETWORKS(self) -> list[str]:
        """CIDRs scans and webhooks never reach unless ``SCAN_ALLOW_NETWORKS`` has them.

        A tenant's allow list cannot open them. Empty by default: addresses that are not
        public are refused anyway (``scheduling.targets``); list your own public ranges here.
        """
        return list(self._get("SCAN_DENY_NETWORKS", []))

    @property
    def SCAN_ALLOW_NETWORKS(self) -> list[str]:
        """CIDRs scans and webhooks of every tenant may reach, even if not public or denied."""
        return list(self._get("SCAN_ALLOW_NETWORKS", []))

    @property
    def SCAN_TIMEOUT(self) -> float:
        return self._get("SCAN_TIMEOUT", 10.0)

    @property
    def REPORT_FROM_EMAIL(self) -> str | None:
        return self._get("REPORT_FROM_EMAIL", None)

    @property
    def JOB_SIGNING_KEY(self) -> str | None:
        """Key for signing job state; default: derived from ``SECRET_KEY``."""
        return self._get("JOB_SIGNING_KEY", None)

    @property
    def EXECUTION_RETENTION_DAYS(self) -> int:
        """Default history retention; a tenant's execution_retention_days overrides it."""
        return self._get("EXECUTION_RETENTION_DAYS", 90)

    @property
    def TENANT_CONCURRENCY(self) -> int | None:
        """Default limit of concurrent executions per tenant (0: no limit).

        None (the default): half the executor's workers, rounded up, so that one tenant
        cannot fill the pool (``executors.thread.default_tenant_limit``).
        """
        return self._get("TENANT_CONCURRENCY", None)

    @property
    def MAX_SCHEDULES_PER_TENANT(self) -> int:
        """Default quota of schedules per tenant; a tenant's max_schedules overrides it."""
        return self._get("MAX_SCHEDULES_PER_TENANT", 1000)

    @property
    def ALERT_FROM_EMAIL(self) -> str | None:
        return self._get("ALERT_FROM_EMAIL", None)

    @property
    def WEBHOOK_TIMEOUT(self) -> float:
        return self._get("WEBHOOK_TIMEOUT", 5.0)

    @property
    def MONITORING_TOKEN(self) -> str | None:
        """Bearer token ``/healthz`` and ``/metrics`` require (None: no token asked)."""
        return self._get("MONITORING_TOKEN", None)

    @property
    def MONITORING_ALLOW_NETWORKS(self) -> list[str]:
        """CIDRs ``/healthz`` and ``/metrics`` answer (REMOTE_ADDR); empty: every address."""
        return list(self._get("MONITORING_ALLOW_NETWORKS", []))

    @property
    def METRICS_PER_SCHEDULE(self) -> bool:
        """Add each enabled schedule's last success and next run to ``/metrics`` (by id)."""
        return self._get("METRICS_PER_SCHEDULE", False)

    @property
    def HEALTH_MAX_HEARTBEAT_AGE(self) -> float:
        """Seconds after which the health endpoint calls the scheduler's heartbeat stale."""
        return self._get("HEALTH_MAX_HEARTBEAT_AGE", 30.0)

    @property
    def API_MAX_NEXT_RUNS(self) -> int:
        """Upper bound of ``count`` in the API's next-runs endpoint."""
        return self._get("API_MAX_NEXT_RUNS", 100)

    @property
    def API_THROTTLE_RATES(self) -> dict[str, str | None]:
        """Request rates per user of the API's throttle scopes ("60/minute"; None: no limit).

        ``scheduling`` counts every request, ``scheduling_run`` the actions that queue or
        change work (run, pause, resume, enable, disable, cancel, retry). A project's dict is
        merged over these defaults.
        """
        rates: dict[str, str | None] = {"scheduling": "600/minute", "scheduling_run": "60/minute"}
        value: object = self._get("API_THROTTLE_RATES", {})
        if isinstance(value, dict):  # anything else is reported by scheduling.E046
            rates.update(value)
        return rates

    @property
    def CLEANUP_BATCH_SIZE(self) -> int:
        return self._get("CLEANUP_BATCH_SIZE", 1000)

    @property
    def FILE_CLEANUP_ROOTS(self) -> list[str]:
        """Absolute directories below which the ``files`` cleanup target may delete files.

        Empty (the default): the target refuses to run.
        """
        return self._get("FILE_CLEANUP_ROOTS", [])

    @property
    def RETENTION_SCHEDULE(self) -> bool:
        """Give every tenant the built-in "History retention" cleanup (see housekeeping)."""
        return self._get("RETENTION_SCHEDULE", True)

    @property
    def DECLARED_SCHEDULES(self) -> list[dict[str, object]]:
        """Schedules declared in code (``scheduling.schedules_io.declared``); [] for none."""
        return self._get("DECLARED_SCHEDULES", [])


conf = Settings()
